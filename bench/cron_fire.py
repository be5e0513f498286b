"""Cron firing cost: N SCHEDULED tasks due in the same second fired by one beat tick.

Usage (from the repository root):
    .venv/bin/python -m bench.cron_fire --due 10000 --idle 0
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench \\
        .venv/bin/python -m bench.cron_fire --due 1000 --idle 99000
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--due", type=int, default=10_000, help="tasks due at the fire time")
    parser.add_argument("--idle", type=int, default=0, help="further SCHEDULED tasks not due yet")
    args = parser.parse_args()

    from bench.throughput import _ensure_postgres_database

    _ensure_postgres_database(os.environ.get("TASKHUB_DATABASE_URL", ""))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django_celery_beat.models import CrontabSchedule

    from scheduling import firing
    from scheduling.models import Task, TaskResult

    call_command("migrate", verbosity=0)
    TaskResult.objects.all().delete()
    Task.objects.all().delete()
    settings.TASKHUB["scheduler"]["max_instances"] = 5
    fire_time = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="*", hour="*", timezone="UTC")

    def make(count: int, next_fire: datetime, prefix: str) -> None:
        batch = [
            Task(name=f"{prefix}-{i}", task_type="SCHEDULED", cron_expr="* * * * *", crontab=crontab,
                 next_fire_at=next_fire, handler="NOOP", status="PENDING")
            for i in range(count)
        ]
        Task.objects.bulk_create(batch, batch_size=2000)

    make(args.due, fire_time, "due")
    make(args.idle, fire_time + timedelta(days=1), "idle")
    now = fire_time + timedelta(milliseconds=500)
    started = time.perf_counter()
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        fired = profile.runcall(firing.fire_due, now)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    else:
        fired = firing.fire_due(now)
    elapsed = time.perf_counter() - started
    again = time.perf_counter()
    assert firing.fire_due(now) == 0
    idle_tick = time.perf_counter() - again
    backend = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"{backend}: {args.due} due of {args.due + args.idle} SCHEDULED tasks")
    print(f"  fired {fired} runs in {elapsed * 1000:.0f} ms ({fired / elapsed:.0f} fires/s)")
    print(f"  next tick with nothing due: {idle_tick * 1000:.1f} ms")
    duplicates = TaskResult.objects.filter(fire_time=fire_time).count() - fired
    print(f"  duplicate fires: {duplicates}")


if __name__ == "__main__":
    main()
