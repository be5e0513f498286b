"""ResultReportingService: watermarks, catching up after failures, alerts, email and the schedule."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from reporting import schedule
from reporting.models import ChannelState, Report, ReportedResult, ReportOutcome
from reporting.services import LATE_COMMITS, report_channel, report_run
from reporting.tasks import report as report_task
from scheduling.engine.beat import install_periodic_tasks
from scheduling.models import AttemptStatus
from tests.reporting.factories import finish

A = AttemptStatus
S = timedelta(seconds=1)


@pytest.fixture
def mattermost_only(monkeypatch, fake_mattermost):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["mattermost"])
    return fake_mattermost


def _names_in(texts: list[str], names: list[str]) -> dict[str, int]:
    return {name: sum(text.count(f"[{name}]") for text in texts) for name in names}


def test_failing_channel_catches_up_without_loss_or_duplicates(mattermost_only, make_task):
    t0 = timezone.now()
    names = ["alpha", "bravo", "charlie", "delta", "echo"]
    tasks = {name: make_task(name) for name in names}

    finish(tasks["alpha"], at=t0 + 1 * S)
    [first] = report_run(now=t0 + 2 * S)
    mattermost_only.down = True
    finish(tasks["bravo"], at=t0 + 3 * S)
    [down1] = report_run(now=t0 + 4 * S)
    finish(tasks["charlie"], A.FAILED, at=t0 + 5 * S, error="boom")
    [down2] = report_run(channel="mattermost", now=t0 + 6 * S)
    mattermost_only.down = False
    finish(tasks["delta"], at=t0 + 7 * S)
    [recovered] = report_run(now=t0 + 100 * S)
    finish(tasks["echo"], at=t0 + 101 * S)
    [last] = report_run(now=t0 + 102 * S)
    nothing = report_run(now=t0 + 103 * S)

    assert [(r.outcome, r.count) for r in (first, down1, down2, recovered, last)] == [
        ("SENT", 1),
        ("FAILED", 1),
        ("FAILED", 2),
        ("SENT", 3),
        ("SENT", 1),
    ]
    assert nothing == []
    assert "503" in down1.error
    assert _names_in(mattermost_only.texts(), names) == dict.fromkeys(names, 1)
    assert ReportedResult.objects.filter(channel="mattermost").count() == 5
    state = ChannelState.objects.get(channel="mattermost")
    assert (state.failures, state.last_error, state.watermark) == (0, "", t0 + 103 * S)
    # The failed reports kept the period start: the catch-up report covers the whole outage.
    assert recovered.period_start == first.period_end == t0 + 2 * S


def test_attempt_committed_after_its_period_is_still_reported_once(mattermost_only, make_task):
    t0 = timezone.now()
    report_run(now=t0 + 10 * S)  # nothing yet; the watermark moves to t0+10
    # Finished (stamped) at t0+9 but committed after the report at t0+10 had looked.
    late = finish(make_task("late"), at=t0 + 9 * S)

    [report] = report_run(now=t0 + 20 * S)
    again = report_run(now=t0 + 30 * S)

    assert report.count == 1 and list(report.results.all()) == [late]
    assert again == []
    assert _names_in(mattermost_only.texts(), ["late"]) == {"late": 1}


def test_attempts_older_than_the_late_commit_margin_are_not_resent(mattermost_only, make_task):
    t0 = timezone.now()
    finish(make_task("old"), at=t0 + 1 * S)
    report_run(now=t0 + 2 * S)

    later = report_run(now=t0 + 2 * S + LATE_COMMITS * 3)

    assert later == [] and len(mattermost_only.messages) == 1


def test_failing_channel_backs_off_between_scheduled_runs(mattermost_only, make_task, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "interval", 30.0)
    t0 = timezone.now()
    finish(make_task("x"), at=t0)
    mattermost_only.down = True

    report_run(now=t0 + 1 * S)  # failure 1: retried on the next tick
    report_run(now=t0 + 2 * S)  # failure 2: waits one interval
    skipped = report_run(now=t0 + 20 * S)
    mattermost_only.down = False
    forced = report_run(channel="mattermost", now=t0 + 21 * S)  # report_now does not wait

    assert skipped == []
    assert [r.outcome for r in Report.objects.order_by("created_at")] == ["FAILED", "FAILED", "SENT"]
    assert forced[0].count == 1


def test_a_channel_being_reported_is_not_reported_twice_at_once(mattermost_only, make_task):
    t0 = timezone.now()
    finish(make_task("x"), at=t0)
    ChannelState.objects.create(channel="mattermost", lease_until=t0 + 60 * S)

    assert report_channel("mattermost", now=t0 + 1 * S) is None
    assert mattermost_only.messages == []
    # A lease whose holder died expires.
    assert report_channel("mattermost", now=t0 + 61 * S).outcome == ReportOutcome.SENT


def test_digest_alerts_on_final_failure_and_recovery_only(mattermost_only, make_task):
    t0 = timezone.now()
    flaky, steady = make_task("flaky"), make_task("steady")
    finish(flaky, A.FAILED, at=t0 + 1 * S, error="first try", retried=True)  # retried: no alert
    finish(flaky, A.TIMEOUT, at=t0 + 3 * S, attempt=2, error="timed out")  # final: alert
    finish(flaky, A.FAILED, at=t0 + 5 * S, error="still broken")  # still failing: quiet
    finish(steady, at=t0 + 6 * S)
    [first] = report_run(now=t0 + 7 * S)
    finish(flaky, A.FAILED, at=t0 + 8 * S, error="again", retried=True)
    finish(flaky, at=t0 + 9 * S, attempt=2)  # works again: alert
    finish(steady, at=t0 + 10 * S)
    report_run(now=t0 + 11 * S)

    first_text, second_text = mattermost_only.texts()
    assert re.findall(r":red_circle: \*\*(\w+)\*\*", first_text) == ["flaky"]
    assert "timed out" in first_text and ":large_green_circle:" not in first_text
    assert re.findall(r":large_green_circle: \*\*(\w+)\*\*", second_text) == ["flaky"]
    assert ":red_circle:" not in second_text


def test_email_carries_the_same_report(monkeypatch, make_task):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["email"])
    monkeypatch.setitem(settings.TASKHUB["email"], "to", ["ops@example.com"])
    t0 = timezone.now()
    finish(make_task("export <b>&"), A.FAILED, at=t0, error="Jira said no")

    [report] = report_run(now=t0 + 1 * S)

    [message] = mail.outbox
    html = message.alternatives[0][0]
    assert report.outcome == "SENT" and report.destination == "ops@example.com"
    assert message.to == ["ops@example.com"]
    assert message.subject == "[TaskHub] 1 attempt finished, 1 failed"
    assert "export <b>&: FAILED" in message.body and "Jira said no" in message.body
    assert "export &lt;b&gt;&amp;" in html and "<b>&" not in html


def test_email_without_recipients_is_skipped_not_failed(monkeypatch, make_task):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["email"])
    t0 = timezone.now()
    finish(make_task("x"), at=t0)
    reasons: dict[str, str] = {}

    assert report_run(now=t0 + 1 * S, reasons=reasons) == []

    assert reasons == {"email": "not configured (email.to is empty)"}
    assert mail.outbox == [] and not Report.objects.exists()  # no FAILED report, no backoff


def test_report_now_command_reports_one_channel(mattermost_only, make_task, capsys):
    finish(make_task("cmd"), at=timezone.now() - S)

    call_command("report_now", "--channel", "mattermost")
    call_command("report_now", "--channel", "mattermost")

    out = capsys.readouterr().out
    assert "mattermost: sent 1 attempts to channel ops" in out and "mattermost: nothing sent: nothing new since" in out
    with pytest.raises(CommandError):
        call_command("report_now", "--channel", "fax")


def test_report_now_exits_with_an_error_when_a_channel_fails(mattermost_only, make_task):
    finish(make_task("cmd"), at=timezone.now() - S)
    mattermost_only.down = True

    with pytest.raises(CommandError, match="1 of 1 channels failed"):
        call_command("report_now")


def test_celery_task_reports_and_says_how_it_went(mattermost_only, make_task):
    finish(make_task("celery"), at=timezone.now() - S)

    assert report_task() == {"mattermost": "SENT"}


def test_beat_runs_the_report_every_interval(db, monkeypatch, mattermost_only):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "interval", 45.0)

    install_periodic_tasks()

    task = PeriodicTask.objects.get(name=schedule.REPORT_TASK_NAME)
    assert (task.task, task.interval.every, task.interval.period, task.enabled) == (
        "reporting.report",
        45,
        "seconds",
        True,
    )
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", [])
    assert schedule.install().enabled is False
    assert PeriodicTask.objects.filter(name=schedule.REPORT_TASK_NAME).count() == 1
    # Listed but not configured (no webhook): beat does not run a report that could only fail.
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["mattermost"])
    monkeypatch.setitem(settings.TASKHUB["mattermost"], "webhook_url", "")
    assert schedule.install().enabled is False


def test_digest_stays_within_one_mattermost_post_however_many_tasks_change(mattermost_only, make_task, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "max_rows", 30)
    t0 = timezone.now()
    for i in range(120):
        finish(make_task(f"task{i:03d}" + "x" * 150), A.FAILED, at=t0 + i * S, error="E" * 500)

    report_run(now=t0 + 200 * S)

    [text] = mattermost_only.texts()
    assert len(text) < 16_000
    shown = text.count(":red_circle:")
    assert 0 < shown <= 30 and f"{120 - shown} more changes of task state not listed" in text
    assert text.rstrip().endswith("not listed._")  # cut at a line, with a note, never mid-row


def test_recovery_is_seen_even_when_the_recovering_run_needed_a_retry(mattermost_only, make_task):
    t0 = timezone.now()
    task = make_task("nightly")
    finish(task, A.FAILED, at=t0 + 1 * S, error="down")  # run 1 ends in failure (no retry policy)
    report_run(now=t0 + 2 * S)
    finish(task, A.FAILED, at=t0 + 5 * S, error="still down", retried=True)  # run 2 fails once...
    finish(task, at=t0 + 7 * S, attempt=2)  # ...and its retry works
    report_run(now=t0 + 8 * S)

    first, second = mattermost_only.texts()
    assert ":red_circle: **nightly**" in first
    assert ":large_green_circle: **nightly** works again (attempt 2)" in second and ":red_circle:" not in second
