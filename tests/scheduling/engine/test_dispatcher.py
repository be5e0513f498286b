"""The dispatcher's pick: priority, age, concurrency, dependencies, pause, instance limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling import selectors, services
from scheduling.engine import dispatcher, executor
from scheduling.models import AttemptStatus, TaskResult, TaskStatus, status_in

pytestmark = pytest.mark.django_db


def picked_names(results: list[TaskResult]) -> list[str]:
    return [r.task.name for r in results]


def finish(task, status=AttemptStatus.DONE, error: str = "") -> None:
    """Run the task's queued attempt to the given outcome, in-process."""
    result = TaskResult.objects.get(task=task, status=AttemptStatus.QUEUED)
    claimed = executor.claim(result.pk)
    executor.complete(claimed, executor.Outcome(status, error=error))


def test_high_priority_task_starts_first_then_oldest_within_priority(make_task, scheduler_conf):
    scheduler_conf(concurrency=1)
    with time_machine.travel(timezone.now() - timedelta(minutes=5), tick=False) as clock:
        make_task("low-old", priority="LOW")
        clock.shift(1)
        make_task("medium-old", priority="MEDIUM")
        clock.shift(1)
        make_task("high-new", priority="HIGH")
        clock.shift(1)
        make_task("medium-new", priority="MEDIUM")
    order = []
    for _ in range(4):
        (result,) = dispatcher.dispatch()
        order.append(result.task.name)
        finish(result.task)
    assert order == ["high-new", "medium-old", "medium-new", "low-old"]


def test_concurrency_caps_attempts_in_flight(make_task, scheduler_conf):
    scheduler_conf(concurrency=3)
    tasks = [make_task(f"t{i}") for i in range(5)]
    assert len(dispatcher.dispatch()) == 3
    assert dispatcher.dispatch() == []  # still three in flight
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 3
    finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    assert len(dispatcher.dispatch()) == 1
    assert sorted(services.Task.objects.values_list("status", flat=True)) == sorted(
        ["DONE", "QUEUED", "QUEUED", "QUEUED", "PENDING"]
    )
    assert len(tasks) == 5


def test_dependent_waits_until_every_dependency_is_done(make_task):
    a = make_task("a")
    b = make_task("b")
    c = make_task("c", dependencies=[a.pk, b.pk])
    assert sorted(picked_names(dispatcher.dispatch())) == ["a", "b"]
    assert [t.name for t in selectors.waiting_on(c)] == ["a", "b"]
    finish(a)
    assert dispatcher.dispatch() == []
    finish(b)
    assert picked_names(dispatcher.dispatch()) == ["c"]


def test_failed_dependency_fails_dependents_naming_it(make_task):
    a = make_task("extract")
    b = make_task("report", dependencies=[a.pk])
    c = make_task("notify", dependencies=[b.pk])
    dispatcher.dispatch()
    finish(a, AttemptStatus.FAILED, error="RuntimeError: boom")
    b.refresh_from_db()
    c.refresh_from_db()
    assert b.status == TaskStatus.FAILED
    assert "'extract'" in b.status_reason
    assert c.status == TaskStatus.FAILED
    assert "'report'" in c.status_reason
    assert dispatcher.dispatch() == []


def test_task_created_after_its_dependency_failed_fails_at_once(make_task):
    a = make_task("a")
    dispatcher.dispatch()
    finish(a, AttemptStatus.FAILED)
    b = make_task("b", dependencies=[a.pk])
    b.refresh_from_db()
    assert b.status == TaskStatus.FAILED
    assert "dependency 'a' is FAILED" in b.status_reason


def test_diamond_runs_each_task_once(make_task):
    top = make_task("top")
    left = make_task("left", dependencies=[top.pk])
    right = make_task("right", dependencies=[top.pk])
    bottom = make_task("bottom", dependencies=[left.pk, right.pk])
    started = []
    while picked := dispatcher.dispatch():
        for result in picked:
            started.append(result.task.name)
            finish(result.task)
    assert started[0] == "top" and started[-1] == "bottom"
    assert sorted(started) == ["bottom", "left", "right", "top"]
    assert TaskResult.objects.filter(task=bottom).count() == 1


def test_paused_task_does_not_start_until_resumed(make_task):
    task = make_task("paused")
    services.task_pause(task=task)
    assert dispatcher.dispatch() == []
    services.task_resume(task=task)
    assert picked_names(dispatcher.dispatch()) == ["paused"]


def test_retry_waits_for_its_time(make_task):
    task = make_task("later")
    TaskResult.objects.filter(task=task).update(
        status=AttemptStatus.RETRY, available_at=timezone.now() + timedelta(seconds=30)
    )
    assert dispatcher.dispatch() == []
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert picked_names(dispatcher.dispatch()) == ["later"]


def test_priority_aging_lets_old_low_work_overtake_new_high_work(make_task, scheduler_conf):
    scheduler_conf(concurrency=1, priority_aging_seconds=60)
    now = timezone.now()
    with time_machine.travel(now - timedelta(seconds=150), tick=False):
        make_task("starving-low", priority="LOW")
    with time_machine.travel(now - timedelta(seconds=5), tick=False):
        make_task("fresh-high", priority="HIGH")
    # LOW waited 2.5 intervals: lifted two levels to HIGH, and it is older.
    assert picked_names(dispatcher.dispatch(now)) == ["starving-low"]


def test_without_aging_high_work_always_wins(make_task, scheduler_conf):
    scheduler_conf(concurrency=1, priority_aging_seconds=0)
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=5), tick=False):
        make_task("old-low", priority="LOW")
    make_task("new-high", priority="HIGH")
    assert picked_names(dispatcher.dispatch()) == ["new-high"]


def test_max_instances_limits_runs_of_one_task_in_flight(make_task, scheduler_conf):
    scheduler_conf(concurrency=10, max_instances=2)
    task = make_task("busy")
    for _ in range(3):
        TaskResult.objects.create(task=task, status=AttemptStatus.PENDING, priority=task.priority)
    assert len(dispatcher.dispatch()) == 2
    assert TaskResult.objects.filter(task=task, status=AttemptStatus.PENDING).count() == 2


def test_slots_a_limit_holds_back_are_filled_from_further_down_the_queue(make_task, scheduler_conf):
    """The first pick loads as many candidates as slots; when max_instances keeps one out, a wider one
    fills the slot with the next task's attempt, still in pick order."""
    scheduler_conf(concurrency=3, max_instances=1)
    busy = make_task("busy", priority="HIGH")
    for _ in range(3):
        TaskResult.objects.create(task=busy, status=AttemptStatus.PENDING, priority=busy.priority)
    make_task("next")
    make_task("last", priority="LOW")
    assert picked_names(dispatcher.dispatch()) == ["busy", "next", "last"]
    assert TaskResult.objects.filter(task=busy, status=AttemptStatus.PENDING).count() == 3


def test_queued_attempt_gets_a_celery_id_and_status_follows(make_task):
    task = make_task("x")
    (result,) = dispatcher.dispatch()
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    assert result.celery_task_id and result.queued_at is not None


def test_max_instances_counts_runs_already_in_flight(make_task, scheduler_conf):
    scheduler_conf(concurrency=10, max_instances=1)
    task = make_task("busy")
    assert len(dispatcher.dispatch()) == 1  # its first run is now QUEUED
    TaskResult.objects.create(task=task, status=AttemptStatus.PENDING, priority=task.priority)
    other = make_task("other")
    assert [r.task_id for r in dispatcher.dispatch()] == [other.pk]


def test_wake_on_an_idle_system_dispatches_at_once(make_task, scheduler_conf):
    scheduler_conf(concurrency=64)
    make_task("first")
    dispatcher.wake()
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 1


def test_wake_on_a_busy_system_waits_until_a_batch_of_slots_is_free(make_task, scheduler_conf):
    scheduler_conf(concurrency=8)
    assert 8 // dispatcher.BATCH_SHARE == 2  # a batch of 2 slots
    for i in range(12):
        make_task(f"t{i}")
    assert len(dispatcher.dispatch()) == 8
    finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    dispatcher.wake()  # one slot free: not worth a locked dispatch yet
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 7
    finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    dispatcher.wake()  # two free: both filled in one dispatch
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 8


def test_a_busy_wake_that_finds_the_slots_taken_under_the_lock_picks_nothing(make_task, scheduler_conf):
    """Two completions both see a batch free; the second to get the lock finds the first filled it."""
    scheduler_conf(concurrency=8)  # a batch of 2
    for i in range(12):
        make_task(f"t{i}")
    assert len(dispatcher.dispatch()) == 8
    for _ in range(2):
        finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    assert len(dispatcher.dispatch()) == 2  # the first completion's dispatch
    finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    with CaptureQueriesContext(connection) as queries:
        dispatcher.wake(in_flight_now=6)  # the second's count, taken before that dispatch
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 7  # one free: left for later
    assert not [q for q in queries.captured_queries if "UPDATE" in q["sql"] or "available_at" in q["sql"]]
    finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    dispatcher.wake()  # one more completion: a batch free, filled
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 8


def test_wake_with_a_small_cap_fills_every_freed_slot(make_task, scheduler_conf):
    scheduler_conf(concurrency=5)
    for i in range(6):
        make_task(f"t{i}")
    assert len(dispatcher.dispatch()) == 5
    finish(TaskResult.objects.filter(status=AttemptStatus.QUEUED).first().task)
    dispatcher.wake()
    assert TaskResult.objects.filter(status=AttemptStatus.QUEUED).count() == 5


@pytest.mark.skipif(connection.vendor != "sqlite", reason="checks SQLite's query plans")
def test_pick_and_in_flight_count_use_the_partial_indexes_on_sqlite():
    """With bound status values SQLite scans every attempt ever recorded (1.9 s at 1M attempts)."""
    from scheduling.models import IN_FLIGHT

    def plan(queryset) -> str:
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return " ".join(str(row[-1]) for row in cursor.fetchall())

    assert "result_pick_idx" in plan(dispatcher._ready(timezone.now()).select_related("task")[:10])
    assert "result_inflight_idx" in plan(TaskResult.objects.filter(status_in(IN_FLIGHT)).values("pk"))
    # The probe before each pick (dispatcher.any_due), as compiled.exists runs it.
    probe = dispatcher._due(timezone.now()).filter(priority__in=[1, 2, 3]).order_by().values("pk")[:1]
    assert "result_pick_idx" in plan(probe)


def test_a_dispatch_with_nothing_due_skips_the_pick_and_writes_nothing(make_task, scheduler_conf):
    """The wake after each completion mostly finds nothing waiting: one probe, not the pick (its plan is
    a few milliseconds on PostgreSQL); an attempt waiting for a later time is not due."""
    scheduler_conf(concurrency=8)
    task = make_task("later")
    TaskResult.objects.filter(task=task).update(
        status=AttemptStatus.RETRY, available_at=timezone.now() + timedelta(hours=1)
    )
    with CaptureQueriesContext(connection) as queries:
        assert dispatcher.dispatch() == []
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if "UPDATE" in sql or "JOIN" in sql], statements
    assert len([sql for sql in statements if "EXISTS" in sql]) == 1
    make_task("now")
    assert picked_names(dispatcher.dispatch()) == ["now"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's synchronous_commit")
@pytest.mark.django_db(transaction=True)
def test_only_the_dispatch_commits_without_waiting_for_the_flush(make_task, monkeypatch):
    """A dispatch lost in a server crash is dispatched again (its message's claim finds it not QUEUED);
    every other transaction of the connection keeps the durable commit, and so does a caller's own
    transaction that a dispatch runs inside."""
    from scheduling.engine import lifecycle

    seen = []
    queue_many = lifecycle.queue_many

    def spy(results, *, now):
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])
        queue_many(results, now=now)

    monkeypatch.setattr(lifecycle, "queue_many", spy)
    make_task("one")  # dispatched by the wake after its commit
    assert TaskResult.objects.get(task__name="one").status == AttemptStatus.QUEUED
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        after = cursor.fetchone()[0]
    assert seen == ["off"] and after == "on"
    with transaction.atomic():
        make_task("two")  # its wake waits for the commit
        assert len(dispatcher.dispatch()) == 1
    assert seen == ["off", "on"]
