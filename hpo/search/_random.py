"""``random``: random search in the first stage's ranges (the book's ch. 6.5 baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import register
from ._independent import IndependentStrategy

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

__all__ = ["Random"]


@register
class Random(IndependentStrategy):
    """Random samples in the declared ranges, every stage alike."""

    name = "random"
    summary = "random samples in the declared ranges (Optuna's RandomSampler in plain Optuna)"

    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        from optuna.samplers import RandomSampler

        return RandomSampler(seed=seed)
