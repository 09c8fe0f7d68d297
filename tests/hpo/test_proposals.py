"""A stage's trials (hpo.orchestration._proposals): the promoted trials first, with their parents'
parameters, seeds and ids, then fresh samples in the narrowed space; on SQLite, with the Optuna view."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from hpo import orchestration as orch
from hpo.samplers import sample_params, space_from_json, trial_rng
from hpo.spec import StudySpec
from hpo.storage import Storage, TrialOutcome
from tests.hpo.storage import helpers

# Stage 0's values by trial number: 1, 5 and 3 are the best three (1 and 5 tie, 1 first).
VALUES = [0.1, 0.9, 0.5, 0.7, 0.3, 0.9, 0.2, 0.4]


def _spec(name: str, promote: float, epochs: tuple[int, int] = (2, 4)) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "seed": 4,
            "dataset": {"kind": "digits", "subset": 200},
            "model": {"hidden_sizes": [8]},
            "search": {
                "stages": [{"trials": 8, "epochs": epochs[0]}, {"trials": 5, "epochs": epochs[1]}],
                "parameters": {
                    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                    "optimizer": {"type": "categorical", "choices": ["sgd", "momentum", "adam"]},
                },
                # The plain top quarter (top_cut 0) and independent draws: the counts and fresh
                # samples below are the promotion rule's and sample_params'.
                "narrowing": {"promote": promote, "top_cut": 0.0, "sampling": "random"},
            },
        }
    )


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    storage.upgrade()
    return storage


def _run_stage(storage: Storage, study_id: int, stage: int, values: list[float]) -> None:
    """Finish the stage's trials with ``values`` (by position), then move the study on."""
    for trial, value in zip(storage.trials(study_id, stage=stage), values, strict=True):
        assert helpers.claim(storage, trial.id, "w", 60) is not None
        assert storage.finish(trial.id, "w", TrialOutcome("COMPLETE", value), attempt=1)
    orch.advance_study(storage, study_id)


def test_the_next_stage_starts_with_the_promoted_trials_then_fresh_samples(storage: Storage) -> None:
    spec = _spec("promoted", promote=0.6)  # round(0.6 * 5) = 3
    study, _ = orch.submit_study(storage, spec)
    _run_stage(storage, study.id, 0, VALUES)
    stage0 = storage.trials(study.id, stage=0)
    stage1 = storage.trials(study.id, stage=1)
    space = space_from_json(json.loads(storage.stages(study.id)[1].space))
    parents = [stage0[i] for i in (1, 5, 3)]
    assert [t.number for t in stage1] == [8, 9, 10, 11, 12]
    for child, parent in zip(stage1[:3], parents, strict=False):
        assert (child.parent_id, child.params, child.seed) == (parent.id, parent.params, parent.seed)
    for child in stage1[3:]:  # the numbers' own draws in the narrowed space, their own seeds
        assert child.parent_id is None and child.seed == spec.trial_seed(child.number)
        assert child.params == sample_params(space, trial_rng(spec.seed, child.number))
    for child in stage1:  # the Optuna view needs every value inside its stage's ranges
        assert all(d._contains(d.to_internal_repr(child.params[k])) for k, d in space.items())
    assert storage.promotions(study.id) == [(1, 1, 8), (1, 5, 9), (1, 3, 10)]
    # The Optuna view names each promoted trial's parent, by number.
    _run_stage(storage, study.id, 1, [0.5] * 5)
    loaded = optuna.load_study(study_name="promoted", storage=storage.url)
    parents_of = {t.user_attrs["hpo_number"]: t.user_attrs.get("hpo_parent_trial") for t in loaded.trials}
    assert parents_of == {**dict.fromkeys(range(8)), 8: 1, 9: 5, 10: 3, 11: None, 12: None}


@pytest.mark.parametrize(("promote", "epochs"), [(0.0, (2, 4)), (0.6, (4, 4))])
def test_without_a_share_or_longer_epochs_every_trial_is_a_fresh_sample(
    storage: Storage, promote: float, epochs: tuple[int, int]
) -> None:
    spec = _spec(f"fresh-{promote}", promote=promote, epochs=epochs)
    study, _ = orch.submit_study(storage, spec)
    _run_stage(storage, study.id, 0, VALUES)
    space = space_from_json(json.loads(storage.stages(study.id)[1].space))
    stage1 = storage.trials(study.id, stage=1)
    assert [t.params for t in stage1] == [
        sample_params(space, trial_rng(spec.seed, t.number)) for t in stage1
    ]
    assert all(t.parent_id is None for t in stage1) and storage.promotions(study.id) == []
