"""Strategies whose trials are independent draws: a trial's parameters are a pure function of
(study seed, trial number, stage space), whichever process draws them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._base import Proposal, SearchStrategy, Space

if TYPE_CHECKING:
    from ..spec import StudySpec
    from ..storage import TrialRow

__all__ = ["IndependentStrategy"]


class IndependentStrategy(SearchStrategy):
    """Each trial drawn from its own generator ``(seed, number)`` inside the stage's space."""

    def propose(
        self, spec: StudySpec, space: Space, numbers: Sequence[int], history: Sequence[TrialRow]
    ) -> list[Proposal]:
        from ..samplers import sample_params, trial_rng

        return [(n, sample_params(space, trial_rng(spec.seed, n)), spec.trial_seed(n)) for n in numbers]
