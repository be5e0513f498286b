"""Reporting in the admin: the report history and channel states are read-only and load with data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from reporting.models import ChannelState, Report
from reporting.services import report_run
from tests.reporting.factories import finish


@pytest.fixture
def admin_client_logged_in(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_report_history_shows_failures_and_cannot_be_edited(
    admin_client_logged_in, fake_mattermost, make_task, monkeypatch
):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["mattermost"])
    fake_mattermost.down = True
    t0 = timezone.now()
    finish(make_task("x"), at=t0)
    [report] = report_run(now=t0 + timedelta(seconds=1))

    listing = admin_client_logged_in.get(reverse("admin:reporting_report_changelist"))
    detail = admin_client_logged_in.get(reverse("admin:reporting_report_change", args=[report.pk]))
    states = admin_client_logged_in.get(reverse("admin:reporting_channelstate_changelist"))
    add = admin_client_logged_in.get(reverse("admin:reporting_report_add"))

    assert listing.status_code == detail.status_code == states.status_code == 200
    assert "HTTP 503" in detail.content.decode()
    assert fake_mattermost.key not in detail.content.decode()  # the webhook URL is a secret
    assert add.status_code == 403
    assert ChannelState.objects.get(channel="mattermost").failures == 1 and Report.objects.count() == 1
