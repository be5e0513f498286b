"""Scale of the store: the dispatcher's pick, the API lists and the admin pages with a large history.

Two stores are built in two databases of the same backend, with the same mix of rows:
- small: 1,000 tasks and 10,000 finished attempts (the reference);
- big: 100,000 tasks and 1,000,000 finished attempts (``--quick``: 10,000 and 100,000).
The mix: 30 % SCHEDULED tasks, statuses mostly DONE, some FAILED/TIMEOUT/CANCELLED, HIGH/MEDIUM/LOW,
10 % with dependencies, 20 owners, two tags each, a retry policy on a third; attempts spread over 30 days.
The live queue in both: 10 ready attempts, one QUEUED, one RUNNING, and 1 % of the tasks waiting but not
ready (a third blocked on a dependency, a third retrying in 30 days, a third paused).

Measured on each store:
a) ``dispatcher.dispatch()`` in a transaction that is rolled back (the state does not change between runs),
   and the pick query alone (``dispatcher.pick``, the compiled statement a dispatch runs); bar: big within 2x of small.
b) ``GET /tasks?page_size=100``, ``GET /tasks/status/PENDING`` and ``GET /task_history`` with a token, as a
   superuser (every task) and as a plain user (own tasks only): p50 (bar <= 50 ms) and query count
   (bar: the same on both stores).
c) The admin dashboard (bar <= 1 s) and the admin task and task-result change lists.
The stores are measured in turn, three rounds each, so load from elsewhere on the machine hits both alike;
each figure has its p50/p95/p99 and its fastest sample (``min``: the cost without waiting for a core).
``--not-ready N`` puts the same number of waiting-but-not-ready attempts in both stores, which separates the
store's size from the queue's (the pick checks every such attempt ahead of the ready ones).

Usage (from the repository root):
    .venv/bin/python -m bench.scale [--quick] [--keep] [--explain]
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_scale \\
        .venv/bin/python -m bench.scale --keep

The big store lives in the database TASKHUB_DATABASE_URL names (default: a SQLite file under the system
temp directory, kept between runs), the small one beside it (``<name>_small``). ``--keep`` reuses a store
that already holds the requested number of rows, so a re-run only measures.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
# The embedded default: a SQLite file that survives the run, so --keep can reuse it.
_SQLITE_DIR = Path(tempfile.gettempdir()) / "taskhub-bench-scale"
os.environ.setdefault("TASKHUB_DATABASE_URL", f"sqlite:///{_SQLITE_DIR}/big.sqlite3")

SMALL_TASKS, SMALL_RESULTS = 1_000, 10_000
READY = 10
OWNERS = 20
DAY = timedelta(days=1)


# --------------------------------------------------------------------------- databases


def _small_name(name: str) -> str:
    if name.endswith(".sqlite3"):
        return name[: -len(".sqlite3")] + "_small.sqlite3"
    return f"{name}_small"


def use_database(name: str) -> None:
    """Point the default connection at another database of the same server (or another SQLite file)."""
    from django.conf import settings
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name
    settings.DATABASES["default"]["NAME"] = name
    if connection.vendor == "sqlite":
        Path(name).parent.mkdir(parents=True, exist_ok=True)
    else:
        from bench.common import ensure_postgres_database

        url = os.environ["TASKHUB_DATABASE_URL"]
        ensure_postgres_database(url.rsplit("/", 1)[0] + "/" + name)


def _copy(model: Any, columns: list[str], rows: Iterable[tuple]) -> int:
    """Insert rows fast: COPY on PostgreSQL, executemany on SQLite. Values are Python objects."""
    from django.db import connection

    table = model._meta.db_table
    # Columns the bench does not set (including ones added after it was written) get their model default.
    extra = [f for f in model._meta.concrete_fields if f.column not in columns and not f.null and f.has_default()]
    if extra:
        defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in extra)
        columns = [*columns, *(f.column for f in extra)]
        rows = (row + defaults for row in rows)
    count = 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        return count

    def adapt(value: Any) -> Any:
        if isinstance(value, datetime):
            return str(value.astimezone(UTC).replace(tzinfo=None))
        if isinstance(value, uuid.UUID):
            return value.hex
        return value

    sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
    raw = connection.connection
    batch: list[tuple] = []
    for row in rows:
        batch.append(tuple(adapt(v) for v in row))
        if len(batch) == 20_000:
            raw.executemany(sql, batch)
            count += len(batch)
            batch.clear()
    raw.executemany(sql, batch)
    return count + len(batch)


# --------------------------------------------------------------------------- the data set


def _users() -> tuple[Any, list[Any]]:
    """A superuser and OWNERS plain users with the Task permissions (they see their own tasks only)."""
    from django.contrib.auth.models import Permission, User

    admin = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", "bench"
    )
    perms = list(
        Permission.objects.filter(
            content_type__app_label="scheduling",
            codename__in=["view_task", "add_task", "change_task", "delete_task", "view_taskresult"],
        )
    )
    owners = []
    for n in range(OWNERS):
        user, created = User.objects.get_or_create(username=f"bench-user-{n}")
        if created:
            user.user_permissions.set(perms)
        owners.append(user)
    return admin, owners


def not_ready_count(n_tasks: int) -> int:
    """Waiting attempts that are not ready (blocked, retrying later, paused): 1 % of the tasks, or --not-ready."""
    fixed = os.environ.get("BENCH_SCALE_NOT_READY")
    return int(fixed) if fixed else max(3, n_tasks // 100)


def build(n_tasks: int, n_results: int) -> dict[str, Any]:
    """Replace the scheduling tables' rows with a store of ``n_tasks`` tasks and ``n_results`` finished attempts."""
    from django.db import connection, transaction

    from scheduling.models import AttemptStatus as A
    from scheduling.models import RetryPolicy, Tag, Task, TaskAudit, TaskResult, TaskStatus, TaskType

    started = time.perf_counter()
    rng = random.Random(8)
    now = datetime.now(UTC)
    tables = [
        TaskResult._meta.db_table,
        Task.dependencies.through._meta.db_table,
        Task.any_run_dependencies.through._meta.db_table,
        Task.tags.through._meta.db_table,
        TaskAudit._meta.db_table,
        Task._meta.db_table,
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        else:
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')
    _admin, owners = _users()
    policy, _ = RetryPolicy.objects.get_or_create(name="bench policy", defaults={"max_retries": 3})
    tags = [Tag.objects.get_or_create(name=name)[0] for name in ("NOOP", "team-a", "team-b", "team-c", "team-d")]

    waiting = not_ready_count(n_tasks)
    span = 30 * DAY
    ids = [uuid.uuid4() for _ in range(n_tasks)]
    task_rows = []
    live: list[tuple] = []  # (task index, attempt status, available_at)
    blockers: list[int] = []
    deps: list[tuple[uuid.UUID, uuid.UUID]] = []
    scheduled_idx: list[int] = []
    for i in range(n_tasks):
        created = now - span + span * i / n_tasks
        scheduled = rng.random() < 0.3
        enabled, next_attempt, next_fire = True, None, None
        if i < READY:  # ready: IMMEDIATE, no dependency, one PENDING attempt due
            status, scheduled = TaskStatus.PENDING, False
            live.append((i, A.PENDING, now - timedelta(seconds=60 - i)))
        elif i == READY:
            status, scheduled = TaskStatus.QUEUED, False
            live.append((i, A.QUEUED, now - timedelta(seconds=5)))
        elif i == READY + 1:
            status, scheduled = TaskStatus.RUNNING, False
            live.append((i, A.RUNNING, now - timedelta(seconds=30)))
        elif i < READY + 2 + waiting:
            kind = (i - READY - 2) % 3
            scheduled = False
            if kind == 0:  # blocked: depends on a scheduled task that is not DONE
                status = TaskStatus.PENDING
                blockers.append(i)
                live.append((i, A.PENDING, now - timedelta(minutes=10)))
            elif kind == 1:  # failed once, retries in 30 days
                status, next_attempt = TaskStatus.RETRY, now + span
                live.append((i, A.RETRY, next_attempt))
            else:  # paused with an attempt waiting
                status, enabled = TaskStatus.PENDING, False
                live.append((i, A.PENDING, now - timedelta(minutes=5)))
        elif scheduled:
            status = rng.choices([TaskStatus.PENDING, TaskStatus.DONE, TaskStatus.FAILED], [50, 42, 8])[0]
            enabled = rng.random() < 0.97
        else:
            status = rng.choices(
                [TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.CANCELLED], [80, 10, 2, 8]
            )[0]
        if scheduled:
            scheduled_idx.append(i)
            next_fire = now + timedelta(seconds=rng.randrange(86_400))
        elif i >= READY + 2 + waiting and rng.random() < 0.1 and i > 100:
            for j in rng.sample(range(READY + 2 + waiting, i), rng.choice((1, 1, 2))):
                deps.append((ids[i], ids[j]))
        task_rows.append(
            (
                ids[i],
                f"bench task {i:06d}",
                TaskType.SCHEDULED if scheduled else TaskType.IMMEDIATE,
                ("*/5 * * * *" if i % 2 else "0 3 * * 1-5") if scheduled else "",
                "UTC",
                next_fire,
                "skip",
                status,
                "",
                rng.choices((1, 2, 3), (20, 60, 20))[0],
                created,
                min(now, created + timedelta(minutes=rng.randrange(600))),
                json.dumps({"team": f"team-{'abcd'[i % 4]}", "n": i}),
                json.dumps({}),
                "NOOP",
                owners[i % OWNERS].pk,
                policy.pk if i % 3 == 0 else None,
                enabled,
                1,
                next_attempt,
            )
        )
    # Blocked tasks wait on a SCHEDULED task that is PENDING (its next fire has not come).
    pending_scheduled = [i for i in scheduled_idx if task_rows[i][7] == TaskStatus.PENDING]
    for i in blockers:
        deps.append((ids[i], ids[rng.choice(pending_scheduled)]))

    task_columns = [
        "id", "name", "task_type", "cron_expr", "timezone", "next_fire_at", "overlap_policy", "status",
        "status_reason", "priority", "created_at", "updated_at", "metadata", "parameters", "handler", "owner_id",
        "retry_policy_id", "enabled", "attempt", "next_attempt_at",
    ]  # fmt: skip
    result_columns = [
        "task_id", "attempt", "status", "priority", "fire_time", "available_at", "created_at", "queued_at",
        "started_at", "finished_at", "deadline", "duration", "worker", "celery_task_id", "claim",
        "progress_message", "result", "error_message", "traceback", "artifacts",
    ]  # fmt: skip
    finished_statuses = [A.DONE, A.FAILED, A.TIMEOUT, A.CANCELLED, A.SKIPPED]

    def results() -> Iterable[tuple]:
        for n in range(n_results):
            i = n % n_tasks
            row = task_rows[i]
            finished = now - span * (n_results - n) / n_results  # later n = more recent; every task in 30 days
            status = rng.choices(finished_statuses, (88, 7, 1, 3, 1))[0]
            started_at = finished - timedelta(seconds=rng.randrange(1, 600))
            yield (
                row[0], 1 + n // n_tasks, status, row[9],
                started_at if row[2] == TaskType.SCHEDULED else None,
                started_at - timedelta(seconds=2), started_at - timedelta(seconds=2), started_at - timedelta(seconds=1),
                started_at, finished, None, (finished - started_at).total_seconds(), f"w{n % 8}@bench",
                f"taskhub-{n}", 1, "", '{"ok": true}' if status == A.DONE else None,
                "boom" if status in (A.FAILED, A.TIMEOUT) else "", "", "[]",
            )  # fmt: skip
        for i, status, available in live:
            row = task_rows[i]
            in_flight = status in (A.QUEUED, A.RUNNING)
            yield (
                row[0], 1 + n_results // n_tasks + 1, status, row[9], None, available, available,
                available if in_flight else None, available if status == A.RUNNING else None, None,
                now + timedelta(hours=1) if status == A.RUNNING else None, None,
                "w1@bench" if status == A.RUNNING else "", f"taskhub-live-{i}" if in_flight else "",
                1 if in_flight else 0, "", None, "", "", "[]",
            )  # fmt: skip

    with transaction.atomic():
        _copy(Task, task_columns, task_rows)
        through = Task.tags.through
        _copy(
            through,
            ["task_id", "tag_id"],
            ((ids[i], tag.pk) for i in range(n_tasks) for tag in (tags[0], tags[1 + i % 4])),
        )
        _copy(Task.dependencies.through, ["from_task_id", "to_task_id"], deps)
        written = _copy(TaskResult, result_columns, results())
    with connection.cursor() as cursor:
        # A store that has been running a while has been vacuumed (index-only scans need the visibility map).
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    took = time.perf_counter() - started
    print(f"built {n_tasks} tasks, {written} attempts, {len(deps)} dependencies in {took:.1f} s")
    return {"build_seconds": round(took, 1), "tasks": n_tasks, "attempts": written, "dependencies": len(deps)}


def ensure_store(n_tasks: int, n_results: int, keep: bool) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    from scheduling.models import Task, TaskResult

    if not keep and connection.vendor == "sqlite":
        # A fresh file is quicker than deleting a million rows.
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{connection.settings_dict['NAME']}{suffix}").unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    if keep:
        tasks, attempts = Task.objects.count(), TaskResult.objects.count()
        expected = n_results + READY + 2 + not_ready_count(n_tasks)
        if tasks == n_tasks and attempts == expected:
            print(f"reusing the store of {tasks} tasks and {attempts} attempts (--keep)")
            _users()
            return {"build_seconds": None, "tasks": tasks, "attempts": attempts, "reused": True}
    return build(n_tasks, n_results)


# --------------------------------------------------------------------------- measurements


def _timed(call: Callable[[], Any], runs: int, budget: float = 20.0 / 3) -> tuple[list[float], Any]:
    """Time ``runs`` calls after a warm-up (at least 2 when they take longer than ``budget`` seconds in all)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()  # warm caches (templates, prepared plans, SQLite pages)
    timings: list[float] = []
    deadline = time.monotonic() + budget
    for _ in range(runs):
        if len(timings) >= 2 and time.monotonic() > deadline:
            break
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            out = call()
            timings.append((time.perf_counter() - started) * 1000)
    return timings, (out, queries.captured_queries)


def _explain(sql: str, label: str, params: Any = None) -> None:
    """Print a query's plan (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite).

    Captured queries come with their parameters inlined; on SQLite that can show a partial index that the
    application's parameterised query cannot use, so the pick is explained with its real parameters.
    """
    from django.db import connection

    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    print(f"\n--- {label}: {sql[:300]}")
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql, params)
        for row in cursor.fetchall():
            print("   ", " | ".join(str(c) for c in row))


def measure_pick(runs: int, explain: bool) -> dict[str, Any]:
    from django.db import transaction
    from django.utils import timezone

    from scheduling.engine import dispatcher

    def dispatch_rolled_back() -> int:
        with transaction.atomic():
            picked = dispatcher.dispatch(timezone.now())
            transaction.set_rollback(True)
        return len(picked)

    def pick_query() -> int:
        with transaction.atomic():
            return len(dispatcher.pick(16, timezone.now()))

    timings, (picked, queries) = _timed(dispatch_rolled_back, runs)
    query_timings, (ready, _) = _timed(pick_query, runs)
    assert picked > 0, "the dispatcher picked nothing: the store has no ready attempt"
    assert ready == READY, f"expected {READY} ready attempts, found {ready}"
    if explain:
        sql, params = dispatcher._ready(timezone.now()).select_related("task")[:16].query.sql_with_params()
        _explain(sql, "pick query", params)
    return {
        "dispatch": {"samples": timings, "picked": picked, "queries": len(queries), "sql_ms": _sql_ms(queries)},
        "pick_query": {"samples": query_timings, "rows": ready},
    }


def _sql_ms(queries: list[dict[str, Any]]) -> float:
    """Time spent in the database during the last request (the rest is Python: ORM, serializers, templates)."""
    return round(sum(float(q["time"]) for q in queries) * 1000, 1)


def percentiles_of(values: list[float]) -> dict[str, float]:
    from bench.common import percentiles

    return percentiles(values, 2)


ENDPOINTS = [
    ("GET /tasks?page_size=100", "/tasks?page_size=100"),
    ("GET /tasks/status/PENDING", "/tasks/status/PENDING"),
    ("GET /task_history", "/task_history"),
]


def measure_api(runs: int, explain: bool) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    out: dict[str, Any] = {}
    for who in ("bench", "bench-user-0"):
        user = User.objects.get(username=who)
        token, _ = Token.objects.get_or_create(user=user)
        client = APIClient(HTTP_HOST="127.0.0.1")
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        for label, url in ENDPOINTS:

            def get(url: str = url, client: APIClient = client) -> Any:
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code, response.content[:300])
                return response

            timings, (response, queries) = _timed(get, runs)
            body = response.json()
            out[f"{label} as {'superuser' if who == 'bench' else 'plain user'}"] = {
                "samples": timings,
                "queries": len(queries),
                "sql_ms": _sql_ms(queries),
                "rows": len(body["results"]),
                "count": body["count"],
                "slowest_queries": sorted(
                    ({"ms": float(q["time"]) * 1000, "sql": q["sql"][:200]} for q in queries),
                    key=lambda q: -q["ms"],
                )[:3],
            }
            if explain:
                for q in queries:
                    if "scheduling_" in q["sql"] and float(q["time"]) * 1000 > 2:
                        _explain(q["sql"], f"{label} as {who} ({float(q['time']) * 1000:.1f} ms)")
    return out


ADMIN_PAGES = [
    ("admin dashboard", "admin:scheduling_task_dashboard"),
    ("admin task change list", "admin:scheduling_task_changelist"),
    ("admin task-result change list", "admin:scheduling_taskresult_changelist"),
]


def measure_admin(runs: int, explain: bool) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="bench"))
    out = {}
    for label, name in ADMIN_PAGES:
        url = reverse(name)

        def get(url: str = url) -> Any:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response

        timings, (_, queries) = _timed(get, runs)
        out[label] = {
            "samples": timings,
            "queries": len(queries),
            "sql_ms": _sql_ms(queries),
            "slowest_queries": sorted(
                ({"ms": float(q["time"]) * 1000, "sql": q["sql"][:200]} for q in queries), key=lambda q: -q["ms"]
            )[:3],
        }
        if explain:
            for q in queries:
                if "scheduling_" in q["sql"] and float(q["time"]) * 1000 > 5:
                    _explain(q["sql"], f"{label} ({float(q['time']) * 1000:.1f} ms)")
    return out


ROUNDS = 3  # the stores are measured in turn, ROUNDS times, so a burst of load elsewhere hits both alike


def measure(args: argparse.Namespace, explain: bool) -> dict[str, Any]:
    per_round = max(2, -(-args.runs // ROUNDS))
    return {
        "pick": measure_pick(2 * per_round, explain),
        "api": measure_api(per_round, explain),
        "admin": measure_admin(max(2, per_round // 3), explain),
    }


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the samples of every round into percentiles; other figures are the last round's."""
    first = rounds[0]
    if "samples" in first:
        pooled = [value for r in rounds for value in r["samples"]]
        # min: the cost without contention (p50 on a busy machine is mostly the wait for a core).
        ms = percentiles_of(pooled) | {"min": round(min(pooled), 2)}
        return {"ms": ms, **{k: v for k, v in rounds[-1].items() if k != "samples"}}
    return {key: merge([r[key] for r in rounds]) if isinstance(first[key], dict) else first[key] for key in first}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 tasks and 100,000 attempts")
    parser.add_argument("--tasks", type=int, help="tasks in the big store (default 100,000; quick 10,000)")
    parser.add_argument("--results", type=int, help="finished attempts in the big store (default 10 per task)")
    parser.add_argument("--runs", type=int, help="requests per measurement and round (default 20; quick 7)")
    parser.add_argument("--keep", action="store_true", help="reuse a store that already has the requested size")
    parser.add_argument("--explain", action="store_true", help="print the plans of the pick and of slow queries")
    parser.add_argument(
        "--not-ready",
        type=int,
        help="waiting attempts that are not ready, in both stores (default: 1 %% of each store's tasks)",
    )
    args = parser.parse_args()
    n_tasks = args.tasks or (10_000 if args.quick else 100_000)
    n_results = args.results or 10 * n_tasks
    args.runs = args.runs or (7 if args.quick else 20)
    if args.not_ready is not None:
        os.environ["BENCH_SCALE_NOT_READY"] = str(max(3, args.not_ready))

    from bench.common import ensure_postgres_database, metric, write_result

    ensure_postgres_database(os.environ["TASKHUB_DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings

    big_name = str(settings.DATABASES["default"]["NAME"])
    # Two runs on the same stores would rebuild them under each other's feet: the second waits.
    _SQLITE_DIR.mkdir(parents=True, exist_ok=True)
    lock = (_SQLITE_DIR / f"{Path(big_name).name}.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another bench.scale run is using {big_name}; waiting for it to finish ...")
        fcntl.flock(lock, fcntl.LOCK_EX)
    names = {"small": _small_name(big_name), "big": big_name}
    sizes = {"small": (SMALL_TASKS, SMALL_RESULTS), "big": (n_tasks, n_results)}
    builds = {}
    for label in ("small", "big"):
        use_database(names[label])
        builds[label] = ensure_store(*sizes[label], keep=args.keep)
    rounds: dict[str, list[dict[str, Any]]] = {"small": [], "big": []}
    for n in range(ROUNDS):
        for label in ("small", "big"):
            print(f"measuring the {label} store (round {n + 1} of {ROUNDS}) ...")
            use_database(names[label])
            rounds[label].append(measure(args, explain=args.explain and n == 0))
    small, big = merge(rounds["small"]), merge(rounds["big"])

    metrics = []
    s, b = small["pick"]["dispatch"]["ms"]["p50"], big["pick"]["dispatch"]["ms"]["p50"]
    ratio = round(b / s, 2)
    metrics.append(
        metric(
            f"dispatch() with {READY} ready, {n_tasks:,} tasks p50",
            b,
            "ms",
            baseline=f"{SMALL_TASKS:,} tasks",
            baseline_value=s,
            ratio=ratio,
            bar="<= 2x the small store",
            ok=ratio <= 2,
        )
    )
    s, b = small["pick"]["pick_query"]["ms"]["p50"], big["pick"]["pick_query"]["ms"]["p50"]
    metrics.append(
        metric(
            "pick query alone p50",
            b,
            "ms",
            baseline=f"{SMALL_TASKS:,} tasks",
            baseline_value=s,
            ratio=round(b / s, 2),
            bar="(information)",
        )
    )
    for key, entry in big["api"].items():
        p50 = entry["ms"]["p50"]
        metrics.append(metric(f"{key} p50", p50, "ms", bar="<= 50 ms", ok=p50 <= 50))
        small_q = small["api"][key]["queries"]
        metrics.append(
            metric(
                f"{key} queries",
                entry["queries"],
                "queries",
                baseline=f"{SMALL_TASKS:,} tasks",
                baseline_value=small_q,
                bar="same count",
                ok=entry["queries"] == small_q,
            )
        )
    for key, entry in big["admin"].items():
        p50 = entry["ms"]["p50"]
        metrics.append(metric(f"{key} p50", p50, "ms", bar="<= 1000 ms", ok=p50 <= 1000))
    write_result(
        "scale",
        quick=args.quick,
        params={
            "tasks": n_tasks,
            "results": n_results,
            "small_tasks": SMALL_TASKS,
            "small_results": SMALL_RESULTS,
            "ready": READY,
            "not_ready": {"small": not_ready_count(SMALL_TASKS), "big": not_ready_count(n_tasks)},
            "runs": args.runs,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "build": builds,
        },
        metrics=metrics,
        series={"small": small, "big": big},
    )


if __name__ == "__main__":
    main()
