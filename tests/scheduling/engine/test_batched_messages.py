"""Several attempts per Celery message when the queue is deep (dispatcher.messages, executor.run_attempts).

Each attempt in a message is still claimed with its own fencing token, stopped at its own timeout and
recorded on its own; these tests hold the grouping rule, the executor's loop and what a cancel does to
the rest of a message. The same under a real worker killed mid-message: tests/scheduling/test_e2e.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from scheduling.engine import dispatcher, executor, recovery, workers
from scheduling.models import AttemptStatus, TaskResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch) -> list[dict[str, Any]]:
    """The messages the dispatcher publishes (Celery's send_task, captured instead of sent)."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(dispatcher.app, "send_task", lambda name, **options: sent.append({"name": name, **options}))
    return sent


@pytest.fixture
def pool(monkeypatch):
    """Set the online workers' pool processes: one worker row with that concurrency."""

    def online(processes: int) -> None:
        dispatcher._pool.clear()
        report = workers.Report("w1@test", "test", 1, "prefork", processes, list(range(processes)), ["celery"], 10.0)
        workers.register(report, now=timezone.now())

    yield online
    dispatcher._pool.clear()


@pytest.fixture
def dispatch(django_capture_on_commit_callbacks):
    """dispatcher.dispatch(), its after-commit send run (the test's transaction never commits)."""

    def run() -> list[TaskResult]:
        with django_capture_on_commit_callbacks(execute=True):
            return dispatcher.dispatch()

    return run


@pytest.fixture
def queued(make_task, dispatch):
    def create(count: int) -> list[TaskResult]:
        for i in range(count):
            make_task(f"t{i}", tags=["NOOP"])
        return dispatch()

    return create


def test_a_deep_queue_goes_several_to_a_message_never_fewer_messages_than_processes(
    queued, scheduler_conf, pool, published
):
    scheduler_conf(concurrency=64, attempts_per_message=8)
    pool(2)
    picked = queued(20)
    assert [len(message["args"]) for message in published] == [8, 8, 4]
    assert [pk for message in published for pk in message["args"]] == [r.pk for r in picked]  # pick order kept
    first = published[0]
    assert first["task_id"] == dispatcher.batch_id(picked[:8]) and first["soft_time_limit"] is None
    timeout, grace = picked[0].task.effective_timeout(), settings.TASKHUB.scheduler.timeout_grace_seconds
    assert first["time_limit"] == 8 * (timeout + grace)  # the hard limit covers every attempt in it


def test_as_many_attempts_as_processes_go_one_each(queued, scheduler_conf, pool, published):
    scheduler_conf(concurrency=64, attempts_per_message=8)
    pool(4)
    picked = queued(4)
    assert [message["args"] for message in published] == [[r.pk] for r in picked]
    assert [message["task_id"] for message in published] == [r.celery_task_id for r in picked]
    assert published[0]["soft_time_limit"] == picked[0].task.effective_timeout()  # Celery's limit, as before


def test_one_attempt_per_message_when_configured(queued, scheduler_conf, pool, published):
    scheduler_conf(concurrency=64, attempts_per_message=1)
    pool(1)
    queued(5)
    assert [len(message["args"]) for message in published] == [1] * 5


def test_a_message_holds_one_priority(make_task, dispatch, scheduler_conf, pool, published):
    scheduler_conf(concurrency=64, attempts_per_message=8)
    pool(1)
    for priority in ("HIGH", "LOW", "HIGH", "MEDIUM"):
        make_task(f"t-{priority}", tags=["NOOP"], priority=priority)
    dispatch()
    assert [(len(m["args"]), m["priority"]) for m in published] == [(2, 0), (1, 3), (1, 6)]  # Redis: 0 = first


def test_a_message_id_names_its_attempts_and_fits_the_column():
    small = [TaskResult(pk=pk) for pk in (7, 8, 1_000_003)]
    assert dispatcher.batch_members(dispatcher.batch_id(small)) == [7, 8, 1_000_003]
    assert dispatcher.batch_members("taskhub-42") == []
    huge = [TaskResult(pk=10**15 + i, priority=2) for i in range(8)]
    messages = dispatcher._fitting(huge)
    assert [r.pk for m in messages for r in m] == [r.pk for r in huge]
    assert all(len(dispatcher.batch_id(m)) <= 64 for m in messages) and len(messages) > 1


def test_run_attempts_runs_each_with_its_own_claim_and_timeout(
    make_task, dispatch, scheduler_conf, pool, published, journal
):
    scheduler_conf(concurrency=64, attempts_per_message=8)
    pool(1)
    make_task("first", tags=["TEST_RECORD"])
    make_task("hung", tags=["TEST_SLEEP"], parameters={"label": "hung", "seconds": 30}, timeout_seconds=1)
    make_task("last", tags=["TEST_RECORD"])
    picked = dispatch()
    (message,) = published
    outcomes = executor.run_attempts(message["args"], celery_task_id=message["task_id"])
    assert outcomes == [AttemptStatus.DONE, AttemptStatus.TIMEOUT, AttemptStatus.DONE]
    rows = {r.task.name: r for r in TaskResult.objects.select_related("task")}
    assert "timed out after 1 s" in rows["hung"].error_message  # stopped by its own timeout, not the message's
    assert {r.claim for r in rows.values()} == {1} and {r.celery_task_id for r in rows.values()} == {message["task_id"]}
    assert [line.split()[0] for line in journal()] == ["first", "hung", "last"]
    # Delivered again (the broker redelivers after a lost ack): every attempt is taken, none runs twice.
    assert executor.run_attempts([r.pk for r in picked]) == ["ignored"] * 3
    assert len(journal()) == 3


def test_an_attempt_cancelled_while_it_runs_hands_the_rest_of_its_message_back(
    make_task, dispatch, scheduler_conf, pool, published, monkeypatch
):
    scheduler_conf(concurrency=64, attempts_per_message=8)
    pool(1)
    for name in ("a", "b", "c", "d"):
        make_task(name, tags=["NOOP"])
    dispatch()
    (message,) = published
    published.clear()
    call_handler = executor.call_handler

    def cancelled_meanwhile(result, **options):
        if result.task.name == "b":  # a person cancels b while its handler runs
            dispatcher.cancel(result.task, reason="stop")
        return call_handler(result, **options)

    monkeypatch.setattr(executor, "call_handler", cancelled_meanwhile)
    outcomes = executor.run_attempts(message["args"], celery_task_id=message["task_id"])
    assert outcomes == [AttemptStatus.DONE, "fenced", "handed back", "handed back"]
    rest = TaskResult.objects.filter(task__name__in=["c", "d"]).order_by("task__name")
    # The cancel revokes this message, which could stop c or d: they go back one per message, under their ids.
    assert [(m["args"], m["task_id"]) for m in published] == [([r.pk], r.celery_task_id) for r in rest]
    assert {r.status for r in rest} == {AttemptStatus.QUEUED}


def test_cancelling_a_running_attempt_re_sends_the_rest_of_its_message(
    make_task, dispatch, scheduler_conf, pool, published, django_capture_on_commit_callbacks
):
    scheduler_conf(concurrency=64, attempts_per_message=8)
    pool(1)
    for name in ("a", "b", "c"):
        make_task(name, tags=["NOOP"])
    dispatch()
    (message,) = published
    published.clear()
    running = executor.claim(message["args"][0], celery_task_id=message["task_id"])
    revoked: list[str] = []
    dispatcher.app.control.revoke = lambda ids, **options: revoked.extend(ids)  # type: ignore[method-assign]
    try:
        with django_capture_on_commit_callbacks(execute=True):
            dispatcher.cancel(running.task, reason="stop")
    finally:
        del dispatcher.app.control.revoke
    assert revoked == [message["task_id"]]  # its process is stopped, and the message with it
    assert [m["args"] for m in published] == [[pk] for pk in message["args"][1:]]  # not started: sent again, one each


def test_an_attempt_left_waiting_in_its_message_is_re_sent_alone_and_runs_once(
    make_task, dispatch, scheduler_conf, pool, published, django_capture_on_commit_callbacks
):
    """A long handler ahead of it: past requeue_after_seconds the sweep sends it on its own."""
    scheduler_conf(concurrency=64, attempts_per_message=8, requeue_after_seconds=60)
    pool(1)
    make_task("long", tags=["NOOP"])
    make_task("behind", tags=["NOOP"])
    dispatch()
    (message,) = published
    published.clear()
    long_id, behind_id = message["args"]
    TaskResult.objects.filter(pk=behind_id).update(queued_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        recovery.sweep()
    behind = TaskResult.objects.get(pk=behind_id)
    assert [(m["args"], m["task_id"]) for m in published] == [([behind_id], behind.celery_task_id)]
    assert executor.run_attempt(behind_id) == AttemptStatus.DONE  # another process takes it
    assert executor.run_attempts(message["args"]) == [AttemptStatus.DONE, "ignored"]  # the message skips it
    assert TaskResult.objects.filter(pk__in=[long_id, behind_id], status=AttemptStatus.DONE).count() == 2
