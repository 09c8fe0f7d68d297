"""The search-strategy protocol and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .._errors import HPOError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler

    from ..spec import StudySpec
    from ..storage import TrialRow

__all__ = ["Proposal", "SearchStrategy", "UnknownStrategyError", "get_strategy", "register", "strategy_names"]

Proposal = tuple[int, dict[str, Any], int]
"""A trial to create: ``(number, params, seed)``."""

Space = Mapping[str, "BaseDistribution"]


class UnknownStrategyError(HPOError):
    """No search strategy is registered under that name."""


class SearchStrategy(ABC):
    """How one kind of search proposes a study's trials, stage by stage.

    The service creates a stage's trials from :meth:`propose`: all at once, or, for a
    :attr:`sequential` strategy, a few at a time as earlier ones finish (``search.in_flight``).
    Between stages, :meth:`next_space` gives the space the next stage samples, and
    :meth:`promote` the trials whose networks the next stage continues (if any).

    Attributes:
        name: The study file's ``search.sampler``.
        summary: One line for ``hpo schema`` and the docs.
        sequential: Proposes from the finished trials (a bounded number in flight), instead of a
            whole stage at once from the trial numbers alone.
        narrows: Takes the ``search.narrowing`` section (the rule between stages).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    sequential: ClassVar[bool] = False
    narrows: ClassVar[bool] = False

    def split(self, trials: int) -> list[int]:
        """The stages that ``search.trials: N`` stands for (default: one stage)."""
        return [trials]

    def next_space(
        self,
        spec: StudySpec,
        space: Space,
        finished: Sequence[tuple[Mapping[str, Any], float]],
        earlier: Sequence[Space] = (),
    ) -> Space:
        """The space of the stage after one that sampled ``space`` and finished with ``finished``
        (``(params, value)`` of its COMPLETE trials); ``earlier`` holds the spaces of the stages
        before that one. Default: the same space."""
        return space

    def promote(
        self, spec: StudySpec, stage: int, space: Space, previous: Sequence[TrialRow]
    ) -> list[TrialRow]:
        """The trials of stage ``stage - 1`` whose trained networks the first trials of ``stage``
        (sampling ``space``) continue, best first: those trials take their parameters and seed.
        ``previous`` holds stage ``stage - 1``'s trials. Default: none."""
        return []

    @abstractmethod
    def propose(
        self, spec: StudySpec, space: Space, numbers: Sequence[int], history: Sequence[TrialRow]
    ) -> list[Proposal]:
        """Parameters and seeds of the trials ``numbers`` of a stage sampling ``space``.

        ``history`` holds the study's trials so far (sequential strategies learn from it). The
        result must be a pure function of its arguments, so that any process may propose.
        """

    @abstractmethod
    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        """This kind of search as a seeded Optuna sampler (plain Optuna scripts, comparisons).

        Options a kind does not use are ignored, so one description runs with every kind.
        """


_REGISTRY: dict[str, SearchStrategy] = {}

S = TypeVar("S", bound=type[SearchStrategy])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` the strategy of ``search.sampler: cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"search strategy {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def strategy_names() -> tuple[str, ...]:
    """Every registered kind, in registration order."""
    return tuple(_REGISTRY)


def get_strategy(name: str) -> SearchStrategy:
    """The strategy registered as ``name``.

    Raises:
        UnknownStrategyError: No such kind.
    """
    strategy = _REGISTRY.get(name)
    if strategy is None:
        raise UnknownStrategyError(f"unknown sampler {name!r}; expected one of {', '.join(_REGISTRY)}")
    return strategy
