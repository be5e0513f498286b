"""Raw Celery baselines: a no-op task that only marks its completion, one whose results django-celery-results
stores, and a fire recorder for cron."""

import os
import time
from pathlib import Path

from celery import shared_task
from celery.signals import before_task_publish
from django.conf import settings


@shared_task(name="bench.raw_noop", ignore_result=True, acks_late=True)
def raw_noop() -> None:
    """Append one byte to the completion file (the cheapest observable 'done')."""
    fd = os.open(Path(settings.STORAGE_DIR) / "raw-done", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)


# django-celery-beat baseline (bench.cron): one PeriodicTask per entry sends ``bench.raw_fire(entry)``.
# The sending process stamps the message, the worker appends "entry sent received" (epoch seconds).
FIRES_FILE = "raw-fires"


@before_task_publish.connect
def _stamp_sent(sender: str | None = None, headers: dict | None = None, **kwargs) -> None:
    if sender == "bench.raw_fire" and headers is not None:
        headers["bench_sent_at"] = time.time()


@shared_task(name="bench.raw_fire", bind=True, ignore_result=True)
def raw_fire(self, entry: int) -> None:
    received = time.time()
    sent = getattr(self.request, "bench_sent_at", None) or (self.request.headers or {}).get("bench_sent_at")
    line = f"{entry} {sent} {received}\n".encode()
    fd = os.open(Path(settings.STORAGE_DIR) / FIRES_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, line)  # one short write with O_APPEND: lines from both worker processes never interleave
    finally:
        os.close(fd)


@shared_task(name="bench.tracked_noop", ignore_result=False, track_started=True)
def tracked_noop() -> None:
    """The django-celery-results baseline: nothing, with STARTED and SUCCESS stored by the result backend
    (bench/settings.py: ``CELERY_RESULT_BACKEND = "django-db"``, ``CELERY_TASK_TRACK_STARTED = True``)."""
