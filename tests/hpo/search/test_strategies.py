"""Contract tests over every registered search strategy, and the registry itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from optuna.samplers import BaseSampler

from hpo.search import (
    SearchStrategy,
    UnknownStrategyError,
    _base,
    get_strategy,
    register,
    split_trials,
    strategy_names,
)
from hpo.spec import StudySpec, study_json_schema

STUDY: dict[str, Any] = {
    "name": "s",
    "seed": 3,
    "dataset": {"kind": "digits"},
    "search": {
        "trials": 12,
        "parameters": {
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
            "width": {"type": "int", "low": 4, "high": 64, "log": True},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
    },
    "model": {"hidden_sizes": [8]},
}


def _spec(sampler: str) -> StudySpec:
    return StudySpec.model_validate({**STUDY, "search": {**STUDY["search"], "sampler": sampler}})


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_keeps_the_contract(name: str) -> None:
    strategy = get_strategy(name)
    spec = _spec(name)
    assert spec.strategy is strategy and strategy.name == name and strategy.summary
    assert sum(strategy.split(12)) == 12 and all(n >= 1 for n in strategy.split(12))
    assert [s.trials for s in spec.search.stages] == strategy.split(12)  # search.trials uses the split
    space = spec.search_space()
    first = strategy.propose(spec, space, range(4), [])
    assert [n for n, _, _ in first] == [0, 1, 2, 3]
    assert first == strategy.propose(spec, space, range(4), [])  # a pure function: any process proposes
    for number, params, seed in first:
        assert set(params) == set(space) and seed == spec.trial_seed(number)
        spec.trial_spec(params, 0, seed=seed)  # valid values for their fields
    assert len({repr(p) for _, p, _ in first}) == 4  # distinct draws
    finished = [(params, float(i)) for i, (_, params, _) in enumerate(first)]
    nxt = strategy.next_space(spec, space, finished)
    assert set(nxt) == set(space)
    assert isinstance(strategy.optuna_sampler(0), BaseSampler)


def test_the_spec_accepts_exactly_the_registered_strategies() -> None:
    schema = study_json_schema()
    sampler = schema["$defs"]["SearchSpec"]["properties"]["sampler"]
    assert sampler["enum"] == list(strategy_names()) == ["narrowing", "random", "tpe", "cmaes"]
    with pytest.raises(UnknownStrategyError):
        get_strategy("grid")


@pytest.fixture
def extra_strategy() -> Iterator[type[SearchStrategy]]:
    """A new kind, registered for one test: one class, no other change anywhere."""

    @register
    class Halves(SearchStrategy):
        name = "halves"
        summary = "every parameter at the middle of its range"

        def propose(self, spec: Any, space: Any, numbers: Any, history: Any) -> list[Any]:
            mid = {
                k: d.choices[0] if hasattr(d, "choices") else type(d.low)((d.low + d.high) / 2)
                for k, d in space.items()
            }
            return [(n, dict(mid), spec.trial_seed(n)) for n in numbers]

        def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
            from optuna.samplers import RandomSampler

            return RandomSampler(seed=seed)

    try:
        yield Halves
    finally:
        del _base._REGISTRY["halves"]


def test_a_new_strategy_is_one_class_and_its_registration(extra_strategy: type[SearchStrategy]) -> None:
    from hpo.orchestration import first_stage_draft

    spec = _spec("halves")
    draft = first_stage_draft(spec)
    assert len(draft.trials) == 12 and draft.trials[0][1]["optimizer"] == "sgd"


def test_split_trials() -> None:
    assert split_trials(100) == [25, 25, 25, 25]
    assert split_trials(10) == [3, 3, 2, 2]
    assert split_trials(2) == [1, 1]
    with pytest.raises(ValueError):
        split_trials(0)


def test_narrowing_with_sobol_sampling_gives_each_trial_its_point_of_the_stage() -> None:
    from hpo.samplers import sobol_params

    study = {
        **STUDY,
        "search": {**STUDY["search"], "sampler": "narrowing", "narrowing": {"sampling": "sobol"}},
    }
    spec = StudySpec.model_validate(study)
    strategy, space = spec.strategy, spec.search_space()
    first = spec.first_number(1)  # stage 1's trials: points 0, 1, ... of stage 1's sequence
    proposed = strategy.propose(spec, space, range(first, first + 3), [])
    assert [p for _, p, _ in proposed] == [sobol_params(space, spec.seed, 1, i) for i in range(3)]
    assert proposed == strategy.propose(spec, space, range(first, first + 3), [])
    # The contract holds as for random draws: a pure function, one seed per trial number.
    assert [s for _, _, s in proposed] == [spec.trial_seed(n) for n in range(first, first + 3)]
