"""Searched parameters of a study file: float and int ranges, and lists of choices."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ._models import _Strict
from ._yaml import ECHO_LIMIT, shorten

__all__ = ["CategoricalParameter", "FloatParameter", "IntParameter", "Parameter"]

Loc = tuple[str | int, ...]
Choice = str | int | float | bool


def _located(loc: Loc, message: str, value: Any = None) -> ValidationError:
    """A validation error at ``loc`` (relative to the model being validated).

    pydantic keeps the location of a :class:`ValidationError` raised inside a validator and
    prefixes it with the enclosing one, so the error can name a key deeper than the validator's
    own model (``search.parameters.lr.high`` rather than ``search.parameters.lr``).
    """
    error = PydanticCustomError("study_spec", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "StudySpec", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


_LONG_INT = 10**ECHO_LIMIT
"""Integers from here on are described, not printed."""


def _fmt(value: Any) -> str:
    """A value as a message echoes it: a string quoted, a number as JSON, cut to one short line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _LONG_INT:
        return f"an integer of {value.bit_length()} bits"  # not converted: str() refuses 4300+ digits
    return shorten(repr(value) if isinstance(value, str) else json.dumps(value))


class _RangeChecks:
    """The checks shared by float and int ranges (a mixin: the fields live in the models)."""

    if TYPE_CHECKING:
        low: float
        high: float
        log: bool
        bounds: list[float] | list[int] | None

    def _check_range(self) -> None:
        if not self.low < self.high:
            raise _located(
                ("high",), f"high {_fmt(self.high)} must be greater than low {_fmt(self.low)}", self.high
            )
        if self.log and self.low <= 0:
            raise _located(("low",), f"a log range needs low > 0, got {_fmt(self.low)}", self.low)
        if self.bounds is not None:
            lo, hi = self.bounds
            if not lo < hi:
                raise _located(("bounds",), f"bounds [{_fmt(lo)}, {_fmt(hi)}] must have lo < hi", self.bounds)
            if self.log and lo <= 0:
                raise _located(("bounds",), f"bounds of a log range must be > 0, got {_fmt(lo)}", self.bounds)
            if not (lo <= self.low and self.high <= hi):
                raise _located(
                    ("bounds",),
                    f"bounds [{_fmt(lo)}, {_fmt(hi)}] must contain the range "
                    f"[{_fmt(self.low)}, {_fmt(self.high)}]",
                    self.bounds,
                )

    def endpoints(self) -> list[tuple[Loc, float]]:
        """The extreme values a sampler may draw (``bounds`` too, when given), with where each is set."""
        points: list[tuple[Loc, float]] = [(("low",), self.low), (("high",), self.high)]
        if self.bounds is not None:
            points += [(("bounds", 0), self.bounds[0]), (("bounds", 1), self.bounds[1])]
        return points


class FloatParameter(_RangeChecks, _Strict):
    """A real-valued range, sampled uniformly (or uniformly in log10 space with ``log: true``)."""

    type: Literal["float"] = Field(description="A real-valued range.")
    low: float = Field(description="Lower end of the first stage's range.")
    high: float = Field(description="Upper end of the first stage's range (greater than low).")
    log: bool = Field(False, description="Sample in log10 space (low must be > 0).")
    bounds: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None,
        description="Hard limits [lo, hi] that narrowing may pan out to; they must contain [low, high]. "
        "Without them, narrowing may pan anywhere the field itself allows (dropout < 1, lr > 0, ...).",
    )

    @model_validator(mode="after")
    def _valid_range(self) -> FloatParameter:
        self._check_range()
        return self


class IntParameter(_RangeChecks, _Strict):
    """An integer range ``low, low + step, ..., high``."""

    type: Literal["int"] = Field(description="An integer range.")
    low: int = Field(description="Lower end of the first stage's range.")
    high: int = Field(description="Upper end of the first stage's range (greater than low).")
    log: bool = Field(False, description="Sample in log10 space (low must be >= 1; step must be 1).")
    step: Annotated[int, Field(ge=1)] = Field(
        1, description="Spacing of the values; high - low is a multiple."
    )
    bounds: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(
        None,
        description="Hard limits [lo, hi] that narrowing may pan out to; they must contain [low, high].",
    )

    @model_validator(mode="after")
    def _valid_range(self) -> IntParameter:
        self._check_range()
        if self.log and self.step != 1:
            raise _located(("step",), f"a log range needs step 1, got {_fmt(self.step)}", self.step)
        if (self.high - self.low) % self.step:
            raise _located(
                ("high",),
                f"high - low ({_fmt(self.high - self.low)}) must be a multiple of step {_fmt(self.step)}",
                self.high,
            )
        return self


class CategoricalParameter(_Strict):
    """A list of choices."""

    type: Literal["categorical"] = Field(description="A choice among fixed values.")
    choices: Annotated[list[Choice], Field(min_length=1, max_length=100)] = Field(
        description="1 to 100 distinct strings, numbers or booleans."
    )

    @field_validator("choices", mode="before")
    @classmethod
    def _primitive_choices(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, choice in enumerate(value):
                if not isinstance(choice, str | int | float | bool):
                    raise _located((i,), f"a choice must be a string, number or boolean, got {_kind(choice)}")
                if isinstance(choice, float) and not math.isfinite(choice):
                    raise _located((i,), "Input should be a finite number", choice)
        return value

    @field_validator("choices", mode="after")
    @classmethod
    def _unique_choices(cls, value: list[Choice]) -> list[Choice]:
        seen: dict[tuple[bool, Choice], int] = {}
        for i, choice in enumerate(value):
            key = (isinstance(choice, bool), choice)
            if key in seen:
                raise _located((i,), f"duplicate choice {_fmt(choice)} (also choices[{seen[key]}])", choice)
            seen[key] = i
        return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


Parameter = Annotated[FloatParameter | IntParameter | CategoricalParameter, Field(discriminator="type")]
"""One searched parameter, told apart by its ``type``."""
