"""What every benchmark shares: database set-up, percentiles, waiting, and the result file format.

Each benchmark module runs standalone (``python -m bench.<name> [--quick]``) and writes
``bench/results/<name>-<backend>.json`` through :func:`write_result`::

    {
      "bench": "throughput", "backend": "postgresql + redis", "machine": "...", "quick": false,
      "params": {...},
      "metrics": [
        {"name": "TaskHub end to end", "value": 312.0, "unit": "tasks/s",
         "baseline": "raw Celery apply_async", "baseline_value": 620.0, "ratio": 0.503,
         "bar": ">= 0.5x raw Celery", "ok": true},
        ...
      ],
      "series": {...}   # optional raw numbers for charts
    }

``bench/run.py`` runs the modules, prints one table of every metric and draws the chart.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# bench/run.py points each module run at its own folder (then gathers the files into bench/results).
RESULTS = Path(os.environ.get("TASKHUB_BENCH_RESULTS") or ROOT / "bench" / "results")


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist yet."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl().replace("postgresql://", "postgres://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def percentiles(values: list[float], digits: int = 1) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q), digits) for q in (50, 95, 99)} | {"samples": len(values)}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "benchmark") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout} s")
        time.sleep(0.01)


def machine() -> str:
    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def backend() -> str:
    """'postgresql + redis', 'sqlite3 + taskhubfs', ... (after django.setup())."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"{engine} + {settings.CELERY_BROKER_URL.split(':')[0]}"


def metric(
    name: str,
    value: float | str,  # a string such as "not supported" is shown as is
    unit: str,
    *,
    bar: str = "",
    ok: bool | None = None,
    baseline: str = "",
    baseline_value: float | None = None,
    ratio: float | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "bar": bar,
        "ok": ok,
    }


def write_result(
    bench: str, *, quick: bool, params: dict[str, Any], metrics: list[dict[str, Any]], **extra: Any
) -> Path:
    """Write the result file and print its metrics; return the path."""
    kind = backend()
    payload = {
        "bench": bench,
        "backend": kind,
        "machine": machine(),
        "quick": quick,
        "params": params,
        "metrics": metrics,
        **extra,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{bench}-{kind.replace(' + ', '-')}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\n{bench} on {kind} ({payload['machine']})")
    for m in metrics:
        ratio = f"  ratio {m['ratio']}" if m["ratio"] is not None else ""
        base = f"  ({m['baseline']}: {m['baseline_value']})" if m["baseline"] else ""
        verdict = {True: "OK", False: "MISSED", None: ""}[m["ok"]]
        print(f"  {m['name']:<52}{m['value']:>12} {m['unit']:<10}{base}{ratio}  {m['bar']} {verdict}")
    print(f"written: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path
