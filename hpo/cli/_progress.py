"""Live progress of a running study, on stderr."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._common import fmt_value
from ._console import err_console

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from hpo.orchestration import Progress
    from hpo.storage import Storage

__all__ = ["LiveProgress", "range_text"]


class LiveProgress:
    """Draws stage, trials done/failed, best so far, current ranges and ETA.

    On a terminal the display is redrawn in place (rich Live); elsewhere (a pipe, CI, a log) it
    prints one plain line each time the study's progress changes, never the same line twice.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.enabled = err_console().is_terminal
        self._live: Live | None = None
        self._last_text = ""
        self._seen: tuple[float, int] | None = None  # (time, trials done) when first drawn

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._live = Live(console=err_console(), auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def eta(self, done: int, total: int) -> str:
        """Time left at the rate trials finished while this display watched (a follower that
        joins a study half-way must not count the trials it did not see)."""
        now = time.monotonic()
        if self._seen is None:
            self._seen = (now, done)
        since, done_then = self._seen
        if done >= total:
            return "0 s"
        if done <= done_then or now <= since:
            return "-"
        return f"{(now - since) / (done - done_then) * (total - done):.0f} s"

    def __call__(self, p: Progress) -> None:
        from hpo.orchestration import best_trials, shown_state, study_spec
        from hpo.samplers import space_from_json

        spec = study_spec(p.study)
        total = sum(s.trials for s in spec.search.stages)
        done = sum(p.counts.get(s, 0) for s in ("COMPLETE", "FAIL", "PRUNED"))
        stage = p.study.current_stage
        stage_done = sum(p.stage_counts.get(s, 0) for s in ("COMPLETE", "FAIL", "PRUNED"))
        eta = self.eta(done, total)
        best = best_trials(self.storage, p.study.id, spec, 1)
        best_txt = "-"
        if best:
            b = best[0]
            best_txt = (
                f"{spec.objective.metric} {fmt_value(b.value)} (trial {b.number}: {fmt_value(b.params)})"
            )
        where = (
            f"stage {stage + 1}/{len(spec.search.stages)} ({stage_done}/{spec.search.stages[stage].trials})"
        )
        state = shown_state(p.study).lower()
        if self._live is None:
            # Not a terminal: one line per change of what a reader follows (no clock in it).
            text = (
                f"{p.study.name}: {state}, {where}, trials {done}/{total}, failed {p.counts.get('FAIL', 0)}, "
                f"best {best_txt}"
            )
            if text != self._last_text:
                err_console().print(f"{text}, ETA {eta}", highlight=False, markup=False)
                self._last_text = text
            return
        head = (
            f"[bold]{p.study.name}[/] {state}  {where}  trials {done}/{total}  "
            f"failed {p.counts.get('FAIL', 0)}  pruned {p.counts.get('PRUNED', 0)}  "
            f"running {p.counts.get('RUNNING', 0)}  "
            f"workers {p.workers_alive if p.workers_alive >= 0 else 'remote'}  {p.elapsed:.1f} s  ETA {eta}"
        )
        stages = self.storage.stages(p.study.id)
        ranges = Table("parameter", *(f"stage {s.index + 1}" for s in stages), box=None, pad_edge=False)
        spaces = [space_from_json(json.loads(s.space)) for s in stages]
        for name in spec.search.parameters:
            ranges.add_row(name, *(range_text(sp.get(name)) for sp in spaces))
        self._live.update(Group(Text.from_markup(head), Text(f"best: {best_txt}"), ranges), refresh=True)


def range_text(dist: BaseDistribution | None) -> str:
    """A stage's range of one parameter, as shown to users."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dist is None:
        return "-"
    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(str(c) for c in dist.choices) + "}"
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return f"{fmt_value(float(dist.low))} .. {fmt_value(float(dist.high))}"
