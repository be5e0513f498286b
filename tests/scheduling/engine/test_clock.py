"""One clock: scheduling decisions use the database server's clock, whatever the host's says."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from scheduling.engine import clock, dispatcher, executor, recovery
from scheduling.models import AttemptStatus, TaskResult

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs in-process: its clock is the host's clock"
)


@pytest.fixture
def database_clock(settings):
    settings.TASKHUB_CLOCK = "database"
    clock._measured_at = None  # measure afresh inside the test
    yield
    clock._measured_at = None


def server_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


@postgres_only
def test_a_host_whose_clock_is_off_schedules_by_the_database_clock(database_clock, caplog):
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=True):
        with caplog.at_level(logging.WARNING, logger="scheduling.engine.clock"):
            seen = clock.now()
        assert abs((seen - server_now()).total_seconds()) < 5
    assert "behind the database server's" in caplog.text


@postgres_only
def test_a_worker_an_hour_behind_sets_a_deadline_the_sweep_agrees_with(database_clock, make_task):
    """Without one clock its deadline would already be past for the sweep, which would run the task twice."""
    task = make_task("skewed", timeout_seconds=60)
    (queued,) = dispatcher.dispatch()
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=True):
        clock._measured_at = None  # as a worker process starting on that host
        claimed = executor.claim(queued.pk)
    assert claimed.deadline > server_now() + timedelta(seconds=50)
    clock._measured_at = None  # the sweep runs on the beat's host, whose clock is right
    assert recovery.sweep()["reclaimed"] == 0
    assert TaskResult.objects.get(pk=queued.pk).status == AttemptStatus.RUNNING
    assert task.pk == claimed.task_id


def test_on_sqlite_or_when_turned_off_the_local_clock_is_used(settings):
    settings.TASKHUB_CLOCK = "local"
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=False):
        assert clock.now() == timezone.now()
