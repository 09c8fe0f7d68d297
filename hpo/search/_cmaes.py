"""``cmaes``: Optuna's CMA-ES sampler (needs the ``cmaes`` package)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ._base import register
from ._sequential import SequentialStrategy

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

__all__ = ["CmaEs"]


@register
class CmaEs(SequentialStrategy):
    """Optuna's CMA-ES over the numeric parameters."""

    name = "cmaes"
    summary = "Optuna's CMA-ES (numeric parameters; needs the cmaes package)"

    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        from optuna.samplers import CmaEsSampler

        # Optuna imports `cmaes` lazily and would fail only at the second trial; fail here instead.
        if importlib.util.find_spec("cmaes") is None:
            from ..samplers import SamplerError

            raise SamplerError("sampler 'cmaes' needs the 'cmaes' package: pip install cmaes")
        return CmaEsSampler(seed=seed)
