"""Run every benchmark on the embedded default and on PostgreSQL + Redis; one table, JSON and a chart.

Each module runs as its own process (``python -m bench.<module> [--quick]``) and writes
``bench/results/<name>-<backend>.json`` (bench/common.py). Then this prints one table of every
metric, writes ``bench/results/summary.json`` and draws ``bench/results/chart.png`` (a full run's is
copied to ``docs/performance.png`` for the README).

Backends:
- ``sqlite``: the embedded default (SQLite + filesystem broker), each module's own temporary files;
- ``postgres``: ``TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_<module>``
  (another prefix than ``taskhub_bench_`` with ``--database-prefix`` or ``TASKHUB_BENCH_DATABASE_PREFIX``)
  and ``TASKHUB_BROKER_URL=redis://127.0.0.1:6379/<N>``, N from ``--redis-db`` (default: the
  ``TASKHUB_BENCH_REDIS_DB`` variable, else 12); skipped, with a message, when not reachable.
The full run measures both; ``--quick`` one (PostgreSQL + Redis when they answer, else the default).

The exit status is non-zero only when a benchmark crashed; a missed bar is reported, not an error.

Usage (from the repository root):
    .venv/bin/python -m bench.run [--quick] [--backends sqlite,postgres] [--modules throughput,...]
        [--redis-db N] [--database-prefix taskhub_bench_x_]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS_CHART = ROOT / "docs" / "performance.png"

MODULES = ["throughput", "api", "worker_memory", "jira_export_memory", "cron", "scale"]
# The Jira export touches neither database nor broker: one run tells it all.
BACKEND_INDEPENDENT = {"jira_export_memory"}
PG_URL = "postgresql://postgres@127.0.0.1:5432/{prefix}{module}"
# The PostgreSQL databases' name prefix, unless TASKHUB_BENCH_DATABASE_PREFIX (or --database-prefix) names
# another: every module empties its database, so two runs at once need two prefixes.
DATABASE_PREFIX = "taskhub_bench_"
REDIS_URL = "redis://127.0.0.1:6379/{db}"
# The Redis database of the PostgreSQL + Redis runs, unless TASKHUB_BENCH_REDIS_DB (or --redis-db, which
# sets it) names another: two benchmark runs at once need two.
REDIS_DB = 12


def redis_url() -> str:
    return REDIS_URL.format(db=int(os.environ.get("TASKHUB_BENCH_REDIS_DB") or REDIS_DB))


BACKEND_LABELS = {"sqlite": "SQLite + filesystem broker", "postgres": "PostgreSQL + Redis"}


def postgres_reachable() -> str:
    """'' when PostgreSQL and Redis answer, else why not."""
    try:
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means: skip this backend
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable ({exc.__class__.__name__}: {exc})"
    try:
        import redis

        redis.Redis.from_url(redis_url(), socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis at {redis_url()} is not reachable ({exc.__class__.__name__}: {exc})"
    return ""


def module_env(module: str, backend: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("TASKHUB_DATABASE_URL", "TASKHUB_BROKER_URL", "TASKHUB_BENCH_STORAGE", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    if backend == "postgres":
        prefix = os.environ.get("TASKHUB_BENCH_DATABASE_PREFIX") or DATABASE_PREFIX
        env["TASKHUB_DATABASE_URL"] = PG_URL.format(prefix=prefix, module=module)
        env["TASKHUB_BROKER_URL"] = redis_url()
    return env


def run_module(module: str, backend: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one module on one backend; return its status and the result files it wrote."""
    print(f"\n=== {module} on {BACKEND_LABELS[backend]}", flush=True)
    started = time.monotonic()
    command = [sys.executable, "-m", f"bench.{module}", *(["--quick"] if quick else [])]
    with tempfile.TemporaryDirectory(prefix=f"taskhub-bench-{module}-") as folder:
        env = {**module_env(module, backend), "TASKHUB_BENCH_RESULTS": folder}
        process = subprocess.Popen(command, cwd=ROOT, env=env)
        try:
            code = process.wait(timeout=timeout)
            error = f"exit status {code}" if code else ""
        except subprocess.TimeoutExpired:
            error = f"did not finish within {timeout:.0f} s"
            process.terminate()  # the modules stop their workers on SIGTERM (bench/harness.py)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
            raise
        files, payloads = [], []
        for written in sorted(Path(folder).glob("*.json")):
            payloads.append(json.loads(written.read_text()))  # kept: bench/results/ may be rewritten meanwhile
            shutil.copyfile(written, RESULTS / written.name)
            files.append(RESULTS / written.name)
    seconds = round(time.monotonic() - started, 1)
    if error:
        status = "crashed"
        print(f"!!! {module} on {BACKEND_LABELS[backend]} crashed: {error}", flush=True)
    elif not files:
        status = "no result"
        print(f"--- {module} on {BACKEND_LABELS[backend]} wrote no result file (skipped itself)", flush=True)
    else:
        status = "ok"
    return {
        "module": module,
        "backend": backend,
        "status": status,
        "error": error,
        "seconds": seconds,
        "files": [str(p.relative_to(ROOT)) for p in files],
        "results": payloads,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["metric", "backend", "value", "unit", "baseline", "ratio", "bar", "verdict"]
    lines = [
        [
            r["name"],
            r["backend"],
            _fmt(r["value"]),
            r["unit"],
            f"{r['baseline']}: {_fmt(r['baseline_value'])}" if r["baseline"] else "",
            _fmt(r["ratio"]),
            r["bar"],
            {True: "OK", False: "MISSED", None: ""}[r["ok"]],
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    right = {2, 5}

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [render(headers), render(["-" * w for w in widths])]
    out += [render(line) for line in lines]
    return "\n".join(out)


def _backend_label(backend: str) -> str:
    """'sqlite3 + taskhubfs' -> 'SQLite + filesystem broker' for the chart."""
    names = {"sqlite3": "SQLite", "postgresql": "PostgreSQL", "redis": "Redis", "taskhubfs": "filesystem broker"}
    return " + ".join(names.get(part, part) for part in backend.split(" + "))


def chart(results: list[dict[str, Any]], path: Path, machine: str, quick: bool) -> bool:
    """Throughput bars (TaskHub, raw Celery, Celery + django-celery-results, APScheduler) and latency
    percentiles, per backend."""
    throughput = [r for r in results if r["bench"] == "throughput" and "series" in r]
    if not throughput:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.4), width_ratios=[2, 3])
    systems = ["TaskHub", "raw Celery", "Celery + django-celery-results", "APScheduler"]
    colours = {
        "TaskHub": "#2b6cb0",
        "raw Celery": "#a0aec0",
        "Celery + django-celery-results": "#718096",
        "APScheduler": "#ed8936",
    }
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        xs = [b + (i - (len(systems) - 1) / 2) * width for b in range(len(throughput))]
        values = [r["series"]["throughput_tasks_per_s"].get(system, 0) for r in throughput]
        bars = left.bar(xs, values, width, label=system, color=colours[system])
        left.bar_label(bars, fmt="%.0f", fontsize=8)
    left.set_xticks(range(len(throughput)), [_backend_label(r["backend"]) for r in throughput])
    left.set_ylabel("no-op tasks per second (higher is better)")
    left.set_title(f"Throughput, {throughput[0]['params']['worker_processes']} worker processes")
    left.legend()

    kinds = ["committed -> RUNNING", "dependency DONE -> dependent RUNNING"]
    groups = [(r["backend"], kind, r["series"]["latency_ms"][kind]) for kind in kinds for r in throughput]
    shades = {"p50": "#2b6cb0", "p95": "#63b3ed", "p99": "#bee3f8"}
    width = 0.8 / 3
    for i, q in enumerate(("p50", "p95", "p99")):
        xs = [g + (i - 1) * width for g in range(len(groups))]
        bars = right.bar(xs, [values[q] for _, _, values in groups], width, label=q, color=shades[q])
        right.bar_label(bars, fmt="%.0f", fontsize=8)
    # The bars differ per backend (bench/throughput.py LATENCY_BARS_MS): drawn over each group's own bars.
    for g, (backend, _, _) in enumerate(groups):
        p50, p99 = (10, 50) if backend.startswith("postgresql") else (25, 100)
        first = g == 0
        right.hlines(
            p50,
            g - 0.45,
            g + 0.45,
            color="#38a169",
            linestyle="--",
            linewidth=1,
            label="bar p50 (PostgreSQL 10, SQLite 25 ms)" if first else None,
        )
        right.hlines(
            p99,
            g - 0.45,
            g + 0.45,
            color="#e53e3e",
            linestyle="--",
            linewidth=1,
            label="bar p99 (PostgreSQL 50, SQLite 100 ms)" if first else None,
        )
    short = {
        "committed -> RUNNING": "committed → RUNNING",
        "dependency DONE -> dependent RUNNING": "dependency → dependent",
    }
    labels = [f"{short[kind]}\n{_backend_label(backend)}" for backend, kind, _ in groups]
    right.set_xticks(range(len(groups)), labels, fontsize=8)
    right.set_ylabel("milliseconds (lower is better)")
    right.set_title(f"Latency on an idle system ({throughput[0]['params']['latency_samples']} samples each)")
    right.legend(fontsize=8)
    fig.suptitle(f"TaskHub benchmarks{' (quick run)' if quick else ''}: {machine}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table for the README: one row per metric that has a bar or a baseline
    (the rest is in the full table), one column per backend."""
    backends: list[str] = []
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for m in summary["metrics"]:
        if not (m["bar"] or m["baseline"]):
            continue
        if m["backend"] not in backends:
            backends.append(m["backend"])
        row = rows.setdefault((m["bench"], m["name"]), {"bar": m["bar"], "cells": {}})
        cell = f"{_fmt(m['value'])} {m['unit']}"
        if m["ratio"] is not None and m["bar"]:
            cell += f" ({_fmt(m['ratio'])}×)"
        cell += {True: " ✓", False: " ✗ missed", None: ""}[m["ok"]]
        row["cells"][m["backend"]] = cell
        row["bar"] = row["bar"] or m["bar"]
    header = ["benchmark", "metric", *(_backend_label(b) for b in backends), "bar"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (bench, name), row in rows.items():
        cells = [row["cells"].get(b, "") for b in backends]
        lines.append("| " + " | ".join([bench, name, *cells, row["bar"]]) + " |")
    mode = "quick run" if summary["quick"] else "full run"
    lines.append(f"\n{mode}, {summary['generated_at'][:16].replace('T', ' ')} UTC, {summary['machine']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every module at its small sizes")
    parser.add_argument(
        "--backends",
        help="comma-separated: sqlite, postgres (default: both; --quick: PostgreSQL + Redis when they answer, "
        "else the embedded default, to stay within its two minutes)",
    )
    parser.add_argument("--modules", default=",".join(MODULES), help=f"comma-separated, of: {', '.join(MODULES)}")
    parser.add_argument(
        "--redis-db",
        type=int,
        help=f"Redis database of the PostgreSQL + Redis runs (default: $TASKHUB_BENCH_REDIS_DB, else {REDIS_DB})",
    )
    parser.add_argument(
        "--database-prefix",
        help=f"PostgreSQL database name prefix (default: $TASKHUB_BENCH_DATABASE_PREFIX, else {DATABASE_PREFIX})",
    )
    parser.add_argument("--timeout", type=float, help="seconds per module run (default 600; quick 300)")
    parser.add_argument(
        "--markdown", action="store_true", help="only print bench/results/summary.json as a Markdown table"
    )
    args = parser.parse_args()
    if args.redis_db is not None:
        os.environ["TASKHUB_BENCH_REDIS_DB"] = str(args.redis_db)
    if args.database_prefix:
        if not args.database_prefix.replace("_", "").isalnum():
            parser.error("--database-prefix: letters, digits and _ only")
        os.environ["TASKHUB_BENCH_DATABASE_PREFIX"] = args.database_prefix
    if args.markdown:
        print(markdown(json.loads((RESULTS / "summary.json").read_text())))
        return 0
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    elif args.quick:
        backends = ["sqlite" if postgres_reachable() else "postgres"]
    else:
        backends = ["sqlite", "postgres"]
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    for name, given, allowed in (("backend", backends, BACKEND_LABELS), ("module", modules, MODULES)):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}: expected some of {', '.join(allowed)}")
    timeout = args.timeout or (300 if args.quick else 3600)

    started = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    present = [m for m in modules if (ROOT / "bench" / f"{m}.py").exists()]
    for missing in (m for m in modules if m not in present):
        notes.append(f"bench/{missing}.py does not exist yet: skipped")
        print(f"--- bench/{missing}.py does not exist yet: skipped", flush=True)
    for backend in backends:
        if backend == "postgres":
            reason = postgres_reachable()
            if reason:
                notes.append(f"PostgreSQL + Redis skipped: {reason}")
                print(f"--- PostgreSQL + Redis skipped: {reason}", flush=True)
                continue
        for module in present:
            if module in BACKEND_INDEPENDENT and backend != backends[0]:
                continue
            runs.append(run_module(module, backend, args.quick, timeout))

    results = [result for run in runs for result in run.pop("results")]
    rows = [
        {"bench": result["bench"], "backend": result["backend"], **m} for result in results for m in result["metrics"]
    ]
    from bench.common import machine

    this_machine = machine()
    print(
        f"\n\nTaskHub benchmarks{' (quick)' if args.quick else ''} on {this_machine}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.monotonic() - started:.0f} s\n"
    )
    print(table(rows))
    print()
    for run in runs:
        print(f"{run['module']} on {BACKEND_LABELS[run['backend']]}: {run['status']}, {run['seconds']} s")
    for note in notes:
        print(f"note: {note}")
    crashed = [r for r in runs if r["status"] == "crashed"]
    for run in crashed:
        print(f"CRASHED: {run['module']} on {BACKEND_LABELS[run['backend']]}: {run['error']}")
    missed = [r for r in rows if r["ok"] is False]
    print(
        f"\n{len(rows)} metrics, {sum(r['ok'] is True for r in rows)} bars met, {len(missed)} missed; "
        f"{len(crashed)} module run(s) crashed"
    )

    summary = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": this_machine,
        "quick": args.quick,
        "runs": runs,
        "notes": notes,
        "metrics": rows,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("written: bench/results/summary.json")
    try:
        if chart(results, RESULTS / "chart.png", this_machine, args.quick):
            if args.quick:  # the README shows a full run's chart: a quick run does not replace it
                print("written: bench/results/chart.png")
            else:
                DOCS_CHART.parent.mkdir(exist_ok=True)
                shutil.copyfile(RESULTS / "chart.png", DOCS_CHART)
                print(f"written: bench/results/chart.png, {DOCS_CHART.relative_to(ROOT)}")
        else:
            print("no throughput result: no chart drawn")
    except Exception as exc:  # noqa: BLE001 - a chart failure is reported; the table and JSON stand
        print(f"CRASHED: drawing the chart: {exc.__class__.__name__}: {exc}")
        return 1
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
