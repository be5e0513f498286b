"""Attempt creation has one home: the bulk cron fire writes exactly the row build() makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from scheduling.engine import attempts
from scheduling.models import AttemptStatus, Task, TaskResult

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC)
FIRE = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def columns(result: TaskResult) -> dict:
    """Every stored column of an attempt but its id and its task (which differ by construction)."""
    return {
        f.attname: getattr(result, f.attname)
        for f in TaskResult._meta.concrete_fields
        if not f.primary_key and f.name != "task"
    }


def test_the_bulk_fire_writes_every_column_as_build_does(make_task):
    with time_machine.travel(NOW, tick=False):
        bulk, single = make_task("bulk", priority="HIGH"), make_task("single", priority="HIGH")
        TaskResult.objects.all().delete()  # their immediate first runs are not what is compared
        assert attempts.insert_first_runs(Task.objects.filter(pk=bulk.pk), FIRE, NOW) == 1
        attempts.build(single, now=NOW, fire_time=FIRE, available_at=FIRE).save(force_insert=True)
    fired = TaskResult.objects.get(task=bulk)
    built = TaskResult.objects.get(task=single)
    assert columns(fired) == columns(built)
    assert (fired.status, fired.priority, fired.fire_time, fired.created_at) == (
        AttemptStatus.PENDING,
        bulk.priority,
        FIRE,
        NOW,
    )


def test_the_bulk_fire_names_every_column_of_the_model(make_task, django_assert_num_queries):
    """A field added to TaskResult is written by the bulk fire too (the SQL is derived, not typed)."""
    task = make_task("cron")
    TaskResult.objects.all().delete()
    with django_assert_num_queries(1) as captured:
        attempts.insert_first_runs(Task.objects.filter(pk=task.pk), FIRE, NOW)
    insert = captured.captured_queries[0]["sql"]
    for field in TaskResult._meta.concrete_fields:
        if not field.primary_key:
            assert field.column in insert


def test_a_fire_already_recorded_is_left_alone(make_task):
    task = make_task("cron")
    TaskResult.objects.all().delete()
    assert attempts.insert_first_runs(Task.objects.filter(pk=task.pk), FIRE, NOW) == 1
    assert attempts.insert_first_runs(Task.objects.filter(pk=task.pk), FIRE, NOW) == 0
    assert TaskResult.objects.filter(task=task).count() == 1
