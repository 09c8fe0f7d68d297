"""``tpe``: Optuna's tree-structured Parzen estimator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import register
from ._sequential import SequentialStrategy

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

__all__ = ["Tpe"]


@register
class Tpe(SequentialStrategy):
    """Optuna's TPE, modelling the parameters jointly, with running trials as provisional results."""

    name = "tpe"
    summary = "Optuna's TPE (multivariate, constant liar: parallel workers spread out)"

    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        from optuna.samplers import TPESampler

        return TPESampler(seed=seed, multivariate=True, constant_liar=True)
