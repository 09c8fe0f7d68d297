"""The narrowing rule: from one stage's finished trials to the next stage's ranges.

This is step 3 of the book's recipe ("look at the best results and narrow the ranges around them"),
stated as arithmetic so that it can be recorded, shown and tested. ``docs/narrowing.md`` states the
same rule with formulas and a worked example.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.study import StudyDirection

from ._errors import NarrowingError
from ._space import NumericDistribution, Space, check_space, from_u, to_u, u_window

__all__ = [
    "Direction",
    "HardBounds",
    "NarrowingRule",
    "ParamNarrowing",
    "TrialResult",
    "explain_narrowing",
    "narrow_space",
]

TrialResult = tuple[Mapping[str, Any], float]
"""One finished trial: its parameters and its objective value."""

HardBounds = Mapping[str, tuple[float | None, float | None]]
"""Parameter name to ``(low, high)`` limits in value space; ``None`` means no limit on that side."""

Direction = str | StudyDirection

# Integer windows are rounded outward; this slack keeps 10**log10(100) = 100.00000000000001 from
# rounding up to 101.
_ROUND_SLACK = 1e-9


@dataclass(frozen=True)
class NarrowingRule:
    """How a stage's ranges are narrowed for the next stage.

    All widths are measured in u-space (decades for log parameters).

    Attributes:
        top_fraction: Share of the stage's finished trials that count as "top" (rounded up).
        min_top: The top set holds at least this many trials (all of them if there are fewer), so a
            small stage is never narrowed around one or two points.
        margin: Each side of the top trials' span is widened by ``margin`` times the current window
            width: the top trials are a sample, the best region is likely a little wider.
        min_width: A window never shrinks below ``min_width`` times the stage-0 width.
        pan: Whether a window may extend past its old edge when the top trials crowd that edge
            (and not the other one too: top trials at both edges keep the window).
        edge_zone: "Crowd the edge" means the top trials' extreme lies within ``edge_zone`` times the
            current width of that edge.
        pan_growth: A pan that continues the previous stage's pan of the same edge (``streak``
            consecutive ones before it) goes ``margin * max(w, w0) * pan_growth**streak`` past the
            top trials instead of ``margin * w`` (``w0``: the first stage's width): a window far
            from the good region gets there in fewer stages. 1 turns it off.
        top_cut: The top set keeps only trials at least ``top_cut`` of the way from the stage's
            median value to its best (never fewer than ``min_top``): a stage that is mostly noise
            narrows around its clearly better trials only. 0 turns it off.
    """

    top_fraction: float = 0.25
    min_top: int = 3
    margin: float = 0.15
    min_width: float = 0.1
    pan: bool = True
    edge_zone: float = 0.1
    pan_growth: float = 1.0
    top_cut: float = 0.0

    def __post_init__(self) -> None:
        _check_real("top_fraction", self.top_fraction, low=0.0, high=1.0, low_open=True)
        if not isinstance(self.min_top, int) or isinstance(self.min_top, bool) or self.min_top < 1:
            raise NarrowingError(f"NarrowingRule.min_top must be an integer >= 1, got {self.min_top!r}")
        _check_real("margin", self.margin, low=0.0, high=math.inf)
        _check_real("min_width", self.min_width, low=0.0, high=1.0, low_open=True)
        if not isinstance(self.pan, bool):
            raise NarrowingError(f"NarrowingRule.pan must be a bool, got {self.pan!r}")
        _check_real("edge_zone", self.edge_zone, low=0.0, high=1.0)
        _check_real("pan_growth", self.pan_growth, low=1.0, high=math.inf)
        _check_real("top_cut", self.top_cut, low=0.0, high=1.0)

    def n_top(self, n: int, keys: Sequence[float] | None = None) -> int:
        """Size of the top set among ``n`` finished trials: ``max(min(min_top, n), ceil(top_fraction*n))``,
        cut by ``top_cut`` when the trials' ranking ``keys`` (best first, lower is better) are given."""
        # round() first: 0.1 * 30 is 3.0000000000000004 in binary and must not become 4.
        k = max(min(self.min_top, n), math.ceil(round(self.top_fraction * n, 9)))
        if not self.top_cut or keys is None or len(keys) != n or n < 2:
            return k
        # Only trials clearly better than the stage's typical one: at least top_cut of the way from
        # the median to the best. On a stage that is mostly noise (a box placed where nothing
        # trains yet) the top quarter is mostly chance winners, whose span says nothing.
        best, median = keys[0], statistics.median(keys)
        cut = median - self.top_cut * (median - best)
        clear = sum(1 for key in keys[:k] if key <= cut)
        return max(min(self.min_top, n), clear)


def _check_real(name: str, value: object, *, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        assert isinstance(value, int | float)
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise NarrowingError(
            f"NarrowingRule.{name} must be a number in {bracket}{low:g}, {high:g}], got {value!r}"
        )


@dataclass(frozen=True)
class ParamNarrowing:
    """Why one parameter got its new range: what the CLI shows and storage keeps per stage.

    Attributes:
        name: Parameter name.
        old: The stage's distribution.
        new: The next stage's distribution.
        n_trials: Finished trials (with a rankable value) that carry this parameter.
        top_values: The parameter's values in the top trials, best trial first.
        span: ``(min, max)`` of ``top_values`` for numeric parameters, else ``None``.
        panned_low: The new window extends below the old one.
        panned_high: The new window extends above the old one.
        min_width_applied: The window was grown to the minimum width.
        hard_low_applied: The hard lower bound cut the window.
        hard_high_applied: The hard upper bound cut the window.
        note: Why the range was kept as it was, when it was (else ``""``).
        pan_streak: Consecutive earlier stages whose window panned the edge this one pans (0: a
            first pan, or none); the pan went ``pan_growth**pan_streak`` times as far.
    """

    name: str
    old: BaseDistribution
    new: BaseDistribution
    n_trials: int = 0
    top_values: tuple[Any, ...] = ()
    span: tuple[float, float] | None = None
    panned_low: bool = False
    panned_high: bool = False
    min_width_applied: bool = False
    hard_low_applied: bool = False
    hard_high_applied: bool = False
    note: str = ""
    pan_streak: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (distributions in Optuna's JSON form)."""
        out = dataclasses.asdict(self)
        out["old"] = json.loads(distribution_to_json(self.old))
        out["new"] = json.loads(distribution_to_json(self.new))
        out["top_values"] = list(self.top_values)
        out["span"] = list(self.span) if self.span is not None else None
        return out


def narrow_space(
    space: Mapping[str, BaseDistribution],
    trials: Sequence[TrialResult],
    direction: Direction,
    rule: NarrowingRule | None = None,
    *,
    initial_space: Mapping[str, BaseDistribution],
    hard_bounds: HardBounds | None = None,
    earlier: Sequence[Mapping[str, BaseDistribution]] = (),
) -> Space:
    """Narrow a stage's space around its best finished trials.

    Args:
        space: The space the stage sampled from.
        trials: The stage's finished (complete) trials as ``(params, value)``, in trial order (the
            order breaks ties). Trials with a NaN value cannot be ranked and are skipped.
        direction: ``"maximize"`` or ``"minimize"`` (or an Optuna ``StudyDirection``).
        rule: The rule; ``NarrowingRule()`` if omitted.
        initial_space: The stage-0 space; the minimum width is a fraction of its widths.
        hard_bounds: Limits, in value space, that no window ever crosses.
        earlier: The spaces of the stages before this one, first stage first (how far a pan goes
            depends on how many stages in a row panned the same edge: ``rule.pan_growth``).

    Returns:
        The next stage's space, in the same order as ``space``.

    Raises:
        NarrowingError: If an argument is invalid.
    """
    return {
        name: rec.new
        for name, rec in explain_narrowing(
            space,
            trials,
            direction,
            rule,
            initial_space=initial_space,
            hard_bounds=hard_bounds,
            earlier=earlier,
        ).items()
    }


def explain_narrowing(
    space: Mapping[str, BaseDistribution],
    trials: Sequence[TrialResult],
    direction: Direction,
    rule: NarrowingRule | None = None,
    *,
    initial_space: Mapping[str, BaseDistribution],
    hard_bounds: HardBounds | None = None,
    earlier: Sequence[Mapping[str, BaseDistribution]] = (),
) -> dict[str, ParamNarrowing]:
    """Like :func:`narrow_space`, with a record of why each parameter got its new range.

    Returns:
        Parameter name to :class:`ParamNarrowing`, in the order of ``space``; ``record.new`` is the
        next stage's distribution.
    """
    rule = NarrowingRule() if rule is None else rule
    if not isinstance(rule, NarrowingRule):
        raise NarrowingError(f"rule must be a NarrowingRule, got {type(rule).__name__}")
    current = check_space(space)
    initial = check_space(initial_space, "initial_space")
    bounds = check_hard_bounds(hard_bounds, current)
    sign = _direction_sign(direction)
    ranked = _rank(trials, sign)
    streaks = pan_streaks([*earlier, current])

    records: dict[str, ParamNarrowing] = {}
    for name, dist in current.items():
        # The top set is taken among the trials that carry the parameter, so a conditional
        # parameter is narrowed around the best trials that actually used it.
        carried = [(params, key) for params, key in ranked if name in params]
        carriers = [params for params, _ in carried]
        if not carriers:
            records[name] = ParamNarrowing(name, dist, dist, note="no finished trial carries it")
            continue
        top = carriers[: rule.n_top(len(carriers), [key for _, key in carried])]
        if isinstance(dist, CategoricalDistribution):
            records[name] = _narrow_categorical(name, dist, [p[name] for p in top], len(carriers))
        else:
            assert isinstance(dist, FloatDistribution | IntDistribution)
            first = initial.get(name, dist)
            if type(first) is not type(dist) or first.log != dist.log:
                raise NarrowingError(
                    f"initial_space.{name} is {first!r} but the stage space has {dist!r}: "
                    "kind and log scale must match"
                )
            values = [_numeric_value(name, p[name], dist) for p in top]
            records[name] = _narrow_numeric(
                name,
                dist,
                first,
                values,
                len(carriers),
                rule,
                bounds.get(name, (None, None)),
                streaks.get(name, (0, 0)),
            )
    return records


def pan_streaks(spaces: Sequence[Mapping[str, BaseDistribution]]) -> dict[str, tuple[int, int]]:
    """Per numeric parameter, how many stages in a row, ending with the last of ``spaces``, moved
    its window's low edge down and its high edge up: ``(low streak, high streak)``.

    ``spaces`` are the stages' spaces in order; stage ``j`` panned an edge when stage ``j + 1``'s
    window reaches past it.
    """
    out: dict[str, tuple[int, int]] = {}
    if not spaces:
        return out
    for name, dist in spaces[-1].items():
        if not isinstance(dist, FloatDistribution | IntDistribution):
            continue
        windows = [s[name] for s in spaces if isinstance(s.get(name), type(dist))]
        out[name] = (_streak(windows, low=True), _streak(windows, low=False))
    return out


def _streak(windows: Sequence[NumericDistribution], *, low: bool) -> int:
    """Consecutive most recent stage transitions that moved the low (or high) edge outward."""
    n = 0
    for older, newer in zip(reversed(windows[:-1]), reversed(windows[1:]), strict=True):
        moved = newer.low < older.low if low else newer.high > older.high
        if not moved:
            break
        n += 1
    return n


def _direction_sign(direction: Direction) -> float:
    if direction in (StudyDirection.MAXIMIZE, "maximize"):
        return -1.0
    if direction in (StudyDirection.MINIMIZE, "minimize"):
        return 1.0
    raise NarrowingError(f"direction must be 'maximize' or 'minimize', got {direction!r}")


def _rank(trials: Sequence[TrialResult], sign: float) -> list[tuple[Mapping[str, Any], float]]:
    """``(params, key)`` of the rankable trials, best first (``key``: the value times ``sign``,
    lower is better); equal values keep trial order."""
    keyed: list[tuple[float, int, Mapping[str, Any]]] = []
    for i, item in enumerate(trials):
        try:
            params, value = item
        except (TypeError, ValueError) as exc:
            raise NarrowingError(f"trials[{i}] must be a (params, value) pair, got {item!r}") from exc
        if not isinstance(params, Mapping):
            raise NarrowingError(f"trials[{i}]: params must be a mapping, got {params!r}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise NarrowingError(f"trials[{i}]: value must be a number, got {value!r}")
        if math.isnan(value):
            continue
        keyed.append((sign * float(value), i, params))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(params, key) for key, _, params in keyed]


def _numeric_value(name: str, value: object, dist: NumericDistribution) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise NarrowingError(f"parameter {name}: a trial has the non-numeric or infinite value {value!r}")
    if dist.log and value <= 0:
        raise NarrowingError(f"parameter {name} is log-scaled but a trial has the value {value!r}")
    return float(value)


def check_hard_bounds(
    hard_bounds: HardBounds | None, space: Mapping[str, BaseDistribution] | None = None
) -> dict[str, tuple[float | None, float | None]]:
    """Validate hard bounds.

    Args:
        hard_bounds: Name to ``(low, high)``; ``None`` on a side means no limit there.
        space: If given, also check the bounds against the parameters' kinds; names absent from it
            are dropped (they may appear in a later stage).

    Returns:
        The bounds as a plain dict.

    Raises:
        NarrowingError: If a bound is malformed, inverted, set on a categorical parameter, or
            non-positive on the high side of a log parameter.
    """
    if hard_bounds is None:
        return {}
    if not isinstance(hard_bounds, Mapping):
        raise NarrowingError(f"hard_bounds must be a mapping of name to (low, high), got {hard_bounds!r}")
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, pair in hard_bounds.items():
        try:
            low, high = pair
        except (TypeError, ValueError) as exc:
            raise NarrowingError(f"hard_bounds.{name} must be a (low, high) pair, got {pair!r}") from exc
        for side in (low, high):
            if side is not None and (
                not isinstance(side, int | float) or isinstance(side, bool) or math.isnan(side)
            ):
                raise NarrowingError(f"hard_bounds.{name}: bounds must be numbers or None, got {pair!r}")
        if low is not None and high is not None and not low < high:
            raise NarrowingError(f"hard_bounds.{name}: low must be below high, got {pair!r}")
        if space is not None:
            if name not in space:
                continue
            dist = space[name]
            if not isinstance(dist, FloatDistribution | IntDistribution):
                raise NarrowingError(f"hard_bounds.{name}: a categorical parameter has no bounds")
            if dist.log and high is not None and high <= 0:
                raise NarrowingError(f"hard_bounds.{name}: the parameter is log-scaled, high must be > 0")
        out[name] = (low, high)
    return out


def _narrow_categorical(
    name: str, dist: CategoricalDistribution, top: list[Any], n_trials: int
) -> ParamNarrowing:
    # Match on type as well as value: True == 1 == 1.0 in Python, but they are different choices.
    kept = tuple(c for c in dist.choices if any(type(v) is type(c) and v == c for v in top))
    if not kept:
        return ParamNarrowing(
            name, dist, dist, n_trials, tuple(top), note="no top value is one of the choices"
        )
    return ParamNarrowing(name, dist, CategoricalDistribution(kept), n_trials, tuple(top))


@dataclass
class _Window:
    lo: float
    hi: float
    panned_low: bool = False
    panned_high: bool = False
    min_width_applied: bool = False
    hard_low_applied: bool = False
    hard_high_applied: bool = False
    streak: int = 0


# _window and _narrow_numeric are long on purpose: each reads top to bottom as docs/narrowing.md
# states the rule (the window, its pan, the minimum width; then grids and bounds in value space).
def _window(
    a: float,
    b: float,
    initial_width: float,
    s_lo: float,
    s_hi: float,
    rule: NarrowingRule,
    h_lo: float,
    h_hi: float,
    streak: tuple[int, int] = (0, 0),
) -> _Window:
    """The new window in u-space.

    ``[a, b]`` is the current window, ``[s_lo, s_hi]`` the top trials' span and ``[h_lo, h_hi]`` the
    hard bounds (infinite when absent), all in u-space.
    """
    # Hard bounds that cut the stage's window (given narrower than its range) cut it for the rule
    # too: a top trial beyond one counts as lying on the bound, and crowding is judged within the
    # window as it can be sampled (else a top trial clipped to the upper bound could look as if it
    # crowded the lower edge, and the window panned away from it).
    if max(a, h_lo) < min(b, h_hi):
        a, b = max(a, h_lo), min(b, h_hi)
    s_lo, s_hi = min(max(s_lo, h_lo), h_hi), min(max(s_hi, h_lo), h_hi)
    w = b - a
    crowd_low = s_lo - a <= rule.edge_zone * w
    crowd_high = b - s_hi <= rule.edge_zone * w
    # Top trials at both edges say the parameter hardly matters inside this window, not that its
    # good region is wider: panning both ways would widen the window stage after stage (the book's
    # weight decay went from 4 decades to 5.6 in two stages). Such a window is kept.
    pan_low = rule.pan and crowd_low and not crowd_high
    pan_high = rule.pan and crowd_high and not crowd_low
    # Where the window may go: past an old edge only where the top trials crowd it (the hull with
    # the span keeps every top trial even if it lay outside the window), never past a hard bound.
    free_lo = -math.inf if pan_low else min(a, s_lo)
    free_hi = math.inf if pan_high else max(b, s_hi)
    r_lo, r_hi = max(free_lo, h_lo), min(free_hi, h_hi)

    # A pan that continues the last stage's pan goes further (pan_growth**streak): a window far
    # below the good learning rates otherwise moves by the same small step stage after stage.
    # It is measured against the first stage's width: the window shrinks as it narrows around its
    # top trials, and a pan a fraction of the shrunken width would slow down instead.
    reach_lo = _reach(rule, w, initial_width, streak[0] if pan_low else 0)
    reach_hi = _reach(rule, w, initial_width, streak[1] if pan_high else 0)
    want_lo, want_hi = s_lo - reach_lo, s_hi + reach_hi
    out = _Window(max(want_lo, r_lo), min(want_hi, r_hi))
    out.streak = streak[0] if pan_low else streak[1] if pan_high else 0
    if out.hi - out.lo > w:
        # A pan moves the window, it does not widen it: the side that does not pan comes in, as
        # far as the top trials allow. (Otherwise a parameter that hardly matters, its top trials
        # spread wide, grows by a margin each time they happen to crowd one edge.)
        if pan_high:
            out.lo = min(s_lo, max(out.lo, out.hi - w))
        elif pan_low:
            out.hi = max(s_hi, min(out.hi, out.lo + w))
    out.hard_low_applied = max(want_lo, free_lo) < h_lo
    out.hard_high_applied = min(want_hi, free_hi) > h_hi

    m = min(rule.min_width * initial_width, h_hi - h_lo)
    # `not >=` also catches hi < lo, which happens when hard bounds cut the span.
    if not out.hi - out.lo >= m:
        out.min_width_applied = True
        # Prefer to stay where the window may go; if that is too small (the old window was already
        # narrower than the minimum), fall back to the hard bounds, which are never too small.
        g_lo, g_hi = (r_lo, r_hi) if r_hi - r_lo >= m else (h_lo, h_hi)
        centre = (s_lo + s_hi) / 2
        if g_hi - g_lo <= m:
            lo, hi = g_lo, g_hi
        elif centre - m / 2 < g_lo:
            lo, hi = g_lo, g_lo + m
        elif centre + m / 2 > g_hi:
            lo, hi = g_hi - m, g_hi
        else:
            lo, hi = centre - m / 2, centre + m / 2
        out.hard_low_applied = out.hard_low_applied or (lo <= h_lo < centre - m / 2)
        out.hard_high_applied = out.hard_high_applied or (hi >= h_hi > centre + m / 2)
        out.lo, out.hi = lo, hi
    out.panned_low = out.lo < a
    out.panned_high = out.hi > b
    return out


def _reach(rule: NarrowingRule, w: float, initial_width: float, streak: int) -> float:
    """How far past the top trials one side of the window goes: ``margin * w``, or for a pan that
    continues ``streak`` earlier ones, ``margin * max(w, w0) * pan_growth**streak``."""
    if streak == 0 or rule.pan_growth == 1.0:
        return rule.margin * w
    return rule.margin * max(w, initial_width) * rule.pan_growth**streak


def _narrow_numeric(
    name: str,
    dist: NumericDistribution,
    initial: NumericDistribution,
    top: list[float],
    n_trials: int,
    rule: NarrowingRule,
    bounds: tuple[float | None, float | None],
    streak: tuple[int, int] = (0, 0),
) -> ParamNarrowing:
    log = dist.log
    step = dist.step
    is_int = isinstance(dist, IntDistribution)
    # Grid-valued parameters (ints, stepped floats) stay on the grid of the stage-0 space.
    anchor = initial.low

    # Hard bounds in value space, with the limits Optuna itself imposes: log ints start at 1.
    v_lo = -math.inf if bounds[0] is None else float(bounds[0])
    v_hi = math.inf if bounds[1] is None else float(bounds[1])
    if is_int and log:
        v_lo = max(v_lo, 1.0)
    if step is not None:
        # Grid parameters can only take grid values: move the bounds inward onto the grid.
        if math.isfinite(v_lo):
            v_lo = _on_grid(anchor, step, v_lo, math.ceil)
        if math.isfinite(v_hi):
            v_hi = _on_grid(anchor, step, v_hi, math.floor)
        if v_lo > v_hi:
            raise NarrowingError(f"hard_bounds.{name}: no value of the parameter's grid lies inside them")
    h_lo = -math.inf if (log and v_lo <= 0) or v_lo == -math.inf else to_u(v_lo, log)
    h_hi = math.inf if v_hi == math.inf else to_u(v_hi, log)

    a, b = u_window(dist)
    i_lo, i_hi = u_window(initial)
    span = (min(top), max(top))
    unchanged = ParamNarrowing(name, dist, dist, n_trials, tuple(top), span)
    if i_hi - i_lo <= 0:
        return dataclasses.replace(unchanged, note="the stage-0 range is a single value")

    s_lo, s_hi = to_u(span[0], log), to_u(span[1], log)
    win = _window(a, b, i_hi - i_lo, s_lo, s_hi, rule, h_lo, h_hi, streak)

    # Back to value space. Edges that came from the old window or a hard bound are copied exactly,
    # so that 10**log10(x) rounding can neither cross a bound nor push out a top trial.
    low = dist.low if win.lo == a else (v_lo if win.lo == h_lo else from_u(win.lo, log))
    high = dist.high if win.hi == b else (v_hi if win.hi == h_hi else from_u(win.hi, log))
    low, high = max(min(low, span[0]), v_lo), min(max(high, span[1]), v_hi)
    if step is not None:
        low = _on_grid(anchor, step, low, math.floor)
        high = _on_grid(anchor, step, high, math.ceil)
        if high <= low:
            # The window covers a single grid value: give it one more step if the bounds allow.
            if low + step <= v_hi:
                high = _on_grid(anchor, step, low + step, math.floor)
            elif low - step >= v_lo:
                low = _on_grid(anchor, step, low - step, math.floor)
    try:
        new = _rebuild(dist, low, high)
    except (ValueError, OverflowError):
        new = None
    # A single integer value is acceptable only when the hard bounds leave no other choice.
    if new is None or not (low < high or (is_int and low == high and v_hi - v_lo < (step or 1))):
        return dataclasses.replace(unchanged, note=f"window [{low!r}, {high!r}] is degenerate; range kept")
    return dataclasses.replace(
        unchanged,
        new=new,
        panned_low=win.panned_low and new.low < dist.low,
        panned_high=win.panned_high and new.high > dist.high,
        min_width_applied=win.min_width_applied,
        hard_low_applied=win.hard_low_applied,
        hard_high_applied=win.hard_high_applied,
        pan_streak=win.streak if (win.panned_low or win.panned_high) else 0,
    )


def _on_grid(anchor: float, step: float, value: float, rounding: Any) -> float:
    """The grid point ``anchor + k*step`` next to ``value`` (``rounding`` is floor or ceil).

    Decimal arithmetic keeps 0.1 + 3*0.1 at 0.4, which Optuna's own step check expects.
    """
    k = (value - anchor) / step
    k = rounding(k + _ROUND_SLACK) if rounding is math.floor else rounding(k - _ROUND_SLACK)
    return float(Decimal(str(anchor)) + int(k) * Decimal(str(step)))


def _rebuild(dist: NumericDistribution, low: float, high: float) -> NumericDistribution | None:
    if not (math.isfinite(low) and math.isfinite(high)) or (dist.log and low <= 0):
        return None
    if isinstance(dist, IntDistribution):
        return IntDistribution(round(low), round(high), log=dist.log, step=dist.step)
    return FloatDistribution(low, high, log=dist.log, step=dist.step)
