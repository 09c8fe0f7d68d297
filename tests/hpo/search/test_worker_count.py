"""Which strategies give the same trials whatever the worker count (docs/deploy.md, "Reproducible
whatever the worker count"), at the level of the proposals: those that draw a stage at once ignore
what has finished and how proposals are batched; the sequential ones read the trials finished at
proposal time, so with several trials in flight the finish order changes what they propose.

tests/workers/test_reproducible.py runs the same studies on 1, 2 and 8 real workers.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from hpo.search import get_strategy, strategy_names
from hpo.spec import StudySpec
from hpo.storage import TrialRow, TrialState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(sampler: str, trials: int = 16) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "s",
            "seed": 5,
            "dataset": {"kind": "digits"},
            "model": {"hidden_sizes": [8]},
            "search": {
                "sampler": sampler,
                "stages": [{"trials": trials}],
                "parameters": {
                    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                    "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
                },
            },
        }
    )


def _row(number: int, params: dict[str, Any], seed: int, value: float | None) -> TrialRow:
    """Trial ``number``: COMPLETE with ``value``, or still RUNNING when ``value`` is None."""
    state = TrialState.RUNNING if value is None else TrialState.COMPLETE
    return TrialRow(
        id=100 + number,
        study_id=1,
        number=number,
        stage=0,
        params=params,
        seed=seed,
        state=state,
        attempts=1,
        worker=None,
        lease_expires_at=None,
        value=value,
        reason=None,
        curves=None,
        intermediate=None,
        optuna_trial_id=None,
        created_at=NOW,
        started_at=NOW,
        finished_at=None if value is None else NOW,
    )


def _score(params: dict[str, Any]) -> float:
    return -abs(params["lr"] - 0.05) - params["weight_decay"]


def _history(sampler: str, n: int, running: set[int]) -> list[TrialRow]:
    """Trials 0..n-1 as the strategy proposes them one at a time, ``running`` still in flight."""
    spec, strategy = _spec(sampler), get_strategy(sampler)
    space, rows = spec.search_space(), []
    for number in range(n):
        ((_, params, seed),) = strategy.propose(spec, space, [number], rows)
        rows.append(_row(number, params, seed, _score(params)))
    return [_row(r.number, r.params, r.seed, None) if r.number in running else r for r in rows]


@pytest.mark.parametrize("sampler", [s for s in strategy_names() if not get_strategy(s).sequential])
def test_a_stage_at_once_strategy_proposes_the_same_trial_whatever_has_finished_and_however_batched(
    sampler: str,
) -> None:
    """A trial's parameters and seed depend on (study seed, number, stage space) only: not on
    which trials finished, nor on which process proposed it in which batch."""
    spec, strategy = _spec(sampler), get_strategy(sampler)
    space = spec.search_space()
    whole = strategy.propose(spec, space, range(16), [])
    batches = [range(0, 3), range(3, 4), range(4, 11), range(11, 16)]
    assert [p for b in batches for p in strategy.propose(spec, space, b, [])] == whole
    finished = [_row(n, p, s, _score(p)) for n, p, s in whole[:5]]
    assert strategy.propose(spec, space, range(16), finished) == whole
    assert all(seed == spec.trial_seed(n) for n, _, seed in whole)
    # The next stage's space depends on the stage's results, not on the order they finished in
    # (the service reads them by number anyway; ties between equal values go to the lower number).
    results = [(p, _score(p)) for _, p, _ in whole]
    shuffled = results[:]
    random.Random(0).shuffle(shuffled)
    assert strategy.next_space(spec, space, shuffled) == strategy.next_space(spec, space, results)


def test_tpe_proposes_from_what_finished_so_the_trials_in_flight_change_its_proposals() -> None:
    """Trial 14 proposed once trials 0..13 exist, two of them still in flight: which two (that is,
    which finished first: the worker count and timing decide) changes what TPE proposes, as soon
    as a trial in flight is one of the best. With one trial in flight every proposal sees every
    earlier result, and is the same each time.

    (cmaes is sequential too, but as hpo rebuilds its history it proposes without the results.)
    """
    spec, strategy = _spec("tpe"), get_strategy("tpe")
    space = spec.search_space()
    done = _history("tpe", 14, set())
    best, second = sorted(done[:13], key=lambda r: -(r.value or 0.0))[:2]
    proposals = [
        strategy.propose(spec, space, [14], _history("tpe", 14, running))
        for running in ({best.number, 13}, {second.number, 13}, {12, 13})
    ]
    assert len({repr(p) for p in proposals}) == 3, proposals
    assert all(seed == spec.trial_seed(14) for ((_, _, seed),) in proposals)
    assert strategy.propose(spec, space, [14], done) == strategy.propose(
        spec, space, [14], _history("tpe", 14, set())
    )
