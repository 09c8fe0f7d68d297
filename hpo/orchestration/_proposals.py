"""The trials of a stage: proposed by the study's search strategy (:mod:`hpo.search`).

Every function here is a pure function of the spec and the database's rows, so any process may
propose; a compare-and-set in storage makes exactly one proposal stick.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..samplers import Space, space_from_json, space_to_json
from ..spec import StudySpec
from ..storage import NewTrial, StageDraft, Storage, TrialRow, TrialState

__all__ = ["first_stage_draft", "next_stage_draft", "top_up"]


def _draft(
    spec: StudySpec, stage: int, space: Space, history: Sequence[TrialRow], previous: Sequence[TrialRow] = ()
) -> StageDraft:
    """Stage ``stage`` sampling ``space``: all its trials, or a sequential strategy's first few.

    Its first trials continue the networks of the trials of ``previous`` (the stage before) that
    the strategy promotes, with their parameters and seeds; the others are the strategy's proposals.
    """
    strategy = spec.strategy
    n = spec.search.stages[stage].trials
    if strategy.sequential:
        n = min(n, spec.in_flight_limit())
    first = spec.first_number(stage)
    parents = strategy.promote(spec, stage, space, previous)[:n] if previous else []
    promoted = [NewTrial(first + i, p.params, p.seed, p.id) for i, p in enumerate(parents)]
    fresh = strategy.propose(spec, space, range(first + len(promoted), first + n), history)
    return StageDraft(
        index=stage,
        n_trials=spec.search.stages[stage].trials,
        epochs=spec.stage_epochs(stage),
        space_json=json.dumps(space_to_json(space)),
        trials=[*promoted, *(NewTrial(*p) for p in fresh)],
    )


def first_stage_draft(spec: StudySpec) -> StageDraft:
    """Stage 0 of a new study: its space and its first trials."""
    return _draft(spec, 0, spec.search_space(), [])


def next_stage_draft(storage: Storage, spec: StudySpec, study_id: int, stage: int) -> StageDraft:
    """The stage after ``stage`` (all of whose trials finished): its space, as the strategy
    derives it from ``stage``'s COMPLETE trials, and its first trials (first those that continue
    ``stage``'s trials the strategy promotes)."""
    spaces = [space_from_json(json.loads(s.space)) for s in storage.stages(study_id)[: stage + 1]]
    space = spaces[stage]
    complete = storage.trials(study_id, states=(TrialState.COMPLETE,), stage=stage)
    finished = [(r.params, r.value) for r in complete if r.value is not None]
    space = dict(spec.strategy.next_space(spec, space, finished, spaces[:stage]))
    return _draft(spec, stage + 1, space, storage.trials(study_id), complete)


def top_up(
    storage: Storage, spec: StudySpec, study_id: int, stage: int, created: int, unfinished: int
) -> list[int]:
    """A sequential strategy's next trials of ``stage``, as earlier ones finish (at most
    ``search.in_flight`` unfinished at once). Returns the ids of the trials created."""
    room = spec.in_flight_limit() - unfinished
    n_stage = spec.search.stages[stage].trials
    if room <= 0:
        return []
    first = spec.first_number(stage) + created
    numbers = range(first, first + min(room, n_stage - created))
    space = space_from_json(json.loads(storage.stages(study_id)[stage].space))
    history = storage.trials(study_id)
    proposals = spec.strategy.propose(spec, space, numbers, history)
    if not storage.add_trials(study_id, stage, [NewTrial(*p) for p in proposals]):
        return []
    return pending_ids(storage, study_id, stage, numbers)


def pending_ids(storage: Storage, study_id: int, stage: int, numbers: Sequence[int]) -> list[int]:
    """Ids of the PENDING trials of ``stage`` numbered ``numbers`` (to be dispatched)."""
    wanted = set(numbers)
    states = (TrialState.PENDING,)
    return [t.id for t in storage.trials(study_id, states=states, stage=stage) if t.number in wanted]
