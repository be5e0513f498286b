"""Result retention: old finished attempts go, each task's last result and unfinished work always stay."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask

from scheduling import services
from scheduling.engine import retention
from scheduling.engine.beat import PURGE_TASK_NAME, install_periodic_tasks
from scheduling.models import AttemptStatus, Task, TaskResult

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def scheduled(name: str) -> Task:
    """A SCHEDULED task has no attempt of its own, so each test lays its attempts out by hand."""
    return services.task_create(
        data={
            "name": name,
            "tags": ["TEST_RECORD"],
            "parameters": {},
            "task_type": "SCHEDULED",
            "cron_expr": "0 3 * * *",
        }
    )


def attempt(task: Task, days_ago: float, status: str = AttemptStatus.DONE, **fields: Any) -> TaskResult:
    when = NOW - timedelta(days=days_ago)
    finished = when + timedelta(seconds=5) if status in retention.FINISHED else None
    return TaskResult.objects.create(
        task=task, status=status, created_at=when, available_at=when, finished_at=finished, **fields
    )


def remaining(task: Task) -> list[int]:
    return sorted(TaskResult.objects.filter(task=task).values_list("pk", flat=True))


def test_old_finished_attempts_go_and_the_last_result_stays() -> None:
    task = scheduled("nightly")
    attempt(task, 200, AttemptStatus.FAILED)
    attempt(task, 150)
    attempt(task, 120, AttemptStatus.CANCELLED)
    recent = attempt(task, 10)
    report = retention.purge_results(NOW, days=90)
    assert remaining(task) == [recent.pk]
    assert (report.attempts, report.tasks, report.by_status) == (
        3,
        {str(task.pk)},
        {"CANCELLED": 1, "DONE": 1, "FAILED": 1},
    )


def test_a_task_whose_results_are_all_old_keeps_its_latest() -> None:
    task = scheduled("monthly")
    attempt(task, 400)
    attempt(task, 300, AttemptStatus.FAILED)
    latest = attempt(task, 200)
    retention.purge_results(NOW, days=90)
    assert remaining(task) == [latest.pk]
    # Running it again removes nothing more: the last result is never deleted.
    assert retention.purge_results(NOW, days=1).attempts == 0
    assert remaining(task) == [latest.pk]


def test_latest_result_stays_even_when_a_newer_run_is_waiting_or_running() -> None:
    task = scheduled("busy")
    attempt(task, 300)
    last_result = attempt(task, 200, AttemptStatus.FAILED)
    running = attempt(task, 100, AttemptStatus.RUNNING, started_at=NOW - timedelta(days=100))
    waiting = attempt(task, 100, AttemptStatus.RETRY, attempt=2)
    queued = attempt(task, 95, AttemptStatus.QUEUED)
    retention.purge_results(NOW, days=30)
    assert remaining(task) == sorted([last_result.pk, running.pk, waiting.pk, queued.pk])


def test_same_created_at_ties_keep_exactly_one() -> None:
    task = scheduled("twins")
    first = attempt(task, 200)
    second = attempt(task, 200)
    retention.purge_results(NOW, days=90)
    assert remaining(task) == [max(first.pk, second.pk)]


def test_boundary_is_the_finish_time_and_other_tasks_are_untouched() -> None:
    a, b = scheduled("a"), scheduled("b")
    attempt(a, 91)
    just_inside = attempt(a, 89)
    attempt(a, 1)
    only = attempt(b, 500)
    retention.purge_results(NOW, days=90)
    assert just_inside.pk in remaining(a) and len(remaining(a)) == 2
    assert remaining(b) == [only.pk]


def test_zero_days_keeps_everything() -> None:
    task = scheduled("forever")
    for days in (900, 800, 700):
        attempt(task, days)
    report = retention.purge_results(NOW, days=0)
    assert report.attempts == 0 and len(remaining(task)) == 3
    assert str(report) == "result retention is 0 days (keep forever): nothing removed"


def test_default_days_come_from_the_config() -> None:
    task = scheduled("configured")
    attempt(task, settings.TASKHUB["storage"]["result_retention_days"] + 1)
    attempt(task, 0.5)
    assert retention.purge_results(NOW).attempts == 1


def test_many_rows_in_small_batches() -> None:
    tasks = [scheduled(f"t{i}") for i in range(5)]
    for task in tasks:
        TaskResult.objects.bulk_create(
            TaskResult(
                task=task,
                status=AttemptStatus.DONE,
                created_at=NOW - timedelta(days=100 + n),
                available_at=NOW,
                finished_at=NOW - timedelta(days=100 + n),
            )
            for n in range(57)
        )
    report = retention.purge_results(NOW, days=90, batch_size=10)
    assert report.attempts == 5 * 56 and report.batches >= 28
    for task in tasks:
        kept = TaskResult.objects.get(task=task)
        assert kept.created_at == NOW - timedelta(days=100)  # the newest of each task


def test_artifacts_of_purged_attempts_are_removed(tmp_path: Path) -> None:
    task = scheduled("with files")
    old, last = attempt(task, 200), attempt(task, 150)
    folders = {}
    for result in (old, last):
        folder = Path(settings.STORAGE_DIR) / "artifacts" / str(task.pk) / str(result.pk)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.xlsx").write_bytes(b"x")
        folders[result.pk] = folder
    retention.purge_results(NOW, days=90)
    assert not folders[old.pk].exists() and (folders[last.pk] / "report.xlsx").exists()


def test_dry_run_deletes_nothing_and_says_what_would_go() -> None:
    task = scheduled("nightly")
    attempt(task, 200)
    attempt(task, 10)
    out = io.StringIO()
    call_command("purge_results", "--dry-run", "--days", "90", stdout=out)
    assert out.getvalue().startswith("would remove 1 finished attempt(s) of 1 task(s) finished before ")
    assert len(remaining(task)) == 2
    out = io.StringIO()
    call_command("purge_results", "--days", "90", stdout=out)
    assert out.getvalue().startswith("removed 1 finished attempt(s) of 1 task(s)")
    assert "(older than 90 days; DONE 1)" in out.getvalue()
    assert len(remaining(task)) == 1


def test_command_refuses_negative_days() -> None:
    with pytest.raises(CommandError, match=r"--days: expected an integer >= 0 \(0 keeps results forever\), got -1"):
        call_command("purge_results", "--days", "-1")


def test_beat_installs_the_daily_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    install_periodic_tasks()
    task = PeriodicTask.objects.get(name=PURGE_TASK_NAME)
    assert task.task == "scheduling.purge_results" and task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "3", "*")
    monkeypatch.setitem(settings.TASKHUB["storage"], "result_retention_days", 0)
    install_periodic_tasks()
    assert PeriodicTask.objects.filter(name=PURGE_TASK_NAME).count() == 1
    assert not PeriodicTask.objects.get(name=PURGE_TASK_NAME).enabled


def test_celery_task_runs_the_purge() -> None:
    from scheduling.tasks import purge_results

    task = scheduled("celery")
    attempt(task, 1000)
    attempt(task, 999)
    # Run the task body as the worker would (NOW-independent: these attempts are past any retention >= 1).
    assert purge_results.run().startswith("removed 1 finished attempt(s)")


def test_verbose_command_reports_each_batch() -> None:
    task = scheduled("chatty")
    for days in (300, 200, 100, 10):
        attempt(task, days)
    err = io.StringIO()
    call_command("purge_results", "--days", "90", "--batch-size", "1", "-v", "2", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        "  batch 1: 1 attempt(s) so far",
        "  batch 2: 2 attempt(s) so far",
        "  batch 3: 3 attempt(s) so far",
    ]
