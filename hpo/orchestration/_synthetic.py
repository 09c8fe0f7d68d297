"""Synthetic trials (``synthetic:`` in a study file): sleep instead of training, score by a formula.

They exercise everything around training (claims, leases and heartbeats, curves, pruning, finishes,
stages) at a cost the study chooses, so a deployment can be checked or benchmarked with hundreds of
trials per second, or with many more pool processes than cores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import engine

from ..spec import StudySpec

__all__ = ["SyntheticRun", "synthetic_score"]


def synthetic_score(spec: StudySpec, params: Mapping[str, Any]) -> float:
    """The final validation accuracy of a synthetic trial, in [0.1, 0.9]: highest (0.9) where every
    searched parameter sits in the middle of its first-stage range (on a log scale if it has one)."""
    space = spec.search_space()
    spread = 0.0
    for name, dist in space.items():
        value = params[name]
        if hasattr(dist, "choices"):
            choices = list(dist.choices)
            u = choices.index(value) / max(1, len(choices) - 1) if len(choices) > 1 else 0.5
        else:
            low, high, value = float(dist.low), float(dist.high), float(value)
            if getattr(dist, "log", False):
                low, high, value = math.log(low), math.log(high), math.log(value)
            u = (value - low) / (high - low) if high > low else 0.5
        spread += (u - 0.5) ** 2
    # A mean squared distance of 0.25 (every parameter at an edge) gives the floor.
    closeness = 1.0 - min(1.0, 4.0 * spread / max(1, len(space)))
    return 0.1 + 0.8 * closeness


class SyntheticRun:
    """Stands in for :class:`engine.Trainer`: ``fit`` runs the stage's epochs, each sleeping
    ``synthetic.epoch_seconds`` and passing its record to the callback, which may stop the run."""

    def __init__(
        self,
        spec: StudySpec,
        params: Mapping[str, Any],
        epochs: int,
        seed: int,
        callback: Callable[[engine.EpochRecord], bool],
    ) -> None:
        assert spec.synthetic is not None
        self.sleep = spec.synthetic.epoch_seconds
        self.epochs = epochs
        self.callback = callback
        self.final = synthetic_score(spec, params)
        # A little noise per trial, from its own seed (reruns of a trial give the same curve).
        self.noise = float(np.random.default_rng(seed).normal(0.0, 0.005))

    def fit(self) -> engine.TrainResult:
        """Run the epochs; stopped by the callback, the result says so."""
        history: list[engine.EpochRecord] = []
        start = time.perf_counter()
        for epoch in range(1, self.epochs + 1):
            began = time.perf_counter()
            if self.sleep:
                time.sleep(self.sleep)
            # Approaches the final score as epochs go on: an early epoch ranks trials as the last.
            acc = 0.1 + (self.final - 0.1) * (1.0 - 0.5**epoch) + self.noise
            acc = float(np.float32(min(1.0, max(0.0, acc))))
            loss = float(np.float32(-math.log(max(acc, 1e-6))))
            record = engine.EpochRecord(epoch, loss, acc, loss, acc, time.perf_counter() - began)
            history.append(record)
            if self.callback(record):
                return engine.TrainResult(
                    engine.Outcome.STOPPED, history, "stopped", epoch, time.perf_counter() - start
                )
        seconds = time.perf_counter() - start
        return engine.TrainResult(engine.Outcome.COMPLETED, history, None, self.epochs, seconds)
