"""Cron fires with a controlled clock: once per fire, coalesce, misfire grace, max_instances, DST, edits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django_celery_beat.models import CrontabSchedule

from scheduling import services
from scheduling.engine import dispatcher, executor, firing
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 9, 59, 30, tzinfo=UTC)


@pytest.fixture
def at():
    with time_machine.travel(T0, tick=False) as clock:
        yield clock


def scheduled(make_task, name="cron", cron="* * * * *", **fields) -> Task:
    return make_task(name, task_type="SCHEDULED", cron_expr=cron, **fields)


def fires(task) -> list:
    runs = TaskResult.objects.filter(task=task, attempt=1).order_by("fire_time")
    return list(runs.values_list("fire_time", "status"))


def test_scheduled_task_is_stored_on_a_shared_crontab(make_task, at):
    a = scheduled(make_task, "a", "0 0 * * *", timezone="Europe/Paris")
    b = scheduled(make_task, "b", "0 0 * * *", timezone="Europe/Paris")
    assert a.crontab_id == b.crontab_id
    crontab = CrontabSchedule.objects.get(pk=a.crontab_id)
    assert (crontab.minute, crontab.hour, str(crontab.timezone)) == ("0", "0", "Europe/Paris")
    # Midnight in Paris (CEST, UTC+2) is 22:00 UTC.
    assert a.next_fire_at == datetime(2026, 6, 1, 22, 0, tzinfo=UTC)
    assert a.status == TaskStatus.PENDING and not TaskResult.objects.filter(task=a).exists()


def test_due_task_fires_once_and_advances(make_task, at):
    task = scheduled(make_task)
    assert firing.fire_due() == 0
    at.move_to(datetime(2026, 6, 1, 10, 0, 0, 300000, tzinfo=UTC))
    assert firing.fire_due() == 1
    assert firing.fire_due() == 0  # a second beat, or a second tick, fires nothing
    task.refresh_from_db()
    assert task.next_fire_at == datetime(2026, 6, 1, 10, 1, tzinfo=UTC)
    assert task.status == TaskStatus.PENDING
    assert fires(task) == [(datetime(2026, 6, 1, 10, 0, tzinfo=UTC), AttemptStatus.PENDING)]


def test_same_fire_cannot_be_recorded_twice(make_task, at):
    task = scheduled(make_task)
    fire_time = task.next_fire_at
    at.move_to(fire_time)
    firing.fire_due()
    # A racing beat that read the task before it advanced inserts the same fire again.
    Task.objects.filter(pk=task.pk).update(next_fire_at=fire_time)
    firing.fire_due()
    assert len(fires(task)) == 1


def test_fire_of_a_task_whose_dependency_was_cancelled_fails_at_once(make_task, at):
    upstream = make_task("extract")
    services.task_cancel(task=upstream)
    blocked = scheduled(make_task, "report", dependencies=[upstream.pk])
    free = scheduled(make_task, "free")
    at.move_to(blocked.next_fire_at)
    assert firing.fire_due() == 2
    run = TaskResult.objects.get(task=blocked)
    assert run.status == AttemptStatus.FAILED and run.error_message == "dependency 'extract' is CANCELLED"
    assert Task.objects.get(pk=blocked.pk).status == TaskStatus.FAILED
    assert fires(free) == [(free.next_fire_at, AttemptStatus.PENDING)]


def test_missed_fires_each_run_without_coalesce(make_task, at, scheduler_conf):
    scheduler_conf(coalesce=False, misfire_grace_seconds=600, max_instances=10)
    task = scheduled(make_task)
    at.move_to(datetime(2026, 6, 1, 10, 4, 10, tzinfo=UTC))  # beat was down for four fires
    assert firing.fire_due() == 5
    assert [f[0].minute for f in fires(task)] == [0, 1, 2, 3, 4]


def test_coalesce_runs_once_for_all_missed_fires(make_task, at, scheduler_conf):
    scheduler_conf(coalesce=True, misfire_grace_seconds=600)
    task = scheduled(make_task)
    at.move_to(datetime(2026, 6, 1, 10, 4, 10, tzinfo=UTC))
    assert firing.fire_due() == 1
    assert fires(task) == [(datetime(2026, 6, 1, 10, 4, tzinfo=UTC), AttemptStatus.PENDING)]
    task.refresh_from_db()
    assert task.next_fire_at == datetime(2026, 6, 1, 10, 5, tzinfo=UTC)


def test_fires_older_than_the_misfire_grace_are_dropped(make_task, at, scheduler_conf):
    scheduler_conf(coalesce=False, misfire_grace_seconds=90, max_instances=10)
    task = scheduled(make_task)
    at.move_to(datetime(2026, 6, 1, 10, 4, 10, tzinfo=UTC))
    assert firing.fire_due() == 2  # 10:03 and 10:04 are within 90 s
    assert [f[0].minute for f in fires(task)] == [3, 4]


def test_max_instances_skip_records_the_skip(make_task, at, scheduler_conf):
    scheduler_conf(max_instances=1)
    task = scheduled(make_task)
    at.move_to(datetime(2026, 6, 1, 10, 0, 1, tzinfo=UTC))
    firing.fire_due()
    at.move_to(datetime(2026, 6, 1, 10, 1, 1, tzinfo=UTC))
    assert firing.fire_due() == 0
    statuses = [status for _, status in fires(task)]
    assert statuses == [AttemptStatus.PENDING, AttemptStatus.SKIPPED]
    skipped = TaskResult.objects.get(task=task, status=AttemptStatus.SKIPPED)
    assert "max_instances = 1" in skipped.error_message


def test_max_instances_queue_keeps_the_fire(make_task, at, scheduler_conf):
    scheduler_conf(max_instances=1)
    task = scheduled(make_task, overlap_policy="queue")
    for minute in (0, 1):
        at.move_to(datetime(2026, 6, 1, 10, minute, 1, tzinfo=UTC))
        firing.fire_due()
    assert [status for _, status in fires(task)] == [AttemptStatus.PENDING, AttemptStatus.PENDING]
    assert len(dispatcher.dispatch()) == 1  # the queued fire waits for the first run


def test_max_instances_replace_cancels_the_old_run(make_task, at, scheduler_conf):
    scheduler_conf(max_instances=1)
    task = scheduled(make_task, overlap_policy="replace")
    for minute in (0, 1):
        at.move_to(datetime(2026, 6, 1, 10, minute, 1, tzinfo=UTC))
        firing.fire_due()
    assert [status for _, status in fires(task)] == [AttemptStatus.CANCELLED, AttemptStatus.PENDING]


def test_fired_run_goes_through_dispatcher_and_executor(make_task, at):
    task = scheduled(make_task)
    at.move_to(task.next_fire_at)
    firing.fire_due()
    (result,) = dispatcher.dispatch()
    assert executor.run_attempt(result.pk) == AttemptStatus.DONE
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE


def test_paused_task_does_not_fire_and_resume_starts_from_now(make_task, at):
    task = scheduled(make_task)
    services.task_pause(task=task)
    at.move_to(datetime(2026, 6, 1, 10, 30, 5, tzinfo=UTC))
    assert firing.fire_due() == 0
    services.task_resume(task=task)
    task.refresh_from_db()
    assert task.next_fire_at == datetime(2026, 6, 1, 10, 31, tzinfo=UTC)
    assert fires(task) == []


def test_edit_takes_effect_on_the_next_tick(make_task, at):
    task = scheduled(make_task, cron="0 12 * * *")
    assert task.next_fire_at == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    services.task_update(task=task, data={"cron_expr": "*/5 * * * *"})
    task.refresh_from_db()
    assert task.next_fire_at == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    at.move_to(datetime(2026, 6, 1, 10, 0, 1, tzinfo=UTC))
    assert firing.fire_due() == 1


def test_dst_spring_forward_fires_once_at_the_jump(make_task, scheduler_conf):
    # Europe/Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29 (01:00 UTC).
    scheduler_conf(misfire_grace_seconds=300)
    with time_machine.travel(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), tick=False) as clock:
        task = scheduled(make_task, cron="30 2 * * *", timezone="Europe/Berlin")
        assert task.next_fire_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:30 does not exist: at the jump
        clock.move_to(datetime(2026, 3, 29, 1, 0, 1, tzinfo=UTC))
        assert firing.fire_due() == 1
        task.refresh_from_db()
        assert task.next_fire_at == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST the next day


def test_dst_fall_back_repeated_hour_fires_once(make_task, scheduler_conf):
    # America/New_York repeats 01:00-02:00 on 2026-11-01 (EDT -> EST).
    scheduler_conf(misfire_grace_seconds=300, max_instances=10)
    with time_machine.travel(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), tick=False) as clock:
        task = scheduled(make_task, cron="30 1 * * *", timezone="America/New_York")
        assert task.next_fire_at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # first 01:30 (EDT)
        total = 0
        for hour in range(5, 9):
            for minute in (0, 31):
                clock.move_to(datetime(2026, 11, 1, hour, minute, tzinfo=UTC))
                total += firing.fire_due()
        assert total == 1
        task.refresh_from_db()
        assert task.next_fire_at == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST next day


def test_many_tasks_due_together_fire_in_one_bulk_pass(make_task, at, django_assert_max_num_queries):
    tasks = [scheduled(make_task, f"bulk-{i}") for i in range(200)]
    at.move_to(tasks[0].next_fire_at + timedelta(milliseconds=10))
    # Constant in the number of tasks (SQLite splits the bulk insert into a few batches).
    with django_assert_max_num_queries(16):
        assert firing.fire_due() == 200
    assert TaskResult.objects.filter(fire_time=tasks[0].next_fire_at).count() == 200
