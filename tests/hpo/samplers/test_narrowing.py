"""The narrowing rule, sampling and stored spaces: the book's examples, and properties over random input."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo import HPOError
from hpo.samplers import (
    NarrowingError,
    NarrowingRule,
    explain_narrowing,
    narrow_space,
    pan_streaks,
    sample_params,
    sobol_params,
    space_from_json,
    space_to_json,
    trial_rng,
)

LR = FloatDistribution(1e-6, 1e-2, log=True)
WD = FloatDistribution(1e-8, 1e-4, log=True)
BOOK: dict[str, BaseDistribution] = {"lr": LR, "wd": WD}


def _u(x: float, log: bool) -> float:
    return math.log10(x) if log else float(x)


def _range(dist: BaseDistribution) -> tuple[float, float]:
    """``(low, high)`` of a numeric distribution."""
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return dist.low, dist.high


def _book_trials(n: int, score: Any, seed: int = 0) -> list[tuple[dict[str, Any], float]]:
    """``n`` trials sampled from the book's space, scored by ``score(lr, wd)``."""
    trials = []
    for number in range(n):
        params = sample_params(BOOK, trial_rng(seed, number))
        trials.append((params, float(score(params["lr"], params["wd"]))))
    return trials


# --- the rule object ---------------------------------------------------------------------------


def test_rule_defaults() -> None:
    rule = NarrowingRule()
    assert (rule.top_fraction, rule.min_top, rule.margin, rule.min_width, rule.pan, rule.edge_zone) == (
        0.25,
        3,
        0.15,
        0.1,
        True,
        0.1,
    )
    assert [rule.n_top(n) for n in (1, 2, 3, 10, 12, 13, 20, 100)] == [1, 2, 3, 3, 3, 4, 5, 25]
    # 0.1 * 30 is 3.0000000000000004 in binary floating point; the top set must still be 3.
    assert NarrowingRule(top_fraction=0.1).n_top(30) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_fraction": 0.0},
        {"top_fraction": 1.5},
        {"top_fraction": math.nan},
        {"min_top": 0},
        {"min_top": 2.0},
        {"min_top": True},
        {"margin": -0.1},
        {"margin": math.inf},
        {"min_width": 0.0},
        {"min_width": 1.1},
        {"pan": 1},
        {"edge_zone": -0.01},
        {"edge_zone": "0.1"},
        {"pan_growth": 0.5},
        {"pan_growth": math.inf},
        {"top_cut": -0.1},
        {"top_cut": 1.5},
    ],
)
def test_rule_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(NarrowingError, match=next(iter(kwargs))) as info:
        NarrowingRule(**kwargs)
    assert isinstance(info.value, HPOError)


def test_rule_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        NarrowingRule().margin = 0.3  # type: ignore[misc]


# --- examples ----------------------------------------------------------------------------------


def test_book_case_pans_above_the_old_edge() -> None:
    # The accuracy keeps rising with lr up to the top of the range: the best trials crowd 1e-2.
    trials = _book_trials(20, lambda lr, wd: math.log10(lr) - 0.01 * abs(math.log10(wd) + 6))
    records = explain_narrowing(BOOK, trials, "maximize", initial_space=BOOK)
    lr = records["lr"]
    assert isinstance(lr.new, FloatDistribution) and lr.new.log
    assert lr.panned_high and not lr.panned_low
    assert lr.new.high > 1e-2
    assert lr.new.low > 1e-6  # the bad low end is dropped
    assert lr.span is not None and lr.new.low <= lr.span[0] and lr.span[1] <= lr.new.high
    # wd does not matter much here: its top trials are spread, its window stays inside the old one.
    assert not records["wd"].panned_low and not records["wd"].panned_high
    assert WD.low <= _range(records["wd"].new)[0] and _range(records["wd"].new)[1] <= WD.high


def test_pan_streaks_count_consecutive_outward_moves_of_each_edge() -> None:
    lrs = [(1e-6, 1e-2), (1e-5, 3e-2), (1e-4, 1e-1), (1e-3, 5e-2)]
    spaces = [{"lr": FloatDistribution(lo, hi, log=True), "wd": WD} for lo, hi in lrs]
    assert pan_streaks(spaces[:1]) == {"lr": (0, 0), "wd": (0, 0)}
    assert pan_streaks(spaces[:2])["lr"] == (0, 1)
    assert pan_streaks(spaces[:3])["lr"] == (0, 2)
    assert pan_streaks(spaces)["lr"] == (0, 0)  # the last stage came back down: the streak ends
    assert pan_streaks([{"c": CategoricalDistribution(["a", "b"])}]) == {}


def test_a_pan_that_continues_goes_pan_growth_times_as_far() -> None:
    # Accuracy rises with lr up to the top: the top trials crowd the high edge every stage.
    trials = _book_trials(20, lambda lr, wd: math.log10(lr))
    earlier = [{"lr": FloatDistribution(1e-7, 1e-3, log=True), "wd": WD}]  # the stage before panned up
    plain = explain_narrowing(BOOK, trials, "maximize", initial_space=BOOK)["lr"]
    rule = NarrowingRule(pan_growth=2.0)
    first = explain_narrowing(BOOK, trials, "maximize", rule, initial_space=BOOK)["lr"]
    again = explain_narrowing(BOOK, trials, "maximize", rule, initial_space=BOOK, earlier=earlier)["lr"]
    assert first.new == plain.new and first.pan_streak == 0  # a first pan is the plain rule's
    assert again.panned_high and again.pan_streak == 1
    assert plain.span is not None
    top = math.log10(plain.span[1])
    # margin * w past the top trials, then twice that (w: the 4-decade window)
    assert math.log10(_range(plain.new)[1]) == pytest.approx(top + 0.15 * 4)
    assert math.log10(_range(again.new)[1]) == pytest.approx(top + 2 * 0.15 * 4)
    # The pan moves the window, it does not widen it.
    lo, hi = (math.log10(x) for x in _range(again.new))
    assert hi - lo <= 4 + 1e-9


def test_sobol_points_are_spread_inside_the_space_and_reproducible() -> None:
    space: dict[str, BaseDistribution] = {
        "lr": LR,
        "width": IntDistribution(4, 256, log=True),
        "opt": CategoricalDistribution(["sgd", "adam", "rmsprop", "momentum"]),
    }
    points = [sobol_params(space, 3, 1, i) for i in range(16)]
    assert points == [sobol_params(space, 3, 1, i) for i in range(16)]
    assert points != [sobol_params(space, 3, 2, i) for i in range(16)]  # each stage its own scrambling
    for p in points:
        assert LR.low <= p["lr"] <= LR.high and 4 <= p["width"] <= 256 and isinstance(p["width"], int)
    # 16 Sobol points put exactly 4 in each quarter of every coordinate: each choice 4 times, and
    # 4 learning rates in each decade of the 4.
    assert sorted(p["opt"] for p in points).count("adam") == 4
    decades = [math.floor(math.log10(p["lr"])) for p in points]
    assert all(decades.count(d) == 4 for d in (-6, -5, -4, -3))


def test_top_cut_narrows_a_noisy_stage_around_its_clearly_better_trials() -> None:
    # A box placed too low: most trials score chance (0.1 +- noise), three at the top edge learn.
    rng = np.random.default_rng(0)
    noise = [({"lr": 10 ** rng.uniform(-6, -2.5), "wd": 1e-6}, 0.1 + rng.normal(0, 0.03)) for _ in range(17)]
    learners = [({"lr": 10 ** (-2.2 + 0.1 * i), "wd": 1e-6}, 0.3 + 0.05 * i) for i in range(3)]
    trials = noise + learners
    plain = explain_narrowing(BOOK, trials, "maximize", initial_space=BOOK)["lr"]
    cut = explain_narrowing(BOOK, trials, "maximize", NarrowingRule(top_cut=0.5), initial_space=BOOK)["lr"]
    assert len(plain.top_values) == 5 and len(cut.top_values) == 3  # ceil(0.25 * 20), then the learners
    assert sorted(cut.top_values) == sorted(p["lr"] for p, _ in learners)
    assert cut.panned_high and not cut.panned_low
    # On a stage with a clear ranking all the way down, the cut keeps the whole top fraction.
    ramp = [({"lr": 10 ** (-6 + 0.2 * i), "wd": 1e-6}, 0.1 + 0.04 * i) for i in range(20)]
    assert NarrowingRule(top_cut=0.5).n_top(20, [-v for _, v in reversed(ramp)]) == 5
    assert NarrowingRule(top_cut=0.5).n_top(4, [-0.5, -0.1, -0.1, -0.1]) == 3  # never below min_top


def test_top_trials_at_both_edges_keep_the_window() -> None:
    # wd has no effect: the three best trials (lr near 1e-2) sit at both of wd's edges and between.
    best = [
        ({"lr": 9e-3, "wd": 1.2e-8}, 0.9),
        ({"lr": 8e-3, "wd": 1e-6}, 0.89),
        ({"lr": 7e-3, "wd": 9e-5}, 0.88),
    ]
    rest = [({"lr": 10 ** (-6 + i / 3), "wd": 10 ** (-7 + (i % 3))}, 0.1 + i / 100) for i in range(9)]
    records = explain_narrowing(BOOK, best + rest, "maximize", initial_space=BOOK)
    wd = records["wd"]
    assert wd.new == WD and not wd.panned_low and not wd.panned_high  # kept, not widened both ways
    assert records["lr"].panned_high and not records["lr"].panned_low  # one edge crowded: it pans


def test_a_parameter_that_does_not_matter_never_widens_over_stages() -> None:
    space = dict(BOOK)
    for stage in range(6):
        trials = []
        for number in range(40):
            params = sample_params(space, trial_rng(stage, number))
            trials.append((params, math.log10(params["lr"])))  # wd plays no part
        space = narrow_space(space, trials, "maximize", initial_space=BOOK)
        low, high = _range(space["wd"])
        # Never wider than the top trials' span plus one margin: here, about the stage-0 width.
        assert math.log10(high) - math.log10(low) <= 4 * 1.05 + 1e-9


def test_book_case_never_crosses_a_hard_bound() -> None:
    bounds = {"lr": (None, 1e-1)}
    space = dict(BOOK)
    highs = []
    for stage in range(10):
        trials = []
        for number in range(20):
            params = sample_params(space, trial_rng(stage, number))
            trials.append((params, math.log10(params["lr"])))
        space = narrow_space(space, trials, "maximize", initial_space=BOOK, hard_bounds=bounds)
        highs.append(_range(space["lr"])[1])
        assert highs[-1] <= 1e-1
    assert highs[0] > 1e-2  # it did pan
    assert highs[-1] == 1e-1  # and stopped exactly at the bound


def test_one_lucky_outlier_does_not_collapse_the_range() -> None:
    # 19 trials with a broad plateau over the whole lr range and one outlier far better than all.
    trials = _book_trials(20, lambda lr, wd: 0.5 + 0.01 * math.sin(7 * math.log10(lr)))
    lucky = dict(trials[7][0])
    trials[7] = (lucky, 0.99)
    space = narrow_space(BOOK, trials, "maximize", initial_space=BOOK)
    new = space["lr"]
    assert isinstance(new, FloatDistribution)
    width = math.log10(new.high) - math.log10(new.low)
    # The top set is 5 trials, not the outlier alone: the window is far wider than the minimum (0.4).
    assert width > 1.0
    assert new.low <= lucky["lr"] <= new.high


def test_few_trials_use_all_of_them_and_none_leaves_the_space() -> None:
    two = [({"lr": 1e-5, "wd": 1e-6}, 0.1), ({"lr": 1e-3, "wd": 1e-7}, 0.2)]
    record = explain_narrowing(BOOK, two, "maximize", initial_space=BOOK)["lr"]
    assert record.top_values == (1e-3, 1e-5)  # best first, both kept: min_top = 3 > 2 trials
    assert narrow_space(BOOK, [], "maximize", initial_space=BOOK) == BOOK
    # A parameter no trial carries is left as it is.
    space = {**BOOK, "momentum": FloatDistribution(0.5, 0.99)}
    assert narrow_space(space, two, "maximize", initial_space=space)["momentum"] == space["momentum"]


def test_nan_values_are_skipped() -> None:
    trials = [({"x": 0.1}, math.nan), ({"x": 0.5}, 1.0), ({"x": 0.9}, math.nan)]
    space = {"x": FloatDistribution(0.0, 1.0)}
    record = explain_narrowing(space, trials, "maximize", initial_space=space)["x"]
    assert record.top_values == (0.5,) and record.n_trials == 1


def test_minimize_and_maximize_narrow_around_opposite_ends() -> None:
    space = {"x": FloatDistribution(0.0, 10.0)}
    trials = [({"x": float(x)}, float(x)) for x in np.linspace(0.0, 10.0, 21)]
    up = narrow_space(space, trials, "maximize", initial_space=space)["x"]
    down = narrow_space(space, trials, "minimize", initial_space=space)["x"]
    assert isinstance(up, FloatDistribution) and isinstance(down, FloatDistribution)
    # Top 6 of 21: x in [7.5, 10] (max) or [0, 2.5] (min); margin 1.5 each side; the window pans
    # past the edge the top trials reach and is clipped to the old window at the other.
    assert (up.low, up.high) == pytest.approx((6.0, 11.5))
    assert (down.low, down.high) == pytest.approx((-1.5, 4.0))


def test_ties_are_broken_by_trial_order() -> None:
    space = {"x": FloatDistribution(0.0, 10.0)}
    trials = [({"x": float(x)}, 1.0) for x in range(10)]
    record = explain_narrowing(space, trials, "maximize", initial_space=space)["x"]
    assert record.top_values == (0.0, 1.0, 2.0)


def test_categorical_keeps_the_top_choices_in_their_order() -> None:
    space = {"opt": CategoricalDistribution(["sgd", "momentum", "adagrad", "adam"])}
    results = [("adam", 0.9), ("sgd", 0.1), ("momentum", 0.8), ("adam", 0.7), ("adagrad", 0.6)]
    results += [("sgd", 0.2)] * 7  # 12 trials: the top 3 are adam, momentum, adam
    trials = [({"opt": c}, v) for c, v in results]
    new = narrow_space(space, trials, "maximize", initial_space=space)["opt"]
    assert isinstance(new, CategoricalDistribution)
    assert new.choices == ("momentum", "adam")  # original order, not rank order


def test_categorical_tells_true_from_one() -> None:
    space = {"flag": CategoricalDistribution([1, True, "1"])}
    trials: list[tuple[dict[str, Any], float]] = [
        ({"flag": True}, 1.0),
        ({"flag": 1}, 0.0),
        ({"flag": "1"}, 0.0),
        ({"flag": 1}, 0.0),
    ]
    new = narrow_space(space, trials, "maximize", NarrowingRule(min_top=1), initial_space=space)["flag"]
    assert isinstance(new, CategoricalDistribution) and new.choices == (True,)


def test_int_parameters_round_outward_and_stay_ints() -> None:
    space: dict[str, BaseDistribution] = {
        "units": IntDistribution(10, 200),
        "batch": IntDistribution(8, 512, log=True),
        "layers": IntDistribution(1, 9, step=2),
    }
    trials = []
    for number in range(40):
        p = sample_params(space, trial_rng(3, number))
        score = -abs(p["units"] - 120) - 10 * abs(math.log2(p["batch"]) - 6) - abs(p["layers"] - 5)
        trials.append((p, float(score)))
    records = explain_narrowing(space, trials, "maximize", initial_space=space)
    for name, record in records.items():
        new = record.new
        assert isinstance(new, IntDistribution), name
        assert type(new.low) is int and type(new.high) is int
        assert new.low < new.high
        assert all(new.low <= v <= new.high for v in record.top_values)
    assert _range(records["units"].new)[0] > 10 and _range(records["units"].new)[1] < 200
    layers = records["layers"].new
    assert isinstance(layers, IntDistribution) and layers.step == 2
    assert (layers.low - 1) % 2 == 0 and (layers.high - 1) % 2 == 0  # still on the 1, 3, 5, ... grid


def test_int_window_keeps_at_least_one_step() -> None:
    space = {"k": IntDistribution(0, 1000)}
    trials = [({"k": 500}, 1.0)] * 10
    rule = NarrowingRule(margin=0.0, min_width=0.001)
    new = narrow_space(space, trials, "maximize", rule, initial_space=space)["k"]
    assert isinstance(new, IntDistribution) and new.low <= 500 <= new.high and new.low < new.high
    # Only a single value inside the hard bounds: that value, the one case where low == high.
    single = narrow_space(
        space, trials, "maximize", rule, initial_space=space, hard_bounds={"k": (500, 500.5)}
    )
    assert _range(single["k"]) == (500, 500)


def test_min_width_is_a_fraction_of_the_stage_zero_width() -> None:
    space = {"x": FloatDistribution(0.0, 100.0)}
    trials = [({"x": 50.0 + 0.001 * i}, float(i)) for i in range(10)]
    rule = NarrowingRule(margin=0.02)  # top span + margins: 4 wide, below the minimum of 10
    record = explain_narrowing(space, trials, "maximize", rule, initial_space=space)["x"]
    assert record.min_width_applied
    low, high = _range(record.new)
    assert high - low == pytest.approx(10.0)
    assert low < 50.0 < high


def test_record_is_json_able() -> None:
    import json

    trials = _book_trials(12, lambda lr, wd: -abs(math.log10(lr) + 3))
    records = explain_narrowing(BOOK, trials, "maximize", initial_space=BOOK)
    data = json.loads(json.dumps({name: r.to_dict() for name, r in records.items()}))
    assert data["lr"]["new"]["name"] == "FloatDistribution"
    assert len(data["lr"]["top_values"]) == 3


# --- the three bugs of bayes_opt's SequentialDomainReductionTransformer ---------------------------


def test_regression_lower_bound_never_ends_above_upper_bound() -> None:
    # bayes_opt #328/#476: after narrowing to a tiny window, bounds came out inverted or equal.
    # Here: every top trial sits exactly on the upper hard bound, at the window's edge, margin 0.
    space: dict[str, BaseDistribution] = {"x": FloatDistribution(0.0, 1.0)}
    rule = NarrowingRule(margin=0.0, min_width=1e-6)
    for _ in range(5):
        trials = [({"x": 1.0}, 1.0)] * 4 + [({"x": _range(space["x"])[0]}, 0.0)]
        space = narrow_space(
            space,
            trials,
            "maximize",
            rule,
            initial_space={"x": FloatDistribution(0, 1)},
            hard_bounds={"x": (0.0, 1.0)},
        )
        assert _range(space["x"])[0] < _range(space["x"])[1] == 1.0
    # The same with the hard bounds cutting through the top trials' span entirely.
    cut = narrow_space(
        {"x": FloatDistribution(0.0, 10.0)},
        [({"x": 9.0}, 1.0)] * 3,
        "maximize",
        initial_space={"x": FloatDistribution(0.0, 10.0)},
        hard_bounds={"x": (1.0, 2.0)},
    )
    assert _range(cut["x"]) == (1.0, 2.0)


def test_regression_minimum_window_does_not_escape_hard_bounds() -> None:
    # bayes_opt #394: the minimum window was applied after the clip to the global bounds.
    space = {"x": FloatDistribution(-0.5, 0.5)}
    trials = [({"x": 0.5}, 1.0)] * 5
    rule = NarrowingRule(min_width=0.5)
    new = narrow_space(space, trials, "maximize", rule, initial_space=space, hard_bounds={"x": (-0.5, 0.5)})
    assert _range(new["x"]) == (0.0, 0.5)
    # The minimum is larger than the hard bounds allow: exactly the bounds, never beyond.
    wide = narrow_space(
        space,
        trials,
        "maximize",
        NarrowingRule(min_width=1.0),
        initial_space={"x": FloatDistribution(-5.0, 5.0)},
        hard_bounds={"x": (-0.5, 0.5)},
    )
    assert _range(wide["x"]) == (-0.5, 0.5)


def test_regression_hard_bounds_inside_the_window_do_not_make_it_pan_away() -> None:
    # Found by the property test: an int window [0, 3] cut by a hard upper bound of 1.5, the top
    # trial at 3 (clipped to 1). Judged against the uncut window, 1 seemed to crowd the low edge,
    # and the window panned down to [-2, 1]. Within the window as it can be sampled ([0, 1]) the top
    # trial crowds the high edge, where the bound stops it.
    space = {"x": IntDistribution(0, 3)}
    rule = NarrowingRule(top_fraction=1.0, min_top=1, margin=1.0, min_width=0.25, pan=True, edge_zone=0.5)
    new = narrow_space(
        space, [({"x": 3}, 0.0)], "maximize", rule, initial_space=space, hard_bounds={"x": (None, 1.5)}
    )
    assert _range(new["x"]) == (0, 1)


def test_regression_result_is_not_thrown_away() -> None:
    # bayes_opt #476: the clipped bounds were computed and discarded (`self._trim(...)` without
    # assignment), so windows left the global bounds. Over stages that keep pushing at a bound, the
    # applied window stays inside it, and the best trial stays inside every new window.
    bounds = {"lr": (1e-7, 3e-2)}
    space = dict(BOOK)
    for stage in range(8):
        trials = []
        for number in range(10):
            params = sample_params(space, trial_rng(stage, number))
            trials.append((params, -abs(math.log10(params["lr"]) - math.log10(5e-2))))
        best = max(trials, key=lambda t: t[1])[0]["lr"]
        space = narrow_space(space, trials, "maximize", initial_space=BOOK, hard_bounds=bounds)
        lr = space["lr"]
        assert isinstance(lr, FloatDistribution)
        assert 1e-7 <= lr.low < lr.high <= 3e-2
        assert lr.low <= best <= lr.high


def test_best_trial_on_a_log_edge_stays_inside_despite_rounding() -> None:
    # 10**log10(x) can miss x by one ulp; with margin 0 that would push the best trial out.
    xs = [3.3e-3, 7.1e-4, 4.9e-5]
    space = {"lr": LR}
    trials = [({"lr": x}, 1.0) for x in xs] + [({"lr": 1e-6}, 0.0)]
    new = narrow_space(
        space, trials, "maximize", NarrowingRule(margin=0.0, pan=False, min_width=0.01), initial_space=space
    )["lr"]
    assert all(_range(new)[0] <= x <= _range(new)[1] for x in xs)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"direction": "max"}, "direction"),
        ({"trials": [({"lr": "big"}, 1.0)]}, "non-numeric"),
        ({"trials": [({"lr": -1.0}, 1.0)]}, "log-scaled"),
        ({"trials": [({"lr": 1e-3},)]}, "pair"),
        ({"trials": [({"lr": 1e-3}, "high")]}, "value must be a number"),
        ({"hard_bounds": {"lr": (1e-2, 1e-3)}}, "low must be below high"),
        ({"hard_bounds": {"lr": (None, -1.0)}}, "log-scaled"),
        ({"hard_bounds": {"lr": 3}}, "pair"),
        ({"space": {"lr": "loguniform"}}, "expected FloatDistribution"),
        ({"initial_space": {"lr": FloatDistribution(1e-6, 1e-2)}}, "log scale must match"),
    ],
)
def test_bad_input_raises_narrowing_error(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "space": {"lr": LR},
        "trials": [({"lr": 1e-3}, 1.0)],
        "direction": "maximize",
        "initial_space": {"lr": LR},
        "hard_bounds": None,
    }
    args.update(kwargs)
    with pytest.raises(NarrowingError, match=match):
        narrow_space(
            args["space"],
            args["trials"],
            args["direction"],
            initial_space=args["initial_space"],
            hard_bounds=args["hard_bounds"],
        )


def test_hard_bounds_on_a_categorical_are_rejected() -> None:
    space = {"opt": CategoricalDistribution(["a", "b"])}
    with pytest.raises(NarrowingError, match="categorical"):
        narrow_space(space, [], "maximize", initial_space=space, hard_bounds={"opt": (0, 1)})


# --- sampling and JSON -------------------------------------------------------------------------


def test_sample_params_types_and_order() -> None:
    space: dict[str, BaseDistribution] = {
        "wd": WD,
        "lr": LR,
        "units": IntDistribution(10, 100),
        "batch": IntDistribution(8, 256, log=True),
        "dropout": FloatDistribution(0.0, 0.5, step=0.1),
        "opt": CategoricalDistribution(["sgd", "adam"]),
        "bn": CategoricalDistribution([True, False]),
    }
    params = sample_params(space, trial_rng(0, 0))
    assert list(params) == list(space)
    assert type(params["wd"]) is float and type(params["lr"]) is float and type(params["dropout"]) is float
    assert type(params["units"]) is int and type(params["batch"]) is int
    assert params["opt"] in ("sgd", "adam") and type(params["bn"]) is bool
    assert sample_params(space, trial_rng(0, 0)) == params


def test_log_sampling_is_uniform_in_log10() -> None:
    rng = np.random.default_rng(0)
    exps = [math.log10(sample_params({"lr": LR}, rng)["lr"]) for _ in range(4000)]
    counts, _ = np.histogram(exps, bins=4, range=(-6, -2))
    assert counts.min() > 900  # each decade gets about a quarter


def test_trial_rng_rejects_negative_numbers() -> None:
    with pytest.raises(NarrowingError):
        trial_rng(-1, 0)
    with pytest.raises(NarrowingError):
        trial_rng(0, True)


def test_space_json_round_trip_keeps_order() -> None:
    import json

    space: dict[str, BaseDistribution] = {
        "wd": WD,
        "lr": LR,
        "units": IntDistribution(10, 100, step=10),
        "opt": CategoricalDistribution(["sgd", None, 1.5, True]),
    }
    data = json.loads(json.dumps(space_to_json(space)))
    back = space_from_json(data)
    assert list(back) == list(space) and back == space


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 2, "params": []},
        {"version": 1, "params": {}},
        {"version": 1, "params": [{"distribution": {}}]},
        {"version": 1, "params": [{"name": "x", "distribution": {"name": "Nope", "attributes": {}}}]},
        {
            "version": 1,
            "params": [
                {
                    "name": "x",
                    "distribution": {"name": "IntDistribution", "attributes": {"low": 0, "high": 1}},
                },
            ]
            * 2,
        },
    ],
)
def test_space_from_json_rejects_bad_data(data: dict[str, Any]) -> None:
    with pytest.raises(NarrowingError):
        space_from_json(data)


# --- properties --------------------------------------------------------------------------------

KINDS = ("float", "float_log", "int", "int_log", "int_step")


@st.composite
def numeric_distributions(draw: st.DrawFn, kind: str) -> BaseDistribution:
    if kind == "float":
        low = draw(st.floats(-100, 100))
        return FloatDistribution(low, low + draw(st.floats(0.01, 100)))
    if kind == "float_log":
        exp = draw(st.floats(-9, 2))
        return FloatDistribution(10**exp, 10 ** (exp + draw(st.floats(0.3, 6))), log=True)
    if kind == "int":
        low = draw(st.integers(-50, 50))
        return IntDistribution(low, low + draw(st.integers(1, 300)))
    if kind == "int_log":
        low = draw(st.integers(1, 100))
        return IntDistribution(low, low * draw(st.integers(2, 1000)), log=True)
    step = draw(st.integers(2, 5))
    low = draw(st.integers(-20, 20))
    return IntDistribution(low, low + step * draw(st.integers(1, 60)), step=step)


@st.composite
def hard_bounds_for(draw: st.DrawFn, dist: BaseDistribution) -> tuple[Any, Any] | None:
    """None, or bounds that contain ``dist``, cut it, or lie inside it (narrower than the minimum
    width too); a side may be open. Int bounds are on the grid, or half a step off it."""
    assert isinstance(dist, FloatDistribution | IntDistribution)
    if draw(st.booleans()):
        return None
    if isinstance(dist, IntDistribution):
        n = (dist.high - dist.low) // dist.step
        k = draw(st.integers(-30, max(0, n - 1)))
        lo: float = max(dist.low + dist.step * k, 1 if dist.log else -(10**6))
        hi: float = lo + dist.step * draw(st.integers(1, n + 30)) if draw(st.integers(0, 5)) else lo + 0.5
        return (None if draw(st.integers(0, 3)) == 0 else lo, None if draw(st.integers(0, 3)) == 0 else hi)
    a, b = _u(dist.low, dist.log), _u(dist.high, dist.log)
    lo_u = a + (b - a) * draw(st.sampled_from([0.0, -0.5, -2.0, 0.3, 0.9]) | st.floats(-2, 0.9))
    hi_u = lo_u + (b - a) * draw(st.sampled_from([1.0, 0.01, 0.05, 3.0]) | st.floats(0.01, 4))
    lo = dist.low if lo_u == a else (10**lo_u if dist.log else lo_u)
    hi = 10**hi_u if dist.log else hi_u
    return (None if draw(st.integers(0, 3)) == 0 else lo, None if draw(st.integers(0, 3)) == 0 else hi)


@st.composite
def trials_in(
    draw: st.DrawFn, space: dict[str, BaseDistribution], max_n: int = 30
) -> list[tuple[dict[str, Any], float]]:
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    values = draw(st.lists(st.integers(0, 6) | st.floats(-1e6, 1e6), min_size=n, max_size=n))
    trials = []
    for i in range(n):
        params = sample_params(space, trial_rng(seed, i))
        for name, dist in space.items():
            # Trials on the very edges are where windows break; make them common.
            if isinstance(dist, FloatDistribution | IntDistribution) and draw(st.integers(0, 4)) == 0:
                params[name] = dist.low if draw(st.booleans()) else dist.high
        trials.append((params, float(values[i])))
    return trials


rules = st.builds(
    NarrowingRule,
    top_fraction=st.floats(0.01, 1.0),
    min_top=st.integers(1, 6),
    margin=st.floats(0.0, 1.0),
    min_width=st.floats(0.001, 1.0),
    pan=st.booleans(),
    edge_zone=st.floats(0.0, 0.5),
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    initial = {"x": draw(numeric_distributions(kind)), "c": CategoricalDistribution(["a", "b", "c", 1, True])}
    bounds = draw(hard_bounds_for(initial["x"]))
    hard = {"x": bounds} if bounds is not None else None
    rule = draw(rules)
    direction = draw(st.sampled_from(["maximize", "minimize"]))
    # Reach a realistic current window by narrowing a few times first.
    space = dict(initial)
    for _ in range(draw(st.integers(0, 3))):
        space = narrow_space(
            space, draw(trials_in(space)), direction, rule, initial_space=initial, hard_bounds=hard
        )
    return {
        "initial": initial,
        "space": space,
        "trials": draw(trials_in(space)),
        "rule": rule,
        "direction": direction,
        "hard": hard,
    }


def _top(
    trials: list[tuple[dict[str, Any], float]], direction: str, rule: NarrowingRule, name: str
) -> list[Any]:
    sign = -1.0 if direction == "maximize" else 1.0
    ranked = sorted(range(len(trials)), key=lambda i: (sign * trials[i][1], i))
    carriers = [trials[i][0][name] for i in ranked if name in trials[i][0]]
    return carriers[: rule.n_top(len(carriers))]


def _hard(s: dict[str, Any], dist: FloatDistribution | IntDistribution) -> tuple[float, float]:
    lo, hi = (s["hard"] or {}).get("x", (None, None))
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    if isinstance(dist, IntDistribution):
        # An int can only take values of its grid: the bounds that matter are the grid values inside.
        anchor, step = s["initial"]["x"].low, dist.step
        if math.isfinite(lo):
            lo = anchor + step * math.ceil((lo - anchor) / step)
        if math.isfinite(hi):
            hi = anchor + step * math.floor((hi - anchor) / step)
        if dist.log:
            lo = max(lo, 1)
    return lo, hi


# HPO_HYPOTHESIS_EXAMPLES=5000 for a thorough run; the default keeps the suite fast.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("HPO_HYPOTHESIS_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_windows_are_ordered_bounded_wide_enough_and_keep_the_top(s: dict[str, Any]) -> None:
    records = explain_narrowing(
        s["space"], s["trials"], s["direction"], s["rule"], initial_space=s["initial"], hard_bounds=s["hard"]
    )
    assert list(records) == list(s["space"])
    old, new = s["space"]["x"], records["x"].new
    assert isinstance(new, FloatDistribution | IntDistribution)
    for flag in ("panned_low", "panned_high", "min_width_applied", "hard_low_applied", "hard_high_applied"):
        if getattr(records["x"], flag):
            event(flag)
    assert type(new) is type(old) and new.log == old.log and new.step == old.step
    h_lo, h_hi = _hard(s, old)
    if not s["trials"]:
        assert new == old  # nothing to learn from: unchanged, even where the hard bounds cut it
        return
    # Ordered, inside the hard bounds.
    assert new.low < new.high or (isinstance(new, IntDistribution) and new.low == new.high == h_lo == h_hi)
    assert h_lo <= new.low and new.high <= h_hi
    if isinstance(new, IntDistribution):
        assert type(new.low) is int and type(new.high) is int
        assert (new.low - s["initial"]["x"].low) % new.step == 0  # on the stage-0 grid
    # Contains all top trials (those the hard bounds allow).
    top = _top(s["trials"], s["direction"], s["rule"], "x")
    assert all(new.low <= v <= new.high for v in top if h_lo <= v <= h_hi)
    # At least the minimum width, unless the hard bounds are narrower: then exactly the bounds.
    log = old.log
    init = s["initial"]["x"]
    w0 = _u(init.high, log) - _u(init.low, log)
    m = s["rule"].min_width * w0
    hu_lo = -math.inf if h_lo <= 0 and log else _u(h_lo, log) if math.isfinite(h_lo) else -math.inf
    hu_hi = _u(h_hi, log) if math.isfinite(h_hi) else math.inf
    width = _u(new.high, log) - _u(new.low, log)
    if hu_hi - hu_lo < m:
        event("hard bounds narrower than the minimum width")
        # As wide as the bounds allow: the bounds themselves, or (when the old window, cut by a
        # bound, is already as wide as the bounds up to rounding) that window.
        assert width >= (hu_hi - hu_lo) * (1 - 1e-9) - 1e-12
    else:
        assert width >= m * (1 - 1e-9) - 1e-9
    # Never wider than the old window plus the pan: an edge moves out only where the top trials
    # crowd it, and by at most max(margin, min_width/2) of a window.
    a, b = _u(old.low, log), _u(old.high, log)
    w = b - a
    # (If the old window, cut by the hard bounds, is narrower than the minimum, the minimum wins.)
    if min(b, hu_hi) - max(a, hu_lo) >= m:
        rule = s["rule"]
        t_lo, t_hi = _u(min(top), log), _u(max(top), log)
        reach = max(rule.margin * w, m / 2) * (1 + 1e-9) + 1e-9
        slack = new.step if isinstance(new, IntDistribution) else 0
        if not (rule.pan and t_lo - a <= rule.edge_zone * w):
            assert new.low >= old.low
        else:
            assert _u(new.low + slack, log) >= a - reach
        if not (rule.pan and b - t_hi <= rule.edge_zone * w):
            assert new.high <= old.high
        else:
            assert _u(new.high - slack, log) <= b + reach
    # The categorical keeps the top choices, in order, at least one.
    c_old, c_new = s["space"]["c"], records["c"].new
    assert isinstance(c_new, CategoricalDistribution)
    c_top = _top(s["trials"], s["direction"], s["rule"], "c")
    assert len(c_new.choices) >= 1 and set(map(repr, c_new.choices)) <= set(map(repr, c_old.choices))
    assert [c for c in c_old.choices if any(type(v) is type(c) and v == c for v in c_top)] == list(
        c_new.choices
    )


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_narrowing_is_deterministic(s: dict[str, Any]) -> None:
    args = (s["space"], s["trials"], s["direction"], s["rule"])
    kw = {"initial_space": s["initial"], "hard_bounds": s["hard"]}
    assert narrow_space(*args, **kw) == narrow_space(*args, **kw)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(KINDS), min_size=1, max_size=4).flatmap(
        lambda kinds: st.tuples(*[numeric_distributions(k) for k in kinds])
    ),
    st.integers(0, 2**32 - 1),
    st.integers(0, 10**9),
)
def test_property_samples_are_inside_the_space_and_reproducible(
    dists: tuple[BaseDistribution, ...], seed: int, number: int
) -> None:
    space = {f"p{i}": d for i, d in enumerate(dists)}
    space["c"] = CategoricalDistribution(["x", 2, False])
    params = sample_params(space, trial_rng(seed, number))
    assert params == sample_params(space, trial_rng(seed, number))
    for name, dist in space.items():
        value = params[name]
        assert dist._contains(dist.to_internal_repr(value)), (name, dist, value)
        if isinstance(dist, IntDistribution):
            assert type(value) is int
        elif isinstance(dist, FloatDistribution):
            assert type(value) is float


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_property_trial_numbers_never_share_parameters(seed: int) -> None:
    space = {"lr": LR, "wd": WD, "units": IntDistribution(10, 500)}
    seen = {tuple(sample_params(space, trial_rng(seed, n)).values()) for n in range(1000)}
    assert len(seen) == 1000
