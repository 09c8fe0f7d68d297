"""I4: ``optuna.load_study(NAME, URL)`` agrees with our tables once mirrored, and the mirror writes
each trial once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from hpo.storage import Storage, StorageError, StudyRow, TrialOutcome, TrialState, encode_space
from hpo.storage._models import Trial
from hpo.storage._optuna_mirror import METRIC_NAMES_ATTR

from . import helpers
from .conftest import SPACE, draft

MakeStudy = Callable[..., StudyRow]

_STATES = {
    TrialState.COMPLETE: OptunaState.COMPLETE,
    TrialState.FAIL: OptunaState.FAIL,
    TrialState.PRUNED: OptunaState.PRUNED,
}


def assert_optuna_view_agrees(storage: Storage, study: StudyRow) -> None:
    """Every finished trial has exactly one Optuna trial with the same params, value, state, steps."""
    ours = {t.id: t for t in storage.trials(study.id) if t.finished}
    loaded = optuna.load_study(study_name=study.name, storage=storage.url)
    assert loaded.direction.name.lower() == study.direction
    theirs = {ft.user_attrs["hpo_trial_id"]: ft for ft in loaded.get_trials(deepcopy=False)}
    assert len(theirs) == len(loaded.trials)  # no duplicates
    assert set(theirs) == set(ours)
    for trial_id, ft in theirs.items():
        row = ours[trial_id]
        assert ft._trial_id == row.optuna_trial_id
        assert ft.state == _STATES[row.state]
        assert ft.params == row.params
        assert ft.intermediate_values == (row.intermediate or {})
        assert (ft.user_attrs["hpo_number"], ft.user_attrs["stage"], ft.user_attrs["seed"]) == (
            row.number,
            row.stage + 1,  # 1-based, as hpo's commands show it
            row.seed,
        )
        # The compute a trial recorded; none (a trial finished before revision 0007) is left out.
        compute = (ft.user_attrs.get("hpo_epochs_trained"), ft.user_attrs.get("hpo_train_seconds"))
        assert compute == (row.epochs_trained, row.train_seconds)
        if row.state == TrialState.COMPLETE:
            assert ft.value == row.value
        elif row.state == TrialState.FAIL:
            assert ft.value is None and ft.system_attrs["fail_reason"] == row.reason
        else:
            steps = row.intermediate or {}
            assert ft.value == (row.value if row.value is not None else steps[max(steps)])


def _run(storage: Storage, study: StudyRow, stage: int, worker: str = "w") -> None:
    for trial in storage.trials(study.id, states=["PENDING"], stage=stage):
        claimed = helpers.claim(storage, trial.id, worker, 60)
        assert claimed is not None
        steps = {1: 0.1 * (trial.number % 5), 2: 0.1 * (trial.number % 5) + 0.05}
        kind = trial.number % 4
        compute = {"epochs_trained": 2, "train_seconds": 0.25 + trial.number}
        if kind == 0:  # with no compute recorded, as before revision 0007
            assert storage.finish(
                trial.id, worker, TrialOutcome("FAIL", reason="diverged", intermediate={1: 0.01})
            )
        elif kind == 1:
            assert storage.finish(
                trial.id, worker, TrialOutcome("PRUNED", reason="median rule", intermediate=steps, **compute)
            )
        else:
            assert storage.finish(
                trial.id, worker, TrialOutcome("COMPLETE", steps[2] + 0.5, intermediate=steps, **compute)
            )
    storage.mirror(study.id)


def test_two_stages_with_narrowed_categorical(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(8)
    _run(storage, study, 0)
    narrowed = {
        "lr": FloatDistribution(1e-5, 1e-3, log=True),
        "weight_decay": FloatDistribution(1e-7, 1e-5, log=True),
        "activation": CategoricalDistribution(["relu", "tanh"]),  # a subset of stage 0's choices
    }
    nxt = draft(1, 6, 8, narrowed)
    trials = [t._replace(params={**t.params, "activation": "tanh", "lr": 1e-4}) for t in nxt.trials]
    assert storage.advance(study.id, 0, type(nxt)(1, 6, 4, nxt.space_json, trials))
    _run(storage, study, 1)
    assert_optuna_view_agrees(storage, study)
    loaded = optuna.load_study(study_name=study.name, storage=storage.url)
    assert loaded.best_trial.value == max(t.value for t in storage.trials(study.id, states=["COMPLETE"]))  # type: ignore[type-var]
    assert storage.sync(study.id) == 0  # nothing missing


def test_parameters_outside_their_space_and_int_params(storage: Storage, make_study: MakeStudy) -> None:
    space = {**SPACE, "batch": IntDistribution(16, 128, step=16)}
    study = make_study(1, space=space)
    row = storage.trials(study.id)[0]
    # Out of its space (e.g. float rounding at an edge, or a value a caller forced), and an unknown param.
    helpers.set_stage_space(storage, study.id, 0, encode_space(space))
    forced = {"lr": 0.0100000001, "weight_decay": 1e-6, "activation": "relu", "batch": 160}
    with storage.engine.begin() as conn:
        conn.execute(
            sa.update(Trial).where(Trial.id == row.id).values(params=json.dumps({**forced, "extra": 3}))
        )
    claimed = helpers.claim(storage, row.id, "w", 60)
    assert claimed is not None and storage.finish(row.id, "w", TrialOutcome("COMPLETE", 0.5))
    assert storage.mirror(study.id) == 1
    [ft] = optuna.load_study(study_name=study.name, storage=storage.url).trials
    assert ft.params == forced
    assert ft.distributions["lr"].high >= 0.0100000001  # type: ignore[attr-defined]
    assert ft.user_attrs["hpo_unmirrored_params"] == {"extra": 3}


def test_minimize_direction(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2, direction="minimize")
    _run(storage, study, 0)
    assert optuna.load_study(study_name=study.name, storage=storage.url).direction.name == "MINIMIZE"
    assert_optuna_view_agrees(storage, study)


def test_crash_between_optuna_write_and_ours_is_not_duplicated(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(4)
    _run(storage, study, 0)
    # As if the process died after Optuna's commit but before recording optuna_trial_id.
    with storage.engine.begin() as conn:
        conn.execute(sa.update(Trial).where(Trial.study_id == study.id).values(optuna_trial_id=None))
    assert storage.sync(study.id) == 0
    assert_optuna_view_agrees(storage, study)


def test_a_failed_mirror_writes_nothing_and_is_repaired_by_sync(
    storage: Storage, make_study: MakeStudy, monkeypatch: object
) -> None:
    from hpo.storage import _optuna_mirror

    study = make_study(3)
    real = _optuna_mirror.insert_trials

    def broken(conn: object, optuna_study_id: int, trials: list[object]) -> list[int]:
        real(conn, optuna_study_id, trials)  # type: ignore[arg-type]
        raise StorageError("the database went away half-way")

    monkeypatch.setattr(_optuna_mirror, "insert_trials", broken)  # type: ignore[attr-defined]
    with pytest.raises(StorageError):
        _run(storage, study, 0)  # the results are stored; the mirror fails
    assert [t.state for t in storage.trials(study.id)] == ["FAIL", "PRUNED", "COMPLETE"]
    assert all(t.optuna_trial_id is None for t in storage.trials(study.id))
    assert optuna.load_study(study_name=study.name, storage=storage.url).trials == []  # rolled back
    monkeypatch.undo()  # type: ignore[attr-defined]
    assert storage.sync(study.id) == 3
    assert_optuna_view_agrees(storage, study)


def test_deleted_optuna_study_is_recreated_by_sync(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(3)
    _run(storage, study, 0)
    optuna.delete_study(study_name=study.name, storage=storage.url)
    assert storage.sync(study.id) == 3
    assert_optuna_view_agrees(storage, study)


def test_deleted_optuna_trials_are_written_again_by_sync(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(5)
    _run(storage, study, 0)
    lost = [t.optuna_trial_id for t in storage.trials(study.id)[-3:]]  # the last: Optuna counts numbers
    assert None not in lost
    helpers.delete_optuna_trials(storage, [i for i in lost if i is not None])
    assert len(optuna.load_study(study_name=study.name, storage=storage.url).trials) == 2
    assert storage.mirror(study.id) == 0  # an ordinary mirror trusts hpo's record ...
    assert storage.sync(study.id) == 3  # ... the repair checks it against Optuna's rows
    assert storage.sync(study.id) == 0
    assert_optuna_view_agrees(storage, study)
    numbers = [ft.number for ft in optuna.load_study(study_name=study.name, storage=storage.url).trials]
    assert sorted(numbers) == list(range(5))


def test_mirrors_and_syncs_racing_finishes_write_each_trial_once(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(24)
    stop = threading.Event()
    errors: list[BaseException] = []

    def syncer() -> None:
        try:
            while not stop.is_set():
                storage.sync(study.id)
        except BaseException as exc:
            errors.append(exc)

    def worker(name: str) -> None:
        try:
            while (trial := storage.claim_next(study.id, name, 60)) is not None:
                assert storage.finish(
                    trial.id, name, TrialOutcome("COMPLETE", float(trial.number), intermediate={1: 0.5})
                )
                storage.mirror(study.id)
        except BaseException as exc:
            errors.append(exc)

    syncers = [threading.Thread(target=syncer) for _ in range(2)]
    workers = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in syncers + workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    for t in syncers:
        t.join()
    assert errors == []
    assert storage.counts(study.id)[TrialState.COMPLETE] == 24
    storage.mirror(study.id)
    assert_optuna_view_agrees(storage, study)


def test_space_layout_is_the_samplers_layout() -> None:
    from hpo.samplers import space_to_json as samplers_space_to_json
    from hpo.storage import decode_space, encode_space

    assert json.loads(encode_space(SPACE)) == samplers_space_to_json(SPACE)
    assert decode_space(json.dumps(samplers_space_to_json(SPACE))) == SPACE
    assert list(decode_space(encode_space(SPACE))) == list(SPACE)  # order kept
    plain = {name: json.loads(optuna.distributions.distribution_to_json(d)) for name, d in SPACE.items()}
    assert decode_space(json.dumps(plain)) == SPACE


def _metric_names(storage: Storage, study: StudyRow) -> list[str] | None:
    return optuna.load_study(study_name=study.name, storage=storage.url).metric_names


def test_the_optuna_study_names_its_objective_metric(storage: Storage, make_study: MakeStudy) -> None:
    given = make_study(2, direction="minimize", metric_name="val_loss")
    assert _metric_names(storage, given) == ["val_loss"]
    from_spec = make_study(2, spec_json='{"objective": {"metric": "val_acc", "direction": "maximize"}}')
    assert _metric_names(storage, from_spec) == ["val_acc"]
    assert _metric_names(storage, make_study(2)) is None  # a spec without a metric: nothing to name
    _run(storage, from_spec, 0)
    assert _metric_names(storage, from_spec) == ["val_acc"]  # mirroring keeps it


def _forget_metric_names(storage: Storage, study: StudyRow) -> None:
    """As an Optuna study made before hpo named its objective."""
    with storage.engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM study_system_attributes WHERE study_id = :id AND key = :key"),
            {"id": study.optuna_study_id, "key": METRIC_NAMES_ATTR},
        )
    assert _metric_names(storage, study) is None


def test_an_older_optuna_study_gets_its_metric_name_from_mirror_and_sync(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(3, spec_json='{"objective": {"metric": "val_acc"}}')
    _forget_metric_names(storage, study)
    assert storage.mirror(study.id) == 0  # nothing finished: nothing written, not even the name
    assert _metric_names(storage, study) is None
    _run(storage, study, 0)  # finishes and mirrors the trials
    assert _metric_names(storage, study) == ["val_acc"]
    _forget_metric_names(storage, study)
    assert storage.sync(study.id) == 0  # every trial is mirrored already; the name is repaired
    assert _metric_names(storage, study) == ["val_acc"]
    optuna.delete_study(study_name=study.name, storage=storage.url)
    assert storage.sync(study.id) == 3  # a re-created Optuna study is named too
    assert _metric_names(storage, study) == ["val_acc"]
    assert_optuna_view_agrees(storage, study)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_names_a_user_gave_the_objective_are_kept(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(3, spec_json='{"objective": {"metric": "val_acc"}}')
    optuna.load_study(study_name=study.name, storage=storage.url).set_metric_names(["accuracy"])
    _run(storage, study, 0)
    assert storage.sync(study.id) == 0
    assert _metric_names(storage, study) == ["accuracy"]
