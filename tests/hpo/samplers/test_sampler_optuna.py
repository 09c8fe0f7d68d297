"""NarrowingSampler inside plain Optuna scripts, and the sampler factory."""

from __future__ import annotations

import math
import pickle
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import CmaEsSampler, RandomSampler, TPESampler
from optuna.trial import Trial, TrialState

from hpo.samplers import (
    SAMPLER_NAMES,
    NarrowingError,
    NarrowingRule,
    NarrowingSampler,
    SamplerError,
    make_sampler,
    sample_params,
    trial_rng,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PEAK = {"lr": -2.5, "wd": -6.0}  # log10 of the best lr and weight decay


def loss(trial: Trial) -> float:
    lr = trial.suggest_float("lr", 1e-6, 1e-1, log=True)
    wd = trial.suggest_float("wd", 1e-9, 1e-3, log=True)
    return (math.log10(lr) - PEAK["lr"]) ** 2 + (math.log10(wd) - PEAK["wd"]) ** 2


def _run(seed: int, objective: Any = loss, **kwargs: Any) -> tuple[NarrowingSampler, optuna.Study]:
    sampler = NarrowingSampler(stages=[30, 30], seed=seed, **kwargs)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=60)
    return sampler, study


def _range(dist: BaseDistribution) -> tuple[float, float]:
    """``(low, high)`` of a numeric distribution."""
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return dist.low, dist.high


def _distance(params: dict[str, float]) -> float:
    return math.dist([math.log10(params["lr"]), math.log10(params["wd"])], [PEAK["lr"], PEAK["wd"]])


def test_narrows_around_the_peak_of_a_log_objective() -> None:
    sampler, study = _run(1)
    first, second = sampler.stage_space(study, 0), sampler.stage_space(study, 1)
    for name in ("lr", "wd"):
        old, new = first[name], second[name]
        assert isinstance(old, FloatDistribution) and isinstance(new, FloatDistribution) and new.log
        assert math.log10(new.high) - math.log10(new.low) < math.log10(old.high) - math.log10(old.low)
        assert new.low < 10 ** PEAK[name] < new.high
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 60
    # Stage 1 draws inside its narrowed ranges, and closer to the peak on average.
    for t in trials[30:]:
        assert all(_range(second[n])[0] <= t.params[n] <= _range(second[n])[1] for n in ("lr", "wd"))
    mean0 = sum(_distance(t.params) for t in trials[:30]) / 30
    mean1 = sum(_distance(t.params) for t in trials[30:]) / 30
    assert mean1 < 0.75 * mean0


def test_same_seed_same_parameters_other_seed_others() -> None:
    _, a = _run(1)
    _, b = _run(1)
    _, c = _run(2)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_stage_of_trial_numbers() -> None:
    sampler = NarrowingSampler(stages=[3, 2, 4])
    assert [sampler.stage_of(k) for k in range(12)] == [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2]


def test_parameters_match_the_service_draw_when_the_space_is_given() -> None:
    space = {"lr": FloatDistribution(1e-6, 1e-2, log=True), "units": IntDistribution(10, 100)}

    def objective(trial: Trial) -> float:
        lr = trial.suggest_float("lr", 1e-6, 1e-2, log=True)
        units = trial.suggest_int("units", 10, 100)
        return -abs(math.log10(lr) + 3) - abs(units - 50) / 30

    sampler = NarrowingSampler(space=space, stages=[10, 10], seed=7)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=20)
    for t in study.trials:
        stage_space = sampler.stage_space(study, sampler.stage_of(t.number))
        assert t.params == sample_params(stage_space, trial_rng(7, t.number))


def test_stage_zero_draws_do_not_depend_on_suggest_order() -> None:
    def forward(trial: Trial) -> float:
        return trial.suggest_float("a", 0, 1) + trial.suggest_float("b", 0, 1)

    def backward(trial: Trial) -> float:
        b = trial.suggest_float("b", 0, 1)
        return trial.suggest_float("a", 0, 1) + b

    _, one = _run(3, forward)
    _, two = _run(3, backward)
    assert [t.params for t in one.trials] == [t.params for t in two.trials]


def test_mixed_parameters_fit_the_asked_distributions() -> None:
    def objective(trial: Trial) -> float:
        opt = trial.suggest_categorical("opt", ["sgd", "adam", "rmsprop"])
        layers = trial.suggest_int("layers", 1, 6)
        batch = trial.suggest_int("batch", 8, 512, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.05)
        return (
            {"sgd": 0.0, "adam": 1.0, "rmsprop": 0.5}[opt]
            - abs(layers - 3)
            - abs(math.log2(batch) - 6)
            - dropout
        )

    _, study = _run(5, objective)
    study_max = optuna.create_study(direction="maximize", sampler=NarrowingSampler(stages=[30, 30], seed=5))
    study_max.optimize(objective, n_trials=60)
    for s in (study, study_max):
        for t in s.trials:
            assert t.state == TrialState.COMPLETE
            for name, value in t.params.items():
                dist = t.distributions[name]
                assert dist._contains(dist.to_internal_repr(value))
    second = NarrowingSampler(stages=[30, 30], seed=5).stage_space(study_max, 1)
    assert isinstance(second["opt"], CategoricalDistribution) and "adam" in second["opt"].choices
    assert (
        isinstance(second["layers"], IntDistribution) and second["layers"].low <= 3 <= second["layers"].high
    )


def test_a_given_space_may_pan_up_to_the_declared_range() -> None:
    # Start in [1e-6, 1e-2], but declare [1e-6, 1]: the best trials crowd 1e-2, the window pans out.
    def objective(trial: Trial) -> float:
        return math.log10(trial.suggest_float("lr", 1e-6, 1.0, log=True))

    space = {"lr": FloatDistribution(1e-6, 1e-2, log=True)}
    sampler = NarrowingSampler(space=space, stages=[20, 20, 20, 20], seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=80)
    highs = [_range(sampler.stage_space(study, s)["lr"])[1] for s in range(4)]
    assert highs[1] > 1e-2
    assert all(h <= 1.0 for h in highs)
    assert sampler.explain_stage(study, 1)["lr"].panned_high


def test_hard_bounds_are_respected() -> None:
    def objective(trial: Trial) -> float:
        return math.log10(trial.suggest_float("lr", 1e-6, 1.0, log=True))

    space = {"lr": FloatDistribution(1e-6, 1e-2, log=True)}
    sampler = NarrowingSampler(space=space, stages=[10] * 6, seed=0, hard_bounds={"lr": (None, 3e-2)})
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=60)
    assert max(t.params["lr"] for t in study.trials) <= 3e-2
    assert _range(sampler.stage_space(study, 5)["lr"])[1] <= 3e-2


def test_a_space_outside_the_declared_range_warns_and_falls_back() -> None:
    def objective(trial: Trial) -> float:
        return trial.suggest_float("x", 0.0, 1.0)

    sampler = NarrowingSampler(space={"x": FloatDistribution(5.0, 6.0)}, stages=[2], seed=0)
    study = optuna.create_study(sampler=sampler)
    with pytest.warns(UserWarning, match="outside the distribution"):
        study.optimize(objective, n_trials=2)
    assert all(0.0 <= t.params["x"] <= 1.0 for t in study.trials)


def test_parallel_workers_never_share_parameters() -> None:
    sampler = NarrowingSampler(stages=[40, 40], seed=11)
    study = optuna.create_study(sampler=sampler)
    study.optimize(loss, n_trials=80, n_jobs=4)
    params = [tuple(t.params.values()) for t in study.trials]
    assert len(study.trials) == 80 and len(set(params)) == 80
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_unfinished_previous_stage_narrows_from_what_is_finished() -> None:
    sampler = NarrowingSampler(stages=[6, 6], seed=0, rule=NarrowingRule(min_top=1, top_fraction=0.1))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    stage0 = [study.ask({"x": FloatDistribution(0.0, 100.0)}) for _ in range(6)]
    for t in stage0[:2]:
        study.tell(t, t.params["x"])
    early = sampler.stage_space(study, 1)["x"]
    best_so_far = max(t.params["x"] for t in stage0[:2])
    assert _range(early)[0] <= best_so_far <= _range(early)[1]
    for t in stage0[2:]:
        study.tell(t, t.params["x"])
    final = sampler.stage_space(study, 1)
    assert sampler.stage_space(study, 1) is final  # cached once the stage is finished
    best = max(t.params["x"] for t in stage0)
    assert _range(final["x"])[0] <= best <= _range(final["x"])[1]
    trial = study.ask({"x": FloatDistribution(0.0, 100.0)})
    assert _range(final["x"])[0] <= trial.params["x"] <= _range(final["x"])[1]


def test_failed_trials_finish_a_stage_but_do_not_narrow_it() -> None:
    def objective(trial: Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number % 2:
            raise RuntimeError("diverged")
        return x

    sampler = NarrowingSampler(stages=[10, 10], seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=20, catch=(RuntimeError,))
    record = sampler.explain_stage(study, 1)["x"]
    assert record.n_trials == 5


def test_conditional_parameter_first_seen_later() -> None:
    # "late" appears only in stage 1, so it is not in the stage space: it is drawn from the asked
    # distribution with its own (seed, number, name) generator.
    def objective(trial: Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number >= 35:
            x += trial.suggest_float("late", 0.0, 1.0)
        return x

    sampler, study = _run(0, objective)
    assert "late" not in sampler.stage_space(study, 1)
    late = [t.params["late"] for t in study.trials[35:]]
    assert all(0.0 <= v <= 1.0 for v in late) and len(set(late)) == len(late)
    _, again = _run(0, objective)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]


def test_one_sampler_two_studies_do_not_share_caches() -> None:
    sampler = NarrowingSampler(stages=[10, 10], seed=0)
    a = optuna.create_study(sampler=sampler)
    a.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20)
    b = optuna.create_study(sampler=sampler, direction="maximize")
    b.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20)
    assert _range(sampler.stage_space(a, 1)["x"])[0] == 0.0
    assert _range(sampler.stage_space(b, 1)["x"])[1] == 1.0


def test_multi_objective_is_refused() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=NarrowingSampler(stages=[2]))
    with pytest.raises(ValueError, match="multi-objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.0), n_trials=1, catch=())


def test_sampler_pickles() -> None:
    sampler, study = _run(1)
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone.stage_space(study, 1) == sampler.stage_space(study, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stages": []},
        {"stages": [10, 0]},
        {"stages": [1.5]},
        {"seed": -1},
        {"seed": 1.0},
        {"rule": {"margin": 0.1}},
        {"hard_bounds": {"lr": (1.0, 0.1)}},
        {"space": {"lr": (1e-6, 1e-2)}},
    ],
)
def test_sampler_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(NarrowingError):
        NarrowingSampler(**kwargs)


def test_explain_stage_checks_the_stage() -> None:
    sampler, study = _run(1)
    assert set(sampler.explain_stage(study, 1)) == {"lr", "wd"}
    with pytest.raises(NarrowingError):
        sampler.explain_stage(study, 0)


# --- the factory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"), [("random", RandomSampler), ("tpe", TPESampler), ("narrowing", NarrowingSampler)]
)
def test_make_sampler_builds_seeded_samplers(name: str, cls: type) -> None:
    runs = []
    for _ in range(2):
        sampler = make_sampler(name, seed=4, stages=[8, 8])
        assert isinstance(sampler, cls)
        study = optuna.create_study(sampler=sampler)
        study.optimize(loss, n_trials=16)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def test_make_sampler_tpe_is_multivariate_with_constant_liar() -> None:
    sampler = make_sampler("tpe", seed=0)
    assert isinstance(sampler, TPESampler)
    assert sampler._multivariate and sampler._constant_liar


def test_make_sampler_names() -> None:
    assert set(SAMPLER_NAMES) == {"narrowing", "random", "tpe", "cmaes"}
    with pytest.raises(SamplerError, match="unknown sampler 'grid'"):
        make_sampler("grid", seed=0)


def test_make_sampler_cmaes_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a)
    )
    with pytest.raises(SamplerError, match="pip install cmaes"):
        make_sampler("cmaes", seed=0)


def test_make_sampler_cmaes_with_the_package() -> None:
    pytest.importorskip("cmaes")
    sampler = make_sampler("cmaes", seed=0)
    assert isinstance(sampler, CmaEsSampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(loss, n_trials=5)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
