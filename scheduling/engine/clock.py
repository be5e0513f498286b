"""One clock for every process: the database server's.

Workers, beats and web processes, possibly on different hosts, compare times that
others wrote: a worker's ``deadline`` is checked by the sweep on the beat's host, a
retry's ``available_at`` by whichever process dispatches, a fire time by the beat.
Their local clocks may disagree by seconds or minutes; a worker whose clock runs
behind would look dead to the sweep and have its attempt run twice. So every
scheduling decision reads :func:`now`: the local clock corrected by its offset to the
database server's clock, measured with one ``SELECT clock_timestamp()`` (midpoint of
the round trip) at most every ``REMEASURE_SECONDS``, so the hot paths pay no query.

SQLite runs inside the process: its clock is the local clock. ``settings.TASKHUB_CLOCK
= "local"`` turns the correction off (the in-process tests, which travel in time).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

REMEASURE_SECONDS = 60.0
#: A host this far off the database's clock is worth a warning in its log.
WARN_SKEW = timedelta(seconds=1)

_offset = timedelta(0)
_measured_at: float | None = None


def now() -> datetime:
    """The current time on the database server's clock (aware, UTC)."""
    local = timezone.now()
    if connection.vendor != "postgresql" or getattr(settings, "TASKHUB_CLOCK", "database") == "local":
        return local
    if _measured_at is None or time.monotonic() - _measured_at > REMEASURE_SECONDS:
        measure()
    return local + _offset


def measure() -> timedelta:
    """Read the database's clock now and keep the offset of the local clock to it."""
    global _offset, _measured_at
    before = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (server,) = cursor.fetchone()
    after = timezone.now()
    offset = server - (before + (after - before) / 2)
    if abs(offset) > WARN_SKEW and (_measured_at is None or abs(offset - _offset) > WARN_SKEW):
        logger.warning(
            "this host's clock is %.3f s %s the database server's; TaskHub schedules by the database's",
            abs(offset.total_seconds()),
            "behind" if offset > timedelta(0) else "ahead of",
        )
    _offset, _measured_at = offset, time.monotonic()
    return offset
