"""Finished attempts with controlled times, for reporting tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from scheduling.models import AttemptStatus, Task, TaskResult


def finish(
    task: Task,
    status: str = AttemptStatus.DONE,
    *,
    at: datetime,
    attempt: int = 1,
    duration: float = 1.0,
    error: str = "",
    retried: bool = False,
) -> TaskResult:
    """Record a finished attempt of ``task`` at ``at``; ``retried`` also creates the retry the executor would."""
    result = TaskResult.objects.create(
        task=task,
        attempt=attempt,
        status=status,
        priority=task.priority,
        created_at=at - timedelta(seconds=duration),
        started_at=at - timedelta(seconds=duration),
        finished_at=at,
        duration=duration,
        error_message=error,
    )
    if retried:
        TaskResult.objects.create(
            task=task, attempt=attempt + 1, status=AttemptStatus.RETRY, priority=task.priority, created_at=at
        )
    return result
