"""The executor in-process: claims, outcomes, retry policy, fencing, zombies; and task operations."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from scheduling import services
from scheduling.engine import attempts, dispatcher, executor, lifecycle, recovery
from scheduling.models import AttemptStatus, RetryPolicy, TaskResult, TaskStatus
from taskhub.exceptions import ConflictError, IllegalTransition

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy.objects.create(name="fast", max_retries=2, retry_delay=10, backoff_factor=3, max_delay=25)


def run_next() -> str:
    (result,) = dispatcher.dispatch()
    return executor.run_attempt(result.pk)


def test_retries_follow_the_policy_then_fail(make_task, policy, journal):
    task = make_task("flaky", tags=["TEST_FLAKY"], parameters={"failures": 5}, retry_policy=policy.pk)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        assert run_next() == AttemptStatus.FAILED
        retry = TaskResult.objects.get(task=task, attempt=2)
        assert retry.status == AttemptStatus.RETRY
        assert retry.available_at == start + timedelta(seconds=10)  # retry_delay
        task.refresh_from_db()
        assert task.status == TaskStatus.RETRY and task.next_attempt_at == retry.available_at
        assert dispatcher.dispatch() == []  # not due yet
        clock.shift(10)
        assert run_next() == AttemptStatus.FAILED
        third = TaskResult.objects.get(task=task, attempt=3)
        assert third.available_at == start + timedelta(seconds=10 + 25)  # 10 * 3 capped at max_delay 25
        clock.shift(25)
        assert run_next() == AttemptStatus.FAILED
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "boom on attempt 3" in task.status_reason
    assert TaskResult.objects.filter(task=task).count() == 3
    assert len(journal()) == 3


def test_success_after_retry_marks_task_done(make_task, policy):
    task = make_task("heals", tags=["TEST_FLAKY"], parameters={"failures": 1}, retry_policy=policy.pk)
    assert run_next() == AttemptStatus.FAILED
    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        assert run_next() == AttemptStatus.DONE
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE and task.attempt == 2
    done = TaskResult.objects.get(task=task, attempt=2)
    assert done.result == {"ok": True, "attempt": 2} and done.progress == 100


def test_permanent_error_skips_retries(make_task, policy):
    task = make_task("401", tags=["TEST_FLAKY"], parameters={"failures": 9, "permanent": True}, retry_policy=policy.pk)
    assert run_next() == AttemptStatus.FAILED
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert TaskResult.objects.filter(task=task).count() == 1
    assert "credentials rejected (401)" in TaskResult.objects.get(task=task).error_message


def test_error_and_traceback_are_recorded(make_task):
    task = make_task("boom", tags=["TEST_FLAKY"], parameters={"failures": 1})
    run_next()
    result = TaskResult.objects.get(task=task)
    assert result.error_message == "RuntimeError: boom on attempt 1"
    assert "Traceback" in result.traceback and "flaky" in result.traceback
    assert result.finished_at is not None and result.duration is not None


def test_timeout_not_retried_when_policy_says_so(make_task):
    policy = RetryPolicy.objects.create(name="no-timeout-retry", max_retries=3, retry_delay=0, retry_on_timeout=False)
    task = make_task("slow", retry_policy=policy.pk)
    result = dispatcher.dispatch()[0]
    claimed = executor.claim(result.pk)
    executor.complete(claimed, executor.Outcome(AttemptStatus.TIMEOUT, error="timed out"))
    task.refresh_from_db()
    assert TaskResult.objects.get(task=task).status == AttemptStatus.TIMEOUT
    assert task.status == TaskStatus.TIMEOUT  # the run ended with a timeout: it reads TIMEOUT, not FAILED
    assert task.status_reason == "timed out"


def test_timeout_after_last_retry_reads_timeout_and_fails_dependents(make_task):
    policy = RetryPolicy.objects.create(name="one-retry", max_retries=1, retry_delay=0)
    task = make_task("slow", retry_policy=policy.pk)
    child = make_task("child", dependencies=[task.pk])
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    executor.complete(claimed, executor.Outcome(AttemptStatus.TIMEOUT, error="timed out"))
    task.refresh_from_db()
    assert task.status == TaskStatus.RETRY  # its timeout is being retried
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    executor.complete(claimed, executor.Outcome(AttemptStatus.TIMEOUT, error="timed out again"))
    task.refresh_from_db()
    child.refresh_from_db()
    assert task.status == TaskStatus.TIMEOUT
    assert child.status == TaskStatus.FAILED and "'slow' failed" in child.status_reason
    # A TIMEOUT task can be retried like a FAILED one.
    services.task_retry(task=task)
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING


def test_task_status_after_each_finished_attempt_status():
    for status in (AttemptStatus.DONE, AttemptStatus.FAILED, AttemptStatus.TIMEOUT, AttemptStatus.CANCELLED):
        assert lifecycle.task_status_for([], TaskResult(status=status)) == status
    assert lifecycle.task_status_for([], TaskResult(status=AttemptStatus.SKIPPED)) is None
    # An active retry outranks the timed-out attempt before it.
    assert lifecycle.task_status_for([AttemptStatus.RETRY], TaskResult(status=AttemptStatus.TIMEOUT)) == "RETRY"


def test_timeout_is_retried_by_default(make_task, policy):
    task = make_task("slow", retry_policy=policy.pk)
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    executor.complete(claimed, executor.Outcome(AttemptStatus.TIMEOUT, error="timed out"))
    task.refresh_from_db()
    assert task.status == TaskStatus.RETRY
    assert list(TaskResult.objects.filter(task=task).order_by("attempt").values_list("status", flat=True)) == [
        AttemptStatus.TIMEOUT,
        AttemptStatus.RETRY,
    ]


def test_duplicate_delivery_is_ignored(make_task, journal):
    make_task("once")
    (result,) = dispatcher.dispatch()
    assert executor.run_attempt(result.pk) == AttemptStatus.DONE
    assert executor.run_attempt(result.pk) == "ignored"
    assert len(journal()) == 1


def test_completion_from_a_worker_that_lost_its_claim_is_refused(make_task, policy):
    task = make_task("fenced", retry_policy=policy.pk)
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    # The sweep decides the worker is gone and takes the attempt back...
    assert executor.reclaim(claimed.pk, reason="worker vanished")
    # ...so the late worker's DONE must not overwrite that outcome.
    assert executor.complete(claimed, executor.Outcome(AttemptStatus.DONE, result={"late": True})) is False
    first = TaskResult.objects.get(task=task, attempt=1)
    assert first.status == AttemptStatus.TIMEOUT and first.result is None
    assert TaskResult.objects.get(task=task, attempt=2).status == AttemptStatus.RETRY


def test_sweep_reclaims_running_attempt_past_its_deadline(make_task, policy):
    task = make_task("zombie", retry_policy=policy.pk, timeout_seconds=5)
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    assert recovery.sweep()["reclaimed"] == 0
    with time_machine.travel(claimed.deadline + timedelta(seconds=1)):
        assert recovery.sweep()["reclaimed"] == 1
    assert TaskResult.objects.get(task=task, attempt=1).status == AttemptStatus.TIMEOUT
    assert "stopped answering" in TaskResult.objects.get(task=task, attempt=1).error_message


def test_sweep_resends_queued_work_nobody_took(make_task, scheduler_conf):
    scheduler_conf(requeue_after_seconds=60)
    make_task("lost")
    (result,) = dispatcher.dispatch()
    assert recovery.sweep()["resent"] == 0
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert recovery.sweep()["resent"] == 1
        assert recovery.sweep()["resent"] == 0  # once per interval, not every sweep
    assert TaskResult.objects.get(pk=result.pk).status == AttemptStatus.QUEUED


def test_progress_is_recorded_on_the_running_attempt(make_task):
    task = make_task("progress")
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    report = executor._progress_callback(claimed)
    report(42.7, "page 3 of 7")
    row = TaskResult.objects.get(task=task)
    assert (row.progress, row.progress_message) == (42, "page 3 of 7")


def test_illegal_transition_raises():
    row = TaskResult(status=AttemptStatus.DONE)
    with pytest.raises(IllegalTransition, match="attempt cannot go from DONE to RUNNING"):
        lifecycle.move(row, AttemptStatus.RUNNING)


def test_cancel_pending_and_refuse_cancel_of_done(make_task):
    task = make_task("c")
    assert services.task_cancel(task=task) == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    with pytest.raises(ConflictError, match="nothing to cancel: it is CANCELLED"):
        services.task_cancel(task=task)


def test_run_now_and_retry(make_task):
    task = make_task("again", tags=["TEST_FLAKY"], parameters={"failures": 1})
    run_next()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    services.task_retry(task=task)
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING
    with pytest.raises(ConflictError, match="already has a run waiting"):
        services.task_run_now(task=task)
    with pytest.raises(ConflictError, match="only a FAILED"):
        services.task_retry(task=task)


def test_delete_refused_while_others_depend_on_it(make_task):
    base = make_task("base")
    make_task("child", dependencies=[base.pk])
    with pytest.raises(ConflictError, match="tasks depend on it: child"):
        services.task_delete(task=base)


def test_cancel_fails_dependents(make_task):
    base = make_task("base")
    child = make_task("child", dependencies=[base.pk])
    services.task_cancel(task=base)
    child.refresh_from_db()
    assert child.status == TaskStatus.FAILED
    assert "dependency 'base' was cancelled" in child.status_reason


@pytest.mark.parametrize(
    ("other", "shown"),
    [
        (None, TaskStatus.DONE),
        (AttemptStatus.PENDING, TaskStatus.PENDING),
        (AttemptStatus.RETRY, TaskStatus.RETRY),
        (AttemptStatus.QUEUED, TaskStatus.QUEUED),
        (AttemptStatus.RUNNING, TaskStatus.RUNNING),
        (AttemptStatus.FAILED, TaskStatus.DONE),
    ],
)
def test_a_done_attempt_leaves_its_task_showing_its_busiest_other_run(make_task, other, shown):
    """The completion's derived status (one statement on PostgreSQL) follows lifecycle's precedence rule."""
    task = make_task("two runs")
    claimed = executor.claim(dispatcher.dispatch()[0].pk)
    later = timezone.now() + timedelta(hours=1)
    if other is not None:
        row = attempts.build(task, now=timezone.now(), attempt=3, status=other, available_at=later)
        row.save()
    assert executor.complete(claimed, executor.Outcome(AttemptStatus.DONE, result={"n": 1})) is True
    task.refresh_from_db()
    done = TaskResult.objects.get(pk=claimed.pk)
    assert (done.status, done.result, done.progress) == (AttemptStatus.DONE, {"n": 1}, 100)
    assert done.finished_at is not None and done.duration is not None and done.duration >= 0
    assert task.status == shown
    active = other in (AttemptStatus.PENDING, AttemptStatus.RETRY, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
    assert task.attempt == (3 if active else 1)
    assert task.next_attempt_at == (later if other == AttemptStatus.RETRY else None)
    assert task.status_reason == ""


def test_a_claim_stamps_the_deadline_from_the_task_timeout_and_returns_the_task(make_task):
    task = make_task("timed", timeout_seconds=120)
    queued = dispatcher.dispatch()[0]
    claim_before = TaskResult.objects.get(pk=queued.pk).claim
    now = timezone.now()
    claimed = executor.claim(queued.pk, celery_task_id="celery-1", worker_node="node@host", now=now)
    assert claimed is not None and claimed.task.pk == task.pk and claimed.task.timeout_seconds == 120
    assert claimed.status == AttemptStatus.RUNNING and claimed.claim == claim_before + 1
    stored = TaskResult.objects.get(pk=queued.pk)
    grace = executor._grace()
    assert stored.deadline == now + timedelta(seconds=120 + grace * 2)
    assert (stored.celery_task_id, stored.worker_node, stored.started_at) == ("celery-1", "node@host", now)
    assert stored.claim == claimed.claim
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING and task.attempt == 1
    assert executor.claim(queued.pk) is None  # a second delivery finds it RUNNING
