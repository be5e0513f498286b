"""Keep the reporting PeriodicTask in step with reporting.interval and reporting.report_types."""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from reporting import channels

REPORT_TASK_NAME = "taskhub: reporting"


def install() -> PeriodicTask:
    """Create or update the PeriodicTask that runs ``reporting.report`` every reporting.interval seconds."""
    config = settings.TASKHUB.reporting
    active, _ = channels.split()
    channels.log_startup()  # beat's start: one line naming the channels skipped for want of configuration
    every = max(1, round(config.interval))
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.update_or_create(
        name=REPORT_TASK_NAME,
        defaults={
            "task": "reporting.report",
            "interval": interval,
            "crontab": None,
            "enabled": bool(active),
            # A report queued while no worker ran is stale once the next one is due.
            "expire_seconds": max(every * 2, 60),
            "description": "Send finished attempts to the configured channels of reporting.report_types "
            "(every reporting.interval seconds; set from config.yaml at beat start).",
        },
    )
    return task
