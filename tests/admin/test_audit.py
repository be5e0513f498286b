"""The audit trail: who created, changed, ran, cancelled, paused or resumed a task, and what changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from scheduling import services
from scheduling.models import AttemptStatus, Task, TaskAudit, TaskResult, TaskStatus
from tests.admin.conftest import create, task_form, task_url

pytestmark = pytest.mark.django_db


def trail(task: Task) -> list[tuple[str, str | None]]:
    entries = TaskAudit.objects.filter(task_id=task.pk).order_by("created_at", "id")
    return [(e.action, e.actor.username if e.actor else None) for e in entries]


def test_services_record_who_did_what(operator: Any) -> None:
    task = services.task_create(data={"name": "nightly", "tags": ["TEST_RECORD"], "parameters": {}}, owner=operator)
    services.task_cancel(task=task, actor=operator)
    services.task_retry(task=Task.objects.get(pk=task.pk), actor=operator)
    services.task_pause(task=Task.objects.get(pk=task.pk), actor=operator)
    services.task_resume(task=Task.objects.get(pk=task.pk))  # no actor: the system
    TaskResult.objects.filter(task=task).update(status=AttemptStatus.DONE, finished_at=timezone.now())
    services.task_run_now(task=task, actor=operator)
    assert trail(task) == [
        ("created", "operator"),
        ("cancelled", "operator"),
        ("retried", "operator"),
        ("paused", "operator"),
        ("resumed", None),
        ("run", "operator"),
    ]
    created = TaskAudit.objects.get(task_id=task.pk, action="created")
    assert created.changes["name"] == [None, "nightly"] and created.changes["priority"] == [None, "MEDIUM"]


def test_update_records_each_changed_field_before_and_after(operator: Any) -> None:
    upstream = create("upstream")
    task = create("report", priority="LOW", parameters={"a": 1})
    services.task_update(
        task=task,
        data={"priority": "HIGH", "parameters": {"a": 2}, "dependencies": [upstream.pk], "name": "report"},
        actor=operator,
    )
    entry = TaskAudit.objects.get(task_id=task.pk, action="changed")
    assert entry.actor == operator
    assert entry.changes == {
        "priority": ["LOW", "HIGH"],
        "parameters": [{"a": 1}, {"a": 2}],
        "dependencies": [[], ["upstream"]],
    }
    services.task_update(task=Task.objects.get(pk=task.pk), data={"name": "report"}, actor=operator)  # no change
    assert TaskAudit.objects.filter(task_id=task.pk, action="changed").count() == 1


def test_refused_actions_record_nothing() -> None:
    task = create("nightly")
    with pytest.raises(Exception, match="already has a run waiting"):
        services.task_run_now(task=task)
    assert trail(task) == [("created", None)]


def test_deleted_task_keeps_its_history(operator: Any) -> None:
    task = create("short-lived")
    pk = task.pk
    services.task_delete(task=task, actor=operator)
    assert not Task.objects.filter(pk=pk).exists()
    assert [(e.action, e.task_name) for e in TaskAudit.objects.filter(task_id=pk)] == [
        ("deleted", "short-lived"),
        ("created", "short-lived"),
    ]


def test_task_page_shows_the_trail_from_admin_actions(client_op: Client) -> None:
    task = create("nightly")
    client_op.post(task_url("do", task.pk, "pause"))
    client_op.post(task_url("do", task.pk, "cancel"))
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELLED
    page = client_op.get(task_url("change", task.pk)).content.decode()
    history = page[page.index('id="th-audit"') :]
    assert history.count('class="th-audit-row"') == 3
    assert "<td>operator</td><td>cancelled</td>" in history and "<td>operator</td><td>paused</td>" in history
    assert "cancelled from the admin by operator" in history


def test_admin_form_edit_is_audited_with_the_user(client_op: Client) -> None:
    response = client_op.post(task_url("add"), task_form(task_type="SCHEDULED", cron_expr="0 5 * * *"))
    assert response.status_code == 302
    task = Task.objects.get(name="from the form")
    assert trail(task) == [("created", "operator")]
    assert client_op.post(task_url("do", task.pk, "pause")).status_code == 302
    assert trail(task)[-1] == ("paused", "operator")


def test_audit_entries_are_read_only_in_the_admin(client_op: Client) -> None:
    task = create("nightly")
    entry = TaskAudit.objects.get(task_id=task.pk)
    assert client_op.get("/admin/scheduling/taskaudit/").status_code == 200
    assert client_op.get("/admin/scheduling/taskaudit/add/").status_code == 403
    client_op.post(f"/admin/scheduling/taskaudit/{entry.pk}/delete/", {"post": "yes"})
    assert TaskAudit.objects.filter(pk=entry.pk).exists()
