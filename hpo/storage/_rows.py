"""Plain frozen rows returned by :class:`~hpo.storage.Storage`, and the values it is given: the
draft of a new stage, and a trial's outcome.

Callers never hold ORM objects or sessions: every read returns these detached values, made by one
mapper (:func:`row_from`) from the row classes' fields. JSON columns come back in the form they
were given: ``spec`` and ``space`` as the JSON text the caller passed, ``params``, ``curves``,
``intermediate`` and ``test_result`` as Python values (the fields that say how to decode them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from ._models import FINISHED_STATES, StageState, StudyState, TrialState

__all__ = [
    "Compute",
    "NewTrial",
    "StageDraft",
    "StageRow",
    "StudyCompute",
    "StudyProgress",
    "StudyRow",
    "TrialOutcome",
    "TrialRow",
    "dumps",
    "loads",
    "row_from",
]

R = TypeVar("R")


def _default(value: Any) -> Any:
    # NumPy scalars and arrays, without importing NumPy.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """JSON text of ``value`` (NumPy scalars and arrays become numbers and lists)."""
    return json.dumps(value, default=_default, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """The value of JSON ``text`` (``None`` for ``None``)."""
    return None if text is None else json.loads(text)


def intermediate_to_json(values: Mapping[Any, float] | None) -> str | None:
    """``{epoch: value}`` as JSON text with string keys (``None`` for ``None``)."""
    if values is None:
        return None
    return dumps({str(int(k)): float(v) for k, v in values.items()})


def intermediate_from_json(text: str | None) -> dict[int, float] | None:
    """``{epoch: value}`` with integer epochs, sorted (``None`` for ``None``)."""
    raw = loads(text)
    if raw is None:
        return None
    items = sorted(raw.items(), key=lambda item: int(item[0]))
    return {int(k): math.nan if v is None else float(v) for k, v in items}


def _decode(decode: Callable[[Any], Any]) -> dict[str, Any]:
    """The metadata of a row field whose column needs decoding (an enum's text, JSON text)."""
    return {"decode": decode}


def _stored(encode: Callable[[Any], Any] | None = None, *, keep_when_none: bool = False) -> dict[str, Any]:
    """The metadata of an outcome field: how its column is written, and whether ``None`` keeps
    what is stored (curves and intermediate values a heartbeat already wrote)."""
    return {"encode": encode, "keep_when_none": keep_when_none}


_COLUMNS: dict[tuple[type[Any], str], tuple[tuple[str, Callable[[Any], Any] | None], ...]] = {}
"""Per row class and label prefix, its columns in field order and their decoders, worked out once:
row_from runs for every row read (a claim's, a listing's thousands)."""


def row_from(cls: type[R], m: Mapping[Any, Any], prefix: str = "") -> R:
    """The row ``cls`` (a row dataclass below) of a result mapping: one value per field, read
    from the column ``prefix + field name`` and decoded where the field says so.

    Args:
        cls: :class:`StudyRow`, :class:`StageRow` or :class:`TrialRow`.
        m: A result row's mapping (other columns it holds are ignored).
        prefix: The columns' label prefix, when a statement returns another table's columns too.
    """
    columns = _COLUMNS.get((cls, prefix))
    if columns is None:
        found = fields(cls)  # type: ignore[arg-type]
        columns = _COLUMNS[cls, prefix] = tuple((prefix + f.name, f.metadata.get("decode")) for f in found)
    return cls(*[m[c] if decode is None else decode(m[c]) for c, decode in columns])


@dataclass(frozen=True, slots=True)
class StudyRow:
    """A study as stored in ``hpo_studies``.

    Attributes:
        id: Primary key.
        name: Unique name; also the name of the study's Optuna study.
        spec: JSON text of the validated spec.
        spec_hash: sha256 of the canonical spec JSON.
        direction: ``"minimize"`` or ``"maximize"``.
        state: ``RUNNING``, ``COMPLETE``, ``CANCELLED``, ``FAILED`` or ``INTERRUPTED``.
        current_stage: Index of the stage being run (the last one once complete).
        optuna_study_id: Id of the Optuna study, once created.
        test_result: JSON value recorded on completion (the best trial's test accuracy).
        reason: Why the study completed early, failed or was cancelled.
        created_at: Creation time (UTC).
        updated_at: Last change of the study row (UTC).
        queue: The message queue its trials go to; None when local processes run it.
        optuna_link: Token shared with its Optuna study (``system_attrs["hpo:link"]``), which tells
            ours from a study a user made in its place (None: created before revision 0004).
        runner: ``host:pid`` of the process running it locally (None: none, or a broker's workers).
        artifacts: URL of its artifact store, where its trials' checkpoints and models are kept
            (see :func:`hpo.artifacts.open_store`; None: made before revision 0006 kept them).
    """

    id: int
    name: str
    spec: str
    spec_hash: str
    direction: str
    state: StudyState = field(metadata=_decode(StudyState))
    current_stage: int
    optuna_study_id: int | None
    test_result: Any = field(metadata=_decode(loads))
    reason: str | None
    created_at: datetime
    updated_at: datetime
    queue: str | None = None
    optuna_link: str | None = None
    runner: str | None = None
    artifacts: str | None = None


@dataclass(frozen=True, slots=True)
class StageRow:
    """A stage as stored in ``hpo_stages``.

    Attributes:
        study_id: The study.
        index: 0, 1, ... within the study.
        n_trials: Trials in this stage.
        epochs: Epoch budget of each trial of this stage.
        space: JSON text of the space sampled in this stage: ``{param: Optuna distribution JSON
            object}`` (see :func:`hpo.storage.space_to_json`).
        state: ``RUNNING`` until :meth:`Storage.advance` moves past it, then ``COMPLETE``.
        created_at: Creation time (UTC).
        finished_at: When the stage was completed (UTC).
    """

    study_id: int
    index: int
    n_trials: int
    epochs: int
    space: str
    state: StageState = field(metadata=_decode(StageState))
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class TrialRow:
    """A trial as stored in ``hpo_trials``.

    Attributes:
        id: Primary key (also ``user_attrs["hpo_trial_id"]`` of its Optuna trial).
        study_id: The study.
        number: Unique per study, contiguous from 0 across stages.
        stage: Index of its stage.
        params: Parameter values.
        seed: Seed of the trial's generators.
        state: ``PENDING``, ``RUNNING``, ``COMPLETE``, ``FAIL`` or ``PRUNED``.
        attempts: Claims so far (the current one included).
        worker: The worker holding the current claim (``None`` when not running).
        lease_expires_at: End of the current claim's lease (UTC).
        value: Objective value (``None`` for ``FAIL``).
        reason: Why it failed or was pruned.
        curves: Epoch records (JSON list).
        intermediate: ``{epoch: objective value}``.
        optuna_trial_id: Id of its Optuna trial, once mirrored.
        created_at: Creation time (UTC).
        started_at: Start of the current or last claim (UTC).
        finished_at: When it reached its final state (UTC).
        checkpoint: Artifact id of its latest mid-run checkpoint (a running trial's, kept when its
            worker is lost so that the retry resumes from it; cleared by ``finish``).
        checkpoint_epoch: The epoch that checkpoint was taken after.
        model: Artifact id of its final checkpoint (the trained network, its optimizer and its
            position), recorded by ``finish``.
        epochs_trained: Epochs this trial trained itself (not its parent's), recorded by ``finish``.
        train_seconds: Wall seconds its attempts spent training, recorded by ``finish``.
        parent_id: The trial whose trained network this one continues (promotion), if any.
    """

    id: int
    study_id: int
    number: int
    stage: int
    params: dict[str, Any] = field(metadata=_decode(loads))
    seed: int
    state: TrialState = field(metadata=_decode(TrialState))
    attempts: int
    worker: str | None
    lease_expires_at: datetime | None
    value: float | None
    reason: str | None
    curves: list[Any] | None = field(metadata=_decode(loads))
    intermediate: dict[int, float] | None = field(metadata=_decode(intermediate_from_json))
    optuna_trial_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    checkpoint: str | None = None
    checkpoint_epoch: int | None = None
    model: str | None = None
    epochs_trained: int | None = None
    train_seconds: float | None = None
    parent_id: int | None = None

    @property
    def finished(self) -> bool:
        """Whether the trial is in a final state (``COMPLETE``, ``FAIL``, ``PRUNED``)."""
        return self.state in FINISHED_STATES


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    """The result a worker records for its trial (:meth:`Storage.finish`), checked when made.

    Attributes:
        state: ``COMPLETE`` (needs a value that is not NaN), ``FAIL`` (needs a reason; its value
            is dropped) or ``PRUNED``; a name is read as the :class:`TrialState` of that name.
        value: Objective value.
        reason: Why it failed or was pruned.
        curves: Epoch records (``None`` keeps those of the last heartbeat).
        intermediate: ``{epoch: objective value}`` (``None`` keeps those of the last heartbeat).
        model: Artifact id of the trial's final checkpoint in its study's artifact store (None:
            no model was kept).
        epochs_trained: Epochs the trial trained itself (its parent's excluded).
        train_seconds: Wall seconds its attempts spent training.

    Raises:
        ValueError: Not a final state, a ``COMPLETE`` outcome without a value (or NaN), or a
            ``FAIL`` outcome without a reason.
    """

    # Every field is the ``hpo_trials`` column of the same name, written by ``finish`` as the
    # field's metadata says (:func:`_stored`): a new per-trial result is one field here (and its
    # column), with no change to the statement that writes it.
    state: TrialState | str = field(metadata=_stored(lambda s: TrialState(s).value))
    value: float | None = None
    reason: str | None = None
    curves: list[Any] | None = field(
        default=None, metadata=_stored(lambda c: None if c is None else dumps(c), keep_when_none=True)
    )
    intermediate: Mapping[int, float] | None = field(
        default=None, metadata=_stored(intermediate_to_json, keep_when_none=True)
    )
    model: str | None = None
    epochs_trained: int | None = None
    train_seconds: float | None = None

    def __post_init__(self) -> None:
        final = TrialState(self.state)
        if final not in FINISHED_STATES:
            raise ValueError(f"finish needs a final state (COMPLETE, FAIL, PRUNED), not {final}")
        if final == TrialState.COMPLETE and (self.value is None or math.isnan(self.value)):
            raise ValueError("a COMPLETE trial needs a value that is not NaN (record FAIL with a reason)")
        if final == TrialState.FAIL and not self.reason:
            raise ValueError("a FAIL trial needs a reason")
        # Normalised in place (frozen: through object.__setattr__): "COMPLETE" is read as the enum.
        object.__setattr__(self, "state", final)
        if final == TrialState.FAIL:
            object.__setattr__(self, "value", None)
        elif self.value is not None:
            object.__setattr__(self, "value", float(self.value))

    def columns(self) -> dict[str, Any]:
        """Column name -> the value ``finish`` writes (encoded as the field's metadata says)."""
        out = {}
        for f in fields(self):
            encode = f.metadata.get("encode")
            value = getattr(self, f.name)
            out[f.name] = value if encode is None else encode(value)
        return out

    @staticmethod
    def kept_when_none() -> frozenset[str]:
        """Columns a ``None`` leaves as the last heartbeat stored them."""
        return frozenset(f.name for f in fields(TrialOutcome) if f.metadata.get("keep_when_none"))


@dataclass(frozen=True, slots=True)
class StudyProgress:
    """A study and the counts of its trials that decide how it moves on, read together.

    Attributes:
        study: The study row.
        failed: ``FAIL`` trials of the whole study.
        created: Trials of the current stage created so far (a sequential sampler creates them
            as earlier ones finish).
        unfinished: Trials of the current stage still ``PENDING`` or ``RUNNING``.
    """

    study: StudyRow
    failed: int
    created: int
    unfinished: int


class NewTrial(NamedTuple):
    """A trial to insert ``PENDING``.

    Attributes:
        number: Its number: numbers continue the study's numbering without gaps.
        params: Parameter values.
        seed: Seed of the trial's generators.
        parent_id: The trial whose trained network it continues (promotion across stages: it then
            has that trial's params and seed), or None.
    """

    number: int
    params: Mapping[str, Any]
    seed: int
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class Compute:
    """What training some trials cost: the sums of their ``epochs_trained`` and ``train_seconds``.

    Attributes:
        epochs: Epochs the trials trained themselves.
        seconds: Wall seconds they spent training.
        trials: Trials that recorded their compute (those a worker finished; a trial failed by the
            reaper after its worker was lost, or finished before revision 0007, records none).
    """

    epochs: int = 0
    seconds: float = 0.0
    trials: int = 0


@dataclass(frozen=True, slots=True)
class StudyCompute:
    """A study's compute so far (:meth:`Storage.compute`), in total and per stage.

    Attributes:
        total: Of the whole study.
        stages: By stage index; a stage none of whose trials recorded any is left out (see
            :meth:`stage`).
    """

    total: Compute
    stages: Mapping[int, Compute]

    def stage(self, index: int) -> Compute:
        """The compute of stage ``index`` (zeros when none of its trials recorded any)."""
        return self.stages.get(index, Compute())


@dataclass(frozen=True, slots=True)
class StageDraft:
    """A stage to insert, with its ``PENDING`` trials (parameters sampled by the caller).

    Attributes:
        index: Stage index (0 for the first stage, then the previous index + 1).
        n_trials: Trials in the stage; must equal ``len(trials)``.
        epochs: Epoch budget of each trial.
        space_json: JSON text of the space sampled (``{param: Optuna distribution JSON object}``).
        trials: Its first trials (all of them, but for a sequential sampler's stage); numbers
            continue the study's numbering without gaps.
    """

    index: int
    n_trials: int
    epochs: int
    space_json: str
    trials: Sequence[NewTrial] = field(default_factory=tuple)
