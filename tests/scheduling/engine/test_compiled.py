"""The dispatcher's pick compiled once (engine/compiled.py): the same attempts as the ORM, at each new time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.engine import compiled, dispatcher, executor
from scheduling.models import AttemptStatus, TaskResult

pytestmark = pytest.mark.django_db


def built(now) -> list[int]:
    """The pick as the ORM builds it for ``now`` (a datetime, no cache)."""
    with transaction.atomic():
        return [r.pk for r in dispatcher._ready(now)[:100]]


def compiled_pick(now) -> list[TaskResult]:
    with transaction.atomic():
        return dispatcher.pick(100, now)


def test_the_compiled_pick_binds_each_call_s_time_and_matches_the_orm(make_task, scheduler_conf):
    scheduler_conf(concurrency=10, priority_aging_seconds=60)
    make_task("ready-low", priority="LOW")
    make_task("ready-high", priority="HIGH")
    later = make_task("later", priority="HIGH")
    now = timezone.now()
    TaskResult.objects.filter(task=later).update(status=AttemptStatus.RETRY, available_at=now + timedelta(minutes=5))
    compiled.forget()
    first = compiled_pick(now)
    assert [r.task.name for r in first] == ["ready-high", "ready-low"]
    assert [r.pk for r in first] == built(now)
    # Six minutes on: the RETRY is due, and the LOW one has waited past two aging intervals (lifted to HIGH,
    # and older): the same compiled statement, a new time.
    with CaptureQueriesContext(connection) as queries:
        second = compiled_pick(now + timedelta(minutes=6))
    assert [r.task.name for r in second] == ["ready-low", "ready-high", "later"]
    assert [r.pk for r in second] == built(now + timedelta(minutes=6))
    assert len([q for q in queries.captured_queries if "scheduling_taskresult" in q["sql"]]) == 1


def test_compiled_counts_and_probes_answer_as_the_orm_at_each_new_time(make_task):
    waiting = make_task("waiting")
    make_task("queued")
    now = timezone.now()
    TaskResult.objects.filter(task=waiting).update(status=AttemptStatus.RETRY, available_at=now + timedelta(minutes=5))
    TaskResult.objects.exclude(task=waiting).update(status=AttemptStatus.QUEUED)
    compiled.forget()
    assert dispatcher.in_flight() == 1
    assert dispatcher.any_due(now) is False
    assert dispatcher.any_due(now + timedelta(minutes=5)) is True  # the same compiled probe, a later time
    TaskResult.objects.update(status=AttemptStatus.DONE)
    assert dispatcher.in_flight() == 0 and dispatcher.any_due(now + timedelta(minutes=5)) is False


def test_compiled_instances_load_as_the_orm_would(make_task):
    task = make_task("typed", priority="MEDIUM", timeout_seconds=42)
    compiled.forget()
    (result,) = compiled_pick(timezone.now())
    orm = TaskResult.objects.select_related("task").get(pk=result.pk)
    assert result.available_at == orm.available_at and result.available_at.tzinfo is not None
    assert (result.attempt, result.priority, result.status) == (orm.attempt, orm.priority, orm.status)
    assert result.task.pk == task.pk and result.task.timeout_seconds == 42 and result.task.status == task.status
    assert result.task.effective_timeout() == 42


def prepared_statements() -> dict[str, int]:
    """This connection's prepared statements: the first words of each, and how often it was planned and run."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return {" ".join(statement.split()[:2]): runs for statement, runs in cursor.fetchall()}


def run_one(make_task, name: str) -> None:
    make_task(name, tags=["NOOP"])
    (result,) = dispatcher.dispatch()
    assert executor.run_attempt(result.pk) == AttemptStatus.DONE


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL prepares; SQLite has nothing to prepare")
def test_the_hot_statements_are_prepared_once_per_connection_and_then_only_run(make_task, taskhub_section):
    compiled.forget()
    run_one(make_task, "first")
    run_one(make_task, "second")
    prepared = prepared_statements()
    # The dispatch's in-flight count and its queueing, the claim and the completion: each prepared once,
    # then run again without a new PREPARE.
    assert prepared == {"SELECT count(*)": 2, "WITH queued": 2, "WITH claimed": 2, "WITH done": 2}, prepared

    # Switched off (a pooler that cannot keep prepared statements): the same statements, none run prepared.
    taskhub_section("database", prepared_statements=False)
    run_one(make_task, "third")
    assert prepared_statements() == prepared
