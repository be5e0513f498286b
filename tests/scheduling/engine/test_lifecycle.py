"""The attempt lifecycle, whole: every move the seed's diagram allows succeeds, every other one changes nothing.

The legal moves are written out here, independently of ``lifecycle.TRANSITIONS``, so an edit of the table
that the diagram does not allow fails a test, and every (from, to) pair of statuses is tried against the
database, not only against the table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from scheduling.engine import attempts, lifecycle
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from taskhub.exceptions import IllegalTransition

A = AttemptStatus
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

#: PENDING -> QUEUED -> RUNNING -> DONE/FAILED, RUNNING -> TIMEOUT (a retry is a new RETRY attempt, which
#: is queued again), cancel from any unfinished state, a waiting or queued attempt failed by its upstream,
#: a pending fire skipped by its overlap policy. Finished attempts never move again.
LEGAL = {
    (A.PENDING, A.QUEUED), (A.PENDING, A.CANCELLED), (A.PENDING, A.FAILED), (A.PENDING, A.SKIPPED),
    (A.RETRY, A.QUEUED), (A.RETRY, A.CANCELLED), (A.RETRY, A.FAILED),
    (A.QUEUED, A.RUNNING), (A.QUEUED, A.CANCELLED), (A.QUEUED, A.FAILED),
    (A.RUNNING, A.DONE), (A.RUNNING, A.FAILED), (A.RUNNING, A.TIMEOUT), (A.RUNNING, A.CANCELLED),
}  # fmt: skip
PAIRS = list(itertools.product(A.values, repeat=2))

#: The task's status after its only attempt moved to the key.
TASK_AFTER = {
    A.QUEUED: TaskStatus.QUEUED,
    A.RUNNING: TaskStatus.RUNNING,
    A.DONE: TaskStatus.DONE,
    A.FAILED: TaskStatus.FAILED,
    A.TIMEOUT: TaskStatus.TIMEOUT,
    A.CANCELLED: TaskStatus.CANCELLED,
}


def test_the_table_is_the_diagram() -> None:
    table = {(source, target) for source, targets in lifecycle.TRANSITIONS.items() for target in targets}
    assert table == LEGAL
    assert set(lifecycle.TRANSITIONS) == set(A.values)


@pytest.fixture
def attempt_in(make_task: Callable[..., Task]) -> Callable[[str], TaskResult]:
    def make(status: str) -> TaskResult:
        task = make_task("lifecycle")
        TaskResult.objects.filter(task=task).delete()  # the run a new task starts with: this row is its only one
        started = NOW - timedelta(seconds=30) if status != A.PENDING else None
        row = attempts.build(task, now=NOW, status=status, started_at=started)
        row.save()
        return row

    return make


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_every_move_of_the_diagram_is_made_and_every_other_is_refused_changing_nothing(
    attempt_in: Callable[[str], TaskResult], source: str, target: str
) -> None:
    row = attempt_in(source)
    before = TaskResult.objects.filter(pk=row.pk).values().get()
    task_before = Task.objects.filter(pk=row.task_id).values("status", "updated_at").get()
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        if (source, target) not in LEGAL:
            with pytest.raises(IllegalTransition):
                lifecycle.move(row, target)
            assert TaskResult.objects.filter(pk=row.pk).values().get() == before
            assert Task.objects.filter(pk=row.task_id).values("status", "updated_at").get() == task_before
            return
        lifecycle.move(row, target)
    stored = TaskResult.objects.get(pk=row.pk)
    assert stored.status == target
    moved_at = NOW + timedelta(minutes=1)
    if target == A.QUEUED:
        assert stored.queued_at == moved_at
    if target == A.RUNNING:
        assert stored.started_at == moved_at
        assert stored.claim == before["claim"] + 1  # a new claim fences off the previous holder
    if target in (A.DONE, A.FAILED, A.TIMEOUT, A.CANCELLED, A.SKIPPED):
        assert stored.finished_at == moved_at
        if before["started_at"] is not None:
            assert stored.duration == pytest.approx(90.0)
    if target in TASK_AFTER:
        assert Task.objects.get(pk=row.task_id).status == TASK_AFTER[target]


@pytest.mark.django_db
def test_a_move_from_a_status_the_row_no_longer_has_is_stale(attempt_in: Callable[[str], TaskResult]) -> None:
    row = attempt_in(A.QUEUED)
    TaskResult.objects.filter(pk=row.pk).update(status=A.CANCELLED)  # another process cancelled it meanwhile
    with pytest.raises(lifecycle.StaleAttempt):
        lifecycle.move(row, A.RUNNING)
    assert TaskResult.objects.get(pk=row.pk).status == A.CANCELLED


def test_instances_count_runs_in_flight_and_with_waiting_the_runs_a_new_fire_queues_behind(
    make_task: Callable[..., Task],
) -> None:
    """max_instances is counted by one function: in flight for the dispatcher, plus waiting for a cron fire."""
    busy, idle = make_task("busy"), make_task("idle")
    TaskResult.objects.filter(task__in=[busy, idle]).delete()
    for status in (A.QUEUED, A.RUNNING, A.PENDING, A.RETRY, A.DONE, A.FAILED, A.TIMEOUT, A.CANCELLED, A.SKIPPED):
        attempts.build(busy, now=NOW, status=status).save()
    attempts.build(idle, now=NOW, status=A.PENDING).save()

    assert lifecycle.instances([busy.pk, idle.pk]) == {busy.pk: 2}
    assert lifecycle.instances(Task.objects.filter(pk__in=[busy.pk, idle.pk]), with_waiting=True) == {
        busy.pk: 4,
        idle.pk: 1,
    }
    assert lifecycle.instances([]) == {}
