"""Management commands: run_task, list_tasks, seed_examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.management import CommandError, call_command

from scheduling import services
from scheduling.engine import dispatcher, executor
from scheduling.models import AttemptStatus, RetryPolicy, Task, TaskAudit, TaskResult
from taskhub import config as taskhub_config

pytestmark = pytest.mark.django_db


def test_run_task_runs_in_the_foreground_with_progress(make_task, capsys):
    task = make_task(
        "sleeper", tags=["TEST_SLEEP"], parameters={"seconds": 0.5}, task_type="SCHEDULED", cron_expr="0 0 1 1 *"
    )
    call_command("run_task", str(task.pk))
    out, err = capsys.readouterr()
    assert "sleeper: DONE" in out and "result: {'slept': 0.5}" in out
    assert "10% sleeping" in err
    assert TaskResult.objects.get(task=task).status == AttemptStatus.DONE


def test_run_task_by_name_reports_failure_with_exit_status(make_task, capsys):
    make_task("breaks", tags=["TEST_FLAKY"], parameters={"failures": 1}, task_type="SCHEDULED", cron_expr="0 0 1 1 *")
    with pytest.raises(SystemExit) as exit_info:
        call_command("run_task", "breaks")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "breaks: FAILED for good (attempt 1, no retry policy)" in out
    assert "error: RuntimeError: boom on attempt 1" in out


def test_run_task_tells_a_scheduled_retry_from_a_final_failure(make_task, capsys):
    policy = RetryPolicy.objects.create(name="twice", max_retries=2, retry_delay=65, backoff_factor=1)
    task = make_task(
        "flaky",
        tags=["TEST_FLAKY"],
        parameters={"failures": 9},
        retry_policy=policy.pk,
        task_type="SCHEDULED",
        cron_expr="0 0 1 1 *",
    )
    start = datetime(2026, 3, 4, 11, 59, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        with pytest.raises(SystemExit) as exit_info:
            call_command("run_task", "flaky")
    assert exit_info.value.code == 3  # failed, a retry is scheduled
    out = capsys.readouterr().out
    assert "flaky: attempt 1 FAILED in 0.00 s, retry 1 of 2 at 12:00:05 UTC (the workers run it)" in out
    assert "for good" not in out
    # The retries fail too: the last attempt's failure is final.
    for attempt in (2, 3):
        with time_machine.travel(start + timedelta(minutes=2 * attempt), tick=False):
            (result,) = dispatcher.dispatch()
            executor.run_attempt(result.pk)
    task.refresh_from_db()
    assert task.status == "FAILED"
    with pytest.raises(SystemExit) as exit_info:
        call_command("run_task", "flaky")  # a new run: attempt 1 again, retries scheduled again
    assert exit_info.value.code == 3


def test_run_task_final_failure_after_the_last_retry(make_task, capsys):
    policy = RetryPolicy.objects.create(name="none-left", max_retries=0)
    make_task(
        "last",
        tags=["TEST_FLAKY"],
        parameters={"failures": 9},
        retry_policy=policy.pk,
        task_type="SCHEDULED",
        cron_expr="0 0 1 1 *",
    )
    with pytest.raises(SystemExit) as exit_info:
        call_command("run_task", "last")
    assert exit_info.value.code == 1
    assert "last: FAILED for good (attempt 1, no retry left)" in capsys.readouterr().out


def test_run_task_unknown_task_is_a_clear_error(db):
    with pytest.raises(CommandError, match="no task named 'nope'") as error:
        call_command("run_task", "nope")
    assert error.value.returncode == 2  # nothing ran


def test_list_tasks_filters(make_task, capsys):
    make_task("alpha", priority="HIGH")
    make_task("beta", priority="LOW")
    call_command("list_tasks", "--priority", "HIGH")
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" not in out and "PRIORITY" in out


def test_seed_examples_on_the_default_configuration_says_in_one_line_what_to_configure(monkeypatch):
    monkeypatch.setattr(settings, "TASKHUB", taskhub_config.parse({}, env={}))
    with pytest.raises(CommandError) as error:
        call_command("seed_examples")
    message = str(error.value)
    assert "\n" not in message
    assert "env1.jira.com, env2.jira.com, which are not configured; add them under jira.environments" in message
    assert "or pass --env NAME (configured: default, jira.example.com)" in message
    assert not Task.objects.exists()


def test_seed_examples_on_one_configured_environment(monkeypatch, capsys):
    monkeypatch.setattr(settings, "TASKHUB", taskhub_config.parse({}, env={}))
    call_command("seed_examples", "--env", "default")
    assert {tuple(t.parameters["jira_envs"]) for t in Task.objects.all()} == {("default",)}
    assert Task.objects.count() == 2
    with pytest.raises(CommandError, match=r"--env: no Jira environment named 'prod' is configured"):
        call_command("seed_examples", "--env", "prod")


def test_seed_examples_creates_the_seed_tasks_once(db):
    call_command("seed_examples")
    call_command("seed_examples")
    project = Task.objects.get(name="JIRA Extraction - Project")
    assert project.task_type == "SCHEDULED" and project.cron_expr == "0 0 * * *"
    assert Task.objects.filter(name="JIRA Extraction - Root Ticket", task_type="IMMEDIATE").count() == 1


def test_seed_examples_creates_them_in_one_bulk_call(db, monkeypatch):
    calls = []
    real = services.task_create_many
    monkeypatch.setattr(services, "task_create_many", lambda **kw: calls.append(len(kw["items"])) or real(**kw))
    call_command("seed_examples")
    assert calls == [2] and Task.objects.count() == 2
    assert TaskAudit.objects.filter(action="created").count() == 2


def test_seed_examples_with_a_bad_example_creates_none_and_names_it(db, monkeypatch):
    from scheduling.management.commands import seed_examples

    bad = [seed_examples.EXAMPLES[0], {**seed_examples.EXAMPLES[1], "cron_expr": "61 * * * *"}]
    monkeypatch.setattr(seed_examples, "EXAMPLES", bad)
    with pytest.raises(CommandError, match=r"^JIRA Extraction - Project: cron_expr: "):
        call_command("seed_examples")
    assert not Task.objects.exists()
