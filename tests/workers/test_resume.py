"""A trial whose worker is SIGKILLed mid-run resumes from its checkpoint on the retry: real Redis,
real PostgreSQL, real `hpo worker` processes, the study's artifact store a shared folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpo import orchestration as orch
from hpo.storage import Storage
from tests.hpo.storage import helpers
from tests.invariants import check_study

from .conftest import Workers, hpo, wait_for
from .test_faults import one_optuna_trial_per_trial, pool_pid, wait_finished

pytestmark = pytest.mark.services

# One trial of 50 epochs (~0.1 s each: batch 1, so that the poll below sees the checkpoint of
# epoch 30 before the one of epoch 40 replaces it), a checkpoint every 10.
STUDY = """\
name: {name}
seed: 11
dataset: {{kind: digits, subset: 1400, val_fraction: 0.25, test_fraction: 0.2}}
model: {{hidden_sizes: [64, 64], activation: relu, weight_init: he, dropout: 0.1}}
training: {{optimizer: adam, lr: 0.001, epochs: 50, batch_size: 1}}
search:
  sampler: random
  stages: [{{trials: 1}}]
  parameters:
    lr: {{type: float, low: 1.0e-4, high: 1.0e-3, log: true}}
checkpoints: {{every: 10}}
"""


def _without_seconds(curves: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "seconds"} for c in curves or []]


def test_sigkill_at_epoch_30_of_50_resumes_from_the_checkpoint_and_ends_as_an_uninterrupted_run(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    store = tmp_path / "artifacts"
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.format(name=study_name))
    first, second = workers.start(1, concurrency=1)[0], None
    args = ["submit", str(path), "--broker", workers.broker, "--db", workers.db, "--no-progress"]
    proc = hpo(*args, "--artifacts", str(store), env={"HPO_QUEUE": workers.queue})
    assert proc.returncode == 0, proc.stderr

    def at_checkpoint_30() -> Any:
        study = storage.get_study(study_name)
        (trial,) = storage.trials(study.id)
        return trial if trial.state == "RUNNING" and trial.checkpoint_epoch == 30 else None

    victim = wait_for(at_checkpoint_30, 90, "the trial's checkpoint at epoch 30", interval=0.02)
    assert pool_pid(victim) in first.pool()
    first.kill_group()  # the machine dies between epochs 30 and 40
    killed = helpers.trial(storage, victim.id)
    assert killed is not None and killed.state == "RUNNING" and killed.checkpoint_epoch == 30
    assert len(killed.curves or []) < 40  # not yet at the next checkpoint's epoch
    (second,) = workers.start(1, concurrency=1)
    wait_finished(storage, study_name, workers, timeout=120)
    facts = check_study(storage, study_name)
    done = helpers.trial(storage, victim.id)
    assert done is not None and done.state == "COMPLETE" and done.attempts == 2
    assert done.checkpoint is None and done.model  # the final model supersedes the checkpoint
    # The retry started at the checkpoint's epoch, not at 0.
    log = second.text()
    assert re.search(rf"trial {victim.number} \(attempt 2\) resumes from its checkpoint at epoch 30", log), (
        log[-3000:]
    )
    # Its result is the uninterrupted run's (timings aside), computed here in one go.
    spec = orch.study_spec(facts["study"])
    run = orch.train_network(spec.trial_spec(done.params, done.stage, seed=done.seed))
    assert _without_seconds(done.curves) == _without_seconds([r.as_dict() for r in run.result.history])
    assert done.value == orch.objective_value(spec, run.result.history)
    model = orch.saved_model(storage.get_study(study_name), done)
    for name, array in model.arrays.items():
        np.testing.assert_array_equal(array, run.net.state()[name])
    # Only the model is left in the store: the checkpoints of epochs 10..30 were removed.
    assert [p.name for p in store.iterdir()] == [done.model]
    one_optuna_trial_per_trial(storage, study_name)


# Stage 0: 4 trials of 2 epochs; stage 1: 2 trials of 4 epochs, the first continuing stage 0's best.
PROMOTING = """\
name: {name}
seed: 5
dataset: {{kind: digits, subset: 300, val_fraction: 0.25, test_fraction: 0.2}}
model: {{hidden_sizes: [16], activation: relu, weight_init: he}}
training: {{optimizer: sgd, lr: 0.05, batch_size: 50}}
search:
  sampler: narrowing
  stages: [{{trials: 4, epochs: 2}}, {{trials: 2, epochs: 4}}]
  parameters:
    lr: {{type: float, low: 1.0e-3, high: 0.5, log: true}}
  narrowing: {{promote: 0.5}}
"""


def test_a_promoted_trial_continues_its_parents_model_on_a_worker(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PROMOTING.format(name=study_name))
    workers.start(1, concurrency=2)
    args = ["submit", str(path), "--broker", workers.broker, "--db", workers.db, "--no-progress"]
    proc = hpo(*args, "--artifacts", str(tmp_path / "artifacts"), env={"HPO_QUEUE": workers.queue})
    assert proc.returncode == 0, proc.stderr
    wait_finished(storage, study_name, workers, timeout=120)
    facts = check_study(storage, study_name)
    child, fresh = [t for t in facts["trials"] if t.stage == 1]
    assert child.parent_id is not None and fresh.parent_id is None
    parent = storage.find_trial(child.parent_id)
    assert parent is not None and parent.stage == 0
    assert child.worker is not None and child.worker.endswith(":celery")  # a worker's pool ran it
    best = max((t for t in facts["trials"] if t.stage == 0), key=lambda t: (t.value, -t.number))
    assert parent.id == best.id and (child.params, child.seed) == (parent.params, parent.seed)
    # It went on from its parent's network: the parent's epochs, as recorded, then its own two.
    assert child.curves is not None and child.curves[:2] == parent.curves and len(child.curves) == 4
    assert child.epochs_trained == 2 and fresh.epochs_trained == 4
    assert re.search(rf"trial {child.number} continues its parent's model from epoch 2", workers.logs())
    spec = orch.study_spec(facts["study"])
    run = orch.train_network(spec.trial_spec(child.params, child.stage, seed=child.seed))
    assert child.value == orch.objective_value(spec, run.result.history)
    one_optuna_trial_per_trial(storage, study_name)
