"""Cron expressions: validation naming the bad field, next fire times, the daylight-saving rule, descriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scheduling.engine import cron


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(moments: list[datetime], tz: str) -> list[str]:
    """Render fire times as local wall clock with offset, the way a person reads a schedule."""
    return [m.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z") for m in moments]


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("0 0 * * *", "0 0 * * *"),
        ("  */15   9-17 * * 1-5 ", "*/15 9-17 * * 1-5"),
        ("0\t6 1,15 * *", "0 6 1,15 * *"),
        ("0 0 * JAN,MAR MON-FRI", "0 0 * JAN,MAR MON-FRI"),
        ("5/15 * * * *", "5/15 * * * *"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("0 12 * * 7", "0 12 * * 7"),
    ],
)
def test_valid_expressions_are_normalised(expr: str, normalised: str) -> None:
    assert cron.validate(expr) == normalised


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4: '* * * *'"),
        ("0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6: '0 0 * * * *'"),
        ("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0: ''"),
        ("@daily", "expected 5 fields (minute hour day-of-month month day-of-week), got 1: '@daily'"),
        ("60 * * * *", "minute field '60' is not valid (allowed: 0-59, *, lists, ranges, steps)"),
        ("*/0 * * * *", "minute field '*/0' is not valid (allowed: 0-59, *, lists, ranges, steps)"),
        ("R * * * *", "minute field 'R' is not valid (allowed: 0-59, *, lists, ranges, steps)"),
        ("0 24 * * *", "hour field '24' is not valid (allowed: 0-23, *, lists, ranges, steps)"),
        ("0 1-25 * * *", "hour field '1-25' is not valid (allowed: 0-23, *, lists, ranges, steps)"),
        ("0 0 32 * *", "day-of-month field '32' is not valid (allowed: 1-31, *, lists, ranges, steps)"),
        ("0 0 0 * *", "day-of-month field '0' is not valid (allowed: 1-31, *, lists, ranges, steps)"),
        ("0 0 * 13 *", "month field '13' is not valid (allowed: 1-12 or JAN-DEC, *, lists, ranges, steps)"),
        ("0 0 * FOO *", "month field 'FOO' is not valid (allowed: 1-12 or JAN-DEC, *, lists, ranges, steps)"),
        ("0 0 * * 8", "day-of-week field '8' is not valid (allowed: 0-6 or SUN-SAT, *, lists, ranges, steps)"),
        (
            "0 0 * * FUNDAY",
            "day-of-week field 'FUNDAY' is not valid (allowed: 0-6 or SUN-SAT, *, lists, ranges, steps)",
        ),
    ],
)
def test_invalid_expression_names_the_bad_field(expr: str, message: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.validate(expr)
    assert str(caught.value) == message


def test_expression_that_can_never_fire_is_refused() -> None:
    with pytest.raises(cron.CronError, match=r"'0 0 31 4 \*' never fires"):
        cron.validate("0 0 31 4 *")


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(cron.CronError, match="unknown time zone 'Europe/Atlantis'"):
        cron.next_fire("0 0 * * *", "Europe/Atlantis", utc(2026, 1, 1))


def test_random_fields_would_make_fire_times_unstable_so_they_are_refused() -> None:
    """croniter draws 'R' anew each time; a schedule must give the same next fire every time it is asked."""
    with pytest.raises(cron.CronError):
        cron.validate("0 R * * *")


# --- next fire times --------------------------------------------------------------------------------------


def test_next_fires_are_strictly_after_the_given_instant() -> None:
    assert cron.next_fire("0 * * * *", "UTC", utc(2026, 5, 4, 10, 0)) == utc(2026, 5, 4, 11, 0)
    assert cron.next_fires("*/20 * * * *", "UTC", utc(2026, 5, 4, 10, 5), 4) == [
        utc(2026, 5, 4, 10, 20),
        utc(2026, 5, 4, 10, 40),
        utc(2026, 5, 4, 11, 0),
        utc(2026, 5, 4, 11, 20),
    ]


def test_fire_times_follow_the_task_time_zone() -> None:
    # 09:00 in Tokyo (UTC+9, no DST) is midnight UTC.
    assert cron.next_fire("0 9 * * *", "Asia/Tokyo", utc(2026, 5, 4, 1, 0)) == utc(2026, 5, 5, 0, 0)
    # Weekdays are the zone's weekdays: Monday 08:00 in Auckland is Sunday evening UTC.
    assert cron.next_fire("0 8 * * MON", "Pacific/Auckland", utc(2026, 5, 1)) == utc(2026, 5, 3, 20, 0)


def test_month_names_and_last_day_rules() -> None:
    assert cron.next_fires("0 0 29 2 *", "UTC", utc(2026, 1, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]
    assert cron.next_fire("30 6 1 JAN,JUL *", "UTC", utc(2026, 2, 1)) == utc(2026, 7, 1, 6, 30)


# --- daylight saving: a skipped time fires once at the jump, a repeated hour fires once -------------------


def test_berlin_spring_forward_daily_fire_in_skipped_hour_runs_at_the_jump() -> None:
    # 2026-03-29: Berlin clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC); 02:30 does not exist.
    fires = cron.next_fires("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 4)
    assert local(fires, "Europe/Berlin") == [
        "03-28 02:30+0100",
        "03-29 03:00+0200",  # the skipped 02:30 runs once, at the jump
        "03-30 02:30+0200",
        "03-31 02:30+0200",
    ]
    assert fires[1] == utc(2026, 3, 29, 1, 0)


def test_berlin_spring_forward_several_skipped_fires_collapse_to_one() -> None:
    fires = cron.next_fires("*/30 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 15), 4)
    # 02:00, 02:30 and 03:00 all land on the jump instant: one run, not three.
    assert local(fires, "Europe/Berlin") == [
        "03-29 01:30+0100",
        "03-29 03:00+0200",
        "03-29 03:30+0200",
        "03-29 04:00+0200",
    ]
    assert len(set(fires)) == len(fires)


def test_berlin_fall_back_repeated_hour_fires_once() -> None:
    # 2026-10-25: Berlin clocks go back from 03:00 CEST to 02:00 CET (01:00 UTC); 02:00-02:59 happens twice.
    fires = cron.next_fires("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 45), 4)
    assert local(fires, "Europe/Berlin") == [
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 03:00+0100",
        "10-25 03:30+0100",
    ]
    daily = cron.next_fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12), 3)
    assert daily == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_new_york_spring_forward_fire_in_skipped_hour_runs_at_the_jump() -> None:
    # 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT (07:00 UTC).
    fires = cron.next_fires("30 2 * * *", "America/New_York", utc(2026, 3, 6, 12), 3)
    assert local(fires, "America/New_York") == ["03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:30-0400"]
    assert fires[1] == utc(2026, 3, 8, 7, 0)


def test_new_york_fall_back_repeated_hour_fires_once() -> None:
    # 2026-11-01: New York goes back from 02:00 EDT to 01:00 EST (06:00 UTC); 01:00-01:59 happens twice.
    hourly = cron.next_fires("0 * * * *", "America/New_York", utc(2026, 11, 1, 4, 30), 3)
    assert local(hourly, "America/New_York") == ["11-01 01:00-0400", "11-01 02:00-0500", "11-01 03:00-0500"]
    daily = cron.next_fires("30 1 * * *", "America/New_York", utc(2026, 10, 30, 12), 3)
    assert daily == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_asking_during_the_second_pass_of_a_repeated_hour_does_not_fire_again() -> None:
    # 06:10 UTC is 01:10 EST, the second 01:10 of the night; 01:45 already fired at 05:45 UTC (EDT).
    assert cron.next_fire("45 1 * * *", "America/New_York", utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 45)
    # Asked during the first pass, 01:45 EDT is still to come.
    assert cron.next_fire("45 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 10)) == utc(2026, 11, 1, 5, 45)


def test_fire_times_are_strictly_increasing_across_a_whole_dst_year() -> None:
    for tz in ("Europe/Berlin", "America/New_York"):
        fires = cron.next_fires("*/30 0-4 * * *", tz, utc(2026, 1, 1), 3650)
        assert all(a < b for a, b in zip(fires, fires[1:], strict=False)), tz
        assert fires[-1] > utc(2026, 12, 1)


def test_dst_note_marks_the_jump_and_the_overlap() -> None:
    assert "jump" in cron.dst_note(utc(2026, 3, 29, 1, 0), "Europe/Berlin")
    assert "overlap" in cron.dst_note(utc(2026, 10, 25, 0, 30), "Europe/Berlin")
    assert cron.dst_note(utc(2026, 6, 1, 12, 0), "Europe/Berlin") == ""


# --- describe and the django-celery-beat mirror ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("0 0 * * *", "At 00:00"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("30 14 * * 1-5", "At 14:30, Monday through Friday"),
        ("0 9 1 * *", "At 09:00, on day 1 of the month"),
    ],
)
def test_describe_gives_a_human_reading(expr: str, text: str) -> None:
    assert cron.describe(expr) == text


def test_describe_of_an_invalid_expression_is_empty() -> None:
    assert cron.describe("61 * * * *") == ""


def test_crontab_fields_split_for_django_celery_beat() -> None:
    assert cron.crontab_fields(" 15 3  * * MON ") == {
        "minute": "15",
        "hour": "3",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "MON",
    }
