"""Creating a study: one transaction, idempotent resubmission, nothing written on error."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import optuna
import pytest

from hpo.storage import (
    StageDraft,
    Storage,
    StorageError,
    StudyExistsError,
    StudyRow,
    StudyState,
    TrialOutcome,
    TrialState,
)

from .conftest import draft


@pytest.fixture
def name(storage: Storage) -> Iterator[str]:
    """A unique study name, deleted (with its Optuna study) after the test."""
    value = f"c-{uuid.uuid4().hex[:10]}"
    yield value
    if storage.find_study(value) is not None:
        storage.delete_study(value)
    optuna_id = _optuna_id(storage, value)
    if optuna_id is not None:
        optuna.delete_study(study_name=value, storage=storage.url)


def _optuna_id(storage: Storage, name: str) -> int | None:
    from hpo.storage._optuna_mirror import find_optuna_study

    return find_optuna_study(storage.url, name)


def _snapshot(storage: Storage, name: str) -> tuple[object, ...]:
    study = storage.get_study(name)
    return study, tuple(storage.stages(study.id)), tuple(storage.trials(study.id))


def test_create_writes_study_stage_trials_and_optuna_study(storage: Storage, name: str) -> None:
    study, created = storage.create_study(name, '{"a": 1}', "h1", "maximize", draft(0, 3, 0))
    assert created
    assert (study.name, study.spec, study.spec_hash, study.direction) == (name, '{"a": 1}', "h1", "maximize")
    assert (study.state, study.current_stage) == (StudyState.RUNNING, 0)
    [stage] = storage.stages(study.id)
    assert (stage.index, stage.n_trials, stage.epochs) == (0, 3, 2)
    trials = storage.trials(study.id)
    assert [(t.number, t.state, t.attempts, t.seed) for t in trials] == [
        (i, TrialState.PENDING, 0, 1000 + i) for i in range(3)
    ]
    assert trials[1].params == {"lr": 1e-3, "weight_decay": 1e-6, "activation": "tanh"}
    loaded = optuna.load_study(study_name=name, storage=storage.url)
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.optuna_study_id == loaded._study_id
    assert loaded.user_attrs["hpo_study_id"] == study.id


def test_same_spec_is_a_no_op(storage: Storage, name: str) -> None:
    study, _ = storage.create_study(name, '{"a": 1}', "h1", "maximize", draft(0, 3, 0))
    claimed = storage.claim_next(study.id, "w", 60)
    assert claimed is not None
    before = _snapshot(storage, name)
    again, created = storage.create_study(name, '{"a": 1}', "h1", "maximize", draft(0, 3, 0))
    assert not created and again == study
    assert _snapshot(storage, name) == before


def test_different_spec_raises_and_writes_nothing(storage: Storage, name: str) -> None:
    storage.create_study(name, '{"a": 1}', "h1", "maximize", draft(0, 3, 0))
    before = _snapshot(storage, name)
    with pytest.raises(StudyExistsError, match="different spec"):
        storage.create_study(name, '{"a": 2}', "h2", "maximize", draft(0, 5, 0))
    assert _snapshot(storage, name) == before
    assert len(optuna.load_study(study_name=name, storage=storage.url).trials) == 0


def test_unrelated_optuna_study_of_that_name(storage: Storage, name: str) -> None:
    optuna.create_study(study_name=name, storage=storage.url)
    with pytest.raises(StudyExistsError, match="Optuna study"):
        storage.create_study(name, "{}", "h", "maximize", draft(0, 2, 0))
    assert storage.find_study(name) is None


@pytest.mark.parametrize(
    ("direction", "stage", "error"),
    [
        ("up", draft(0, 2, 0), ValueError),
        ("maximize", draft(1, 2, 0), ValueError),  # first stage must be 0
        ("maximize", draft(0, 2, 1), ValueError),  # numbers from 0
        (
            "maximize",
            StageDraft(0, 1, 2, draft(0, 2, 0).space_json, draft(0, 2, 0).trials),
            ValueError,
        ),  # > n_trials
        ("maximize", StageDraft(0, 2, 2, '{"lr": [1, 2]}', draft(0, 2, 0).trials), StorageError),
    ],
)
def test_invalid_input_writes_nothing(
    storage: Storage, name: str, direction: str, stage: StageDraft, error: type[Exception]
) -> None:
    with pytest.raises(error):
        storage.create_study(name, "{}", "h", direction, stage)
    assert storage.find_study(name) is None
    assert _optuna_id(storage, name) is None


def test_concurrent_creates_of_the_same_study(storage: Storage, name: str) -> None:
    barrier = threading.Barrier(6)
    results: list[bool] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait()
            results.append(storage.create_study(name, "{}", "h", "minimize", draft(0, 3, 0))[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    study = storage.get_study(name)
    assert len(storage.trials(study.id)) == 3
    assert study.optuna_study_id == _optuna_id(storage, name)


def _optuna_state(storage: Storage, name: str) -> tuple[object, ...]:
    loaded = optuna.load_study(study_name=name, storage=storage.url)
    trials = [(t.number, t.state, t.value, t.params, t.user_attrs) for t in loaded.get_trials()]
    return loaded._study_id, loaded.user_attrs, trials


def _one_mirrored_trial(storage: Storage, name: str) -> StudyRow:
    study, _ = storage.create_study(name, "{}", "h", "maximize", draft(0, 2, 0))
    trial = storage.claim_next(study.id, "w", 60)
    assert trial is not None and storage.finish(trial.id, "w", TrialOutcome("COMPLETE", 0.5))
    assert storage.mirror(study.id) == 1
    return storage.get_study(name)


def test_a_copied_optuna_study_is_never_touched(storage: Storage, name: str) -> None:
    """``optuna.copy_study`` copies the ``hpo_study_id`` attribute: the copy is still the user's."""
    _one_mirrored_trial(storage, name)
    copy = f"{name}-copy"
    try:
        optuna.copy_study(
            from_study_name=name, from_storage=storage.url, to_storage=storage.url, to_study_name=copy
        )
        user = optuna.load_study(study_name=copy, storage=storage.url)
        user.enqueue_trial({"lr": 0.1})
        assert user.user_attrs["hpo_study_id"] == storage.get_study(name).id
        before = _optuna_state(storage, copy)
        with pytest.raises(StudyExistsError, match="not one of hpo's"):
            storage.create_study(copy, "{}", "h", "maximize", draft(0, 2, 0))
        assert storage.find_study(copy) is None
        storage.delete_study(name)  # the original goes, with its own Optuna study only
        assert _optuna_id(storage, name) is None
        assert _optuna_state(storage, copy) == before
    finally:
        optuna.delete_study(study_name=copy, storage=storage.url)


def test_an_optuna_study_replaced_by_the_user_is_never_touched(storage: Storage, name: str) -> None:
    study = _one_mirrored_trial(storage, name)
    optuna.delete_study(study_name=name, storage=storage.url)
    user = optuna.create_study(study_name=name, storage=storage.url)
    user.set_user_attr("hpo_study_id", study.id)  # even if it claims to be ours
    user.enqueue_trial({"lr": 0.1})
    before = _optuna_state(storage, name)
    with pytest.raises(StudyExistsError, match="not one of hpo's"):
        storage.sync(study.id)
    assert _optuna_state(storage, name) == before
    storage.delete_study(name)
    assert storage.find_study(name) is None
    assert _optuna_state(storage, name) == before


def test_delete_removes_the_optuna_study(storage: Storage, name: str) -> None:
    study, _ = storage.create_study(name, "{}", "h", "maximize", draft(0, 2, 0))
    running = storage.claim_next(study.id, "w", 60)
    assert running is not None
    storage.delete_study(name)
    assert _optuna_id(storage, name) is None
    assert storage.find_study(name) is None
    assert not storage.finish(
        running.id, "w", TrialOutcome("COMPLETE", 1.0)
    )  # a late result after the delete
    assert _optuna_id(storage, name) is None
