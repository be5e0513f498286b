"""Backfill (services.task_backfill, manage.py backfill): past cron fires, each once, oldest first, in the task's
time zone with the live fires' DST rule; with downstream a pipeline run per fire; limits and dry runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from scheduling import services
from scheduling.engine import cron, dispatcher, executor
from scheduling.models import AttemptStatus, PipelineRun, Task, TaskAudit, TaskResult
from taskhub.exceptions import ValidationError

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)  # far from midnight, DST and month ends
START = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
END = datetime(2026, 5, 30, 23, 59, tzinfo=UTC)  # 30 daily fires at 02:00 UTC


@pytest.fixture
def daily(make_task):
    def build(**fields):
        return make_task("export", **{"task_type": "SCHEDULED", "cron_expr": "0 2 * * *", **fields})

    return build


def drain(clock, limit: int = 500) -> list[TaskResult]:
    """Dispatch and run in-process until nothing is ready; every attempt run, in order."""
    ran: list[TaskResult] = []
    for _ in range(limit):
        clock.shift(1)
        wave = dispatcher.dispatch()
        if not wave:
            return ran
        for result in wave:
            executor.run_attempt(result.pk)
        stored = TaskResult.objects.select_related("task").in_bulk([r.pk for r in wave])
        ran.extend(stored[r.pk] for r in wave)  # in the dispatcher's order
    raise AssertionError("never settled")


def test_thirty_daily_fires_with_a_dependent_are_thirty_pipeline_runs_each_fire_once(daily, make_task, scheduler_conf):
    scheduler_conf(concurrency=4, max_instances=3)
    with time_machine.travel(NOW, tick=False) as clock:
        export = daily()
        report = make_task("report", task_type="SCHEDULED", cron_expr="0 3 * * *", dependencies=[export.pk])
        done = services.task_backfill(task=export, start=START, end=END, downstream="all")
        assert len(done.fires) == 30 and done.created == done.fires and done.skipped == []
        assert done.fires[0] == datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
        assert done.fires == sorted(done.fires)
        assert len(done.pipeline_runs) == 30
        runs = PipelineRun.objects.filter(pk__in=done.pipeline_runs)
        assert {(r.origin, r.which) for r in runs} == {("backfill", "all")}
        assert sorted(r.fire_time for r in runs) == done.fires
        # The dispatcher keeps the caps: at most 4 in flight, at most 3 per task.
        clock.shift(1)
        first = dispatcher.dispatch()
        assert [r.task.name for r in first] == ["export"] * 3  # report waits for its run's export
        assert [r.fire_time for r in first] == done.fires[:3]  # oldest first
        for result in first:
            executor.run_attempt(result.pk)
        ran = first + drain(clock)
        assert len(ran) == 60
        finished = {(r.task.name, r.pipeline_run_id): r for r in TaskResult.objects.select_related("task")}
        for run in runs:
            up, down = finished[("export", run.pk)], finished[("report", run.pk)]
            assert up.status == down.status == AttemptStatus.DONE
            assert up.fire_time == run.fire_time and up.available_at == run.fire_time
            assert up.finished_at <= down.started_at
        exports = [r for r in ran if r.task.name == "export"]
        assert [r.fire_time for r in exports] == done.fires  # oldest first, each once
        audit = TaskAudit.objects.get(task_id=export.pk, action="backfilled")
        assert "30 fire(s) in 2026-05-01 00:00 .. 2026-05-30 23:59 UTC: 30 run(s) created" in audit.detail
        assert TaskAudit.objects.filter(task_id=report.pk, action="backfilled").count() == 1
        # The same range again: every fire already ran, nothing is created.
        again = services.task_backfill(task=export, start=START, end=END, downstream="all")
        assert again.created == [] and again.skipped == done.fires and again.pipeline_runs == []
        assert TaskResult.objects.count() == 60 and PipelineRun.objects.count() == 30
        assert "30 already ran (skipped)" in again.summary()


def test_dst_a_daily_0230_in_paris_across_the_march_change_fires_as_live_fires_do(daily):
    with time_machine.travel(datetime(2026, 4, 10, 12, 0, tzinfo=UTC), tick=False):
        task = daily(cron_expr="30 2 * * *", timezone="Europe/Paris")
        start = datetime(2026, 3, 27, 0, 0, tzinfo=UTC)
        end = datetime(2026, 3, 31, 0, 0, tzinfo=UTC)
        done = services.task_backfill(task=task, start=start, end=end)
        live = []
        for moment in cron.fire_times("30 2 * * *", "Europe/Paris", start):
            if moment > end:
                break
            live.append(moment)
        assert done.fires == live
        # 29 March 2026: 02:30 does not exist in Paris; it fires once, at the jump (03:00 CEST = 01:00 UTC).
        assert done.fires == [
            datetime(2026, 3, 27, 1, 30, tzinfo=UTC),
            datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
            datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
        ]
        assert sorted(TaskResult.objects.filter(task=task).values_list("fire_time", flat=True)) == done.fires
        assert not PipelineRun.objects.exists()  # no downstream: plain runs


def test_a_range_over_the_limit_is_refused_naming_count_limit_and_key(daily, scheduler_conf):
    scheduler_conf(max_backfill=10)
    with time_machine.travel(NOW, tick=False):
        task = daily()
        with pytest.raises(ValidationError) as refused:
            services.task_backfill(task=task, start=START, end=END)
        message = str(refused.value)
        assert "30 cron fires" in message and "limit of 10" in message and "scheduler.max_backfill" in message
        assert not TaskResult.objects.filter(task=task).exists()


def test_dry_run_lists_the_fires_and_writes_nothing(daily, make_task):
    with time_machine.travel(NOW, tick=False):
        task = daily()
        make_task("report", dependencies=[task.pk])
        before = (TaskResult.objects.count(), TaskAudit.objects.count())
        done = services.task_backfill(task=task, start=START, end=END, downstream="all", dry_run=True)
        assert len(done.fires) == 30 and done.created == [] and done.dry_run
        assert (TaskResult.objects.count(), TaskAudit.objects.count()) == before
        assert not PipelineRun.objects.exists()
        assert done.summary().startswith("dry run, nothing written: 30 fire(s)")


@pytest.mark.parametrize(
    ("fields", "start", "end", "expected"),
    [
        ({"task_type": "IMMEDIATE", "cron_expr": ""}, START, END, "only a SCHEDULED task"),
        ({}, END, START, "before it starts"),
        ({}, START, NOW + timedelta(days=1), "in the future"),
        ({"enabled": False}, START, END, "paused"),
    ],
)
def test_refusals_are_clear(make_task, fields, start, end, expected):
    with time_machine.travel(NOW, tick=False):
        data = {"task_type": "SCHEDULED", "cron_expr": "0 2 * * *", **fields}
        task = make_task("export", **data)
        with pytest.raises(ValidationError, match=expected):
            services.task_backfill(task=task, start=start, end=end)


def test_the_command_backfills_lists_and_refuses(daily, make_task):
    with time_machine.travel(NOW, tick=False):
        task = daily()
        out = StringIO()
        call_command("backfill", "export", "--from", "2026-05-01", "--to", "2026-05-03T23:00", "--dry-run", stdout=out)
        assert out.getvalue().count("would run") == 3 and not TaskResult.objects.filter(task=task).exists()
        out = StringIO()
        call_command("backfill", str(task.pk), "--from", "2026-05-01", "--to", "2026-05-03T23:00", stdout=out)
        assert out.getvalue().count(" run\n") == 3
        assert TaskResult.objects.filter(task=task).count() == 3
        entry = TaskAudit.objects.get(task_id=task.pk, action="backfilled")
        assert entry.detail.startswith("3 fire(s)")
        out = StringIO()
        call_command("backfill", "export", "--from", "2026-05-01", "--to", "2026-05-03T23:00", stdout=out)
        assert out.getvalue().count("already ran, skipped") == 3
        with pytest.raises(CommandError, match="before it starts"):
            call_command("backfill", "export", "--from", "2026-05-03", "--to", "2026-05-01")
        with pytest.raises(CommandError, match="ISO 8601"):
            call_command("backfill", "export", "--from", "yesterday", "--to", "2026-05-01")
        assert Task.objects.get(pk=task.pk).enabled
