"""Worker memory: resident set size of a prefork worker after 1,000 and after 10,000 no-op tasks.

A ``celery worker --pool prefork --concurrency 2`` runs NOOP tasks created through the service
layer; after the first batch and again after the total, once every task is DONE, the RSS of the
worker's parent process plus its pool children is summed (psutil). A leak shows as growth
between the two readings: the bar is after-10,000 within 1.2x of after-1,000.

Usage (from the repository root):
    .venv/bin/python -m bench.worker_memory [--quick]
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_worker_memory \\
    TASKHUB_BROKER_URL=redis://127.0.0.1:6379/12 .venv/bin/python -m bench.worker_memory
"""

from __future__ import annotations

import argparse
import time

import psutil

from bench import harness
from bench.common import metric, write_result

GROWTH_BAR = 1.2


def worker_rss_mb(pid: int) -> tuple[float, list[float]]:
    """Sum of the RSS of the worker process and its pool children, in MB; and each process's."""
    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    each = [round(p.memory_info().rss / 1024 / 1024, 1) for p in processes]
    return round(sum(each), 1), each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: 50 then 500 tasks")
    parser.add_argument("--first", type=int, help="tasks before the first reading (default 1000; quick 50)")
    parser.add_argument("--total", type=int, help="tasks before the second reading (default 10000; quick 500)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (prefork)")
    args = parser.parse_args()
    first = args.first or (50 if args.quick else 1000)
    total = args.total or (500 if args.quick else 10_000)
    if total <= first:
        parser.error("--total must be larger than --first")

    harness.setup_django()
    worker = harness.start_worker(args.workers, "memory-worker.log")
    readings = {}
    try:
        harness.run_noops(20, "warm", timeout=120)  # readiness; start-up is not part of the first batch
        harness.check_worker(worker)
        started = time.perf_counter()
        harness.run_noops(first, "first")
        time.sleep(0.5)  # let the pool settle after its last task
        readings[first] = worker_rss_mb(worker.pid)
        harness.run_noops(total - first, "rest")
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        readings[total] = worker_rss_mb(worker.pid)
        harness.check_worker(worker)
    finally:
        harness.stop_worker(worker)

    after_first, after_total = readings[first][0], readings[total][0]
    growth = round(after_total / after_first, 3)
    metrics = [
        metric(f"worker RSS after {first:,} tasks", after_first, "MB"),
        metric(
            f"worker RSS after {total:,} tasks",
            after_total,
            "MB",
            baseline=f"after {first:,} tasks",
            baseline_value=after_first,
            ratio=growth,
            bar=f"<= {GROWTH_BAR}x after {first:,}",
            ok=growth <= GROWTH_BAR,
        ),
    ]
    write_result(
        "worker_memory",
        quick=args.quick,
        params={"first": first, "total": total, "worker_processes": args.workers, "seconds": round(seconds, 1)},
        metrics=metrics,
        series={"rss_mb_per_process": {str(k): v[1] for k, v in readings.items()}},
    )
    harness.cleanup()


if __name__ == "__main__":
    main()
