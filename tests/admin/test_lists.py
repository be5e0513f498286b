"""The task and result lists show state at a glance: badges, last run, humanised durations, filters; no N+1."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling.admin.lists import humanise_duration
from scheduling.models import AttemptStatus, RetryPolicy, Task, TaskResult
from tests.admin.conftest import create, task_url

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Europe's clocks go forward
RESULTS = reverse("admin:scheduling_taskresult_changelist")


def attempt(task: Task, number: int, status: str = AttemptStatus.DONE, **fields: Any) -> TaskResult:
    values: dict[str, Any] = {
        "task": task,
        "attempt": number,
        "status": status,
        "started_at": NOW - timedelta(minutes=5),
        "finished_at": NOW - timedelta(minutes=4),
        "duration": 0.027785,
        "worker": "celery@box-1",
        **fields,
    }
    return TaskResult.objects.create(**values)


def rows(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.027785, "28 ms"),
        (0.0004, "0 ms"),
        (0.9996, "1.0 s"),
        (4.24, "4.2 s"),
        (12.4, "12 s"),
        (59.6, "1 min"),
        (65, "1 min 5 s"),
        (3725, "1 h 2 min"),
        (7200, "2 h"),
        (None, ""),
    ],
)
def test_durations_read_as_a_person_says_them(seconds: float | None, shown: str) -> None:
    assert humanise_duration(seconds) == shown


@time_machine.travel(NOW, tick=False)
def test_task_list_shows_status_tags_schedule_last_run_and_attempts(client_op: Client) -> None:
    policy = RetryPolicy.objects.create(name="three", max_retries=3)
    nightly = create(
        "export-jira",
        task_type="SCHEDULED",
        cron_expr="0 3 * * *",
        timezone="Europe/Berlin",
        tags=["TEST_RECORD", "jira"],
        retry_policy=policy.pk,
    )
    attempt(nightly, 1, AttemptStatus.FAILED, duration=65.2)
    Task.objects.filter(pk=nightly.pk).update(attempt=2, status="RETRY")
    page = client_op.get(task_url("changelist")).content.decode()
    row = page[page.index("export-jira</a>") :]
    row = row[: row.index("</tr>")]
    assert '<span class="th-badge" data-status="RETRY">RETRY</span>' in row
    assert '<span class="th-tag">TEST_RECORD</span> <span class="th-tag">jira</span>' in row
    assert "<code>0 3 * * *</code> <small>Europe/Berlin</small>" in row
    assert "next: 2026-03-29 03:00 CEST" in row  # 03:00 on the night 02:00 does not exist
    assert '<span class="th-badge" data-status="FAILED">FAILED</span>' in row and "1 min 5 s" in row
    assert "5\xa0minutes ago" in row
    assert "2 of 4" in row  # attempt 2 of 1 + 3 retries


def test_task_list_puts_the_most_recently_updated_first(client_op: Client) -> None:
    with time_machine.travel(NOW, tick=False):
        first = create("first")
        create("second")
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        first.save(update_fields=["updated_at"])  # touched last
    assert [t.name for t in rows(client_op.get(task_url("changelist")))] == ["first", "second"]


def test_task_list_queries_do_not_grow_with_tasks_tags_or_attempts(client_op: Client) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client_op.get(task_url("changelist")).status_code == 200
        return len(queries)

    attempt(create("one", tags=["TEST_RECORD", "a"]), 1)
    few = count()
    policy = RetryPolicy.objects.create(name="p", max_retries=1)
    for index in range(30):
        task = create(f"t{index}", tags=["TEST_RECORD", f"tag{index}"], retry_policy=policy.pk)
        attempt(task, 1)
        attempt(task, 2, AttemptStatus.RUNNING, duration=None, finished_at=None)
    assert count() == few


@time_machine.travel(NOW, tick=False)
def test_result_list_shows_task_attempt_status_duration_error_and_worker(client_op: Client) -> None:
    task = create("export-jira")
    attempt(task, 3, AttemptStatus.FAILED, error_message="JiraError: 503\n  upstream   down " + "x" * 300)
    page = client_op.get(RESULTS).content.decode()
    row = page[page.index("export-jira</a>") :]
    row = row[: row.index("</tr>")]
    assert '<td class="field-attempt">3</td>' in row
    assert '<span class="th-badge" data-status="FAILED">FAILED</span>' in row
    assert "28 ms" in row and "0.027785" not in row
    excerpt = re.search(r'<span class="th-error-cell"[^>]*>([^<]*)</span>', row)
    assert excerpt and excerpt.group(1).startswith("JiraError: 503 upstream down xxx") and len(excerpt.group(1)) == 120
    assert "celery@box-1" in row


@time_machine.travel(NOW, tick=False)
def test_result_list_filters_by_task_worker_status_and_time(client_op: Client) -> None:
    export, report = create("export-jira"), create("weekly report")
    TaskResult.objects.all().delete()  # the waiting first attempts creating them made
    attempt(export, 1, AttemptStatus.FAILED, worker="celery@box-1")
    attempt(export, 2, AttemptStatus.DONE, worker="celery@box-2", finished_at=NOW - timedelta(days=2))
    attempt(report, 1, AttemptStatus.DONE, worker="celery@box-2")

    def shown(query: str) -> list[tuple[str, int]]:
        response = client_op.get(f"{RESULTS}?{query}")
        assert response.status_code == 200, query
        return sorted((r.task.name, r.attempt) for r in rows(response))

    assert shown("task_name=export") == [("export-jira", 1), ("export-jira", 2)]
    assert shown(f"task__id__exact={report.pk}") == [("weekly report", 1)]
    assert shown("worker=celery@box-2") == [("export-jira", 2), ("weekly report", 1)]
    assert shown("status__exact=FAILED") == [("export-jira", 1)]
    assert shown("finished=24h") == [("export-jira", 1), ("weekly report", 1)]
    assert shown("finished=24h&worker=celery@box-2&task_name=report") == [("weekly report", 1)]
    # The typed filter keeps the other filters when submitted again.
    page = client_op.get(f"{RESULTS}?status__exact=DONE&worker=celery@box-2").content.decode()
    assert '<input type="hidden" name="status__exact" value="DONE">' in page


def test_attempt_page_is_titled_by_task_and_attempt_and_keeps_the_traceback_indentation(client_op: Client) -> None:
    task = create("export-jira")
    trace = "Traceback (most recent call last):\n  File \"h.py\", line 3, in run\n    raise JiraError('<b>503</b>')\n"
    result = attempt(task, 3, AttemptStatus.FAILED, error_message="JiraError: 503", traceback=trace)
    response = client_op.get(reverse("admin:scheduling_taskresult_change", args=[result.pk]))
    page = response.content.decode()
    assert "<h1>export-jira, attempt 3</h1>" in page
    assert "<title>export-jira, attempt 3 |" in page
    assert str(task.pk) not in page[page.index("<h1>") : page.index("</h1>")]
    block = re.search(r'<pre class="th-traceback">(.*?)</pre>', page, re.S)
    assert block and block.group(1) == (
        "Traceback (most recent call last):\n  File &quot;h.py&quot;, line 3, in run\n"
        "    raise JiraError(&#x27;&lt;b&gt;503&lt;/b&gt;&#x27;)\n"
    )
    took = page[page.index("field-took") :]
    assert '<div class="readonly">28 ms</div>' in took[: took.index("</div>") + 6]


def test_counts_endpoint_gives_tasks_by_status_and_attempts(client_op: Client, client_viewer: Client) -> None:
    create("a")
    data = client_op.get(task_url("counts")).json()
    assert data["tasks"]["PENDING"] == 1 and data["tasks"]["DONE"] == 0
    assert data["attempts"]["waiting"] == 1 and data["attempts"]["running"] == 0
    assert client_viewer.get(task_url("counts")).status_code == 200
    for url in (task_url("changelist"), RESULTS):  # both lists start with the same counters, live.js refreshes them
        page = client_op.get(url).content.decode()
        assert '<span data-th-count="tasks.PENDING">1</span>' in page and "th-live-pause" in page


def test_counts_endpoint_needs_the_view_permission(db: None) -> None:
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user("nobody", password="x", is_staff=True)
    client = Client()
    client.force_login(nobody)
    assert client.get(task_url("counts")).status_code == 403
