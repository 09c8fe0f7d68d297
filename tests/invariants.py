"""The invariants of ../shared/DESIGN.md, checked on a finished study (every study-level test)."""

from __future__ import annotations

from typing import Any

import optuna

from hpo.orchestration import objective_value, study_spec, train_network
from hpo.orchestration._synthetic import SyntheticRun
from hpo.storage import Storage


def check_study(
    storage: Storage, name: str, *, rerun: int = 2, max_attempts: int | None = None
) -> dict[str, Any]:
    """Assert I1-I5 for a finished study; return a few facts for the caller's own asserts.

    Args:
        storage: The study's database.
        name: Study name.
        rerun: How many COMPLETE trials to retrain from their seed for I3.
        max_attempts: The attempt cap (default: the spec's limits.max_attempts).
    """
    study = storage.get_study(name)
    spec = study_spec(study)
    trials = storage.trials(study.id)
    cap = max_attempts or spec.limits.max_attempts

    # I1: exactly the requested number of finished trials per stage; none RUNNING or PENDING.
    assert study.state == "COMPLETE", (study.state, study.reason)
    for index, stage in enumerate(spec.search.stages):
        in_stage = [t for t in trials if t.stage == index]
        assert len(in_stage) == stage.trials, (index, len(in_stage), stage.trials)
    assert not [t for t in trials if t.state in ("RUNNING", "PENDING")]
    assert {t.state for t in trials} <= {"COMPLETE", "FAIL", "PRUNED"}

    # I2: trial numbers unique and contiguous; one row per (study, number).
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))

    # I3: a stored result matches its parameters: retraining with the trial's seed gives its value.
    complete = [t for t in trials if t.state == "COMPLETE"]
    for t in complete[:rerun]:
        train_spec = spec.trial_spec(t.params, t.stage, seed=t.seed)
        if spec.synthetic is not None:  # nothing trained: its curve again, without the sleeps
            epochs = train_spec.training.epochs
            synthetic = SyntheticRun(spec, t.params, epochs, train_spec.seed, lambda _: False)
            synthetic.sleep = 0.0
            history = synthetic.fit().history
        else:
            history = train_network(train_spec).result.history
        assert objective_value(spec, history) == t.value, t.number

    # I4: the Optuna view agrees with our tables.
    ostudy = optuna.load_study(study_name=name, storage=storage.url)
    otrials = {ot.user_attrs["hpo_trial_id"]: ot for ot in ostudy.get_trials(deepcopy=False)}
    assert set(otrials) == {t.id for t in trials}
    for t in trials:
        ot = otrials[t.id]
        assert ot.state.name == t.state, (t.number, ot.state, t.state)
        assert ot.params == t.params, t.number
        if t.state == "COMPLETE":
            assert ot.value == t.value, t.number

    # I5: executions bounded; every failure has a reason; a killer trial stops at the cap.
    assert all(1 <= t.attempts <= cap for t in trials if t.state != "PENDING")
    assert all(t.reason for t in trials if t.state == "FAIL")
    return {"trials": trials, "study": study, "spec": spec}
