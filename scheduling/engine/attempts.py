"""The one place where attempt rows are created.

:func:`build` makes every new attempt (a task's first run, a retry, a cron fire, a skipped
fire); :func:`insert_first_runs` writes the cron fires of many tasks in one
``INSERT ... SELECT`` whose columns and values come from :func:`build` and the model's
concrete fields, so a field added to ``TaskResult`` is written by the bulk fire too (or the
fire fails in every test, not first in production). Status changes after creation are
``lifecycle``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.expressions import DatabaseDefault

from scheduling.models import AttemptStatus, Task, TaskResult


def build(
    task: Task,
    *,
    now: datetime,
    attempt: int = 1,
    status: str = AttemptStatus.PENDING,
    fire_time: datetime | None = None,
    available_at: datetime | None = None,
    pipeline_run_id: int | None = None,
    **fields: Any,
) -> TaskResult:
    """A new (unsaved) attempt of ``task``, with the task's priority; ``available_at`` defaults to ``now``.

    ``pipeline_run_id``: the pipeline run it belongs to (a retry attempt keeps its run's).
    """
    return TaskResult(
        task=task,
        attempt=attempt,
        status=status,
        priority=task.priority,
        fire_time=fire_time,
        available_at=available_at or now,
        created_at=now,
        pipeline_run_id=pipeline_run_id,
        **fields,
    )


# Columns of the bulk fire that come from each due task rather than from build().
_FROM_TASK = {"task": "due.due_id", "priority": "due.due_priority"}


def insert_first_runs(tasks: QuerySet[Task], fire_time: datetime, now: datetime) -> int:
    """Insert the first attempt of the run fired at ``fire_time`` for each task, in one statement.

    The unique (task, fire_time) key of first attempts makes a fire happen once: a run that
    already exists is left alone (``ON CONFLICT DO NOTHING``). Returns the rows inserted.
    """
    template = build(Task(), now=now, fire_time=fire_time, available_at=fire_time)
    quote = connection.ops.quote_name
    columns: list[str] = []
    values: list[str] = []
    params: list[Any] = []
    for field in TaskResult._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.name in _FROM_TASK:
            values.append(_FROM_TASK[field.name])
        else:
            value = field.pre_save(template, add=True)
            if isinstance(value, DatabaseDefault):
                continue  # the column's database default fills it
            values.append("%s")
            params.append(field.get_db_prep_save(value, connection))
        columns.append(quote(str(field.column)))  # a concrete field's column is set (typed Optional)
    aliased = tasks.order_by().values(due_id=F("pk"), due_priority=F("priority"))
    select, select_params = aliased.query.sql_with_params()
    sql = (
        f"INSERT INTO {quote(TaskResult._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM ({select}) due "
        # "WHERE 1 = 1" lets SQLite tell the upsert clause from a join's ON.
        "WHERE 1 = 1 ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *select_params])
        return max(cursor.rowcount, 0)
