"""Management commands: run_task, list_tasks, seed_examples."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from scheduling.models import AttemptStatus, Task, TaskResult

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
    assert "error: RuntimeError: boom on attempt 1" in capsys.readouterr().out


def test_run_task_unknown_task_is_a_clear_error(db):
    with pytest.raises(CommandError, match="no task named 'nope'"):
        call_command("run_task", "nope")


def test_list_tasks_filters(make_task, capsys):
    make_task("alpha", priority="HIGH")
    make_task("beta", priority="LOW")
    call_command("list_tasks", "--priority", "HIGH")
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" not in out and "PRIORITY" in out


def test_seed_examples_creates_the_seed_tasks_once(db):
    call_command("seed_examples")
    call_command("seed_examples")
    project = Task.objects.get(name="JIRA Extraction - Project")
    assert project.task_type == "SCHEDULED" and project.cron_expr == "0 0 * * *"
    assert Task.objects.filter(name="JIRA Extraction - Root Ticket", task_type="IMMEDIATE").count() == 1
