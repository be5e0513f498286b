"""Worker heartbeats: the rows workers keep fresh, online and offline, and real workers reporting them."""

from __future__ import annotations

import signal
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from scheduling.engine import clock, workers
from scheduling.models import AttemptStatus, Task, TaskResult, Worker
from tests.conftest import wait_until

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def report(name: str = "w1@box", interval: float = 10.0, **fields: Any) -> workers.Report:
    values: dict[str, Any] = {
        "name": name,
        "host": "box",
        "pid": 100,
        "pool": "prefork",
        "concurrency": 2,
        "processes": [102, 101],
        "queues": ["celery"],
        "interval": interval,
    }
    return workers.Report(**{**values, **fields})


def state(name: str, at: datetime) -> bool:
    return Worker.objects.get(name=name).is_online(at)


@pytest.mark.django_db
def test_a_worker_is_online_until_two_intervals_pass_without_a_heartbeat() -> None:
    workers.register(report(interval=10), now=NOW)
    row = Worker.objects.get(name="w1@box")
    assert (row.host, row.pid, row.pool, row.concurrency) == ("box", 100, "prefork", 2)
    assert (row.processes, row.queues, row.started_at) == ([101, 102], ["celery"], NOW)
    assert state("w1@box", NOW + timedelta(seconds=19.999))
    assert not state("w1@box", NOW + timedelta(seconds=20))
    # A heartbeat 15 s later moves the limit to 35 s; the pool's processes and queues are refreshed.
    workers.heartbeat(
        report(interval=10, processes=[103, 101], queues=["celery", "jira"]), now=NOW + timedelta(seconds=15)
    )
    row.refresh_from_db()
    assert (row.processes, row.queues, row.started_at) == ([101, 103], ["celery", "jira"], NOW)
    assert state("w1@box", NOW + timedelta(seconds=34.9)) and not state("w1@box", NOW + timedelta(seconds=35))
    assert workers.counts(NOW + timedelta(seconds=30)) == {"online": 1, "offline": 0}
    assert workers.counts(NOW + timedelta(seconds=36)) == {"online": 0, "offline": 1}


@pytest.mark.django_db
def test_a_clean_shutdown_is_offline_at_once_and_a_restart_takes_the_row_back() -> None:
    workers.register(report(), now=NOW)
    workers.stopped("w1@box", now=NOW + timedelta(seconds=3))
    row = Worker.objects.get(name="w1@box")
    assert row.stopped_at == NOW + timedelta(seconds=3) and not row.is_online(NOW + timedelta(seconds=3))
    workers.register(report(pid=200), now=NOW + timedelta(minutes=1))
    row.refresh_from_db()
    assert (row.pid, row.stopped_at, row.started_at) == (200, None, NOW + timedelta(minutes=1))
    assert row.is_online(NOW + timedelta(minutes=1, seconds=5))
    assert Worker.objects.count() == 1


@pytest.mark.django_db
def test_workers_silent_for_a_week_are_forgotten_when_a_worker_starts() -> None:
    workers.register(report("old@box"), now=NOW - timedelta(days=8))
    workers.register(report("recent@box"), now=NOW - timedelta(days=6))
    workers.register(report("new@box"), now=NOW)
    assert sorted(Worker.objects.values_list("name", flat=True)) == ["new@box", "recent@box"]


@pytest.mark.django_db
def test_listing_counts_the_attempts_running_on_each_worker_online_ones_first(make_task: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        workers.register(report("b@box"), now=NOW)
        workers.register(report("a@box"), now=NOW - timedelta(minutes=5))  # offline by now
        task = make_task("t")
        TaskResult.objects.filter(task=task).update(status=AttemptStatus.RUNNING, worker_node="b@box")
        TaskResult.objects.create(task=task, attempt=2, status=AttemptStatus.DONE, worker_node="b@box")
        listed = workers.listing(now=NOW)
    assert [(w.name, w.online, w.running) for w in listed] == [("b@box", True, 1), ("a@box", False, 0)]


# --- real workers ---------------------------------------------------------------------------------


def api_workers(client: APIClient) -> dict[str, dict[str, Any]]:
    response = client.get("/workers")
    assert response.status_code == 200, response.content
    return {row["name"]: row for row in response.json()["results"]}


@pytest.fixture
def api(transactional_db: None) -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("ops", "ops@example.com", "ops-pw-1"))
    return client


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_turns_online_and_offline_within_two_intervals_of_a_sigkill(
    start_worker: Any, make_task: Any, scheduler_conf: Any, api: APIClient
) -> None:
    interval = 0.5
    env = scheduler_conf(worker_heartbeat=interval)
    process = start_worker("hb", concurrency=2, env=env)
    name = f"hb@{socket.gethostname()}"
    row = wait_until(lambda: api_workers(api).get(name), timeout=10)
    assert (row["state"], row["online"], row["host"], row["pid"]) == (
        "online",
        True,
        socket.gethostname(),
        process.popen.pid,
    )
    assert (row["pool"], row["concurrency"], row["queues"], row["running"]) == ("prefork", 2, ["celery"], 0)
    assert row["processes"] == sorted(process.child_pids()) and len(row["processes"]) == 2
    assert row["heartbeat_interval"] == interval

    # Both pool processes busy: the main process keeps beating, and each attempt names its worker.
    sleepers = [
        make_task(f"s{i}", tags=["TEST_SLEEP"], parameters={"label": f"s{i}", "seconds": 2.5}) for i in range(2)
    ]
    busy = wait_until(lambda: (r := api_workers(api)[name])["running"] == 2 and r, timeout=20)
    seen = busy["last_seen"]
    later = wait_until(lambda: (r := api_workers(api)[name])["last_seen"] > seen and r, timeout=3 * interval)
    assert later["online"] and later["running"] == 2
    attempt = api.get(f"/tasks/{sleepers[0].pk}/results").json()["results"][0]
    assert attempt["worker_node"] == name and attempt["status"] == "RUNNING"
    assert api.get(f"/workers/{name}").json()["name"] == name

    last_seen = Worker.objects.get(name=name).last_seen
    killed_at = clock.now()
    process.popen.send_signal(signal.SIGKILL)  # the main process only, as when it is OOM-killed
    process.popen.wait()
    assert last_seen <= killed_at

    # On a controlled clock: still online just before two intervals after its last heartbeat, offline at two.
    with time_machine.travel(last_seen + timedelta(seconds=2 * interval - 0.01), tick=False):
        assert api_workers(api)[name]["state"] == "online"
    with time_machine.travel(killed_at + timedelta(seconds=2 * interval), tick=False):
        assert api_workers(api)[name]["state"] == "offline"
        assert api.get("/workers?online=true").json()["count"] == 0

    # And in real time: offline within two intervals of the kill (plus the polling step).
    wait_until(lambda: api_workers(api)[name]["state"] == "offline", timeout=2 * interval + 0.3, interval=0.02)
    assert Worker.objects.get(name=name).stopped_at is None  # killed, not shut down
    assert Task.objects.filter(pk__in=[s.pk for s in sleepers]).count() == 2


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_shut_down_with_sigterm_reads_stopped_at_once(
    start_worker: Any, scheduler_conf: Any, api: APIClient
) -> None:
    env = scheduler_conf(worker_heartbeat=30)  # far longer than the test: only the shutdown can end it
    process = start_worker("term", concurrency=1, env=env)
    name = f"term@{socket.gethostname()}"
    wait_until(lambda: api_workers(api).get(name, {}).get("online"), timeout=10)
    started = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    process.popen.wait(timeout=30)
    row = api_workers(api)[name]
    assert (row["state"], row["online"]) == ("stopped", False) and row["stopped_at"] is not None
    assert time.monotonic() - started < 30
