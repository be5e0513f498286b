"""The priority queue: pick ready attempts within the concurrency cap and hand them to Celery.

The database is the source of truth and the broker only a pipe. ``dispatch()``
runs in one transaction, serialised across processes (an advisory lock on
PostgreSQL; SQLite's IMMEDIATE transactions on the embedded default), so the
in-flight count it reads cannot be raced past ``scheduler.concurrency``.

Messages go to Celery by task name (:data:`EXECUTE_TASK`, which ``scheduling/tasks.py``
registers): the engine never imports its Celery entry points. One message carries one attempt,
or several when a dispatch queues more than the online workers have pool processes
(:func:`messages`); the executor claims and records each on its own either way.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, QuerySet, Sum, Value, When
from django.db.models.functions import Greatest

from scheduling import audit
from scheduling.engine import clock, compiled, lifecycle, pipelines, workers
from scheduling.engine.compiled import Now, at
from scheduling.models import (
    IN_FLIGHT,
    WAITING,
    AttemptStatus,
    AuditAction,
    Priority,
    Task,
    TaskResult,
    TaskStatus,
    Worker,
    status_in,
)
from taskhub.celery import app

logger = logging.getLogger(__name__)

DISPATCH_LOCK_KEY = 0x7A5C_4B0B  # pg_advisory_xact_lock key owned by the dispatcher
#: The Celery task that runs one attempt (scheduling.tasks.execute is registered under this name).
EXECUTE_TASK = "scheduling.execute"


def _lock(*, without_flush: bool) -> None:
    """Serialise dispatches; on PostgreSQL, with ``without_flush`` (the dispatch is its own transaction),
    also commit this one without waiting for its WAL flush.

    A dispatch writes nothing that is lost for good if the server crashes before the flush (at most
    three ``wal_writer_delay`` later): its attempts read PENDING again and are dispatched again, and a
    message already sent for one finds it not QUEUED, so the claim ignores it (the claim and the
    completion, which must not be undone, keep the durable commit; each flushes the WAL written before
    it, this dispatch's too). The flush was a third of an idle dispatch (1.6 of 5 ms), which is the
    time from a task's commit to its message.
    """
    if connection.vendor == "postgresql":
        flush = ", set_config('synchronous_commit', 'off', true)" if without_flush else ""
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_xact_lock(%s){flush}", [DISPATCH_LOCK_KEY])


def _due(now: datetime | Now) -> QuerySet[TaskResult]:
    """Waiting attempts whose time has come (of any task: ready ones are among them)."""
    return TaskResult.objects.filter(status_in(WAITING), available_at__lte=now)


def _ready(now: datetime | Now) -> QuerySet[TaskResult]:
    """Waiting attempts whose time has come, of enabled tasks whose dependencies are met (engine/pipelines.py)."""
    ready = _due(now).filter(task__enabled=True).filter(pipelines.ready_filter(now))
    aging = settings.TASKHUB.scheduler.priority_aging_seconds
    if not aging:
        return ready.order_by("priority", "available_at", "pk")
    # Anti-starvation: one level higher per aging interval waited (LOW reaches HIGH after two).
    lift = Case(
        When(available_at__lte=at(now, timedelta(seconds=-2 * aging)), then=Value(2)),
        When(available_at__lte=at(now, timedelta(seconds=-aging)), then=Value(1)),
        default=Value(0),
    )
    return ready.annotate(effective=Greatest(F("priority") - lift, Value(1))).order_by(
        "effective", "available_at", "pk"
    )


def in_flight() -> int:
    """Attempts QUEUED or RUNNING (an index-only count of result_inflight_idx), prepared (engine/compiled.py)."""
    return compiled.count("in flight", lambda: TaskResult.objects.filter(status_in(IN_FLIGHT)))


def any_due(now: datetime) -> bool:
    """Whether any attempt waits with its time come: a probe of result_pick_idx, prepared.

    What a dispatch asks before its pick. Most wakes on a system keeping up (after each completion) find
    nothing waiting, and the pick, with its dependency rule, cost a few milliseconds to plan on
    PostgreSQL for nothing. The probe names every priority so that it seeks the index once per
    priority up to ``now`` (and never walks the attempts waiting for a later time).
    """
    return compiled.exists("due", lambda: _due(Now()).filter(priority__in=Priority.values), now)


#: The columns a dispatch reads of each candidate and its task (the instance limit, queue_many, send).
PICKED_FIELDS = (
    "id",
    "task_id",
    "status",
    "attempt",
    "priority",
    "available_at",
    "celery_task_id",
    "task__id",
    "task__status",
    "task__timeout_seconds",
)


def pick(limit: int, now: datetime) -> list[TaskResult]:
    """The first ``limit`` ready attempts at ``now`` in pick order, locked (skipping those another dispatch
    holds); inside the dispatch's transaction.

    Only what queueing and sending read (:data:`PICKED_FIELDS`): building every candidate's full rows of both
    tables was most of a busy worker's dispatch. Compiled once per connection and limit (engine/compiled.py).
    """
    aging = settings.TASKHUB.scheduler.priority_aging_seconds
    return compiled.run(("pick", limit, aging), lambda: _pick_query(limit), now)


def _pick_query(limit: int) -> QuerySet[TaskResult]:
    candidates = _ready(Now()).select_related("task").only(*PICKED_FIELDS)
    if connection.features.has_select_for_update_skip_locked:
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    return candidates[:limit]


def dispatch(now: datetime | None = None, *, at_least: int = 1) -> list[TaskResult]:
    """Mark as many ready attempts QUEUED as there are free slots and send them after commit.

    ``at_least``: do nothing unless that many slots are free once the lock is held (the busy wake: a
    dispatch that ran while this one waited for the lock has just filled the slots).
    """
    now = now or clock.now()
    conf = settings.TASKHUB.scheduler
    own_transaction = not connection.in_atomic_block  # else the caller's writes would lose the flush too
    with transaction.atomic():
        _lock(without_flush=own_transaction)
        free = conf.concurrency - in_flight()
        if free < max(at_least, 1) or not any_due(now):
            return []
        picked = _pick_within_limits(free, now, conf.max_instances)
        if picked:
            lifecycle.queue_many(picked, now=now)
            transaction.on_commit(lambda: send(picked))
    return picked


#: When the limits hold back some of the first ``free`` candidates, the pick is asked again for this many
#: times ``free``, so that the slots are still filled from further down the queue.
WIDER_PICK = 4


def _pick_within_limits(free: int, now: datetime, max_instances: int) -> list[TaskResult]:
    """The first ``free`` ready attempts, in pick order, that the per-dispatch rules let through (one fresh
    run per task, ``max_instances``), locked.

    Most dispatches keep every candidate: those load just ``free`` rows. Only when a rule holds one back
    and more may be waiting is a wider pick loaded (it re-locks the same rows first, in the same
    transaction): loading four times the slots on every dispatch was a quarter of a beat tick's dispatch.
    """
    for limit in (free, free * WIDER_PICK):
        candidates = pick(limit, now)
        picked = _within_instance_limit(pipelines.one_fresh_run_per_task(candidates), free, max_instances)
        if len(picked) == free or len(candidates) < limit:  # filled, or nothing more is ready
            break
    return picked


def _within_instance_limit(candidates: list[TaskResult], free: int, max_instances: int) -> list[TaskResult]:
    """Keep candidates in order while no task would exceed max_instances runs in flight."""
    # A task's status is RUNNING or QUEUED exactly when one of its attempts is in flight
    # (lifecycle.refresh_task derives it), so only those tasks need counting.
    task_ids = {c.task_id for c in candidates if c.task.status in (TaskStatus.RUNNING, TaskStatus.QUEUED)}
    running = lifecycle.instances(task_ids) if task_ids else Counter()
    picked: list[TaskResult] = []
    for candidate in candidates:
        if len(picked) == free:
            break
        if running[candidate.task_id] < max_instances:
            running[candidate.task_id] += 1
            picked.append(candidate)
    return picked


def _celery_priority(priority: int) -> int:
    """Translate HIGH/MEDIUM/LOW for the broker: Redis treats 0 as highest, AMQP 9."""
    if settings.CELERY_BROKER_URL.startswith(("amqp", "pyamqp")):
        return {1: 9, 2: 5, 3: 1}[priority]
    return {1: 0, 2: 3, 3: 6}[priority]


def send(results: list[TaskResult], *, together: bool = True) -> None:
    """Publish the queued attempts, with their time limits and priority; several to a message when the
    queue is deep (:func:`messages`), else one each. ``together=False``: one each (the sweep's re-sends)."""
    grace = settings.TASKHUB.scheduler.timeout_grace_seconds
    for message in messages(results) if together else [[result] for result in results]:
        first = message[0]
        timeouts = [result.task.effective_timeout() for result in message]
        if len(message) == 1:
            # Celery's soft limit interrupts the handler at its timeout, the hard one kills it past the grace.
            limits: dict[str, int | None] = {"soft_time_limit": timeouts[0], "time_limit": timeouts[0] + grace}
        else:
            # Each attempt's own timeout is the executor's (an alarm around its handler); the message's
            # hard limit is the sum, so a handler deaf to its alarm is still killed.
            limits = {"soft_time_limit": None, "time_limit": sum(timeouts) + grace * len(message)}
        try:
            app.send_task(
                EXECUTE_TASK,
                args=[result.pk for result in message],
                task_id=first.celery_task_id if len(message) == 1 else batch_id(message),
                priority=_celery_priority(first.priority),
                **limits,
            )
        except Exception:  # the sweep re-sends QUEUED work that no worker took
            logger.exception("could not send attempt(s) %s to the broker; the sweep will re-send them", message)


#: The Celery task id of a message carrying several attempts: this prefix, then their ids in base 36
#: joined by dots (the claim records it on the attempt: it must fit ``celery_task_id``).
BATCH_PREFIX = "taskhub-b-"
_ID_WIDTH = TaskResult._meta.get_field("celery_task_id").max_length or 64


def batch_id(results: list[TaskResult]) -> str:
    return BATCH_PREFIX + ".".join(_base36(result.pk) for result in results)


def batch_members(celery_task_id: str) -> list[int]:
    """The attempt ids a message carries, from its Celery task id (none for a one-attempt message)."""
    if not celery_task_id.startswith(BATCH_PREFIX):
        return []
    return [int(part, 36) for part in celery_task_id.removeprefix(BATCH_PREFIX).split(".") if part.isalnum()]


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if not number:
            return digits


def _fitting(group: list[TaskResult]) -> list[list[TaskResult]]:
    """``group`` as one message, or halved until each message's id fits the column (ids past 36**5)."""
    if len(group) == 1 or len(batch_id(group)) <= _ID_WIDTH:
        return [group]
    half = len(group) // 2
    return _fitting(group[:half]) + _fitting(group[half:])


def messages(results: list[TaskResult]) -> list[list[TaskResult]]:
    """Split queued attempts (in pick order) into Celery messages.

    Each message costs the broker and the worker about as much as a no-op attempt (publish, deliver,
    acknowledge, trace). So when a dispatch queues more attempts than the online workers have pool
    processes, they go several to a message, at most ``scheduler.attempts_per_message``, and never fewer
    messages than processes, so that no process idles while another holds a message of several; a
    message holds one priority, so the broker's order between priorities is kept. One attempt, or as
    many as there are processes: one message each, as they can all start at once.
    """
    per_message = settings.TASKHUB.scheduler.attempts_per_message
    if per_message <= 1 or len(results) <= 1:
        return [[result] for result in results]
    size = min(per_message, -(-len(results) // max(_pool_processes(), 1)))
    if size <= 1:
        return [[result] for result in results]
    grouped: list[list[TaskResult]] = []
    for result in results:
        last = grouped[-1] if grouped else None
        if last is not None and len(last) < size and last[0].priority == result.priority:
            last.append(result)
        else:
            grouped.append([result])
    return [message for group in grouped for message in _fitting(group)]


_pool: dict[str, float] = {}


def _pool_processes() -> int:
    """Pool processes of the workers online (their heartbeat rows), counted at most once a heartbeat."""
    now = time.monotonic()
    if _pool.get("until", 0.0) <= now:
        online = Worker.objects.filter(workers.online(clock.now())).aggregate(total=Sum("concurrency"))
        _pool.update(value=online["total"] or 0, until=now + settings.TASKHUB.scheduler.worker_heartbeat)
    return int(_pool["value"])


#: When the system is busy, wake() dispatches only once this share of the concurrency
#: cap is free, so one locked dispatch queues a batch instead of one attempt per
#: completion (a quarter: a dispatch costs about the same for 2 attempts as for 16, and
#: measured on 2 workers a quarter gave about a tenth more throughput than an eighth).
#: On an idle system every slot is free and wake() dispatches at once.
BATCH_SHARE = 4


def wake(in_flight_now: int | None = None) -> None:
    """Dispatch now (after a commit that may have made work ready); never raise to the caller.

    ``in_flight_now``: the attempts in flight, when the caller has just counted them (a completion on
    PostgreSQL does, in its own statement), so the busy check costs no query.
    """
    try:
        concurrency = settings.TASKHUB.scheduler.concurrency
        batch = concurrency // BATCH_SHARE
        if batch > 1:
            busy = in_flight() if in_flight_now is None else in_flight_now
            if concurrency - busy < batch:
                return  # busy: a later completion (or the sweep) dispatches a whole batch
        # Checked again under the lock: two completions that both saw a batch free would otherwise
        # both dispatch, the second for the one or two slots the first left (measured: one dispatch
        # per 7 completions instead of per 16, each a pick, two UPDATEs and a commit).
        dispatch(at_least=batch)
    except Exception:
        logger.exception("dispatch failed; the beat poll will try again")


def revoke(celery_ids: list[str], *, terminate: bool = False) -> None:
    """Ask workers to drop (or kill, when running) the given Celery tasks."""
    if not celery_ids:
        return
    try:
        app.control.revoke(celery_ids, terminate=terminate, signal="SIGTERM")
    except Exception:
        logger.exception("could not revoke %d Celery task(s)", len(celery_ids))


def cancel(task: Task, *, reason: str, actor: Any = None) -> int:
    """Cancel a task's waiting and in-flight attempts, audited; revoke the running ones after commit.

    Return how many were cancelled (0: nothing to cancel, nothing written).
    """
    with transaction.atomic():
        Task.objects.select_for_update().get(pk=task.pk)
        cancelled, celery_ids = lifecycle.cancel_active(task, reason)
        if not cancelled:
            return 0
        audit.record(task, AuditAction.CANCELLED, actor=actor, detail=f"{cancelled} attempt(s): {reason}")
        transaction.on_commit(lambda: revoke(celery_ids, terminate=True))
        # A running attempt that came with others: revoking its message ends them too. Those not yet
        # started are re-sent one each (executor.run_attempts hands them back too when it is quicker;
        # the claim runs each once).
        mates = [pk for celery_id in celery_ids for pk in batch_members(celery_id)]
        if mates:
            transaction.on_commit(lambda: resend_queued(mates))
        transaction.on_commit(wake)
    return cancelled


def resend_queued(result_ids: list[int]) -> None:
    """Send again, one per message and in their message's order, those of these attempts still QUEUED."""
    queued = TaskResult.objects.filter(pk__in=result_ids, status=AttemptStatus.QUEUED).select_related("task")
    send(sorted(queued, key=lambda result: result_ids.index(result.pk)), together=False)
