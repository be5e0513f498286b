"""Run-scoped dependencies with a controlled clock over several daily cron cycles (engine/pipelines.py).

Timeline (UTC): export fires at 00:00, report (depends on export, mode fresh) at 00:30, every day.
Day 1: export DONE 00:05, report starts 00:30 on it.  Day 2: export late (DONE 01:00): the report waits
from 00:30 and starts once it is DONE.  Day 3: export never runs: the report waits (yesterday's export
was consumed by day 2's report).  With mode ``any`` the day-3 report starts on day 2's export at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from scheduling.engine import dispatcher, executor, firing
from scheduling.models import AttemptStatus, DependencyMode, TaskDependency, TaskResult

pytestmark = pytest.mark.django_db

DAY1 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def at():
    with time_machine.travel(DAY1 - timedelta(minutes=1), tick=False) as clock:
        yield clock


def chain(make_task, mode=DependencyMode.FRESH):
    export = make_task("export", task_type="SCHEDULED", cron_expr="0 0 * * *")
    report = make_task("report", task_type="SCHEDULED", cron_expr="30 0 * * *", dependencies=[export.pk])
    TaskDependency.objects.filter(from_task=report).update(mode=mode)
    return export, report


def step(at, moment):
    """Move the clock to ``moment``, fire what is due and dispatch; return the names of the attempts queued."""
    at.move_to(moment)
    firing.fire_due()
    return dispatcher.dispatch()


def run(results):
    for result in results:
        assert executor.run_attempt(result.pk) == AttemptStatus.DONE


def names(results):
    return sorted(r.task.name for r in results)


def test_daily_report_consumes_each_export_once_and_waits_for_a_late_one(make_task, at):
    export, report = chain(make_task)
    # Day 1: export at 00:00, done 00:05; the report at 00:30 starts on it.
    assert names(first := step(at, DAY1)) == ["export"]
    at.move_to(DAY1 + timedelta(minutes=5))
    run(first)
    assert names(queued := step(at, DAY1 + timedelta(minutes=30))) == ["report"]
    run(queued)
    # Day 2: the export fires but is late; the report's fire at 00:30 waits on it (yesterday's was consumed).
    day2 = DAY1 + timedelta(days=1)
    late = step(at, day2)
    assert names(late) == ["export"]
    assert step(at, day2 + timedelta(minutes=30)) == []
    assert step(at, day2 + timedelta(minutes=45)) == []
    at.move_to(day2 + timedelta(hours=1))
    run(late)  # the export finishes at 01:00
    assert names(queued := step(at, day2 + timedelta(hours=1, seconds=1))) == ["report"]
    run(queued)
    # Day 3: no export run at all (paused): the report waits instead of reusing day 2's export.
    export.refresh_from_db()
    export.enabled = False
    export.save(update_fields=["enabled"])
    day3 = DAY1 + timedelta(days=2)
    assert step(at, day3 + timedelta(minutes=30)) == []
    assert step(at, day3 + timedelta(hours=5)) == []
    waiting = TaskResult.objects.get(task=report, fire_time=day3 + timedelta(minutes=30))
    assert waiting.status == AttemptStatus.PENDING
    # Each report run started after a distinct export run finished.
    reports = TaskResult.objects.filter(task=report, status=AttemptStatus.DONE).order_by("started_at")
    exports = TaskResult.objects.filter(task=export, status=AttemptStatus.DONE).order_by("finished_at")
    assert [r.started_at for r in reports] == [DAY1 + timedelta(minutes=30), day2 + timedelta(hours=1, seconds=1)]
    assert [e.finished_at for e in exports] == [DAY1 + timedelta(minutes=5), day2 + timedelta(hours=1)]


def test_mode_any_keeps_the_former_rule(make_task, at):
    export, report = chain(make_task, DependencyMode.ANY)
    run(step(at, DAY1))
    run(step(at, DAY1 + timedelta(minutes=30)))
    export.enabled = False
    export.save(update_fields=["enabled"])
    # Day 2 without an export: the report starts on day 1's export, as before run-scoped dependencies.
    assert names(step(at, DAY1 + timedelta(days=1, minutes=30))) == ["report"]


def test_two_waiting_runs_do_not_share_one_upstream_run(make_task, at, scheduler_conf):
    export, report = chain(make_task)
    run(step(at, DAY1))
    run(step(at, DAY1 + timedelta(minutes=30)))
    # Two report fires pile up while no export runs; one export run then releases one report run only.
    export.enabled = False
    export.save(update_fields=["enabled"])
    step(at, DAY1 + timedelta(days=1, minutes=30))
    step(at, DAY1 + timedelta(days=2, minutes=30))
    assert TaskResult.objects.filter(task=report, status=AttemptStatus.PENDING).count() == 2
    from scheduling import services

    at.move_to(DAY1 + timedelta(days=2, hours=1))
    type(export).objects.filter(pk=export.pk).update(enabled=True, next_fire_at=None)
    (extra,) = [services.task_run_now(task=export, dispatch=False)]
    queued = dispatcher.dispatch()
    assert names(queued) == ["export"]
    run(queued)
    at.move_to(DAY1 + timedelta(days=2, hours=2))
    assert names(queued := dispatcher.dispatch()) == ["report"]
    run(queued)
    at.move_to(DAY1 + timedelta(days=2, hours=3))
    assert dispatcher.dispatch() == []
    assert TaskResult.objects.filter(task=report, status=AttemptStatus.PENDING).count() == 1
    assert extra.task_id == export.pk
