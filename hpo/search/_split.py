"""How a total number of trials is split into stages (``search.trials: N``, ``NarrowingSampler``)."""

from __future__ import annotations

__all__ = ["DEFAULT_STAGES", "split_trials"]

DEFAULT_STAGES = 4
"""Equal stages that a narrowing search of N trials is split into: at 100 trials, four stages of
25 found the same best validation accuracy as 40/30/30 and reached random search's 100-trial result
in 30 trials instead of 43 (``bench/search_quality.py``, docs/search-quality.md)."""


def split_trials(trials: int, stages: int = DEFAULT_STAGES) -> list[int]:
    """``trials`` split into ``stages`` near-equal stages (fewer when there are fewer trials),
    earlier stages taking the remainder: ``split_trials(10) == [3, 3, 2, 2]``."""
    if trials < 1 or stages < 1:
        raise ValueError(f"need trials >= 1 and stages >= 1, got {trials} and {stages}")
    n = min(stages, trials)
    return [trials // n + (1 if i < trials % n else 0) for i in range(n)]
