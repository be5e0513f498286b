"""First run: unconfigured report channels are skipped (one line at start-up), report_now says why nothing was sent.

The test configuration leaves confluence, mattermost and reporting at their defaults, which are the
defaults of a fresh clone (and of a copy of config.yaml.example).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from reporting import channels, schedule
from reporting.models import ChannelState, Report
from reporting.services import report_run
from reporting.tasks import report as report_task
from taskhub import config as taskhub_config
from tests.reporting.factories import finish

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("source", ["built-in defaults", "config.yaml.example"])
def test_default_and_example_configuration_list_channels_that_are_skipped(monkeypatch, source):
    loaded = (
        taskhub_config.parse({}, env={})
        if source == "built-in defaults"
        else taskhub_config.load(ROOT / "config.yaml.example", env={})
    )
    monkeypatch.setattr(settings, "TASKHUB", loaded)
    active, skipped = channels.split()
    assert active == []
    assert skipped == {
        "confluence": "confluence.url is still the example's confluence.example.com",
        "mattermost": "mattermost.webhook_url is empty",
    }


def test_what_makes_each_channel_configured(monkeypatch):
    confluence = settings.TASKHUB["confluence"]
    monkeypatch.setitem(confluence, "url", "https://wiki.acme.test")
    assert channels.missing("confluence") == (
        "confluence.password, confluence.token and confluence.api_token are empty"
    )
    monkeypatch.setitem(confluence, "token", "pat-123456")
    assert channels.missing("confluence") == ""
    # Cloud: an API token, and the page created in a space when no page is named.
    monkeypatch.setitem(confluence, "token", "")
    monkeypatch.setitem(confluence, "api_token", "ATATT3xFfGF0-cloud-token")
    assert channels.missing("confluence") == ""
    for key in ("task_result_page_id", "main_page_id"):
        monkeypatch.setitem(confluence, key, "")
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", "")
    assert channels.missing("confluence") == (
        "reporting.confluence.page_id, confluence.main_page_id and confluence.space_key are empty"
    )
    monkeypatch.setitem(confluence, "space_key", "OPS")
    assert channels.missing("confluence") == ""
    monkeypatch.setitem(confluence, "url", "")
    assert channels.missing("confluence") == "confluence.url is empty"
    monkeypatch.setitem(settings.TASKHUB["mattermost"], "webhook_url", "https://chat.acme.test/hooks/abcdefgh")
    assert channels.missing("mattermost") == ""
    assert channels.missing("email") == "email.to is empty"
    monkeypatch.setitem(settings.TASKHUB["email"], "to", ["ops@acme.test"])
    assert channels.missing("email") == ""


@pytest.mark.django_db
def test_beat_start_says_once_which_channels_are_skipped_and_reports_never_fail(make_task, caplog):
    finish(make_task("done"), at=timezone.now() - timedelta(seconds=5))
    with caplog.at_level(logging.INFO, logger="reporting"):
        task = schedule.install()
    lines = [r.getMessage() for r in caplog.records if r.name == "reporting"]
    assert len(lines) == 1
    assert "skipped (not configured): confluence: " in lines[0] and "mattermost: mattermost.webhook_url" in lines[0]
    assert task.enabled is False  # beat runs no report that could only fail
    # Even if the periodic report runs (an old row, a manual call), nothing is failed or backed off.
    assert report_task() == {}
    assert not Report.objects.exists()
    assert not ChannelState.objects.filter(failures__gt=0).exists()


def test_real_beat_logs_the_skipped_channels_once_and_no_report_failure(start_beat, make_task):
    beat = start_beat(env={"TASKHUB_REPORTING_INTERVAL": "1"})
    beat.wait_for("skipped (not configured): confluence", timeout=30)
    time.sleep(3)  # three reporting intervals
    output = beat.output()
    assert output.count("skipped (not configured)") == 1
    assert "report of" not in output and "report failed" not in output  # what a failing channel logs
    assert PeriodicTask.objects.get(name=schedule.REPORT_TASK_NAME).enabled is False


# --- report_now -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_report_now_on_the_default_configuration_says_the_channels_are_not_configured(capsys):
    call_command("report_now")
    out = capsys.readouterr().out
    assert "confluence: nothing sent: not configured (confluence.url is still the example's" in out
    assert "mattermost: nothing sent: not configured (mattermost.webhook_url is empty)" in out


@pytest.mark.django_db
def test_report_now_for_an_unconfigured_channel_is_an_error_naming_the_key():
    with pytest.raises(CommandError, match=r"email is not configured \(email.to is empty\)"):
        call_command("report_now", "--channel", "email")


@pytest.mark.django_db
def test_report_now_with_no_channel_listed_says_so(monkeypatch, capsys):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", [])
    call_command("report_now")
    assert "no report channel is listed in reporting.report_types" in capsys.readouterr().out


@pytest.mark.django_db
def test_report_now_says_a_channel_is_backing_off_and_when_it_retries(monkeypatch, fake_mattermost, make_task, capsys):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["mattermost"])
    now = timezone.now()
    finish(make_task("waiting"), at=now - timedelta(seconds=5))
    fake_mattermost.down = True
    report_run(now=now)  # fails: first retry on the next tick
    report_run(now=now + timedelta(seconds=31))  # fails again: backs off for one interval
    state = ChannelState.objects.get(channel="mattermost")
    assert state.failures == 2 and state.next_try_at > timezone.now()
    fake_mattermost.down = False
    call_command("report_now")
    out = capsys.readouterr().out
    assert (
        f"mattermost: nothing sent: backing off after 2 failed report(s) until {state.next_try_at:%Y-%m-%d %H:%M:%S}"
        in out
    )
    assert "--channel mattermost reports at once" in out
    assert fake_mattermost.messages == []
    call_command("report_now", "--channel", "mattermost")  # at once, despite the backoff
    assert "mattermost: sent 1 attempts" in capsys.readouterr().out


@pytest.mark.django_db
def test_report_now_says_when_there_is_nothing_new(monkeypatch, fake_mattermost, capsys):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["mattermost"])
    call_command("report_now")
    assert "mattermost: nothing sent: nothing new: no attempt has finished" in capsys.readouterr().out
    call_command("report_now")
    assert "mattermost: nothing sent: nothing new since " in capsys.readouterr().out


@pytest.mark.django_db
def test_check_config_names_the_skipped_channels(capsys):
    call_command("check_config")
    out = capsys.readouterr().out
    assert "reporting: no configured channel; skipped (not configured): confluence: " in out
