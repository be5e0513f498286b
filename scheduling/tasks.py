"""Celery tasks: thin entry points into the engine (the executor, the safety sweep, retention).

The engine never imports this module: the dispatcher sends ``execute`` by its name
(``dispatcher.EXECUTE_TASK``).
"""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from scheduling.engine import dispatcher, executor, recovery, retention


@shared_task(name=dispatcher.EXECUTE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute(result_id: int, *more: int) -> str:
    """Run one attempt, or the several a message carries (idempotent: a redelivered message's taken
    attempts are ignored)."""
    outcomes = executor.run_attempts(
        [result_id, *more],
        celery_task_id=execute.request.id or "",
        worker_node=execute.request.hostname or "",
        soft_timeout_exc=(SoftTimeLimitExceeded,),
    )
    return " ".join(outcomes)


@shared_task(name="scheduling.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Safety net every scheduler.poll_interval: re-send lost work, reclaim zombies, dispatch."""
    return recovery.sweep()


@shared_task(name="scheduling.purge_results", ignore_result=True)
def purge_results() -> str:
    """Daily: delete finished attempts past storage.result_retention_days (each task's last result stays)."""
    return str(retention.purge_results())
