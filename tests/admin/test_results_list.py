"""The attempts list in the admin: a cost that does not grow with the table."""

from __future__ import annotations

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling.models import AttemptStatus, TaskResult
from tests.admin.conftest import create

URL = reverse("admin:scheduling_taskresult_changelist")


def add_attempts(task, count: int) -> None:
    TaskResult.objects.bulk_create(
        TaskResult(task=task, attempt=n + 2, status=AttemptStatus.DONE, priority=task.priority) for n in range(count)
    )


def test_no_per_row_queries(client_op: Client) -> None:
    """Its time at 1,000,000 attempts is measured by bench/scale.py."""
    task = create("busy")
    add_attempts(task, 3)
    with CaptureQueriesContext(connection) as few:
        assert client_op.get(URL).status_code == 200

    add_attempts(task, 200)
    with CaptureQueriesContext(connection) as many:
        assert client_op.get(URL).status_code == 200
    assert len(many) == len(few)
