"""End to end: real Celery worker and beat processes on the configured broker and database."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from scheduling import services
from scheduling.models import AttemptStatus, RetryPolicy, Task, TaskResult, TaskStatus
from tests.conftest import attempts, statuses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def done(*tasks: Task) -> bool:
    return all(Task.objects.get(pk=t.pk).status == TaskStatus.DONE for t in tasks)


def test_immediate_task_runs_to_done_on_a_worker(start_worker, make_task, journal):
    worker = start_worker()
    task = make_task("hello", parameters={"label": "hello"})
    wait_until(lambda: done(task))
    result = TaskResult.objects.get(task=task)
    assert result.status == AttemptStatus.DONE
    assert result.result == {"label": "hello", "attempt": 1}
    assert result.worker.split(":")[-1].isdigit() and result.started_at and result.duration is not None
    assert journal()[0].split()[:2] == ["hello", "1"]
    assert worker.popen.poll() is None


def test_priority_order_with_concurrency_one(start_worker, make_task, journal, scheduler_conf):
    env = scheduler_conf(concurrency=1)
    blocker = make_task("blocker", tags=["TEST_SLEEP"], parameters={"label": "blocker", "seconds": 1.5})
    low = make_task("low", priority="LOW")
    medium = make_task("medium", priority="MEDIUM")
    high = make_task("high", priority="HIGH")
    start_worker(env=env)
    wait_until(lambda: done(blocker, low, medium, high), timeout=60)
    assert [line.split()[0] for line in journal()] == ["blocker", "high", "medium", "low"]


def test_concurrency_cap_holds_with_two_worker_processes(start_worker, make_task, scheduler_conf):
    env = scheduler_conf(concurrency=2)
    start_worker("w1", concurrency=2, env=env)
    start_worker("w2", concurrency=2, env=env)
    tasks = [make_task(f"s{i}", tags=["TEST_SLEEP"], parameters={"label": f"s{i}", "seconds": 0.4}) for i in range(6)]
    peak = 0
    deadline = time.monotonic() + 60
    while not done(*tasks) and time.monotonic() < deadline:
        peak = max(peak, TaskResult.objects.filter(status=AttemptStatus.RUNNING).count())
        time.sleep(0.02)
    assert done(*tasks)
    assert 1 <= peak <= 2
    # Every run's interval overlaps at most one other.
    spans = list(TaskResult.objects.values_list("started_at", "finished_at"))
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 2


def test_diamond_dag_runs_each_task_once_in_order(start_worker, make_task, journal):
    start_worker()
    top = make_task("top")
    left = make_task("left", dependencies=[top.pk])
    right = make_task("right", dependencies=[top.pk])
    bottom = make_task("bottom", dependencies=[left.pk, right.pk])
    wait_until(lambda: done(top, left, right, bottom))
    order = [line.split()[0] for line in journal()]
    assert sorted(order) == ["bottom", "left", "right", "top"]
    assert order[0] == "top" and order[-1] == "bottom"


def test_upstream_failure_fails_dependents_with_reason(start_worker, make_task):
    start_worker()
    bad = make_task("extract", tags=["TEST_FLAKY"], parameters={"failures": 1})
    child = make_task("publish", dependencies=[bad.pk])
    wait_until(lambda: Task.objects.get(pk=child.pk).status == TaskStatus.FAILED)
    child.refresh_from_db()
    assert "dependency 'extract' failed" in child.status_reason
    assert not TaskResult.objects.filter(task=child, started_at__isnull=False).exists()


def test_retries_with_backoff_then_succeeds(start_worker, start_beat, make_task, journal):
    start_worker()
    start_beat()  # beat is the clock that notices a retry's backoff has elapsed
    policy = RetryPolicy.objects.create(name="quick", max_retries=3, retry_delay=0.3, backoff_factor=2)
    task = make_task("flaky", tags=["TEST_FLAKY"], parameters={"label": "flaky", "failures": 2}, retry_policy=policy.pk)
    wait_until(lambda: done(task), timeout=60)
    assert attempts(task) == [(1, "FAILED"), (2, "FAILED"), (3, "DONE")]
    rows = list(TaskResult.objects.filter(task=task).order_by("attempt"))
    # The second retry waited at least retry_delay * backoff_factor after the second failure.
    assert rows[2].available_at - rows[1].finished_at >= timedelta(seconds=0.6)


def test_hung_handler_is_stopped_by_its_timeout_and_retried(start_worker, make_task):
    start_worker()
    policy = RetryPolicy.objects.create(name="again", max_retries=1, retry_delay=0)
    task = make_task(
        "hangs",
        tags=["TEST_SLEEP"],
        parameters={"label": "hangs", "seconds": 60, "sleep_attempts": 1},
        timeout_seconds=1,
        retry_policy=policy.pk,
    )
    wait_until(lambda: done(task), timeout=60)
    first, second = TaskResult.objects.filter(task=task).order_by("attempt")
    assert first.status == AttemptStatus.TIMEOUT
    assert "timed out after 1 s" in first.error_message
    assert first.duration < 10  # really stopped, not left to sleep for a minute
    assert second.status == AttemptStatus.DONE


def test_handler_ignoring_its_timeout_is_killed_and_reclaimed(start_worker, start_beat, make_task, scheduler_conf):
    env = scheduler_conf(poll_interval=1)
    start_worker(env=env)
    start_beat(env=env)  # its sweep takes back the attempt whose process was killed
    policy = RetryPolicy.objects.create(name="after-kill", max_retries=1, retry_delay=0)
    task = make_task(
        "stubborn",
        tags=["TEST_STUBBORN"],
        parameters={"label": "stubborn", "seconds": 120, "sleep_attempts": 1},
        timeout_seconds=1,
        retry_policy=policy.pk,
    )
    wait_until(lambda: done(task), timeout=60)
    first, second = TaskResult.objects.filter(task=task).order_by("attempt")
    assert first.status == AttemptStatus.TIMEOUT
    assert (first.finished_at - first.started_at).total_seconds() < 30  # not the handler's 120 s
    assert second.status == AttemptStatus.DONE


def test_worker_killed_mid_task_is_retried_and_done_once(start_worker, make_task, journal):
    worker = start_worker(concurrency=1)
    policy = RetryPolicy.objects.create(name="after-crash", max_retries=2, retry_delay=0)
    task = make_task(
        "crashy",
        tags=["TEST_SLEEP"],
        parameters={"label": "crashy", "seconds": 30, "sleep_attempts": 1},
        retry_policy=policy.pk,
    )
    wait_until(lambda: len(journal()) == 1)
    victim = int(journal()[0].split()[2])
    assert victim in worker.child_pids()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: done(task), timeout=90)
    rows = list(TaskResult.objects.filter(task=task).order_by("attempt"))
    assert [r.status for r in rows] == [AttemptStatus.TIMEOUT, AttemptStatus.DONE]
    assert "died" in rows[0].error_message
    assert TaskResult.objects.filter(task=task, status=AttemptStatus.DONE).count() == 1


def test_a_worker_killed_mid_message_loses_none_of_its_attempts_and_runs_each_once(
    start_worker, make_task, journal, scheduler_conf
):
    """Several attempts in one Celery message (a deep queue, one pool process), the process killed on the
    second: the message comes back, the first is not run again, the second is taken back and retried,
    the others run; delivered once more afterwards, it runs nothing."""
    from scheduling.engine import dispatcher
    from scheduling.tasks import execute

    env = scheduler_conf(concurrency=8, attempts_per_message=8)
    worker = start_worker(concurrency=1, env=env)
    dispatcher._pool.clear()  # count the pool processes online now: this worker's one
    policy = RetryPolicy.objects.create(name="after-crash", max_retries=2, retry_delay=0)
    with transaction.atomic():  # committed together: one dispatch, one message of four
        tasks = [
            make_task("first"),
            make_task(
                "crashy",
                tags=["TEST_SLEEP"],
                parameters={"label": "crashy", "seconds": 30, "sleep_attempts": 1},
                retry_policy=policy.pk,
            ),
            make_task("third"),
            make_task("fourth"),
        ]
    wait_until(lambda: len(journal()) == 2)  # first done, crashy asleep
    message = TaskResult.objects.get(task=tasks[0]).celery_task_id
    assert dispatcher.batch_members(message) == [TaskResult.objects.get(task=t).pk for t in tasks]
    victim = int(journal()[1].split()[2])
    assert victim in worker.child_pids()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: done(*tasks), timeout=90)
    crashy = list(TaskResult.objects.filter(task=tasks[1]).order_by("attempt"))
    assert [r.status for r in crashy] == [AttemptStatus.TIMEOUT, AttemptStatus.DONE]
    assert "died" in crashy[0].error_message
    for task in tasks:
        assert TaskResult.objects.filter(task=task, status=AttemptStatus.DONE).count() == 1
    labels = [line.split()[0] for line in journal()]
    assert sorted(labels) == ["crashy", "crashy", "first", "fourth", "third"]
    execute.apply_async(args=dispatcher.batch_members(message))  # the same message, delivered again
    marker = make_task("marker")
    wait_until(lambda: done(marker))
    time.sleep(0.3)
    assert sorted(line.split()[0] for line in journal()) == ["crashy", "crashy", "first", "fourth", "marker", "third"]


def test_same_message_delivered_twice_runs_once(start_worker, make_task, journal):
    from scheduling.tasks import execute

    start_worker()
    task = make_task("dup")
    wait_until(lambda: done(task))
    result = TaskResult.objects.get(task=task)
    execute.apply_async(args=[result.pk])  # a redelivery of the same attempt
    marker = make_task("marker")  # FIFO behind the duplicate on one worker
    wait_until(lambda: done(marker))
    time.sleep(0.3)
    assert [line.split()[0] for line in journal()].count("dup") == 1


def test_cron_task_fires_from_beat_and_two_beats_fire_once(start_worker, start_beat, make_task, journal):
    start_worker()
    # A cron that cannot fire again during the test; its first fire is brought close below.
    task = make_task("yearly", task_type="SCHEDULED", cron_expr="0 0 1 1 *")
    # Bring the first fire close instead of waiting for the next minute.
    fire_at = (timezone.now() + timedelta(seconds=3)).replace(microsecond=0)
    Task.objects.filter(pk=task.pk).update(next_fire_at=fire_at)
    start_beat("beat1")
    start_beat("beat2")
    wait_until(lambda: done(task), timeout=60)
    run = TaskResult.objects.get(task=task, fire_time=fire_at)
    # Not early; how late a fire runs is measured by bench/cron.py (drift), not timed here: on a loaded machine
    # the two beats' start-up alone can pass the fire time.
    assert run.started_at >= fire_at
    assert TaskResult.objects.filter(task=task, fire_time=fire_at).count() == 1
    assert len(journal()) == 1


def test_edit_is_picked_up_by_a_running_beat(start_worker, start_beat, make_task, journal):
    start_worker()
    start_beat()
    task = make_task("edited", task_type="SCHEDULED", cron_expr="0 0 1 1 *")
    services.task_update(task=task, data={"cron_expr": "* * * * *"})
    soon = (timezone.now() + timedelta(seconds=2)).replace(microsecond=0)
    Task.objects.filter(pk=task.pk).update(next_fire_at=soon)
    wait_until(lambda: done(task), timeout=60)
    assert TaskResult.objects.get(task=task).fire_time == soon


def test_cancel_revokes_a_running_attempt(start_worker, make_task, journal):
    start_worker()
    task = make_task("long", tags=["TEST_SLEEP"], parameters={"label": "long", "seconds": 30})
    wait_until(lambda: len(journal()) == 1)
    services.task_cancel(task=Task.objects.get(pk=task.pk))
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    after = make_task("after")
    wait_until(lambda: done(after), timeout=30)
    assert TaskResult.objects.get(task=task).status == AttemptStatus.CANCELLED


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL session is what a reconnect costs")
def test_a_worker_process_keeps_its_database_session_across_attempts(start_worker, make_task):
    """Celery's Django fixup reconnected before and after every task: a new session per attempt."""
    start_worker(concurrency=1)
    tasks = [make_task(f"s{i}", tags=["TEST_DB_SESSION"], parameters={}) for i in range(4)]
    wait_until(lambda: all(s == "DONE" for s in statuses(*tasks)))
    sessions = {tuple(TaskResult.objects.get(task=t).result.values()) for t in tasks}
    assert len(sessions) == 1, sessions


def test_retry_with_failed_downstream_runs_each_dependent_once_on_a_worker(start_worker, make_task, journal):
    start_worker()
    extract = make_task("extract", tags=["TEST_FLAKY"], parameters={"label": "extract", "failures": 1})
    transform = make_task("transform", dependencies=[extract.pk])
    load = make_task("load", dependencies=[transform.pk])
    wait_until(lambda: Task.objects.get(pk=load.pk).status == TaskStatus.FAILED)
    services.task_update(task=Task.objects.get(pk=extract.pk), data={"parameters": {"label": "extract", "failures": 0}})
    result = services.task_retry(task=Task.objects.get(pk=extract.pk), downstream="failed")
    assert services.downstream_of(result).started == ["transform", "load"]
    wait_until(lambda: done(extract, transform, load), timeout=60)
    assert [line.split()[0] for line in journal()] == ["extract", "extract", "transform", "load"]
    for task in (transform, load):
        assert attempts(task)[-1] == (1, "DONE") and TaskResult.objects.filter(task=task, status="DONE").count() == 1


def test_a_diamond_pipeline_run_runs_each_task_once_on_a_worker(start_worker, make_task, journal):
    """run?downstream=all on a worker: the bottom of a diamond starts once, after both sides are DONE in the run."""
    start_worker()
    top = make_task("top")
    wait_until(lambda: done(top))
    left = make_task("left", dependencies=[top.pk])
    right = make_task("right", dependencies=[top.pk])
    bottom = make_task("bottom", dependencies=[left.pk, right.pk])
    wait_until(lambda: done(top, left, right, bottom))
    before = len(journal())
    result = services.task_run_now(task=Task.objects.get(pk=top.pk), downstream="all")
    run = result.pipeline_run
    assert run is not None
    wait_until(lambda: TaskResult.objects.filter(pipeline_run=run, status="DONE").count() == 4, timeout=60)
    ran = [line.split()[0] for line in journal()[before:]]
    assert sorted(ran) == ["bottom", "left", "right", "top"] and ran[0] == "top" and ran[-1] == "bottom"
    in_run = TaskResult.objects.filter(pipeline_run=run)
    assert sorted(in_run.values_list("task__name", flat=True)) == ["bottom", "left", "right", "top"]
    sides = in_run.filter(task__name__in=["left", "right"])
    assert in_run.get(task__name="bottom").started_at >= max(r.finished_at for r in sides)
