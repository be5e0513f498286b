"""The task list's "duplicate selected tasks" action: one services.task_create_many call, all or none."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from scheduling.models import RetryPolicy, Task, TaskAudit, TaskResult
from tests.admin.conftest import create

pytestmark = pytest.mark.django_db


def duplicate(client: Client, tasks: list[Task]) -> list[str]:
    response = client.post(
        reverse("admin:scheduling_task_changelist"),
        {"action": "duplicate_selected", "_selected_action": [str(t.pk) for t in tasks]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_duplicates_each_selected_task_with_its_fields(client_op: Client, operator: Any) -> None:
    upstream = create("upstream")
    policy = RetryPolicy.objects.create(name="shared three", max_retries=3)
    nightly = create(
        "nightly",
        task_type="SCHEDULED",
        cron_expr="0 2 * * *",
        priority="HIGH",
        tags=["TEST_RECORD", "team"],
        dependencies=[upstream.pk],
        retry_policy={"id": policy.pk},
        metadata={"k": 1},
    )
    now = create("now")
    assert duplicate(client_op, [nightly, now]) == ["Duplicated: nightly (copy), now (copy)"]
    copy = Task.objects.get(name="nightly (copy)")
    assert (copy.task_type, copy.cron_expr, copy.priority, copy.metadata) == ("SCHEDULED", "0 2 * * *", 1, {"k": 1})
    assert sorted(copy.tags.values_list("name", flat=True)) == ["TEST_RECORD", "team"]
    assert list(copy.dependencies.all()) == [upstream] and copy.retry_policy == policy
    assert copy.owner == operator and copy.next_fire_at is not None
    assert TaskResult.objects.get(task__name="now (copy)").status == "PENDING"
    assert TaskAudit.objects.filter(task_id=copy.pk, action="created", actor=operator).count() == 1


def test_over_the_bulk_limit_nothing_is_duplicated(client_op: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = [create("a"), create("b")]
    monkeypatch.setitem(settings.TASKHUB["security"], "max_bulk", 1)
    (message,) = duplicate(client_op, tasks)
    assert (
        message.startswith("Nothing was duplicated: non_field_errors: at most 1 tasks")
        and "security.max_bulk" in message
    )
    assert Task.objects.count() == 2


def test_a_copy_that_breaks_a_rule_stops_every_copy(client_op: Client) -> None:
    long_name = create("x" * 200)  # its copy's name is cut to fit, so it is not the one refused
    refused = create("cron", task_type="SCHEDULED", cron_expr="0 0 * * *")
    Task.objects.filter(pk=refused.pk).update(cron_expr="61 * * * *")  # a stored cron that no longer validates
    found = duplicate(client_op, [long_name, refused])
    assert found[-1] == "Nothing was duplicated."
    assert found[0].startswith("Not duplicated: cron: cron_expr: ")
    assert Task.objects.count() == 2
