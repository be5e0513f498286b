"""Action buttons on the task page: each calls the service layer and says what happened; view-only users get none."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from tests.admin.conftest import create, task_url

pytestmark = pytest.mark.django_db


def post(client: Client, task: Task, action: str) -> list[str]:
    response = client.post(task_url("do", task.pk, action), follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == task_url("change", task.pk)
    return [str(m) for m in response.context["messages"]]


def buttons(client: Client, task: Task) -> list[str]:
    page = client.get(task_url("change", task.pk)).content.decode()
    return [action for action in ("run", "cancel", "retry", "pause", "resume") if f'data-action="{action}"' in page]


def finish(task: Task, status: str) -> None:
    TaskResult.objects.filter(task=task).update(status=status, finished_at=timezone.now())
    Task.objects.filter(pk=task.pk).update(status=status)


def test_buttons_follow_the_task_state(client_op: Client) -> None:
    task = create("nightly")
    assert buttons(client_op, task) == ["run", "cancel", "pause"]
    finish(task, AttemptStatus.FAILED)
    assert buttons(client_op, task) == ["run", "retry", "pause"]
    Task.objects.filter(pk=task.pk).update(enabled=False)
    assert buttons(client_op, task) == ["run", "retry", "resume"]


def test_cancel_button_cancels_the_waiting_attempt(client_op: Client) -> None:
    task = create("nightly")
    assert post(client_op, task, "cancel") == ["Cancelled 1 attempt of 'nightly'."]
    assert TaskResult.objects.get(task=task).status == AttemptStatus.CANCELLED
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELLED


def test_run_now_is_refused_with_the_reason_while_a_run_waits(client_op: Client) -> None:
    task = create("nightly")
    messages = post(client_op, task, "run")
    assert messages == ["Run now refused: 'nightly' already has a run waiting to start"]
    assert TaskResult.objects.filter(task=task).count() == 1


def test_run_now_starts_a_new_run(client_op: Client) -> None:
    task = create("nightly")
    finish(task, AttemptStatus.DONE)
    assert post(client_op, task, "run") == ["Started a new run of 'nightly'."]
    assert TaskResult.objects.filter(task=task, status=AttemptStatus.PENDING).count() == 1


def test_retry_only_after_a_failure(client_op: Client) -> None:
    task = create("nightly")
    refused = post(client_op, task, "retry")
    assert refused == ["Retry refused: only a FAILED, TIMEOUT or CANCELLED task can be retried; 'nightly' is PENDING"]
    finish(task, AttemptStatus.FAILED)
    assert post(client_op, task, "retry") == ["Retrying 'nightly' from attempt 1."]
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING


def test_pause_and_resume(client_op: Client) -> None:
    task = create("cron", task_type="SCHEDULED", cron_expr="0 3 * * *", timezone="Europe/Paris")
    assert post(client_op, task, "pause") == ["Paused 'cron': it will not fire or start."]
    assert Task.objects.get(pk=task.pk).next_fire_at is None
    assert post(client_op, task, "pause") == ["Pause refused: 'cron' is already paused"]
    assert post(client_op, task, "resume") == ["Resumed 'cron'."]
    assert Task.objects.get(pk=task.pk).next_fire_at is not None


def test_view_only_user_sees_no_buttons_and_cannot_post_them(client_viewer: Client) -> None:
    task = create("nightly")
    page = client_viewer.get(task_url("change", task.pk))
    assert page.status_code == 200
    assert 'class="th-action"' not in page.content.decode()
    for action in ("run", "cancel", "retry", "pause", "resume"):
        assert client_viewer.post(task_url("do", task.pk, action)).status_code == 403
    assert Task.objects.get(pk=task.pk).enabled is True
    assert TaskResult.objects.get(task=task).status == AttemptStatus.PENDING
    assert "data-action" not in client_viewer.get(task_url("live", task.pk)).json()["actions_html"]


def test_actions_need_post_and_a_known_name(client_op: Client) -> None:
    task = create("nightly")
    assert client_op.get(task_url("do", task.pk, "cancel")).status_code == 405
    assert client_op.post(task_url("do", task.pk, "explode")).status_code == 404
    assert TaskResult.objects.get(task=task).status == AttemptStatus.PENDING


def test_actions_are_csrf_protected(operator: object) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    task = create("nightly")
    assert client.post(task_url("do", task.pk, "pause")).status_code == 403
    assert Task.objects.get(pk=task.pk).enabled is True
