"""The narrowing strategy's promotion across stages (``search.narrowing.promote``): which trials of a
stage the next stage continues, by the rule of docs/narrowing.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import BaseDistribution

from hpo.samplers import sample_params, trial_rng
from hpo.search import get_strategy
from hpo.search._narrowing import promoted_count, promoted_trials
from hpo.spec import StudySpec
from hpo.storage import TrialRow, TrialState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(
    promote: float = 0.5,
    stages: tuple[tuple[int, int], ...] = ((8, 2), (6, 4)),
    direction: str = "maximize",
    seed: int = 0,
    **rule: Any,
) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "p",
            "seed": seed,
            "dataset": {"kind": "digits"},
            "model": {"hidden_sizes": [8]},
            "search": {
                "stages": [{"trials": n, "epochs": e} for n, e in stages],
                "parameters": {
                    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True, "bounds": [1e-6, 1.0]},
                    "width": {"type": "int", "low": 4, "high": 64, "log": True},
                    "optimizer": {"type": "categorical", "choices": ["sgd", "momentum", "adam"]},
                },
                "narrowing": {"promote": promote, "top_cut": 0.0, **rule},
            },
            "objective": {"metric": "val_acc" if direction == "maximize" else "val_loss"},
        }
    )


def _row(
    spec: StudySpec,
    number: int,
    value: float | None,
    state: str = "COMPLETE",
    stage: int = 0,
    space: Mapping[str, BaseDistribution] | None = None,
) -> TrialRow:
    params = sample_params(space or spec.search_space(), trial_rng(spec.seed, number))
    return TrialRow(
        id=100 + number,
        study_id=1,
        number=number,
        stage=stage,
        params=params,
        seed=spec.trial_seed(number),
        state=TrialState(state),
        attempts=1,
        worker=None,
        lease_expires_at=None,
        value=value,
        reason=None if state == "COMPLETE" else "x",
        curves=None,
        intermediate=None,
        optuna_trial_id=None,
        created_at=NOW,
        started_at=NOW,
        finished_at=NOW,
    )


def _promoted(spec: StudySpec, rows: list[TrialRow]) -> list[int]:
    finished = [(r.params, r.value) for r in rows if r.state == "COMPLETE" and r.value is not None]
    space = get_strategy("narrowing").next_space(spec, spec.search_space(), finished)
    return [t.number for t in promoted_trials(spec, 1, space, rows)]


@pytest.mark.parametrize(
    ("share", "n", "m"),
    [(0.0, 10, 0), (0.25, 10, 3), (0.2, 10, 2), (0.5, 3, 2), (0.58, 25, 15), (0.29, 50, 15)],
)
def test_the_share_is_rounded_halves_up(share: float, n: int, m: int) -> None:
    # 0.58 * 25 and 0.29 * 50 are just below 14.5 in binary: still halves.
    assert promoted_count(share, n) == m


def test_the_best_complete_trials_are_promoted_best_first() -> None:
    spec = _spec(promote=0.5)  # 6 trials in stage 1: 3 promoted; top set of 8: 3
    values = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.4]
    rows = [_row(spec, i, v) for i, v in enumerate(values)]
    assert _promoted(spec, rows) == [1, 5, 3]


def _rows(spec: StudySpec, values: list[float]) -> list[TrialRow]:
    return [_row(spec, i, v) for i, v in enumerate(values)]


def test_m_is_capped_by_the_top_set_and_the_complete_trials() -> None:
    values = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.4]
    spec = _spec(promote=0.9)  # round(0.9 * 6) = 5, but the top set of 8 holds 3
    assert _promoted(spec, _rows(spec, values)) == [1, 5, 3]
    spec = _spec(promote=0.9, top_fraction=0.5, min_top=1)  # top set of 8: 4
    assert _promoted(spec, _rows(spec, values)) == [1, 5, 3, 2]
    spec = _spec(promote=0.9, top_fraction=1.0)
    two = [_row(spec, 0, 0.5), _row(spec, 1, 0.6)] + [_row(spec, i, None, "FAIL") for i in range(2, 8)]
    assert _promoted(spec, two) == [1, 0]  # only 2 complete trials
    spec = _spec(promote=0.1)  # round(0.6) = 1
    assert _promoted(spec, _rows(spec, values)) == [1]
    spec = _spec(promote=0.05)  # round(0.3) = 0
    assert _promoted(spec, _rows(spec, values)) == []


def test_failed_and_pruned_trials_are_never_promoted() -> None:
    spec = _spec(promote=0.5)
    rows = [_row(spec, 0, None, "FAIL"), _row(spec, 1, 0.99, "PRUNED")]
    rows += [_row(spec, i, 0.1 * i) for i in range(2, 8)]
    assert _promoted(spec, rows) == [7, 6, 5]
    assert _promoted(spec, [_row(spec, i, None, "FAIL") for i in range(8)]) == []


def test_ties_go_to_the_lower_number_and_minimize_ranks_low_values_first() -> None:
    spec = _spec(promote=0.5)
    rows = [_row(spec, i, v) for i, v in enumerate([0.5, 0.7, 0.5, 0.7, 0.5, 0.1, 0.7, 0.0])]
    assert _promoted(spec, rows) == [1, 3, 6]
    spec = _spec(promote=0.5, direction="minimize")
    rows = [_row(spec, i, v) for i, v in enumerate([0.5, 0.7, 0.5, 0.7, 0.5, 0.1, 0.7, 0.9])]
    assert _promoted(spec, rows) == [5, 0, 2]


@pytest.mark.parametrize("epochs", [2, 1])
def test_no_promotion_unless_the_next_stage_trains_longer(epochs: int) -> None:
    spec = _spec(promote=0.5, stages=((8, 2), (6, epochs)))
    rows = [_row(spec, i, 0.1 * i) for i in range(8)]
    assert _promoted(spec, rows) == []
    assert _promoted(_spec(promote=0.0), rows) == []  # the default: none


def test_only_the_previous_stages_trials_count() -> None:
    spec = _spec(promote=0.5, stages=((4, 2), (4, 4), (6, 8)))
    rows = [_row(spec, i, 0.9, stage=0) for i in range(4)] + [
        _row(spec, i, 0.1 * i, stage=1) for i in range(4, 8)
    ]
    finished = [(r.params, r.value) for r in rows if r.stage == 1]
    space = get_strategy("narrowing").next_space(spec, spec.search_space(), finished)
    assert [t.number for t in promoted_trials(spec, 2, space, rows)] == [7, 6, 5]


def test_a_trial_outside_the_window_is_not_promoted(caplog: pytest.LogCaptureFixture) -> None:
    spec = _spec(promote=0.5)
    rows = [_row(spec, i, 0.1 * i) for i in range(8)]
    space = dict(spec.search_space())
    space["optimizer"] = type(space["optimizer"])(
        [o for o in ("sgd", "momentum", "adam") if o != rows[7].params["optimizer"]]
    )
    promoted = [t.number for t in promoted_trials(spec, 1, space, rows)]
    assert 7 not in promoted and "outside its ranges" in caplog.text


# HPO_HYPOTHESIS_EXAMPLES=5000 for a thorough run; the default keeps the suite fast.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("HPO_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 2**31),
    n=st.lists(st.integers(1, 30), min_size=3, max_size=3),
    share=st.floats(0.0, 0.99),
    top_fraction=st.floats(0.01, 1.0),
    min_top=st.integers(1, 6),
    margin=st.floats(0.0, 1.0),
    min_width=st.floats(0.001, 1.0),
    pan=st.booleans(),
    pan_growth=st.floats(1.0, 3.0),
    top_cut=st.floats(0.0, 1.0),
    scores=st.lists(st.sampled_from([None, 0.0, 0.25, 0.5, 0.5, 0.75, 1.0]), min_size=60, max_size=60),
)
def test_promoted_trials_are_the_top_of_their_stage_and_inside_the_narrowed_window(
    seed: int,
    n: list[int],
    share: float,
    top_fraction: float,
    min_top: int,
    margin: float,
    min_width: float,
    pan: bool,
    pan_growth: float,
    top_cut: float,
    scores: list[float | None],
) -> None:
    rule = {"top_fraction": top_fraction, "min_top": min_top, "margin": margin, "min_width": min_width}
    rule.update(pan=pan, pan_growth=pan_growth, top_cut=top_cut)
    spec = _spec(promote=share, stages=((n[0], 2), (n[1], 3), (n[2], 4)), seed=seed, **rule)
    strategy = get_strategy("narrowing")
    spaces: list[Any] = [spec.search_space()]
    for stage in (0, 1):  # stage 1 samples the narrowed space of stage 0, and stage 2 stage 1's
        first = spec.first_number(stage)
        rows = [
            _row(spec, k, v, "COMPLETE" if v is not None else "FAIL", stage, spaces[stage])
            for k, v in zip(range(first, first + n[stage]), scores[first:], strict=False)
        ]
        complete = [r for r in rows if r.value is not None]
        finished = [(r.params, r.value) for r in complete]
        space = strategy.next_space(spec, spaces[stage], finished, spaces[:stage])
        spaces.append(space)
        promoted = promoted_trials(spec, stage + 1, space, rows)
        ranked = sorted(complete, key=lambda r: (-(r.value or 0.0), r.number))
        # The top set the window came from: top_cut may make it smaller than the top fraction.
        n_top = spec.narrowing_rule().n_top(len(complete), [-(r.value or 0.0) for r in ranked])
        # Nothing is left out by the window check: exactly m, by the rule's formula.
        assert len(promoted) == min(promoted_count(share, n[stage + 1]), n_top, len(complete))
        assert promoted == ranked[: len(promoted)]
        for trial in promoted:
            for name, dist in space.items():
                assert dist._contains(dist.to_internal_repr(trial.params[name])), (
                    name,
                    trial.params[name],
                    dist,
                )
