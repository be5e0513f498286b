"""The admin's shape: TaskHub first, beat's tables as superuser-only internals, a form fitted to the task,
and a confirmation before cancelling running work."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling.admin.views import schema_skeleton
from scheduling.handlers import registry
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from taskhub.admin_site import INTERNALS_NAME
from tests.admin.conftest import create, task_url

pytestmark = pytest.mark.django_db


def sections(client: Client) -> list[str]:
    page = client.get(reverse("admin:index")).content.decode()
    return re.findall(r'<caption>\s*<a href="[^"]*" class="section"[^>]*>([^<]+)</a>', page)


def test_taskhub_sections_come_first_and_beat_is_labelled_as_internals(client_op: Client) -> None:
    names = sections(client_op)
    assert names[0] == "Scheduling"
    assert names[-1] == INTERNALS_NAME == "Scheduler internals (django-celery-beat)"
    assert names.index("Reporting") < names.index("Authentication and Authorization")


def test_beat_tables_are_for_superusers_only(db: None) -> None:
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["django_celery_beat", "scheduling"])
    )
    client = Client()
    client.force_login(staff)
    assert INTERNALS_NAME not in sections(client) and "Scheduling" in sections(client)
    assert "Periodic tasks" not in client.get(reverse("admin:index")).content.decode()
    for url in (
        reverse("admin:django_celery_beat_periodictask_changelist"),
        reverse("admin:django_celery_beat_periodictask_add"),
        reverse("admin:django_celery_beat_crontabschedule_changelist"),
    ):
        assert client.get(url).status_code == 403, url


def test_add_form_has_no_state_section_but_the_change_form_does(client_op: Client) -> None:
    add = client_op.get(task_url("add")).content.decode()
    assert "<h2" in add and not re.search(r"<h2[^>]*>\s*State\s*</h2>", add)
    assert "field-cron_description" not in add and "field-next_fire_at" not in add and "field-status " not in add
    assert "task results (table)" not in add.lower()  # nothing has run yet
    task = create("saved")
    change = client_op.get(task_url("change", task.pk)).content.decode()
    assert re.search(r"<h2[^>]*>\s*State\s*</h2>", change) and "field-next_fire_at" in change


def test_parameters_skeleton_comes_from_the_handlers_schema(client_op: Client) -> None:
    http = registry.get("HTTP_REQUEST").schema
    skeleton = schema_skeleton(http)
    assert skeleton["url"] == "" and skeleton["method"] == "GET"
    assert set(http["required"]) <= set(skeleton)
    for name in set(skeleton) - set(http["required"]):  # optional entries only where the schema has a default
        assert "default" in http["properties"][name]
    assert schema_skeleton(
        {
            "type": "object",
            "required": ["n", "on", "keys"],
            "properties": {
                "n": {"type": "integer", "minimum": 1},
                "on": {"type": "boolean"},
                "keys": {"type": "array"},
            },
        }
    ) == {"n": 1, "on": False, "keys": []}
    page = client_op.get(task_url("add")).content.decode()
    specs = json.loads(re.search(r'<script id="th-handlers" type="application/json">(.*?)</script>', page, re.S)[1])
    assert specs["HTTP_REQUEST"]["skeleton"] == skeleton


def running(name: str) -> tuple[Task, TaskResult]:
    task = create(name)
    result = TaskResult.objects.get(task=task)
    TaskResult.objects.filter(pk=result.pk).update(
        status=AttemptStatus.RUNNING, started_at=timezone.now(), worker="w@1"
    )
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING)
    return Task.objects.get(pk=task.pk), result


def test_cancelling_a_running_task_asks_first(client_op: Client) -> None:
    task, result = running("export-jira")
    response = client_op.post(task_url("do", task.pk, "cancel"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Are you sure?" in page and "export-jira</strong>, attempt 1" in page and "on w@1" in page
    assert '<input type="hidden" name="confirm" value="yes">' in page
    assert TaskResult.objects.get(pk=result.pk).status == AttemptStatus.RUNNING  # nothing done yet
    response = client_op.post(task_url("do", task.pk, "cancel"), {"confirm": "yes"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Cancelled 1 attempt of 'export-jira'."]
    assert TaskResult.objects.get(pk=result.pk).status == AttemptStatus.CANCELLED


def test_bulk_cancel_of_running_tasks_asks_first(client_op: Client) -> None:
    task, result = running("export-jira")
    waiting = create("waiting")
    form: dict[str, Any] = {"action": "cancel", "_selected_action": [str(task.pk), str(waiting.pk)]}
    response = client_op.post(task_url("changelist"), form)
    assert response.status_code == 200 and "Are you sure?" in response.content.decode()
    assert TaskResult.objects.get(pk=result.pk).status == AttemptStatus.RUNNING
    assert TaskResult.objects.get(task=waiting).status == AttemptStatus.PENDING
    client_op.post(task_url("changelist"), {**form, "post": "yes"})
    assert TaskResult.objects.get(pk=result.pk).status == AttemptStatus.CANCELLED
    assert TaskResult.objects.get(task=waiting).status == AttemptStatus.CANCELLED
