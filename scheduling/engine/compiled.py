"""Queries the ORM builds and compiles once, then runs many times with a new "now" (the dispatcher's pick and counts).

The dispatcher's pick (the ready attempts, with the run-scoped dependency rule of engine/pipelines.py as a
few correlated ``EXISTS``) took several milliseconds of Python to build as a QuerySet and as many to compile
to SQL, on every dispatch, beside about a millisecond to run. Its shape never changes between dispatches,
only the time it is asked at: so the query is written with :class:`Now` where it needs the time, compiled
once per database connection and key, and run as its SQL with the time bound as a parameter.

The rule stays in one home, the ORM expressions (which ``pipelines.unmet`` and ``fail_overdue`` use as
they are, with a datetime); this module only caches what Django compiles from them. What is cached is
keyed by the caller's ``key`` (everything the query depends on but the time: limits, settings) and held
per connection (the row converters belong to it), so a thread or process never shares another's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import DateTimeField, Expression, QuerySet
from django.db.models.query import RelatedPopulator, get_related_populators
from django.db.models.sql.compiler import SQLCompiler

M = TypeVar("M", bound=models.Model)


class Now(Expression):
    """The time a compiled query runs at, plus ``offset``, as a bound parameter (never as a literal).

    Anywhere an expression fits: ``filter(available_at__lte=Now())``, ``Coalesce("started_at", Now())``.
    """

    def __init__(self, offset: timedelta = timedelta()) -> None:
        super().__init__(output_field=DateTimeField())
        self.offset = offset

    def shifted(self, delta: timedelta) -> Now:
        return Now(self.offset + delta)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        return "%s", (_Slot(self.offset),)

    def __repr__(self) -> str:
        return f"Now({self.offset!r})"


@dataclass(frozen=True)
class _Slot:
    """Where a :class:`Now` sits in the compiled parameters."""

    offset: timedelta


def at(now: datetime | Now, delta: timedelta) -> datetime | Now:
    """``now + delta``, for a datetime or a :class:`Now` alike (a rule written once for both)."""
    return now.shifted(delta) if isinstance(now, Now) else now + delta


@dataclass(frozen=True)
class _Compiled(Generic[M]):
    """What Django's ModelIterable needs to load instances from the rows, taken from the one compile."""

    sql: str
    params: tuple[Any, ...]
    compiler: SQLCompiler
    #: Per column index: the converters Django applies to it (dates on SQLite, ...).
    converters: dict[int, Any]
    model: type[M]
    fields: slice
    init_list: list[str]
    populators: list[RelatedPopulator]


@dataclass(frozen=True)
class _Scalar:
    """A compiled query of one value (:func:`count`, :func:`exists`)."""

    sql: str
    params: tuple[Any, ...]


_cache: weakref.WeakKeyDictionary[BaseDatabaseWrapper, dict[Hashable, _Compiled[Any] | _Scalar]] = (
    weakref.WeakKeyDictionary()
)


def _compile(queryset: QuerySet[M], connection: BaseDatabaseWrapper) -> _Compiled[M]:
    """Compile as ``ModelIterable`` does, keeping what it derives from the compiler to load the rows."""
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    select, info = compiler.select, compiler.klass_info
    assert info is not None, "a compiled query selects model instances"
    fields = slice(info["select_fields"][0], info["select_fields"][-1] + 1)
    return _Compiled(
        sql=sql,
        params=tuple(params),
        compiler=compiler,
        converters=compiler.get_converters([column for column, _, _ in select]),
        model=info["model"],
        fields=fields,
        init_list=[column.target.attname for column, _, _ in select[fields]],
        # django-stubs 6.1 describes Django 6's signature (a fetch_mode); Django 5.2, pinned, takes three.
        populators=get_related_populators(info, select, connection.alias),  # type: ignore[call-arg]
    )


def run(key: Hashable, build: Callable[[], QuerySet[M]], now: datetime) -> list[M]:
    """The instances ``build()`` would load, its :class:`Now` bound to ``now``; built and compiled on first use.

    ``key`` must name everything ``build`` depends on but the time. Call inside the transaction the query
    belongs to (a ``select_for_update`` one needs it). Annotations are not set on the instances.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    per_connection = _cache.setdefault(connection, {})
    compiled = per_connection.get(key)
    if not isinstance(compiled, _Compiled):
        compiled = per_connection[key] = _compile(build(), connection)
    params = _bound(compiled.params, now, connection)
    # Not prepared (prepared_cursor): a generic plan of the pick ran slower than planning it anew
    # (3,000 waiting: 4.0 against 3.4 ms per pick), as its plan depends on the time bound.
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, params)
        rows: Iterable[Sequence[Any]] = cursor.fetchall()
    if compiled.converters:
        rows = compiled.compiler.apply_converters(rows, compiled.converters)
    instances = []
    for row in rows:
        instance = compiled.model.from_db(connection.alias, compiled.init_list, row[compiled.fields])
        for populator in compiled.populators:
            populator.populate(row, instance)
        instances.append(instance)
    return instances


def _bound(params: tuple[Any, ...], now: datetime | None, connection: BaseDatabaseWrapper) -> list[Any]:
    if now is None:
        assert not any(isinstance(param, _Slot) for param in params), "the query needs a time"
        return list(params)
    ops = connection.ops
    return [ops.adapt_datetimefield_value(now + p.offset) if isinstance(p, _Slot) else p for p in params]


def count(key: Hashable, build: Callable[[], QuerySet[Any]], now: datetime | None = None) -> int:
    """``build().count()``, compiled once per connection and prepared (:func:`prepared_cursor`).

    For the engine's hot counts (the attempts in flight, on every wake): building and compiling the
    aggregation was most of their cost in Python, and planning most of it in PostgreSQL. Only for
    queries whose best plan does not depend on the parameters' values (a prepared statement may be
    given a generic plan): write partial-index conditions with literal values (``status_in``).
    """

    def rows() -> QuerySet[Any]:
        return build().order_by().values("pk")

    return int(_scalar(("count", key), rows, "SELECT count(*) FROM ({}) AS counted", now, prepare=True))


def exists(key: Hashable, build: Callable[[], QuerySet[Any]], now: datetime) -> bool:
    """``build().exists()`` at ``now``, compiled once per connection.

    Not prepared: its plan depends on the time (a generic plan of "due by now" expects a third of the
    rows to match and scans the table). Planning such a probe is a tenth of a millisecond.
    """

    def first() -> QuerySet[Any]:
        return build().order_by().values("pk")[:1]

    return bool(_scalar(("exists", key), first, "SELECT EXISTS ({})", now, prepare=False))


def _scalar(
    key: Hashable, rows: Callable[[], QuerySet[Any]], wrapper: str, now: datetime | None, *, prepare: bool
) -> Any:
    """The one value ``wrapper`` (SQL around ``{}``) computes from the query ``rows()``, compiled once."""
    connection = connections[DEFAULT_DB_ALIAS]
    per_connection = _cache.setdefault(connection, {})
    compiled = per_connection.get(key)
    if not isinstance(compiled, _Scalar):
        sql, params = rows().query.get_compiler(connection=connection).as_sql()
        compiled = per_connection[key] = _Scalar(wrapper.format(sql), tuple(params))
    with prepared_cursor() if prepare else connection.cursor() as cursor:
        cursor.execute(compiled.sql, _bound(compiled.params, now, connection))
        row = cursor.fetchone()
    return row[0]


@contextmanager
def prepared_cursor() -> Iterator[CursorWrapper]:
    """A cursor whose statements PostgreSQL parses and plans once per connection, then only executes.

    For the engine's hot statements that look rows up by key (the claim, the completion), the same text
    on every call: planning was most of their cost (0.3 ms to plan, under 0.1 ms to run). Django
    binds parameters on the client by default, so every statement reaches the server as new text; this
    cursor binds them on the server and prepares the statement on first use (psycopg keeps the prepared
    statements per connection). Still Django's cursor wrapper, so query logging and ``execute_wrapper``
    see it. Elsewhere (SQLite), with ``database.prepared_statements`` off, or while Django logs queries
    (``DEBUG``, a test capturing them: its log shows a statement with its values only when it bound
    them), Django's own cursor: the same statement and parameters.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    prepare = connection.vendor == "postgresql" and settings.TASKHUB.database.prepared_statements
    if not prepare or connection.queries_logged:
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django turns psycopg's preparing off; its own cursors never prepare
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    with connection.make_cursor(_prepared_class()(raw)) as cursor:
        yield cursor


#: psycopg prepares a statement run this many times by a server-binding cursor: never, but for ours.
_ONLY_WHEN_ASKED = 2**31


@cache
def _prepared_class() -> type:
    from django.db.backends.postgresql import base  # needs psycopg: PostgreSQL only

    server_binding: Any = base.ServerBindingCursor  # defined only with psycopg 3: unknown to the stubs

    class Prepared(server_binding):
        """Django's server-binding cursor, every statement prepared (psycopg's ``prepare=True``)."""

        def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: Any = None) -> Any:
            return super().execute(query, params, prepare=True, binary=binary)

    return Prepared


def forget() -> None:
    """Drop every compiled query of this thread's connection (a test that changes the schema or settings)."""
    _cache.pop(connections[DEFAULT_DB_ALIAS], None)
