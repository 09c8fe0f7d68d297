"""Why each stage of a narrowing study has its ranges: the rule re-applied to the stored stages."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..samplers import ParamNarrowing, explain_narrowing, space_from_json, space_to_json
from ..storage import Storage, TrialState
from ._studies import study_spec

__all__ = ["StageExplanation", "explain_stages"]


@dataclass(frozen=True)
class StageExplanation:
    """How stage ``stage`` got its ranges from stage ``stage - 1``'s COMPLETE trials.

    Attributes:
        stage: The 0-based index of the stage the ranges are for (1 or more).
        n_complete: COMPLETE trials of the stage before, that the rule ranked.
        params: The rule's record per parameter (:class:`~hpo.samplers.ParamNarrowing`).
        matches: Whether re-applying the rule gives the ranges the stage was stored with (False:
            the study was made by a release whose rule differed).
    """

    stage: int
    n_complete: int
    params: dict[str, ParamNarrowing]
    matches: bool


def explain_stages(storage: Storage, study_id: int) -> list[StageExplanation]:
    """The narrowing of every stage after the first that exists, as the study's rule makes it.

    The records come from :func:`~hpo.samplers.explain_narrowing` with the arguments the study's
    search strategy gave it when the stage was made (the stored spaces of the stages before, the
    stage's COMPLETE trials, the study's rule and hard bounds), so they say why, parameter by
    parameter: the top set, its span, a pan and its streak, the minimum width, a bound.

    Returns:
        One explanation per stage from the second on; empty for a strategy that does not narrow.
    """
    spec = study_spec(storage.get_study_by_id(study_id))
    if not spec.strategy.narrows:
        return []
    stored = storage.stages(study_id)
    spaces = [space_from_json(json.loads(s.space)) for s in stored]
    out = []
    for stage in range(1, len(stored)):
        finished = [
            (t.params, t.value)
            for t in storage.trials(study_id, states=(TrialState.COMPLETE,), stage=stage - 1)
            if t.value is not None
        ]
        records = explain_narrowing(
            spaces[stage - 1],
            finished,
            spec.objective.direction,
            spec.narrowing_rule(),
            initial_space=spec.search_space(),
            hard_bounds=spec.hard_bounds(),
            earlier=spaces[: stage - 1],
        )
        derived = space_to_json({name: rec.new for name, rec in records.items()})
        out.append(StageExplanation(stage, len(finished), records, derived == space_to_json(spaces[stage])))
    return out
