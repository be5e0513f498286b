"""Per-attempt logs: kept with the attempt, bounded, scrubbed, written in batches, shown and served.

In-process tests run the executor directly; the end-to-end test runs a real worker and reads the
log of an attempt while it is still running, through the database and the API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import services
from scheduling.engine import attempt_log, dispatcher, executor, retention
from scheduling.models import AttemptLog, AttemptStatus, Task, TaskResult
from tests.conftest import wait_until

SECRET = "tok-9f8e7d6c5b4a-secret"


def run(task: Task) -> TaskResult:
    (result,) = dispatcher.dispatch()
    executor.run_attempt(result.pk)
    return TaskResult.objects.get(pk=result.pk)


def log_of(result: TaskResult) -> str:
    return AttemptLog.objects.get(result=result).text


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def log_url(result: TaskResult) -> str:
    return f"/tasks/{result.task_id}/results/{result.pk}/log"


# --- what is kept -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_handler_log_lines_are_kept_with_their_attempt_at_the_configured_level(make_task):
    task = make_task("chatty", tags=["TEST_LOG"], parameters={"lines": 3})
    result = run(task)
    assert result.status == AttemptStatus.DONE
    text = log_of(result)
    for number in range(3):
        assert f"INFO line {number} of chatty" in text
    assert "debug line" not in text  # log.level is INFO in the test configuration
    row = AttemptLog.objects.get(result=result)
    assert row.lines == 3 and row.dropped_lines == 0


@pytest.mark.django_db
def test_failed_attempt_keeps_its_log_and_each_attempt_has_its_own(make_task):
    task = make_task("fails", tags=["TEST_LOG"], parameters={"lines": 1, "fail": True})
    first = run(task)
    assert first.status == AttemptStatus.FAILED
    assert "line 0 of fails" in log_of(first)
    task.refresh_from_db()
    services.task_retry(task=task)
    second = run(task)
    assert second.pk != first.pk and "line 0 of fails" in log_of(second)
    assert AttemptLog.objects.filter(result__task=task).count() == 2


@pytest.mark.django_db
def test_secrets_are_scrubbed_from_the_log(make_task, settings):
    config_secret = settings.TASKHUB["jira"]["environments"]["env1.jira.com"]["password"]
    task = make_task(
        "leaky",
        tags=["TEST_LOG"],
        parameters={"lines": 1, "pad": config_secret},
        secret_parameters={"secret": SECRET},
    )
    text = log_of(run(task))
    assert SECRET not in text and config_secret not in text
    assert "calling with token <hidden>" in text
    assert "line 0 of leaky <hidden>" in text


@pytest.mark.django_db
def test_log_is_bounded_to_one_mib_oldest_lines_dropped_with_a_marker(make_task):
    pad = "x" * 1000
    task = make_task("flood", tags=["TEST_LOG"], parameters={"lines": 3000, "pad": pad})  # about 3 MB
    result = run(task)
    row = AttemptLog.objects.get(result=result)
    assert len(row.text.encode()) <= attempt_log.MAX_BYTES
    assert row.text.startswith(f"[... {row.dropped_lines} earlier line(s)")
    assert row.lines == 3000 and 1900 < row.dropped_lines < 3000
    assert "line 2999 of flood" in row.text.splitlines()[-1]  # the newest line is kept
    assert "line 0 of flood" not in row.text
    kept = [line for line in row.text.splitlines()[1:]]
    assert len(kept) == 3000 - row.dropped_lines


@pytest.mark.django_db
def test_an_oversized_line_is_cut_not_the_whole_log():
    buffer = attempt_log.AttemptLogBuffer(1, [])
    buffer.emit(logging.makeLogRecord({"msg": "é" * (attempt_log.MAX_LINE_BYTES * 2), "levelname": "INFO"}))
    text = buffer.text()
    assert "[... line cut:" in text and len(text.encode()) < attempt_log.MAX_LINE_BYTES + 200


def live_flushers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("attempt-log-")]


def test_the_live_flusher_starts_with_the_first_line_and_ends_with_the_attempt():
    # An attempt that logs nothing (most of them) costs no thread and no second database connection.
    with attempt_log.capture(1, "TEST_LOG", [], live=True) as (handler_logger, buffer):
        assert live_flushers() == []
    assert live_flushers() == []
    with attempt_log.capture(2, "TEST_LOG", [], live=True) as (handler_logger, buffer):
        handler_logger.warning("first")
        handler_logger.warning("second")  # one flusher, however many lines
        assert [thread.name for thread in live_flushers()] == ["attempt-log-2"]
    assert live_flushers() == []  # stopped and joined by the end of the attempt
    buffer.emit(logging.makeLogRecord({"msg": "late", "levelname": "INFO"}))  # a straggler starts nothing
    assert live_flushers() == [] and "late" in buffer.text()


@pytest.mark.django_db
def test_lines_are_buffered_not_written_one_row_or_statement_per_line(make_task):
    make_task("many", tags=["TEST_LOG"], parameters={"lines": 2000})
    (result,) = dispatcher.dispatch()
    with CaptureQueriesContext(connection) as queries:
        executor.run_attempt(result.pk)
    writes = [q["sql"] for q in queries if "scheduling_attemptlog" in q["sql"]]
    assert 1 <= len(writes) <= 3, writes  # one UPDATE (then an INSERT the first time), not 2,000
    assert AttemptLog.objects.count() == 1 and AttemptLog.objects.get().lines == 2000


@pytest.mark.django_db
def test_log_goes_with_its_attempt_under_retention_and_with_its_task(make_task):
    import time_machine

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(now - timedelta(days=200), tick=False):
        task = make_task("old", tags=["TEST_LOG"], parameters={"lines": 1})
        old = run(task)
        services.task_run_now(task=task)
        latest = run(task)
    assert AttemptLog.objects.filter(result__in=[old, latest]).count() == 2
    with time_machine.travel(now, tick=False):
        report = retention.purge_results(days=90)
    assert report.attempts == 1
    assert not AttemptLog.objects.filter(result_id=old.pk).exists()  # went with its attempt
    assert AttemptLog.objects.filter(result_id=latest.pk).exists()  # the task's last result stays, log too
    services.task_delete(task=task)
    assert not AttemptLog.objects.exists()


# --- the API ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_serves_the_log_with_the_tasks_visibility_rules(make_task, operator):
    owner = User.objects.create_user("owner", password="pw-owner-1")
    other = User.objects.create_user("other", password="pw-other-1")
    from django.contrib.auth.models import Permission

    view = Permission.objects.get(codename="view_task")
    owner.user_permissions.add(view)
    other.user_permissions.add(view)
    task = make_task("mine", tags=["TEST_LOG"], parameters={"lines": 2}, owner=owner)
    result = run(task)

    answer = api_for(owner).get(log_url(result))
    assert answer.status_code == 200
    body = answer.json()
    assert body["attempt_id"] == result.pk and body["attempt"] == 1 and body["status"] == "DONE"
    assert body["finished"] is True and body["lines"] == 2 and "line 1 of mine" in body["text"]
    assert api_for(owner).get(log_url(result) + "/").status_code == 200  # with a trailing slash too

    text = api_for(owner).get(log_url(result) + "?format=text")
    assert text.status_code == 200 and text["Content-Type"].startswith("text/plain")
    assert text.content.decode() == body["text"]

    missing = api_for(other).get(log_url(result) + "?format=text")
    assert missing.status_code == 404 and missing.json() == {"detail": "No Task matches the given query."}
    assert api_for(other).get(log_url(result)).status_code == 404  # someone else's task
    assert APIClient().get(log_url(result)).status_code == 401
    assert api_for(operator).get(log_url(result)).status_code == 200  # view_all_tasks
    other_task = make_task("another", owner=owner)
    assert api_for(owner).get(f"/tasks/{other_task.pk}/results/{result.pk}/log").status_code == 404
    assert api_for(owner).get(f"/tasks/{task.pk}/results/{result.pk + 999}/log").status_code == 404
    assert api_for(owner).get(f"/tasks/{task.pk}/results/{'9' * 30}/log").status_code == 404


@pytest.mark.django_db
def test_api_log_of_an_attempt_that_logged_nothing_is_empty(make_task, operator):
    task = make_task("quiet")
    result = run(task)
    body = api_for(operator).get(log_url(result)).json()
    assert body["text"] == "" and body["lines"] == 0 and body["finished"] is True


@pytest.mark.django_db
def test_log_endpoint_is_in_the_openapi_document(operator):
    schema = APIClient().get("/schema?format=json").json()
    operation = schema["paths"]["/tasks/{id}/results/{attempt}/log"]["get"]
    assert "200" in operation["responses"]
    assert {"application/json", "text/plain"} <= set(operation["responses"]["200"]["content"])


# --- the admin ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_result_page_and_task_page_show_the_log_in_a_preformatted_block(make_task, client_op: Client):
    task = make_task("shown", tags=["TEST_LOG"], parameters={"lines": 2, "secret": "<b>not html</b>"})
    result = run(task)
    for url in (
        reverse("admin:scheduling_taskresult_change", args=[result.pk]),
        reverse("admin:scheduling_task_change", args=[task.pk]),
    ):
        html = client_op.get(url).content.decode()
        assert f'<pre class="th-log" data-url="{log_url(result)}" data-live="0"' in html, url
        assert "line 1 of shown" in html
        assert "&lt;b&gt;not html&lt;/b&gt;" in html and "<b>not html</b>" not in html  # escaped
        assert "attempt-log.js" in html


@pytest.mark.django_db
def test_result_page_of_a_running_attempt_follows_it_live(make_task, client_op: Client):
    make_task("running")
    (result,) = dispatcher.dispatch()
    executor.claim(result.pk)
    html = client_op.get(reverse("admin:scheduling_taskresult_change", args=[result.pk])).content.decode()
    assert 'data-live="1"' in html and "(nothing logged yet)" in html and "following live" in html


# --- end to end: a real worker ------------------------------------------------------------------------------


def test_log_lines_reach_the_attempt_while_it_runs_on_a_real_worker(
    start_worker: Callable[..., object], make_task: Callable[..., Task], operator: User, tmp_path: Path
) -> None:
    start_worker()
    go = tmp_path / "go"
    task = make_task(
        "live log",
        tags=["TEST_LOG"],
        parameters={"lines": 2, "wait_for": str(go)},
        secret_parameters={"secret": SECRET},
    )
    api = api_for(operator)

    def running_log() -> str:
        result = TaskResult.objects.filter(task=task).first()
        if result is None or result.status != AttemptStatus.RUNNING:
            return ""
        body = api.get(log_url(result)).json()
        return body["text"] if "waiting" in body["text"] and not body["finished"] else ""

    # The handler logs, then blocks: its lines are readable while the attempt is still RUNNING.
    text = wait_until(running_log, timeout=30)
    assert "line 0 of live log" in text and "line 1 of live log" in text
    assert "calling with token <hidden>" in text and SECRET not in text
    assert "finished" not in text
    go.touch()
    wait_until(lambda: Task.objects.get(pk=task.pk).status == "DONE", timeout=30)
    result = TaskResult.objects.get(task=task)
    body = api.get(log_url(result)).json()
    assert body["finished"] is True and body["lines"] == 5
    assert body["text"].splitlines()[-1].endswith("INFO finished")
