"""Cron expressions: validation with readable errors, next fire times with a stated DST rule.

Daylight-saving rule. Fire times are computed in the task's local wall-clock time
and then placed on the real time line:
- a local time skipped by a spring-forward jump fires once, at the jump;
- a local time that occurs twice in a fall-back overlap fires once, at its first
  occurrence (the cron walks wall-clock time forward, so the repeated hour is not
  visited again).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cron_descriptor import ExpressionDescriptor, Options
from croniter import CroniterBadCronError, CroniterBadDateError, croniter

FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-6 or SUN-SAT"),
)

RANDOM = re.compile(r"(?<![A-Za-z])[Rr](?![A-Za-z])")
# Numeric bounds per field (day-of-week 7 is Sunday too). croniter lets some out-of-range values
# through (month "0-0" or day-of-month "0-0" meant "every"), so numbers are checked here first.
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
NUMBER = re.compile(r"\d+")


class CronError(ValueError):
    """A cron expression that cannot be used; the message says which field and why."""


@lru_cache(maxsize=4096)
def validate(expr: str) -> str:
    """Return the normalised expression or raise CronError naming the bad field."""
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}: {expr!r}")
    for index, (name, allowed) in enumerate(FIELDS):
        probe = ["*"] * 5
        probe[index] = fields[index]
        try:
            # croniter reads "R" as a random value, drawn anew on every computation, so the
            # next fire time would change each time it is asked for: not cron, refused.
            if RANDOM.search(fields[index]):
                raise ValueError("random values are not supported")
            low, high = BOUNDS[index]
            for atom in fields[index].split(","):
                base = atom.split("/", 1)[0].split("#", 1)[0]  # a step or an nth-weekday is not a field value
                if any(not low <= int(number) <= high for number in NUMBER.findall(base)):
                    raise ValueError("out of range")
            croniter(" ".join(probe))
        except (CroniterBadCronError, ValueError, KeyError):
            raise CronError(
                f"{name} field {fields[index]!r} is not valid (allowed: {allowed}, *, lists, ranges, steps)"
            )
    normalised = " ".join(fields)
    try:
        # Some combinations are only impossible together (e.g. 30 February).
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError):
        # Only a day-of-month that no listed month has can do this (with a day-of-week set, either may match).
        raise CronError(
            f"{normalised!r} never fires: day-of-month field {fields[2]!r} names no day of month field {fields[3]!r}"
        ) from None
    return normalised


def timezone_of(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):  # OSError: "Europe" is a folder of zones
        raise CronError(f"unknown time zone {name!r}; expected an IANA name such as UTC or Europe/Paris") from None


def _place(local: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """Put a naive local wall-clock time on the UTC line, applying the DST rule."""
    first = local.replace(tzinfo=tz, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) == local:
        return as_utc  # exists (in an overlap, fold=0 is the first occurrence)
    # Skipped by a jump: fire at the jump, the first instant after the gap.
    low = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = as_utc
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def fire_times(expr: str, tz_name: str, after: datetime) -> Iterator[datetime]:
    """Yield the UTC fire times strictly after ``after`` (aware), in order."""
    tz = timezone_of(tz_name)
    local_after = after.astimezone(tz)
    # Walk wall-clock time; for an instant inside a repeated hour, start from its
    # wall-clock reading so the second pass of that hour does not fire again.
    iterator = croniter(validate(expr), local_after.replace(tzinfo=None))
    previous = None
    while True:
        moment = _place(iterator.get_next(datetime), tz)
        if moment <= after or moment == previous:
            continue
        previous = moment
        yield moment


def next_fire(expr: str, tz_name: str, after: datetime) -> datetime:
    """Return the first UTC fire time strictly after ``after``."""
    return next(fire_times(expr, tz_name, after))


def next_fires(expr: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    iterator = fire_times(expr, tz_name, after)
    return [next(iterator) for _ in range(count)]


@lru_cache(maxsize=1024)
def describe(expr: str) -> str:
    """Return a human description ("At 00:00"), or '' for an invalid expression."""
    try:
        options = Options()
        options.use_24hour_time_format = True
        return ExpressionDescriptor(validate(expr), options).get_description()
    except Exception:  # noqa: BLE001 - a description is a nicety, never an error
        return ""


def dst_note(moment_utc: datetime, tz_name: str) -> str:
    """Say whether a fire time falls at a DST jump or inside a repeated hour ('' if neither)."""
    tz = timezone_of(tz_name)

    def offset(moment: datetime) -> timedelta:
        # Aware in a ZoneInfo zone: utcoffset() is never None.
        return moment.astimezone(tz).utcoffset() or timedelta(0)

    local = offset(moment_utc)
    before = offset(moment_utc - timedelta(hours=1))
    after = offset(moment_utc + timedelta(hours=1))
    if before != local and local > before:
        return "daylight-saving jump: a time in the skipped hour fires at the jump"
    if after != local and local > after:
        return "daylight-saving overlap: this hour repeats and fires once"
    return ""


def crontab_fields(expr: str) -> dict[str, str]:
    """Split an expression into django-celery-beat CrontabSchedule field values."""
    minute, hour, day_of_month, month_of_year, day_of_week = validate(expr).split()
    return {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }
