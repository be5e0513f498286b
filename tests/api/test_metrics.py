"""GET /metrics: Prometheus' text format (parsed with prometheus_client's own parser), and who may read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from reporting.models import ChannelState, Report
from scheduling.engine import workers
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from taskhub import config
from taskhub.exceptions import ConfigError

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
TOKEN = "prometheus-scrape-token-0123456789"
BEAT = {"pool": "prefork", "concurrency": 2, "processes": [2, 3], "queues": ["celery"], "interval": 10}


def attempt(task: Task, status: str, ago: timedelta | None = None, **fields: Any) -> TaskResult:
    values: dict[str, Any] = {"task": task, "status": status, "attempt": 2, "created_at": NOW - timedelta(hours=3)}
    if ago is not None:
        values["finished_at"] = NOW - ago
    return TaskResult.objects.create(**{**values, **fields})


@pytest.fixture
def scene(make_task: Any) -> dict[str, Task]:
    """Attempts in every state, inside and outside the last hour; cron fires, reports and workers."""
    with time_machine.travel(NOW, tick=False):
        record = make_task("record")  # TEST_RECORD
        sleep = make_task("sleep", tags=["TEST_SLEEP"])
        cron = make_task("cron", tags=["NOOP"], task_type="SCHEDULED", cron_expr="*/15 * * * *")
        TaskResult.objects.all().delete()  # the creation attempts are not the point here
        Task.objects.filter(pk=record.pk).update(status=TaskStatus.FAILED)
        Task.objects.filter(pk=sleep.pk).update(status=TaskStatus.RUNNING)
        Task.objects.filter(pk=cron.pk).update(status=TaskStatus.PENDING)
        attempt(record, AttemptStatus.DONE, timedelta(minutes=10), duration=0.3)
        attempt(record, AttemptStatus.DONE, timedelta(minutes=20), duration=7)
        attempt(record, AttemptStatus.FAILED, timedelta(minutes=5), duration=40)
        attempt(record, AttemptStatus.DONE, timedelta(hours=2), duration=100)  # outside the hour
        attempt(sleep, AttemptStatus.TIMEOUT, timedelta(minutes=1), duration=2000)
        attempt(sleep, AttemptStatus.RUNNING, worker_node="w1@box")
        attempt(sleep, AttemptStatus.QUEUED)
        attempt(sleep, AttemptStatus.PENDING, available_at=NOW - timedelta(seconds=1))
        attempt(sleep, AttemptStatus.RETRY, available_at=NOW + timedelta(minutes=5))
        fire = {"attempt": 1}
        attempt(
            cron, AttemptStatus.DONE, timedelta(minutes=29), fire_time=NOW - timedelta(minutes=30), duration=1, **fire
        )
        attempt(cron, AttemptStatus.SKIPPED, timedelta(minutes=15), fire_time=NOW - timedelta(minutes=15), **fire)
        attempt(cron, AttemptStatus.PENDING, fire_time=NOW - timedelta(minutes=1), available_at=NOW, **fire)
        attempt(cron, AttemptStatus.DONE, timedelta(hours=2), fire_time=NOW - timedelta(hours=2), duration=1, **fire)
        Report.objects.create(
            channel="mattermost", outcome="SENT", period_end=NOW, created_at=NOW - timedelta(minutes=9)
        )
        Report.objects.create(
            channel="mattermost", outcome="FAILED", period_end=NOW, created_at=NOW - timedelta(minutes=4)
        )
        Report.objects.create(
            channel="confluence", outcome="FAILED", period_end=NOW, created_at=NOW - timedelta(hours=2)
        )
        ChannelState.objects.create(channel="mattermost", failures=1)
        workers.register(workers.Report(name="w1@box", host="box", pid=1, **BEAT), now=NOW - timedelta(seconds=5))
        workers.register(workers.Report(name="w2@box", host="box", pid=9, **BEAT), now=NOW - timedelta(minutes=5))
    return {"record": record, "sleep": sleep, "cron": cron}


def scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics and parse it: {(sample name, sorted labels): value}."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@time_machine.travel(NOW, tick=False)
def test_metrics_show_states_load_last_hour_durations_fires_reports_and_workers(client: Client, scene: Any) -> None:
    s = scrape(client)
    tasks = {status: value(s, "taskhub_tasks", status=status) for status in TaskStatus.values}
    assert (tasks["FAILED"], tasks["RUNNING"], tasks["PENDING"], sum(tasks.values())) == (1, 1, 1, 3)
    live = {status: value(s, "taskhub_attempts", status=status) for status in ("PENDING", "RETRY", "QUEUED", "RUNNING")}
    assert live == {"PENDING": 2, "RETRY": 1, "QUEUED": 1, "RUNNING": 1}
    assert (value(s, "taskhub_attempts_in_flight"), value(s, "taskhub_concurrency_cap")) == (2, 5)
    assert (value(s, "taskhub_queue_depth"), value(s, "taskhub_queue_due")) == (3, 2)
    finished = {st: value(s, "taskhub_attempts_finished_last_hour", status=st) for st in ("DONE", "FAILED", "TIMEOUT")}
    assert finished == {"DONE": 3, "FAILED": 1, "TIMEOUT": 1}  # the two-hour-old ones are outside
    assert value(s, "taskhub_attempts_finished_last_hour", status="SKIPPED") == 1

    def buckets(handler: str) -> dict[str, float]:
        name = "taskhub_attempt_duration_seconds_bucket"
        return {dict(k[1])["le"]: v for k, v in s.items() if k[0] == name and dict(k[1])["handler"] == handler}

    record = buckets("TEST_RECORD")  # 0.3, 7 and 40 s
    assert (record["0.1"], record["0.5"], record["5.0"], record["15.0"], record["60.0"], record["+Inf"]) == (
        0,
        1,
        1,
        2,
        3,
        3,
    )
    assert value(s, "taskhub_attempt_duration_seconds_gsum", handler="TEST_RECORD") == pytest.approx(47.3)
    assert value(s, "taskhub_attempt_duration_seconds_gcount", handler="TEST_RECORD") == 3
    assert (buckets("TEST_SLEEP")["1800.0"], buckets("TEST_SLEEP")["3600.0"]) == (0, 1)
    assert buckets("NOOP")["1.0"] == 1  # "le" includes the bound
    assert (value(s, "taskhub_fires_last_hour"), value(s, "taskhub_fires_skipped_last_hour")) == (3, 1)
    reports = {
        (c, o): value(s, "taskhub_reports_last_hour", channel=c, outcome=o)
        for c in ("mattermost", "confluence")
        for o in ("SENT", "FAILED")
    }
    assert reports == {
        ("mattermost", "SENT"): 1,
        ("mattermost", "FAILED"): 1,
        ("confluence", "SENT"): 0,
        ("confluence", "FAILED"): 0,
    }
    assert value(s, "taskhub_report_channel_failures", channel="mattermost") == 1
    assert (value(s, "taskhub_workers_online"), value(s, "taskhub_workers_offline")) == (1, 1)
    assert value(s, "taskhub_worker_online", worker="w1@box", host="box") == 1
    assert value(s, "taskhub_worker_online", worker="w2@box", host="box") == 0


@time_machine.travel(NOW, tick=False)
def test_a_scrape_costs_the_same_queries_whatever_the_tables_hold(client: Client, scene: dict[str, Task]) -> None:
    def measure() -> int:
        with CaptureQueriesContext(connection) as queries:
            scrape(client)
        return len(queries)

    few = measure()
    for i in range(200):
        attempt(scene["record"], AttemptStatus.DONE, timedelta(minutes=i % 90), duration=i)
        attempt(scene["sleep"], AttemptStatus.PENDING)
    assert measure() == few


# --- access ---------------------------------------------------------------------------------------


def refused(response: Any) -> bool:
    return response.status_code == 403 and b"security.metrics_allowed_hosts" in response.content


def test_loopback_may_scrape_by_default_other_addresses_may_not(client: Client) -> None:
    assert settings.TASKHUB["security"]["metrics_allowed_hosts"] == ["127.0.0.1", "::1"]
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200, address
    for address in ("10.0.0.5", "192.168.1.20", "2001:db8::1", "", "not-an-address"):
        assert refused(client.get("/metrics", REMOTE_ADDR=address)), address
    # A forwarded-for header is the client's say-so: never trusted.
    assert refused(client.get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="127.0.0.1"))
    assert client.post("/metrics").status_code == 405


def test_the_allowed_networks_come_from_the_config(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(settings.TASKHUB["security"], "metrics_allowed_hosts", ["10.0.0.0/8"])
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert refused(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))  # loopback is no longer listed
    monkeypatch.setitem(settings.TASKHUB["security"], "metrics_allowed_hosts", [])
    assert refused(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))


def test_the_metrics_token_opens_it_from_anywhere(
    client: Client, monkeypatch: pytest.MonkeyPatch, operator: Any
) -> None:
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", **remote))  # no token configured
    monkeypatch.setitem(settings.TASKHUB["security"], "metrics_token", TOKEN)
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **remote).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}", **remote).status_code == 200
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", TOKEN, f"Basic {TOKEN}"):
        assert refused(client.get("/metrics", HTTP_AUTHORIZATION=header, **remote)), header
    # An API token, even a superuser's, is not the metrics token.
    api_token = Token.objects.create(user=operator).key
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Token {api_token}", **remote))
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {api_token}", **remote))


def test_metrics_settings_are_validated_with_a_line_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^security.metrics_allowed_hosts: expected a list of IP addresses or CIDR"):
        config.parse({"security": {"metrics_allowed_hosts": ["prometheus.internal"]}}, env={})
    with pytest.raises(ConfigError, match=r"^security.metrics_allowed_hosts: expected a list"):
        config.parse({"security": {"metrics_allowed_hosts": ["10.0.0.0/33"]}}, env={})
    env = {"TASKHUB_SECURITY_METRICS_ALLOWED_HOSTS": "10.0.0.0/8, ::1"}
    assert config.parse({}, env=env)["security"]["metrics_allowed_hosts"] == ["10.0.0.0/8", "::1"]
    with pytest.raises(ConfigError) as short:
        config.parse({}, env={"TASKHUB_SECURITY_METRICS_TOKEN": "short-secret"})
    assert str(short.value) == (
        "security.metrics_token (from TASKHUB_SECURITY_METRICS_TOKEN): expected empty (no token) or a token of "
        "at least 16 characters without spaces, got <hidden>"
    )
    assert config.parse({}, env={"TASKHUB_SECURITY_METRICS_TOKEN": TOKEN})["security"]["metrics_token"] == TOKEN
    assert TOKEN in config.parse({}, env={"TASKHUB_SECURITY_METRICS_TOKEN": TOKEN}).secret_values()
    with pytest.raises(ConfigError, match=r"^scheduler.worker_heartbeat: expected a number > 0, got 0"):
        config.parse({"scheduler": {"worker_heartbeat": 0}}, env={})
