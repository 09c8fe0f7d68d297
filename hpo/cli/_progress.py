"""Live progress of a running study, on stderr."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._common import fmt_value
from ._console import err_console

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from hpo._local import Progress
    from hpo.storage import Storage

__all__ = ["LiveProgress", "range_text"]


class LiveProgress:
    """Draws stage, trials done/failed, best so far, current ranges and ETA."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.enabled = err_console().is_terminal
        self._live: Live | None = None
        self._last_text = ""
        self._last_print = 0.0

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._live = Live(console=err_console(), auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def __call__(self, p: Progress) -> None:
        from hpo._orchestration import best_trials, study_spec
        from hpo.samplers import space_from_json

        if self._live is None and time.monotonic() - self._last_print < 5 and p.study.state == "RUNNING":
            return  # not a terminal: a plain line every few seconds is enough

        spec = study_spec(p.study)
        stages = self.storage.stages(p.study.id)
        n_stages = len(spec.search.stages)
        total = sum(s.trials for s in spec.search.stages)
        done = sum(p.counts.get(s, 0) for s in ("COMPLETE", "FAIL", "PRUNED"))
        stage = p.study.current_stage
        stage_total = spec.search.stages[stage].trials
        stage_done = sum(p.stage_counts.get(s, 0) for s in ("COMPLETE", "FAIL", "PRUNED"))
        eta = "-"
        if done and done < total:
            eta = f"{p.elapsed / done * (total - done):.0f} s"
        best = best_trials(self.storage, p.study.id, spec, 1)
        best_txt = "-"
        if best:
            b = best[0]
            metric = spec.objective.metric
            best_txt = f"{metric} {fmt_value(b.value)} (trial {b.number}: {fmt_value(b.params)})"
        head = (
            f"[bold]{p.study.name}[/] {p.study.state.lower()}  stage {stage + 1}/{n_stages} "
            f"({stage_done}/{stage_total})  trials {done}/{total}  failed {p.counts.get('FAIL', 0)}  "
            f"pruned {p.counts.get('PRUNED', 0)}  running {p.counts.get('RUNNING', 0)}  "
            f"workers {p.workers_alive if p.workers_alive >= 0 else 'remote'}  {p.elapsed:.1f} s  ETA {eta}"
        )
        ranges = Table("parameter", *(f"stage {s.index + 1}" for s in stages), box=None, pad_edge=False)
        spaces = [space_from_json(json.loads(s.space)) for s in stages]
        for name in spec.search.parameters:
            ranges.add_row(name, *(range_text(sp.get(name)) for sp in spaces))
        if self._live is not None:
            self._live.update(Group(Text.from_markup(head), Text(f"best: {best_txt}"), ranges), refresh=True)
        else:
            # Not a terminal (CI, a pipe): a plain line now and then, never a flood.
            text = f"{p.study.name}: stage {stage + 1}/{n_stages}, trials {done}/{total}, best {best_txt}"
            now = time.monotonic()
            if text != self._last_text and (now - self._last_print > 5 or p.study.state != "RUNNING"):
                err_console().print(text, highlight=False, markup=False)
                self._last_text, self._last_print = text, now


def range_text(dist: BaseDistribution | None) -> str:
    """A stage's range of one parameter, as shown to users."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dist is None:
        return "-"
    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(str(c) for c in dist.choices) + "}"
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return f"{fmt_value(float(dist.low))} .. {fmt_value(float(dist.high))}"
