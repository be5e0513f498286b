"""Run-scoped dependencies (engine/pipelines.py) and retry with downstream, on a controlled clock.

A daily export at 02:00 and a report at 03:00 that depends on it, over several days: the report consumes each
export run once, waits for a late one, fails after its dependency_timeout when it never comes; the ``any`` mode
keeps the former rule; an IMMEDIATE task with no previous run takes any DONE run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from scheduling import selectors, services
from scheduling.engine import dispatcher, executor, firing, pipelines, recovery
from scheduling.models import AttemptStatus, Task, TaskAudit, TaskResult, TaskStatus
from taskhub.exceptions import ValidationError

pytestmark = pytest.mark.django_db

DAY1 = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)  # far from midnight, DST and month ends


def at(day: int, hour: int, minute: int = 0, second: int = 5) -> datetime:
    return DAY1.replace(hour=hour, minute=minute, second=second) + timedelta(days=day - 1)


def queued(task: Task) -> list[TaskResult]:
    return list(TaskResult.objects.filter(task=task, status=AttemptStatus.QUEUED))


def finish(task: Task, status: str = AttemptStatus.DONE, error: str = "") -> None:
    """Run the task's queued attempt to ``status`` in-process (claimed now, finished now)."""
    (result,) = queued(task)
    executor.complete(executor.claim(result.pk), executor.Outcome(status, error=error))


def picked(clock, moment: datetime) -> list[str]:
    """Move the clock, fire what is due and dispatch; the names of the tasks whose attempts were queued."""
    clock.move_to(moment)
    firing.fire_due()
    return sorted(r.task.name for r in dispatcher.dispatch())


def runs(task: Task, status: str = AttemptStatus.DONE) -> int:
    return TaskResult.objects.filter(task=task, status=status).count()


@pytest.fixture
def pipeline(make_task):
    """export (02:00 daily) -> report (03:00 daily), created on day 1 at 01:00."""

    def build(mode: str = "fresh", **report_fields):
        export = make_task("export", task_type="SCHEDULED", cron_expr="0 2 * * *")
        report = make_task(
            "report",
            task_type="SCHEDULED",
            cron_expr="0 3 * * *",
            dependencies=[{"id": str(export.pk), "mode": mode}],
            **report_fields,
        )
        return export, report

    return build


def test_a_daily_report_consumes_each_export_once_and_waits_for_a_late_one(pipeline):
    with time_machine.travel(DAY1, tick=False) as clock:
        export, report = pipeline()
        # Day 1: export at 02:00, then the report (no previous run: any DONE export is fresh).
        assert picked(clock, at(1, 2)) == ["export"]
        finish(export)
        assert picked(clock, at(1, 3)) == ["report"]
        finish(report)
        # Day 2: the export is late (paused over its fire): the report waits instead of reading yesterday's.
        services.task_pause(task=export)
        assert picked(clock, at(1, 3, 30)) == []
        assert picked(clock, at(2, 3)) == []
        report.refresh_from_db()
        assert report.status == TaskStatus.PENDING
        (held,) = selectors.waiting_on(report)
        assert (held.name, held.since) == ("export", at(1, 3))  # day 1's report started then
        assert selectors.describe_waiting(report) == "export (no run finished since 2026-06-01 03:00:05 UTC)"
        # The export runs late, at 05:00: the report follows it.
        services.task_resume(task=Task.objects.get(pk=export.pk))
        services.task_run_now(task=export)
        assert picked(clock, at(2, 5)) == ["export"]
        finish(export)
        assert picked(clock, at(2, 5, 1)) == ["report"]
        finish(report)
        assert selectors.waiting_on(Task.objects.get(pk=report.pk)) == []
        # Day 3: on time again, one report per export.
        assert picked(clock, at(3, 2)) == ["export"]
        finish(export)
        assert picked(clock, at(3, 3)) == ["report"]
        finish(report)
        # A run of the report outside its schedule waits for the next export: nothing is consumed twice.
        services.task_run_now(task=report)
        assert picked(clock, at(3, 12)) == []
        assert picked(clock, at(4, 2)) == ["export"]
        finish(export)
        assert picked(clock, at(4, 2, 1)) == ["report"]
    assert (runs(export), runs(report)) == (4, 3)


def test_a_missing_export_fails_the_report_after_its_dependency_timeout_naming_it(pipeline):
    with time_machine.travel(DAY1, tick=False) as clock:
        export, report = pipeline(dependency_timeout=3600)
        picked(clock, at(1, 2))
        finish(export)
        picked(clock, at(1, 3))
        finish(report)
        services.task_pause(task=export)
        assert picked(clock, at(2, 3)) == []
        clock.move_to(at(2, 3, 59, 59))
        assert recovery.sweep()["dependency_timeouts"] == 0
        clock.move_to(at(2, 4, 0, 6))
        assert recovery.sweep()["dependency_timeouts"] == 1
        report.refresh_from_db()
        assert report.status == TaskStatus.FAILED
        assert report.status_reason.startswith("dependency 'export' has no run finished since 2026-06-01 03:00:05")
        assert "dependency_timeout" in report.status_reason
        # The next day's export comes: the next report runs on it.
        services.task_resume(task=Task.objects.get(pk=export.pk))
        assert picked(clock, at(3, 2)) == ["export"]
        finish(export)
        assert picked(clock, at(3, 3)) == ["report"]


def test_the_configured_default_applies_to_scheduled_tasks_and_not_to_immediate_ones(
    pipeline, make_task, scheduler_conf
):
    scheduler_conf(dependency_timeout=600)
    with time_machine.travel(DAY1, tick=False) as clock:
        export, report = pipeline()
        services.task_pause(task=export)
        one_off = make_task("one-off", dependencies=[export.pk])  # export never ran: waits, IMMEDIATE
        assert picked(clock, at(1, 3)) == []
        clock_now = at(1, 3, 10, 6)
        clock.move_to(clock_now)
        assert pipelines.fail_overdue(clock_now) == 1
        assert Task.objects.get(pk=report.pk).status == TaskStatus.FAILED
        assert "dependency 'export' is still PENDING after 600 s" in Task.objects.get(pk=report.pk).status_reason
        clock.move_to(clock_now + timedelta(days=3))
        assert pipelines.fail_overdue(clock_now + timedelta(days=3)) == 0
        assert Task.objects.get(pk=one_off.pk).status == TaskStatus.PENDING


def test_any_mode_keeps_the_former_rule(pipeline):
    with time_machine.travel(DAY1, tick=False) as clock:
        export, report = pipeline(mode="any")
        picked(clock, at(1, 2))
        finish(export)
        picked(clock, at(1, 3))
        finish(report)
        services.task_pause(task=export)
        assert picked(clock, at(2, 3)) == ["report"]  # yesterday's export is good enough
        assert selectors.waiting_on(Task.objects.get(pk=report.pk)) == []


def test_an_immediate_task_takes_any_done_run_of_its_dependency(make_task):
    with time_machine.travel(DAY1, tick=False) as clock:
        upstream = make_task("upstream")
        dispatcher.dispatch()
        finish(upstream)
        clock.shift(3600)
        dependent = make_task("dependent", dependencies=[upstream.pk])
        assert [r.task.name for r in dispatcher.dispatch()] == ["dependent"]
        finish(dependent)
        # Run again by hand, a one-off task keeps the status rule: its dependency is DONE, it starts.
        clock.shift(60)
        services.task_run_now(task=dependent)
        assert [r.task.name for r in dispatcher.dispatch()] == ["dependent"]


def test_two_waiting_runs_of_a_task_do_not_consume_the_same_upstream_run(make_task):
    with time_machine.travel(DAY1, tick=False) as clock:
        upstream = make_task("upstream", task_type="SCHEDULED", cron_expr="0 0 1 1 *")
        minutely = make_task("minutely", task_type="SCHEDULED", cron_expr="* * * * *", dependencies=[upstream.pk])
        for minute in (1, 2):
            clock.move_to(DAY1.replace(minute=minute, second=1))
            firing.fire_due()
        assert TaskResult.objects.filter(task=minutely, status=AttemptStatus.PENDING).count() == 2
        services.task_run_now(task=upstream)
        clock.shift(1)
        assert [r.task.name for r in dispatcher.dispatch()] == ["upstream"]
        finish(upstream)
        clock.shift(1)
        assert [r.task.name for r in dispatcher.dispatch()] == ["minutely"]  # one of the two
        assert dispatcher.dispatch() == []  # the other waits while the first is queued ...
        clock.shift(1)
        finish(minutely)
        assert dispatcher.dispatch() == []  # ... and after it ran: it needs a newer upstream run
        assert runs(minutely, AttemptStatus.PENDING) == 1


def test_the_mode_is_set_kept_and_audited_through_the_service(make_task):
    export = make_task("export")
    other = make_task("other")
    report = make_task("report", dependencies=[{"id": str(export.pk), "mode": "any"}, other.pk])
    assert set(report.any_run_dependencies.all()) == {export}
    created = TaskAudit.objects.get(task_id=report.pk, action="created")
    assert created.changes["dependencies"] == [None, ["export (any run)", "other"]]
    services.task_update(task=report, data={"dependencies": [export.pk]})  # a plain id keeps its mode
    assert set(report.any_run_dependencies.all()) == {export}
    services.task_update(task=report, data={"dependencies": [{"id": str(export.pk), "mode": "fresh"}]})
    assert not report.any_run_dependencies.exists()
    changed = TaskAudit.objects.filter(task_id=report.pk, action="changed").order_by("created_at", "id")
    assert [e.changes["dependencies"] for e in changed] == [
        [["export (any run)", "other"], ["export (any run)"]],
        [["export (any run)"], ["export"]],
    ]
    with pytest.raises(ValidationError) as refused:
        services.task_update(task=report, data={"dependencies": [{"id": str(export.pk), "mode": "sometimes"}]})
    assert "mode must be one of fresh, any" in str(refused.value.errors["dependencies"])
    with pytest.raises(ValidationError) as refused:
        services.task_update(task=report, data={"dependency_timeout": 0})
    assert "dependency_timeout" in refused.value.errors


# Retry with downstream.


def chain(make_task, owner=None):
    """extract -> transform -> load, and extract -> archive (a second branch); extract fails, the rest with it."""
    extract = make_task("extract", owner=owner)
    transform = make_task("transform", dependencies=[extract.pk], owner=owner)
    load = make_task("load", dependencies=[transform.pk], owner=owner)
    archive = make_task("archive", dependencies=[extract.pk], owner=owner)
    dispatcher.dispatch()
    finish(extract, AttemptStatus.FAILED, error="RuntimeError: boom")
    return extract, transform, load, archive


def test_retry_with_failed_downstream_runs_each_dependent_again_in_dependency_order(make_task):
    with time_machine.travel(DAY1, tick=False) as clock:
        extract, transform, load, archive = chain(make_task)
        assert {t.status for t in Task.objects.exclude(pk=extract.pk)} == {TaskStatus.FAILED}
        result = services.task_retry(task=Task.objects.get(pk=extract.pk), downstream="failed")
        outcome = services.downstream_of(result)
        assert outcome is not None and outcome.started == ["archive", "transform", "load"]
        waves = []
        for _ in range(3):
            clock.shift(1)
            wave = dispatcher.dispatch()
            waves.append(sorted(r.task.name for r in wave))
            for attempt in wave:
                finish(attempt.task)
        assert waves == [["extract"], ["archive", "transform"], ["load"]]
        assert dispatcher.dispatch() == []
        for task in (extract, transform, load, archive):
            assert runs(task) == 1
        audit = TaskAudit.objects.get(task_id=load.pk, action="retried")
        assert audit.detail == (
            f"brought along by retried of 'extract' (downstream=failed, pipeline run {outcome.pipeline_run}), "
            "through 'transform'"
        )
        assert outcome.pipeline_run is not None
        assert {r.pipeline_run_id for r in TaskResult.objects.filter(status=AttemptStatus.DONE)} == {
            outcome.pipeline_run
        }
        assert "3 dependent(s) run again" in TaskAudit.objects.get(task_id=extract.pk, action="retried").detail


def test_failed_downstream_leaves_dependents_that_failed_for_another_reason(make_task):
    extract = make_task("extract")
    other = make_task("other")
    report = make_task("report", dependencies=[extract.pk, other.pk])
    dispatcher.dispatch()
    finish(other, AttemptStatus.FAILED, error="other broke")  # report fails because of other, not extract
    finish(extract, AttemptStatus.FAILED, error="boom")
    result = services.task_retry(task=Task.objects.get(pk=extract.pk), downstream="failed")
    assert services.downstream_of(result).started == []
    assert Task.objects.get(pk=report.pk).status == TaskStatus.FAILED


def test_all_downstream_brings_done_dependents_too_and_they_wait_for_the_new_run(make_task):
    with time_machine.travel(DAY1, tick=False) as clock:
        extract = make_task("extract")
        report = make_task("report", dependencies=[extract.pk])
        dispatcher.dispatch()
        finish(extract)
        clock.shift(1)
        dispatcher.dispatch()
        finish(report)
        clock.shift(1)
        result = services.task_run_now(task=Task.objects.get(pk=extract.pk), downstream="all")
        assert services.downstream_of(result).started == ["report"]
        assert [r.task.name for r in dispatcher.dispatch()] == ["extract"]  # report waits for the new export
        clock.shift(1)
        finish(extract)
        assert [r.task.name for r in dispatcher.dispatch()] == ["report"]


def test_downstream_touches_only_what_the_actor_may_see_and_change(make_task):
    users = get_user_model().objects
    alice = users.create_user("alice")
    alice.user_permissions.add(Permission.objects.get(codename="change_task"))
    bob = users.create_user("bob")
    extract = make_task("extract", owner=alice)
    mine = make_task("mine", dependencies=[extract.pk], owner=alice)
    theirs = make_task("theirs", dependencies=[extract.pk], owner=alice)
    below = make_task("below theirs", dependencies=[theirs.pk], owner=alice)
    Task.objects.filter(pk=theirs.pk).update(owner=bob)  # bob's task on alice's export: alice cannot see it
    dispatcher.dispatch()
    finish(extract, AttemptStatus.FAILED, error="boom")
    alice = users.get(pk=alice.pk)
    result = services.task_retry(task=Task.objects.get(pk=extract.pk), actor=alice, downstream="failed")
    outcome = services.downstream_of(result)
    assert (outcome.started, outcome.hidden) == ([mine.name], 1)
    assert "1 dependent(s) you cannot see or change were not touched" in outcome.summary()
    assert Task.objects.get(pk=theirs.pk).status == TaskStatus.FAILED
    assert Task.objects.get(pk=below.pk).status == TaskStatus.FAILED
    with pytest.raises(ValidationError):
        services.task_retry(task=Task.objects.get(pk=extract.pk), downstream="some")
