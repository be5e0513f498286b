"""Run one attempt: claim it, call its handler, record the outcome, apply the retry policy.

Steps of :func:`run_attempt`:
1. Claim: QUEUED -> RUNNING by a conditional update that bumps the fencing
   ``claim``; anything but QUEUED means a duplicate delivery, which is ignored.
2. Run the handler outside any transaction (Celery's soft time limit interrupts it).
3. Complete: write DONE / FAILED / TIMEOUT only while the attempt is still RUNNING
   under our claim, so a worker presumed dead cannot overwrite the retry's outcome.
4. Retry (a new RETRY attempt with ``available_at`` from the policy) or fail the
   dependents; after commit, dispatch the next work.

A message carrying several attempts (:func:`run_attempts`) runs these steps for each in turn, each
handler stopped at its own timeout by an alarm rather than by the message's soft limit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction

from scheduling.engine import attempt_log, attempts, clock, dispatcher, lifecycle
from scheduling.handlers import HandlerContext, ProgressCallback, registry
from scheduling.models import AttemptStatus, TaskResult
from taskhub import encryption, scrubbing
from taskhub.exceptions import ConfigError, HandlerError

logger = logging.getLogger(__name__)

#: Told each progress report as stored: a whole percent 0-100 (or None) and the message.
ProgressListener = Callable[[int | None, str], None]

MAX_ERROR = 10_000


class AttemptTimedOut(Exception):
    """The handler ran past the task's timeout_seconds."""


@dataclass
class Outcome:
    status: str
    result: Any = None
    error: str = ""
    traceback: str = ""
    permanent: bool = False


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(
    result_id: int, *, celery_task_id: str = "", worker_node: str = "", now: datetime | None = None
) -> TaskResult | None:
    """Take a QUEUED attempt for this worker (``worker_node``: its Celery node name); None when not QUEUED."""
    now = now or clock.now()
    if connection.vendor == "postgresql":
        return lifecycle.start_one_statement(
            result_id,
            now=now,
            worker=worker_name()[:200],
            worker_node=worker_node[:200],
            celery_task_id=celery_task_id,
            extra_seconds=_grace() * 2,
        )
    with transaction.atomic():
        result = TaskResult.objects.select_related("task").filter(pk=result_id).first()
        if result is None or result.status != AttemptStatus.QUEUED:
            return None
        deadline = now + timedelta(seconds=result.task.effective_timeout() + _grace() * 2)
        extra: dict[str, Any] = {"celery_task_id": celery_task_id} if celery_task_id else {}
        try:
            lifecycle.move(
                result,
                AttemptStatus.RUNNING,
                now=now,
                worker=worker_name()[:200],
                worker_node=worker_node[:200],
                deadline=deadline,
                **extra,
            )
        except lifecycle.StaleAttempt:
            return None
    return result


def _grace() -> int:
    return settings.TASKHUB.scheduler.timeout_grace_seconds


#: Tries of one short database step when the connection breaks (server restarted, backend terminated).
DB_TRIES = 4


def reconnecting(step: Callable[[], Any], what: str) -> Any:
    """Run one short database step; when the connection is dead, reconnect and run it again.

    Django keeps a broken connection until something closes it, so a worker whose
    connection was dropped mid-attempt would fail to record the outcome and leave
    the attempt RUNNING until its deadline. Only outside a transaction (inside one,
    the caller's work went with the connection). The steps are conditional updates,
    so running one again after its reply was lost is safe: it finds the attempt
    already moved and reports a duplicate or a lost claim. A query interrupted by
    the soft time limit leaves the connection busy (a ProgrammingError next): that
    connection is unusable too.
    """
    for attempt in range(1, DB_TRIES + 1):
        try:
            return step()
        except (DatabaseError, InterfaceError) as exc:
            if connection.in_atomic_block or attempt == DB_TRIES:
                raise
            if not isinstance(exc, (OperationalError, InterfaceError)) and connection.is_usable():
                raise  # a real error (SQL, constraint), not a broken connection
            logger.warning("%s: database connection lost (%s); reconnecting", what, str(exc).strip()[:200])
            connection.close()
            time.sleep(0.25 * attempt)
    raise AssertionError("unreachable")


def _progress_callback(result: TaskResult, listener: ProgressListener | None = None) -> ProgressCallback:
    def report(percent: int | float | None, message: str = "") -> None:
        value = None if percent is None else max(0, min(100, int(percent)))
        reconnecting(
            lambda: TaskResult.objects.filter(pk=result.pk, status=AttemptStatus.RUNNING, claim=result.claim).update(
                progress=value, progress_message=scrubbing.cut(str(message), 500)
            ),
            f"attempt {result.pk} progress",
        )
        if listener is not None:
            listener(value, message)

    return report


def call_handler(
    result: TaskResult,
    *,
    soft_timeout_exc: tuple[type[BaseException], ...] = (),
    progress_listener: ProgressListener | None = None,
    live_log: bool = False,
    alarm: bool = False,
) -> Outcome:
    """Run the attempt's handler and turn whatever happens into an Outcome; no secret survives in it.

    What the handler logs through ``context.logger`` is kept with the attempt (see attempt_log);
    ``live_log`` writes it every second while the handler runs (the worker), else at the end.
    ``alarm``: stop the handler at the task's timeout here (:func:`_alarm`), not by Celery's soft limit.
    """
    task = result.task
    try:
        secret = encryption.decrypt_json(task.secret_parameters)
    except ConfigError as exc:
        return Outcome(AttemptStatus.FAILED, error=f"secret_parameters: {exc}", permanent=True)
    hidden = encryption.leaves(secret)
    with (
        encryption.secrets_in_use(hidden),
        attempt_log.capture(result.pk, task.handler, hidden, live=live_log) as (handler_logger, log),
    ):
        outcome = _call_handler(
            result,
            encryption.merge(task.parameters, secret),
            soft_timeout_exc,
            progress_listener,
            handler_logger,
            alarm,
        )
    try:
        reconnecting(log.write, f"attempt {result.pk} log")
    except DatabaseError as exc:  # the outcome matters more than the log: record it anyway
        logger.warning("attempt %s: log not stored (%s)", result.pk, scrubbing.cut(str(exc).strip(), 200, hidden))
    # Config secrets (Jira tokens, webhook URLs...) and the task's own must not reach the stored result:
    # scrubbed in every form, and before the cut, so that no part of one straddling MAX_ERROR survives.
    outcome.error = scrubbing.cut(outcome.error, MAX_ERROR, hidden)
    outcome.traceback = scrubbing.cut(outcome.traceback, MAX_ERROR, hidden, keep="end")
    outcome.result = scrubbing.scrub(outcome.result, hidden)
    return outcome


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """Raise :class:`AttemptTimedOut` in the handler ``seconds`` from now (SIGALRM; the main thread only).

    One attempt's timeout inside a Celery message carrying several, whose soft limit cannot be per
    attempt; armed around the handler alone, never around a database step. Elsewhere than in the main
    thread (Celery's threads pool, which has no soft limits either) the deadline and the sweep stop it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise AttemptTimedOut()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call_handler(
    result: TaskResult,
    parameters: dict[str, Any],
    soft_timeout_exc: tuple[type[BaseException], ...],
    progress_listener: ProgressListener | None,
    handler_logger: logging.Logger,
    alarm: bool,
) -> Outcome:
    task = result.task
    context = HandlerContext(
        task_id=str(task.pk),
        task_name=task.name,
        attempt=result.attempt,
        result_id=result.pk,
        logger=handler_logger,
        progress=_progress_callback(result, progress_listener),
    )
    try:
        spec = registry.get(task.handler)
    except KeyError:
        return Outcome(AttemptStatus.FAILED, error=f"no handler registered for tag {task.handler!r}", permanent=True)
    timed_out: tuple[type[BaseException], ...] = (AttemptTimedOut, *soft_timeout_exc)
    try:
        with _alarm(task.effective_timeout()) if alarm else nullcontext():
            value = spec.func(parameters, context)
    except timed_out:
        return Outcome(
            AttemptStatus.TIMEOUT,
            error=f"timed out after {task.effective_timeout()} s (timeout_seconds)",
            traceback=traceback.format_exc(),  # cut by call_handler, after scrubbing
        )
    except Exception as exc:  # noqa: BLE001 - every handler failure is recorded on the attempt
        return Outcome(
            AttemptStatus.FAILED,
            error=f"{exc.__class__.__name__}: {exc}",  # cut by call_handler, after scrubbing
            traceback=traceback.format_exc(),
            permanent=isinstance(exc, HandlerError) and exc.permanent,
        )
    result.artifacts = context.artifacts
    return Outcome(AttemptStatus.DONE, result=value)


def complete(result: TaskResult, outcome: Outcome, *, now: datetime | None = None) -> bool:
    """Record the outcome if our claim still holds; apply the retry policy; False if fenced off."""
    now = now or clock.now()
    if outcome.status == AttemptStatus.DONE and connection.vendor == "postgresql":
        # The common case in one statement (no retry to plan, no dependent to fail): lifecycle's fast path.
        still_in_flight = lifecycle.finish_done_one_statement(
            result,
            now=now,
            result=outcome.result,
            error_message=outcome.error,
            traceback=outcome.traceback,
            artifacts=result.artifacts or [],
            progress=100,
        )
        if still_in_flight is None:
            logger.warning("attempt %s: outcome %s discarded, the claim was lost", result.pk, outcome.status)
            return False
        # At once, unless a caller's transaction is open; the statement counted what is in flight.
        transaction.on_commit(lambda: dispatcher.wake(in_flight_now=still_in_flight))
        return True
    with transaction.atomic():
        try:
            lifecycle.move(
                result,
                outcome.status,
                now=now,
                claim=result.claim,
                refresh=False,
                result=outcome.result,
                error_message=outcome.error,
                traceback=outcome.traceback,
                artifacts=result.artifacts or [],
                progress=100 if outcome.status == AttemptStatus.DONE else result.progress,
            )
        except lifecycle.StaleAttempt:
            logger.warning("attempt %s: outcome %s discarded, the claim was lost", result.pk, outcome.status)
            return False
        _after_finish(result, outcome, now)
        transaction.on_commit(dispatcher.wake)
    return True


def _after_finish(result: TaskResult, outcome: Outcome, now: datetime) -> None:
    """Schedule a retry or settle the run; fail dependents when the run ends badly."""
    task = result.task
    policy = task.retry_policy
    retryable = (
        outcome.status in (AttemptStatus.FAILED, AttemptStatus.TIMEOUT)
        and not outcome.permanent
        and policy is not None
        and result.attempt <= policy.max_retries
        and (outcome.status != AttemptStatus.TIMEOUT or policy.retry_on_timeout)
    )
    if retryable and policy is not None:  # retryable implies a policy; mypy cannot see through the bool
        delay = policy.delay_for(result.attempt)
        attempts.build(
            task,
            now=now,
            attempt=result.attempt + 1,
            status=AttemptStatus.RETRY,
            fire_time=result.fire_time,
            available_at=now + timedelta(seconds=delay),
            pipeline_run_id=result.pipeline_run_id,
        ).save(force_insert=True)
        lifecycle.refresh_task(
            task.pk, latest=result, reason=f"attempt {result.attempt} {outcome.status}: retry in {delay:.1f} s"
        )
        return
    lifecycle.refresh_task(task.pk, latest=result)
    if outcome.status != AttemptStatus.DONE:
        lifecycle.fail_dependents(
            task, reason=f"dependency {task.name!r} failed", pipeline_run_id=result.pipeline_run_id
        )


def run_attempt(
    result_id: int,
    *,
    celery_task_id: str = "",
    soft_timeout_exc: tuple[type[BaseException], ...] = (),
    progress_listener: ProgressListener | None = None,
    live_log: bool = False,
    worker_node: str = "",
    alarm: bool = False,
) -> str:
    """Claim, run and complete one attempt; return what happened (for logs and tests)."""
    result = reconnecting(
        lambda: claim(result_id, celery_task_id=celery_task_id, worker_node=worker_node), f"attempt {result_id} claim"
    )
    if result is None:
        logger.info("attempt %s is not QUEUED: duplicate delivery ignored", result_id)
        return "ignored"
    logger.info("attempt %s of %s (%s) started", result.attempt, result.task.name, result.task.handler)
    outcome = call_handler(
        result, soft_timeout_exc=soft_timeout_exc, progress_listener=progress_listener, live_log=live_log, alarm=alarm
    )
    running = result.status

    def record() -> bool:
        result.status = running  # a try that failed after the move changed the copy in memory
        return complete(result, outcome)

    recorded = reconnecting(record, f"attempt {result_id} outcome")
    logger.info("attempt %s of %s: %s %s", result.attempt, result.task.name, outcome.status, outcome.error[:200])
    return outcome.status if recorded else "fenced"


def run_attempts(
    result_ids: list[int],
    *,
    celery_task_id: str = "",
    worker_node: str = "",
    soft_timeout_exc: tuple[type[BaseException], ...] = (),
) -> list[str]:
    """Run the attempts one Celery message carries, in order, each claimed, timed and recorded on its own.

    One attempt: Celery's soft limit (``soft_timeout_exc``) stops its handler. Several (dispatcher.send
    gives their message no soft limit): each handler is stopped at its own timeout by :func:`_alarm`.
    An attempt found taken is skipped; if its worker process died mid-attempt (a redelivery), it is
    reclaimed now so the retry policy decides, instead of leaving it RUNNING until the sweep's deadline.
    One whose completion is fenced off was cancelled or taken back while it ran: a cancel revokes this
    message, so the attempts not yet started are handed back, re-sent one per message, and this
    message ends before the revoke can stop one of them.
    """
    several = len(result_ids) > 1
    outcomes: list[str] = []
    for index, result_id in enumerate(result_ids):
        outcome = run_attempt(
            result_id,
            celery_task_id=celery_task_id,
            soft_timeout_exc=soft_timeout_exc,
            live_log=True,
            worker_node=worker_node,
            alarm=several,
        )
        if outcome == "ignored":
            reclaim_if_worker_dead(result_id)
        outcomes.append(outcome)
        if outcome == "fenced" and index + 1 < len(result_ids):
            dispatcher.resend_queued(result_ids[index + 1 :])
            outcomes += ["handed back"] * (len(result_ids) - index - 1)
            break
    return outcomes


def reclaim(result_id: int, *, now: datetime | None = None, reason: str | None = None) -> bool:
    """Take back a RUNNING attempt whose worker is gone: record TIMEOUT and retry per policy."""
    now = now or clock.now()
    with transaction.atomic():
        result = TaskResult.objects.select_related("task", "task__retry_policy").filter(pk=result_id).first()
        if result is None or result.status != AttemptStatus.RUNNING:
            return False
        outcome = Outcome(
            AttemptStatus.TIMEOUT,
            error=reason or f"worker {result.worker} stopped answering: no outcome by {result.deadline:%H:%M:%S} UTC",
        )
        try:
            lifecycle.move(
                result, outcome.status, now=now, claim=result.claim, refresh=False, error_message=outcome.error
            )
        except lifecycle.StaleAttempt:
            return False
        _after_finish(result, outcome, now)
        transaction.on_commit(dispatcher.wake)
    logger.warning("attempt %s reclaimed: %s", result_id, outcome.error)
    return True


def reclaim_if_worker_dead(result_id: int) -> bool:
    """On redelivery: reclaim a RUNNING attempt whose worker process on this host has died."""
    result = TaskResult.objects.filter(pk=result_id, status=AttemptStatus.RUNNING).only("worker").first()
    if result is None or ":" not in result.worker:
        return False
    host, _, pid = result.worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
        return False
    return reclaim(result_id, reason=f"worker process {result.worker} died during the attempt")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
