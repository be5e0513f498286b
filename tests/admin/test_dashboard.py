"""The dashboard: what it shows, who may see it, and that its cost does not grow with the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import dashboard
from scheduling.engine import workers
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus, Worker, status_in
from tests.admin.conftest import create, task_url

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def attempt(task: Task, status: str, finished_ago: timedelta | None, **fields: Any) -> TaskResult:
    values: dict[str, Any] = {"task": task, "status": status, "worker": "w1@box"}
    if finished_ago is not None:
        values.update(finished_at=NOW - finished_ago, started_at=NOW - finished_ago - timedelta(seconds=5), duration=5)
    values.update(fields)
    return TaskResult.objects.create(**values)


@pytest.fixture
def busy(db: None) -> dict[str, Task]:
    with time_machine.travel(NOW, tick=False):
        ok = create("ok task")
        slow = create("slow task")
        bad = create("bad task")
        cron = create("cron task", task_type="SCHEDULED", cron_expr="0 13 * * *", timezone="UTC")
        TaskResult.objects.update(status=AttemptStatus.CANCELLED)  # the creation attempts are not the point here
        attempt(ok, AttemptStatus.DONE, timedelta(minutes=10))
        attempt(ok, AttemptStatus.DONE, timedelta(hours=2, minutes=10))
        attempt(slow, AttemptStatus.DONE, timedelta(hours=2, minutes=20), duration=900)
        attempt(bad, AttemptStatus.FAILED, timedelta(minutes=5), error_message="jira 401 <script>")
        attempt(bad, AttemptStatus.TIMEOUT, timedelta(hours=30))  # older than the window
        attempt(ok, AttemptStatus.RUNNING, None, started_at=NOW, worker="box:4242", worker_node="w2@box")
        attempt(slow, AttemptStatus.QUEUED, None, worker="")
        attempt(bad, AttemptStatus.PENDING, None, available_at=NOW - timedelta(seconds=1), worker="")
        attempt(bad, AttemptStatus.RETRY, None, available_at=NOW + timedelta(minutes=5), worker="")
        Task.objects.filter(pk=ok.pk).update(status=TaskStatus.RUNNING)
        Task.objects.filter(pk=bad.pk).update(status=TaskStatus.FAILED)
        beat = {"host": "box", "pid": 1, "pool": "prefork", "processes": [2, 3], "queues": ["celery"], "interval": 10}
        workers.register(workers.Report(name="w2@box", concurrency=2, **beat), now=NOW - timedelta(seconds=5))
        workers.register(workers.Report(name="w1@box", concurrency=4, **beat), now=NOW - timedelta(minutes=20))
        workers.register(workers.Report(name="gone@box", concurrency=1, **beat), now=NOW - timedelta(hours=25))
    return {"ok": ok, "slow": slow, "bad": bad, "cron": cron}


@time_machine.travel(NOW, tick=False)
def test_selectors_count_statuses_load_throughput_and_failures(busy: dict[str, Task]) -> None:
    counts = dashboard.status_counts()
    assert (counts["RUNNING"], counts["FAILED"], counts["DONE"]) == (1, 1, 0)
    assert sum(counts.values()) == 4
    load = dashboard.attempt_counts()
    assert (load["in_flight"], load["running"], load["queued"], load["waiting"], load["due"]) == (2, 1, 1, 2, 1)
    assert load["concurrency"] == 5
    buckets = dashboard.attempts_per_hour()
    assert len(buckets) == 24 and buckets[-1].hour == datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert (buckets[-1].total, buckets[-1].failed) == (2, 1)  # 12:20 DONE and 12:25 FAILED
    assert (buckets[-3].total, buckets[-3].failed) == (2, 0)  # 10:20 and 10:10
    assert sum(b.total for b in buckets) == 4  # the 30-hour-old timeout is outside
    slowest = dashboard.slowest_tasks()
    assert (slowest[0]["task__name"], slowest[0]["longest"]) == ("slow task", 900)
    assert sorted(s["task__name"] for s in slowest[1:]) == ["bad task", "ok task"]  # one line per task
    assert [r.error_message for r in dashboard.recent_failures()] == ["jira 401 <script>", ""]
    assert [t.name for t in dashboard.next_fires()] == ["cron task"]
    # Workers from their heartbeats (not pool pids): online first; one silent for over a day is left out.
    listed = [(w.name, w.online, w.running, w.concurrency) for w in dashboard.recent_workers()]
    assert listed == [("w2@box", True, 1, 2), ("w1@box", False, 0, 4)]


@time_machine.travel(NOW, tick=False)
def test_dashboard_page_shows_it_all_with_links(client_op: Client, busy: dict[str, Task]) -> None:
    response = client_op.get(task_url("dashboard"))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<strong class="th-inflight"><span data-th-count="attempts.in_flight">2</span> / 5</strong>' in page
    assert (
        '<strong class="th-queue" data-th-count="attempts.waiting">2</strong> waiting attempts '
        '(<span data-th-count="attempts.due">1</span> due now)'
    ) in page
    assert "4 finished, 1 failed (25.0% failure rate)" in page
    assert page.count('class="th-bar"') == 24
    assert "jira 401 &lt;script&gt;" in page and "jira 401 <script>" not in page
    assert task_url("change", busy["bad"].pk) in page and task_url("change", busy["cron"].pk) in page
    assert "2026-11-29 13:00" in page  # the next fire
    assert 'data-worker="w2@box" data-online="true"' in page and 'data-worker="w1@box" data-online="false"' in page
    assert "gone@box" not in page and "box:4242" not in page
    assert ">5 s ago</td>" in page and ">20\xa0minutes ago</td>" in page  # w2's and w1's last heartbeats
    w2 = Worker.objects.get(name="w2@box")
    assert reverse("admin:scheduling_worker_change", args=[w2.pk]) in page
    assert '?worker_node=w2%40box&amp;status__exact=RUNNING">1</a> / 2' in page  # running now / concurrency
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


def test_admin_index_links_to_the_dashboard(client_op: Client, client_viewer: Client) -> None:
    for client in (client_op, client_viewer):
        page = client.get(reverse("admin:index")).content.decode()
        assert f'href="{task_url("dashboard")}"' in page
        assert client.get(task_url("dashboard")).status_code == 200


def test_dashboard_needs_the_view_permission(db: None) -> None:
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user("plain", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(task_url("dashboard")).status_code == 403
    assert task_url("dashboard") not in client.get(reverse("admin:index")).content.decode()


def test_empty_dashboard(client_op: Client) -> None:
    page = client_op.get(task_url("dashboard")).content.decode()
    assert "0 finished, 0 failed (0.0% failure rate)" in page
    assert "No failures." in page and "Nothing scheduled." in page
    assert "No worker has sent a heartbeat in the last 24 hours" in page


@time_machine.travel(NOW, tick=False)
def test_dashboard_workers_need_the_view_worker_permission(client_viewer: Client, busy: dict[str, Task]) -> None:
    page = client_viewer.get(task_url("dashboard")).content.decode()
    assert "Seeing workers needs the permission scheduling.view_worker." in page and "w2@box" not in page


def bulk(tasks: int, results_per_task: int, now: datetime = NOW) -> None:
    """Add tasks and finished attempts quickly (bulk_create, no services), around the controlled clock's now."""
    new = [
        Task(
            name=f"bulk {i}",
            handler="TEST_RECORD",
            status=[TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.PENDING][i % 3],
            task_type="SCHEDULED" if i % 2 else "IMMEDIATE",
            cron_expr="*/5 * * * *" if i % 2 else "",
            next_fire_at=now + timedelta(minutes=i % 300) if i % 2 else None,
        )
        for i in range(tasks)
    ]
    Task.objects.bulk_create(new, batch_size=2000)
    rows = []
    for i, task in enumerate(new):
        for n in range(results_per_task):
            finished = now - timedelta(minutes=(i * results_per_task + n) % (48 * 60))
            failed = (i + n) % 17 == 0
            rows.append(
                TaskResult(
                    task=task,
                    attempt=n + 1,
                    status=AttemptStatus.FAILED if failed else AttemptStatus.DONE,
                    started_at=finished - timedelta(seconds=3),
                    finished_at=finished,
                    duration=3 + (i % 50),
                    worker=f"w{i % 4}@box",
                    error_message="boom" if failed else "",
                )
            )
    TaskResult.objects.bulk_create(rows, batch_size=5000)


def test_dashboard_cost_does_not_grow_with_the_tables(client_op: Client, busy: dict[str, Task]) -> None:
    """A fixed number of queries, none per row (its time at 100,000 tasks is measured by bench/scale.py).

    Every request reads the controlled clock. Two lookups run only when there is something to look up: the
    "slowest tasks" card reads its tasks' names when the last 24 hours hold finished attempts, and the workers
    panel counts running attempts when a worker was heard from in that time. A quiet day (three days on, nothing
    in either window) costs exactly those two queries less: both counts are asserted.
    """

    def measure(at: datetime) -> int:
        with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
            assert client_op.get(task_url("dashboard")).status_code == 200
        return len(queries)

    quiet = measure(NOW + timedelta(days=3))  # every attempt of the fixture is outside the 24-hour window
    few = measure(NOW)
    assert few == quiet + 2
    bulk(tasks=2_000, results_per_task=10)
    assert measure(NOW) == few
    assert measure(NOW + timedelta(days=3)) == quiet


@pytest.mark.skipif(connection.vendor != "sqlite", reason="checks SQLite's plan")
def test_live_attempt_counts_use_the_partial_indexes_on_sqlite(db: None) -> None:
    from scheduling.models import IN_FLIGHT, WAITING

    plans = {}
    for name, statuses in (("result_inflight_idx", IN_FLIGHT), ("result_pick_idx", WAITING)):
        query = TaskResult.objects.filter(status_in(statuses)).values("pk").query
        sql, params = query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plans[name] = " ".join(str(row[-1]) for row in cursor.fetchall())
    for name, plan in plans.items():
        assert name in plan, plan  # not "SCAN scheduling_taskresult": bound IN (?, ?) values would scan everything
