"""The raw Celery baseline: a no-op task that only marks its completion."""

import os
from pathlib import Path

from celery import shared_task
from django.conf import settings


@shared_task(name="bench.raw_noop", ignore_result=True, acks_late=True)
def raw_noop() -> None:
    """Append one byte to the completion file (the cheapest observable 'done')."""
    fd = os.open(Path(settings.STORAGE_DIR) / "raw-done", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
