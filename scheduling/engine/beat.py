"""TaskHub's beat scheduler: django-celery-beat's DatabaseScheduler plus bulk cron fires.

Beat is the one clock. Ordinary ``PeriodicTask`` rows (the dispatcher's safety
sweep, reporting's through scheduling.hooks, clean-up) run as usual and stay tunable in the admin; on every
tick the scheduler also fires the SCHEDULED tasks whose ``next_fire_at`` has come
with one indexed query. On PostgreSQL a session advisory lock elects one active
beat; another waits and takes over when the first one's connection ends.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Min
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from scheduling import hooks
from scheduling.engine import clock, dispatcher, firing
from scheduling.models import WAITING, AttemptStatus, TaskResult, status_in

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x7A5C_BEA7
SWEEP_TASK_NAME = "taskhub: dispatcher sweep"
PURGE_TASK_NAME = "taskhub: result retention"


def install_periodic_tasks() -> None:
    """Create or update TaskHub's own PeriodicTask rows from the configuration.

    The dispatcher sweep, then the rows the apps above scheduling contribute (``hooks.periodic_tasks``:
    reporting's), then the result clean-up.
    """
    every = max(1, round(settings.TASKHUB.scheduler.poll_interval))
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name=SWEEP_TASK_NAME,
        defaults={
            "task": "scheduling.sweep",
            "interval": interval,
            "description": "Re-send QUEUED work no worker took, reclaim RUNNING work whose worker vanished, "
            "and dispatch ready tasks (every scheduler.poll_interval seconds).",
        },
    )
    for install in hooks.periodic_tasks:
        install()
    install_purge_task()


def install_purge_task() -> PeriodicTask:
    """Run the result clean-up daily at 03:30 (settings time zone); disabled when the retention is 0 (keep all)."""
    days = settings.TASKHUB.storage.result_retention_days
    daily, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=PURGE_TASK_NAME,
        defaults={
            "task": "scheduling.purge_results",
            "crontab": daily,
            "interval": None,
            "enabled": days > 0,
            "description": f"Delete finished attempts older than storage.result_retention_days ({days}; 0 = keep "
            "forever), never a task's latest result (daily at 03:30; set from config.yaml at beat start).",
        },
    )
    return task


#: The leader's lock lives as long as its connection. A leader cut off from the database must
#: lose it in seconds, not when TCP gives up (hours): keepalives and a TCP user timeout on both
#: ends, so the server ends the session (releasing the lock for the waiting beat) and the cut-off
#: beat's next check fails and it stops firing.
LEADER_CONNECTION: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "options": "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
    " -c tcp_user_timeout=10000",
}


class LeaderLock:
    """A PostgreSQL session advisory lock on a connection of its own (no-op elsewhere)."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection[Any] | None = None

    def held(self) -> bool:
        if connection.vendor != "postgresql":
            return True
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                db = connection.settings_dict
                self._conn = psycopg.connect(
                    dbname=db["NAME"],
                    user=db["USER"] or None,
                    password=db["PASSWORD"] or None,
                    host=db["HOST"] or None,
                    port=db["PORT"] or None,
                    autocommit=True,
                    **LEADER_CONNECTION,
                )
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK_KEY]).fetchone()
                if row is None or not row[0]:  # SELECT always gives one row
                    self._conn.close()
                    self._conn = None
                    return False
                logger.info("this beat holds the leader lock and fires schedules")
            else:
                self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            logger.exception("leader lock connection lost")
            self._conn = None
            return False


class TaskHubScheduler(DatabaseScheduler):
    """DatabaseScheduler that also fires SCHEDULED tasks from their indexed next_fire_at."""

    #: Longest sleep between ticks, so a fire lands within this many seconds of its time.
    fire_resolution = 1.0

    def __init__(self, *args, **kwargs) -> None:
        self.leader = LeaderLock()
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        install_periodic_tasks()
        super().setup_schedule()

    def tick(self, *args, **kwargs) -> float:
        if not self.leader.held():
            return self.fire_resolution
        interval = super().tick(*args, **kwargs)
        try:
            firing.fire_due()
            if self._retry_due():
                dispatcher.wake()
            return min(interval, self._until_next_fire())
        except Exception:
            logger.exception("firing scheduled tasks failed; retrying on the next tick")
            close_old_connections()
            return self.fire_resolution

    @staticmethod
    def _retry_due() -> bool:
        """Whether a RETRY attempt's backoff has elapsed (the partial pick index keeps this cheap)."""
        return TaskResult.objects.filter(
            status_in(WAITING),  # states the index's condition, so SQLite uses it too
            status=AttemptStatus.RETRY,
            available_at__lte=clock.now(),
        ).exists()

    def _until_next_fire(self) -> float:
        upcoming = firing.due_tasks(clock.now() + timedelta(seconds=self.fire_resolution)).aggregate(
            first=Min("next_fire_at")
        )["first"]
        if upcoming is None:
            return self.fire_resolution
        return max(0.0, (upcoming - clock.now()).total_seconds())
