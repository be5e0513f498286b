"""Attempts keep their integrity: a waiting or in-flight attempt is never deleted, finished ones go through
services.results_delete (never the task's last result, audited), from the results admin's delete page and
its "Delete selected" action alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from scheduling import services
from scheduling.engine import lifecycle
from scheduling.models import AttemptStatus, AuditAction, Task, TaskAudit, TaskResult, TaskStatus

pytestmark = pytest.mark.django_db

A = AttemptStatus


def new_task(owner: Any = None) -> Task:
    return services.task_create(data={"name": "job", "tags": ["TEST_RECORD"], "parameters": {}}, owner=owner)


def to(attempt: TaskResult, status: str) -> TaskResult:
    """Walk one attempt along the lifecycle to ``status``."""
    path = {
        A.PENDING: [],
        A.QUEUED: [A.QUEUED],
        A.RUNNING: [A.QUEUED, A.RUNNING],
        A.DONE: [A.QUEUED, A.RUNNING, A.DONE],
        A.FAILED: [A.QUEUED, A.RUNNING, A.FAILED],
    }[status]
    for step in path:
        attempt.refresh_from_db()
        lifecycle.move(attempt, step, claim=attempt.claim if step in (A.DONE, A.FAILED) else None)
    attempt.refresh_from_db()
    return attempt


def retry_attempt(task: Task) -> TaskResult:
    failed = to(TaskResult.objects.get(task=task), A.FAILED)
    return TaskResult.objects.create(task=task, attempt=failed.attempt + 1, status=A.RETRY, priority=task.priority)


def finished_runs(task: Task, statuses: list[str]) -> list[TaskResult]:
    """The task's attempts, one finished run per status, oldest first."""
    runs = [to(TaskResult.objects.get(task=task), statuses[0])]
    for status in statuses[1:]:
        runs.append(to(services.task_run_now(task=task), status))
    return runs


def delete_selected(client: Client, attempts: list[TaskResult]) -> Any:
    return client.post(
        reverse("admin:scheduling_taskresult_changelist"),
        {"action": "delete_selected", "_selected_action": [str(a.pk) for a in attempts], "post": "yes"},
    )


def snapshot(task: Task) -> tuple[Any, ...]:
    task.refresh_from_db()
    rows = tuple(TaskResult.objects.filter(task=task).order_by("pk").values_list("pk", "status"))
    return task.status, rows, TaskAudit.objects.filter(task_id=task.pk).count()


@pytest.mark.parametrize("status", [A.PENDING, A.RETRY, A.QUEUED, A.RUNNING])
def test_a_waiting_or_running_attempt_cannot_be_deleted_from_the_results_admin(client_op: Client, status: str) -> None:
    task = new_task()
    attempt = retry_attempt(task) if status == A.RETRY else to(TaskResult.objects.get(task=task), status)
    before = snapshot(task)
    page = client_op.get(reverse("admin:scheduling_taskresult_delete", args=[attempt.pk]))
    assert "cancel the task first" in page.content.decode()
    client_op.post(reverse("admin:scheduling_taskresult_delete", args=[attempt.pk]), {"post": "yes"})
    response = delete_selected(client_op, [attempt])
    assert "cancel the task first" in response.content.decode()
    assert snapshot(task) == before  # the attempt, the task's status and its trail are untouched


def test_the_service_refuses_in_flight_attempts_on_every_path(operator: Any) -> None:
    """A caller that skips the admin's confirmation page (or races it) meets the same rule."""
    task = new_task()
    running = to(TaskResult.objects.get(task=task), A.RUNNING)
    deleted, refused = services.results_delete(results=[running], actor=operator)
    assert deleted == 0 and "cancel the task first" in refused[0]
    # The worker's outcome still lands, and the task follows it.
    running.refresh_from_db()
    lifecycle.move(running, A.DONE, claim=running.claim)
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE


def test_after_cancelling_through_the_lifecycle_the_older_attempts_may_go(operator: Any) -> None:
    task = new_task()
    first = finished_runs(task, [A.FAILED])[0]
    services.task_run_now(task=task)
    services.task_cancel(task=task, actor=operator)
    deleted, refused = services.results_delete(results=[first], actor=operator)
    assert (deleted, refused) == (1, [])
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED


def test_finished_attempts_are_deleted_but_the_last_result_stays_audited(client_op: Client, operator: Any) -> None:
    task = new_task()
    old_done, old_failed, last = finished_runs(task, [A.DONE, A.FAILED, A.DONE])
    task.refresh_from_db()
    status = task.status
    page = delete_selected(client_op, [old_done, old_failed, last])
    assert "last result" in page.content.decode()  # refused up front: the selection holds the last result
    assert TaskResult.objects.filter(task=task).count() == 3
    response = delete_selected(client_op, [old_done, old_failed])
    assert response.status_code == 302
    assert list(TaskResult.objects.filter(task=task)) == [last]
    task.refresh_from_db()
    assert task.status == status == TaskStatus.DONE
    entry = TaskAudit.objects.filter(task_id=task.pk).first()
    assert (entry.action, entry.actor) == (AuditAction.ATTEMPTS_DELETED, operator)
    assert entry.detail == "2 finished attempt(s) deleted: DONE 1, FAILED 1"


def test_the_service_keeps_the_last_result_when_asked_to_delete_it(operator: Any) -> None:
    task = new_task()
    older, last = finished_runs(task, [A.FAILED, A.DONE])
    deleted, refused = services.results_delete(results=[older, last], actor=operator)
    assert deleted == 1 and "last result" in refused[0]
    assert list(TaskResult.objects.filter(task=task)) == [last]


def test_deleting_a_task_still_removes_its_attempts(client_op: Client) -> None:
    """The task's own delete (which revokes running attempts) is unaffected by the attempt rule."""
    task = new_task()
    to(TaskResult.objects.get(task=task), A.RUNNING)
    response = client_op.post(reverse("admin:scheduling_task_delete", args=[task.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Task.objects.filter(pk=task.pk).exists() and not TaskResult.objects.filter(task_id=task.pk).exists()
