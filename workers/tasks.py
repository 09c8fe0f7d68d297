"""Celery tasks: validate the ids, call hpo, done. The database, not the message, is the truth."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

from ._messages import TASK_NAME, MessageError, trial_id_of

__all__ = ["register", "run_trial"]


def run_trial(task: Task, trial_id: Any) -> str:
    """Run one trial by id. A second delivery finds it claimed or finished and does nothing."""
    # The transport checked the message already (workers._messages); checked again here, so a
    # task called any other way gets the same answer.
    try:
        trial_id = trial_id_of(trial_id)
    except MessageError as exc:
        raise Reject(exc.reason, requeue=False) from None
    from hpo.orchestration import execute_trial

    from ._executor import executor_for, storage_for
    from .app import queues_of, settings_of, worker_id

    app = task.app  # the app that received the message, never one captured at registration
    lease = settings_of(app).lease_seconds
    storage, executor = storage_for(app), executor_for(app)
    return execute_trial(
        storage, trial_id, worker_id(), executor=executor, lease=lease, queues=queues_of(app)
    )


def register(app: Celery) -> None:
    """Register hpo's tasks on ``app``."""
    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)(run_trial)
