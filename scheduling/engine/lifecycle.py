"""The one place where statuses change.

Attempts (``TaskResult``) follow a strict state machine; a task's own ``status``
is derived from its attempts by :func:`refresh_task`, so it can never drift from
them. Every change is a conditional UPDATE that must match the status (and, for
running attempts, the claim) the caller saw, so two processes cannot both move
the same attempt, and a worker that lost its claim cannot record an outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Concat

from scheduling.engine import clock, compiled
from scheduling.models import FINISHED, IN_FLIGHT, WAITING, AttemptStatus, Task, TaskResult, TaskStatus
from taskhub.exceptions import IllegalTransition

A = AttemptStatus

#: The seed's diagram, on attempts. RETRY is a waiting attempt whose backoff has
#: not elapsed; TIMEOUT and FAILED attempts that may be retried create a new RETRY
#: attempt, which is how RUNNING -> TIMEOUT -> RETRY -> QUEUED reads per attempt.
TRANSITIONS: dict[str, frozenset[str]] = {
    A.PENDING: frozenset({A.QUEUED, A.CANCELLED, A.FAILED, A.SKIPPED}),
    A.RETRY: frozenset({A.QUEUED, A.CANCELLED, A.FAILED}),
    A.QUEUED: frozenset({A.RUNNING, A.CANCELLED, A.FAILED}),
    A.RUNNING: frozenset({A.DONE, A.FAILED, A.TIMEOUT, A.CANCELLED}),
    A.DONE: frozenset(),
    A.FAILED: frozenset(),
    A.TIMEOUT: frozenset(),
    A.CANCELLED: frozenset(),
    A.SKIPPED: frozenset(),
}

#: The task's status once its latest attempt has finished and none is active: the attempt's own.
TASK_STATUS_AFTER: dict[str, str] = {
    A.DONE: TaskStatus.DONE,
    A.FAILED: TaskStatus.FAILED,
    A.TIMEOUT: TaskStatus.TIMEOUT,
    A.CANCELLED: TaskStatus.CANCELLED,
}

#: Task statuses that end a run badly: dependents of a task in one of them fail instead of waiting.
TASK_FAILED = (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.CANCELLED)

#: A task already showing one of these keeps it when a new run is added (they outrank PENDING).
BUSY = (TaskStatus.RUNNING, TaskStatus.QUEUED, TaskStatus.RETRY)

# Which timestamp a move stamps.
_STAMPS: dict[str, str] = {A.QUEUED: "queued_at", A.RUNNING: "started_at"}

# Task status while some attempt is active, by precedence.
_ACTIVE_ORDER = (A.RUNNING, A.QUEUED, A.RETRY, A.PENDING)


def instances(tasks: QuerySet[Task] | Iterable[Any], *, with_waiting: bool = False) -> Counter[Any]:
    """Count each task's runs against ``scheduler.max_instances``: the one rule for the dispatcher and for firing.

    ``max_instances`` bounds a task's runs in flight (QUEUED, RUNNING): the dispatcher starts a waiting
    run only while this count is below it. A cron fire asks ``with_waiting``: the runs already waiting
    to start (PENDING, RETRY) are ahead of the new one, so at the limit its overlap policy decides
    (skip it, queue it behind them, or replace them). ``tasks``: task ids, or a queryset of tasks.
    """
    statuses = IN_FLIGHT + WAITING if with_waiting else IN_FLIGHT
    rows = (
        TaskResult.objects.filter(task__in=tasks, status__in=statuses)
        .order_by()
        .values_list("task_id")
        .annotate(n=Count("pk"))
        .values_list("task_id", "n")
    )
    return Counter(dict(rows))


def check(current: str, target: str) -> None:
    """Raise IllegalTransition unless an attempt may go from ``current`` to ``target``."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition("attempt", current, target)


class StaleAttempt(Exception):
    """The attempt was changed by someone else since it was read (lost race or lost claim)."""


def move(
    result: TaskResult,
    target: str,
    /,
    *,
    now: datetime | None = None,
    claim: int | None = None,
    refresh: bool = True,
    **fields: Any,
) -> TaskResult:
    """Move one attempt to ``target`` if it is still where the caller saw it.

    Stamps queued/started/finished times and the duration, writes ``fields``,
    then re-derives the task's status. Raises IllegalTransition for a move the
    diagram forbids and StaleAttempt when the row changed underneath.
    """
    check(result.status, target)
    now = now or clock.now()
    if target in _STAMPS:
        fields[_STAMPS[target]] = now
    if target in FINISHED:
        fields["finished_at"] = now
        if result.started_at:
            fields["duration"] = max((now - result.started_at).total_seconds(), 0.0)
    query = TaskResult.objects.filter(pk=result.pk, status=result.status)
    if claim is not None:
        query = query.filter(claim=claim)
    if target == A.RUNNING:
        fields["claim"] = F("claim") + 1
    if query.update(status=target, **fields) != 1:
        raise StaleAttempt(f"attempt {result.pk} is no longer {result.status}")
    if "claim" in fields:
        fields["claim"] = result.claim + 1
    for name, value in fields.items():
        setattr(result, name, value)
    result.status = target
    if refresh:
        refresh_task(result.task_id, latest=result)
    return result


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.concrete, f"{model.__name__}.{name} is not a column"
    return field


def _columns(model: type[models.Model], alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def _instance(model: type[models.Model], values: Sequence[Any]) -> Any:
    """A model instance from a row of its concrete columns, as the ORM would load it (JSON decoded, ...)."""
    fields = model._meta.concrete_fields
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def start_one_statement(
    result_id: int, *, now: datetime, worker: str, worker_node: str, celery_task_id: str, extra_seconds: float
) -> TaskResult | None:
    """PostgreSQL: QUEUED -> RUNNING (the claim) and the task RUNNING, in one statement; None if not QUEUED.

    The same move as :func:`move` to RUNNING followed by :func:`refresh_task` (RUNNING outranks every
    other status), as one UPDATE of the attempt with the fencing ``claim`` bumped, one of its task,
    and the two rows returned: one round trip instead of six (BEGIN, SELECT, two UPDATEs, COMMIT).
    The deadline is the task's timeout (its own or ``scheduler.default_timeout_seconds``) plus
    ``extra_seconds``, from ``now``.
    """
    sql = f"""
        WITH claimed AS (
            UPDATE scheduling_taskresult AS r
            SET status = %(running)s, claim = r.claim + 1, started_at = %(now)s, worker = %(worker)s,
                worker_node = %(worker_node)s,
                deadline = %(now)s + make_interval(
                    secs => COALESCE(t.timeout_seconds, %(default_timeout)s) + %(extra)s
                ),
                celery_task_id = COALESCE(NULLIF(%(celery_task_id)s, ''), r.celery_task_id)
            FROM scheduling_task AS t
            WHERE r.id = %(id)s AND r.status = %(queued)s AND t.id = r.task_id
            RETURNING r.*
        ), started AS (
            UPDATE scheduling_task AS t
            SET status = %(task_running)s, attempt = c.attempt, status_reason = '', updated_at = %(now)s
            FROM claimed AS c
            WHERE t.id = c.task_id
            RETURNING t.*
        )
        SELECT {_columns(TaskResult, "c")}, {_columns(Task, "s")}
        FROM claimed AS c JOIN started AS s ON s.id = c.task_id
    """
    params: dict[str, Any] = {
        "running": A.RUNNING,
        "queued": A.QUEUED,
        "task_running": TaskStatus.RUNNING,
        "now": now,
        "worker": worker,
        "worker_node": worker_node,
        "celery_task_id": celery_task_id,
        "default_timeout": settings.TASKHUB.scheduler.default_timeout_seconds,
        "extra": extra_seconds,
        "id": result_id,
    }
    with compiled.prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(TaskResult._meta.concrete_fields)
    result: TaskResult = _instance(TaskResult, row[:split])
    result.task = _instance(Task, row[split:])
    return result


def finish_done_one_statement(result: TaskResult, /, *, now: datetime, **fields: Any) -> int | None:
    """PostgreSQL: RUNNING -> DONE under our claim, and the task's status re-derived, in one statement.

    The same as :func:`move` to DONE (``refresh=False``) followed by :func:`refresh_task` with the
    attempt as the latest: the task shows its busiest other active attempt (RUNNING, QUEUED, RETRY,
    PENDING, as ``task_status_for``), else DONE; one round trip instead of five. Return how many
    attempts are still in flight (QUEUED, RUNNING) besides this one, which is what the dispatcher's
    wake asks next; None (nothing written) when the claim was lost. ``fields``: the other columns to
    write (result, error_message, ...).
    """
    check(result.status, A.DONE)
    fields["finished_at"] = now
    if result.started_at:
        fields["duration"] = max((now - result.started_at).total_seconds(), 0.0)
    columns = {name: _concrete(TaskResult, name) for name in sorted(fields)}
    sets = ", ".join(f'"{field.column}" = %({name})s' for name, field in columns.items())
    params: dict[str, Any] = {
        name: field.get_db_prep_value(fields[name], connection) for name, field in columns.items()
    }
    active = ", ".join(f"'{status}'" for status in WAITING + IN_FLIGHT)
    in_flight = ", ".join(f"'{status}'" for status in IN_FLIGHT)
    ranked = " ".join(f"WHEN bool_or(a.status = '{status}') THEN '{status}'" for status in _ACTIVE_ORDER)
    sql = f"""
        WITH done AS (
            UPDATE scheduling_taskresult SET status = %(done)s, {sets}
            WHERE id = %(id)s AND status = %(running)s AND claim = %(claim)s
            RETURNING id, task_id, attempt
        ), active AS (
            SELECT a.status, a.attempt, a.available_at
            FROM scheduling_taskresult AS a JOIN done AS d ON a.task_id = d.task_id
            WHERE a.id <> d.id AND a.status IN ({active})
        )
        , settled AS (
        UPDATE scheduling_task AS t
        SET status = COALESCE((SELECT CASE {ranked} END FROM active AS a), %(task_done)s),
            attempt = COALESCE((SELECT max(a.attempt) FROM active AS a), d.attempt),
            next_attempt_at = (SELECT min(a.available_at) FROM active AS a WHERE a.status = %(retry)s),
            status_reason = '',
            updated_at = %(now)s
        FROM done AS d
        WHERE t.id = d.task_id
        RETURNING t.id
        )
        SELECT (SELECT count(*) FROM scheduling_taskresult WHERE status IN ({in_flight})) - 1 FROM settled
    """
    params.update(
        done=A.DONE,
        running=A.RUNNING,
        retry=A.RETRY,
        task_done=TaskStatus.DONE,
        id=result.pk,
        claim=result.claim,
        now=clock.now(),
    )
    with compiled.prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    for name, value in fields.items():
        setattr(result, name, value)
    result.status = A.DONE
    return int(row[0])


#: Every Celery id of an attempt's own messages: this prefix, then the attempt's id.
CELERY_ID_PREFIX = "taskhub-"


def celery_id(result_id: int) -> str:
    """The Celery task id of an attempt's messages: stable, so re-sends and revokes name the same id."""
    return f"{CELERY_ID_PREFIX}{result_id}"


def queue_many(results: list[TaskResult], *, now: datetime) -> None:
    """Move waiting attempts to QUEUED (the dispatcher's hot path): one statement on PostgreSQL, else two.

    Same rules as :func:`move`: each attempt must still be PENDING or RETRY. The
    tasks become QUEUED unless a run of theirs is RUNNING, which takes precedence.
    """
    for result in results:
        check(result.status, A.QUEUED)
    ids = [result.pk for result in results]
    queue = _queue_one_statement if connection.vendor == "postgresql" else _queue_two_statements
    changed = queue(ids, {result.task_id for result in results}, now)
    if changed != len(ids):  # raised inside the dispatch's transaction: the tasks' update is rolled back too
        raise StaleAttempt(f"{len(ids) - changed} of {len(ids)} attempts were no longer waiting")
    for result in results:
        result.status, result.queued_at, result.celery_task_id = A.QUEUED, now, celery_id(result.pk)


def _queue_two_statements(ids: list[int], task_ids: set[Any], now: datetime) -> int:
    """The ORM's two UPDATEs of :func:`queue_many` (SQLite); the attempts changed."""
    changed = TaskResult.objects.filter(pk__in=ids, status__in=WAITING).update(
        status=A.QUEUED,
        queued_at=now,
        celery_task_id=Concat(Value(CELERY_ID_PREFIX), Cast("pk", CharField())),
    )
    Task.objects.filter(pk__in=task_ids).exclude(status=TaskStatus.RUNNING).update(
        status=TaskStatus.QUEUED, status_reason="", next_attempt_at=None, updated_at=now
    )
    return changed


def _queue_one_statement(ids: list[int], task_ids: set[Any], now: datetime) -> int:
    """PostgreSQL: both UPDATEs of :func:`queue_many` as one prepared statement; the attempts changed.

    Building the two ORM updates was most of an idle dispatch's Python (about 1.5 of its 3.5 ms). The
    tasks are those of the attempts it queues (``task_ids``, the same set, is the other path's).
    """
    waiting = ", ".join(f"'{status}'" for status in WAITING)
    sql = f"""
        WITH queued AS (
            UPDATE scheduling_taskresult
            SET status = %(queued)s, queued_at = %(now)s, celery_task_id = %(prefix)s || id::text
            WHERE id = ANY(%(ids)s) AND status IN ({waiting})
            RETURNING task_id
        ), shown AS (
            UPDATE scheduling_task
            SET status = %(task_queued)s, status_reason = '', next_attempt_at = NULL, updated_at = %(now)s
            WHERE id IN (SELECT task_id FROM queued) AND status <> %(task_running)s
        )
        SELECT count(*) FROM queued
    """
    params: dict[str, Any] = {
        "queued": A.QUEUED,
        "now": now,
        "prefix": CELERY_ID_PREFIX,
        "ids": ids,
        "task_queued": TaskStatus.QUEUED,
        "task_running": TaskStatus.RUNNING,
    }
    with compiled.prepared_cursor() as cursor:
        cursor.execute(sql, params)
        (changed,) = cursor.fetchone()
    return int(changed)


def runs_added(tasks: QuerySet[Task], *, now: datetime, **fields: Any) -> int:
    """New waiting runs were added to these tasks (a cron fire): show PENDING unless a busier status stands.

    One UPDATE for any number of tasks; ``fields`` are written with it (the fire's ``next_fire_at``).
    """
    return tasks.update(
        status=Case(When(status__in=BUSY, then=F("status")), default=Value(TaskStatus.PENDING)),
        status_reason=Case(When(status__in=BUSY, then=F("status_reason")), default=Value("")),
        updated_at=now,
        **fields,
    )


def task_status_for(active: list[str], latest: TaskResult | None) -> str | None:
    """Derive a task's status from its active attempts, else from its latest finished one."""
    for status in _ACTIVE_ORDER:
        if status in active:
            return status
    if latest is None or latest.status == A.SKIPPED:
        return None
    # A run that ended with a timeout reads TIMEOUT (one whose timeout is being retried has a RETRY
    # attempt, which is active, so it reads RETRY above).
    return TASK_STATUS_AFTER[latest.status]


def refresh_task(task_id: Any, *, latest: TaskResult | None = None, reason: str | None = None) -> str | None:
    """Recompute and store ``Task.status`` (and its attempt counters) from its attempts."""
    if latest is not None and latest.status == A.RUNNING and reason is None:
        # RUNNING outranks every other status, so no need to look at the other attempts.
        Task.objects.filter(pk=task_id).update(
            status=TaskStatus.RUNNING, attempt=latest.attempt, status_reason="", updated_at=clock.now()
        )
        return TaskStatus.RUNNING
    active = list(
        TaskResult.objects.filter(task_id=task_id, status__in=WAITING + IN_FLIGHT).values_list(
            "status", "attempt", "available_at"
        )
    )
    status = task_status_for([row[0] for row in active], latest)
    if status is None:
        return None
    update: dict[str, Any] = {"status": status, "updated_at": clock.now()}
    if active:
        update["attempt"] = max(row[1] for row in active)
        retry = [row[2] for row in active if row[0] == A.RETRY]
        update["next_attempt_at"] = min(retry) if retry else None
    elif latest is not None:
        update["attempt"] = latest.attempt
        update["next_attempt_at"] = None
    if reason is not None:
        update["status_reason"] = reason[:500]
    elif latest is not None:
        update["status_reason"] = _reason(latest)
    Task.objects.filter(pk=task_id).update(**update)
    return status


def fail_waiting(task: Task, reason: str, *, upstream: Task | None = None, pipeline_run_id: int | None = None) -> bool:
    """Fail the task's waiting attempts (locked); False when it had none.

    ``upstream`` (the dependency that failed): attempts of other pipeline runs in which that upstream still
    has a run waiting, in flight or DONE are spared (they wait on that run, not on this failure).
    ``pipeline_run_id``: the failure happened in that pipeline run: its attempts fail, and the others only
    while the upstream's own status is failed (the status rule, which holds them back, would never pass).
    """
    waiting_q = TaskResult.objects.select_for_update().filter(task=task, status__in=WAITING)
    if upstream is not None:
        alive = TaskResult.objects.filter(
            task_id=upstream.pk,
            pipeline_run_id=OuterRef("pipeline_run_id"),
            status__in=WAITING + IN_FLIGHT + (A.DONE,),
        )
        waiting_q = waiting_q.exclude(
            Q(pipeline_run__isnull=False) & ~Q(pipeline_run_id=pipeline_run_id) & Exists(alive)
        )
        if pipeline_run_id is not None:
            upstream_failed = Task.objects.filter(pk=upstream.pk, status__in=TASK_FAILED).exists()
            if not upstream_failed:
                waiting_q = waiting_q.filter(pipeline_run_id=pipeline_run_id)
    waiting = list(waiting_q)
    for result in waiting:
        move(result, A.FAILED, error_message=reason, refresh=False)
    if waiting:
        refresh_task(task.pk, latest=waiting[-1], reason=reason)
    return bool(waiting)


def fail_if_upstream_failed(task: Task, *, pipeline_run_id: int | None = None) -> None:
    """Fail the task's waiting runs at once if one of its dependencies already ended badly.

    ``pipeline_run_id``: only the task's attempts in that pipeline run, for the dependencies outside it (those
    inside run again in it).
    """
    dependencies = task.dependencies.filter(status__in=TASK_FAILED)
    if pipeline_run_id is not None:
        dependencies = dependencies.exclude(results__pipeline_run_id=pipeline_run_id)
    bad = dependencies.first()
    if bad is None:
        return
    reason = f"dependency {bad.name!r} is {bad.status}"
    if pipeline_run_id is None:
        fail_waiting(task, reason)
        return
    waiting = list(
        TaskResult.objects.select_for_update().filter(task=task, status__in=WAITING, pipeline_run_id=pipeline_run_id)
    )
    for result in waiting:
        move(result, A.FAILED, error_message=reason, refresh=False)
    if waiting:
        refresh_task(task.pk, latest=waiting[-1], reason=reason)


def failed_because_of(task: Task, upstream: Task) -> bool:
    """Whether ``task`` failed because of its dependency ``upstream``: its waiting run was failed with a reason
    naming it first ("dependency 'X' is FAILED", "... failed", "... was cancelled", "... has no run finished
    since ..."), as fail_if_upstream_failed, fail_dependents and the dependency timeout write it."""
    return task.status == TaskStatus.FAILED and task.status_reason.startswith(f"dependency {upstream.name!r} ")


def fail_if_any_upstream_failed(tasks: list[Task]) -> None:
    """:func:`fail_if_upstream_failed` for many tasks: one query finds those with a failed dependency."""
    through = Task.dependencies.through
    ids = {task.pk for task in tasks}
    hit = set(
        through.objects.filter(from_task_id__in=ids, to_task__status__in=TASK_FAILED).values_list(
            "from_task_id", flat=True
        )
    )
    for task in tasks:
        if task.pk in hit:
            fail_if_upstream_failed(task)


def fail_dependents(task: Task, *, reason: str, pipeline_run_id: int | None = None) -> None:
    """Fail the waiting runs downstream of a FAILED or CANCELLED task (Airflow's upstream_failed).

    ``pipeline_run_id``: the attempt that failed belonged to that pipeline run: its dependents fail in it
    (and outside any run only while the task's own status is failed); other pipeline runs in which the task
    still has a live run are never touched (see :func:`fail_waiting`).
    """
    frontier = [(task, reason)]
    seen = {task.pk}
    while frontier:
        upstream, why = frontier.pop()
        for dependent in upstream.dependents.all():
            if dependent.pk in seen:
                continue
            seen.add(dependent.pk)
            if fail_waiting(dependent, why, upstream=upstream, pipeline_run_id=pipeline_run_id):
                frontier.append((dependent, f"dependency {dependent.name!r} failed: {why}"))


def cancel_active(task: Task, reason: str) -> tuple[int, list[str]]:
    """Cancel the task's waiting and in-flight attempts (locked) and fail its dependents.

    Return how many were cancelled and the Celery ids of those that were in flight: revoking
    them is the caller's (``dispatcher.cancel``), after commit. Nothing is written when the
    task has none.
    """
    active = list(TaskResult.objects.select_for_update().filter(task=task, status__in=WAITING + IN_FLIGHT))
    if not active:
        return 0, []
    celery_ids = [r.celery_task_id for r in active if r.status in IN_FLIGHT and r.celery_task_id]
    for result in active:
        move(result, A.CANCELLED, error_message=reason, refresh=False)
    refresh_task(task.pk, latest=active[-1], reason=reason)
    fail_dependents(task, reason=f"dependency {task.name!r} was cancelled")
    return len(active), celery_ids


def _reason(result: TaskResult) -> str:
    if result.status == A.DONE:
        return ""
    if result.status == A.RETRY:
        return f"attempt {result.attempt} waits until {result.available_at:%Y-%m-%d %H:%M:%S} UTC"
    if result.status in (A.FAILED, A.TIMEOUT, A.CANCELLED):
        return (result.error_message or result.status).splitlines()[0][:500] if result.error_message else result.status
    return ""
