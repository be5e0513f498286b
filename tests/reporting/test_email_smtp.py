"""Email reports over SMTP when email.smtp_host is set (the console backend otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from reporting.services import report_run
from scheduling.models import AttemptStatus
from tests.fakes.smtp_server import FakeSMTP
from tests.reporting.factories import finish

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def smtp(monkeypatch):
    server = FakeSMTP().start()
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["email"])
    monkeypatch.setitem(settings.TASKHUB["email"], "to", ["ops@example.com", "lead@example.com"])
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
        EMAIL_USE_TLS=False,
        EMAIL_TIMEOUT=5,
    ):
        yield server
    server.stop()


def test_report_is_mailed_over_smtp(smtp, make_task):
    t0 = timezone.now()
    finish(make_task("nightly export"), AttemptStatus.FAILED, at=t0, error="Jira said 500")

    [report] = report_run(now=t0 + timedelta(seconds=1))

    assert report.outcome == "SENT", report.error
    [(sender, recipients, message)] = smtp.messages
    assert (sender, recipients) == ("taskhub@localhost", ["ops@example.com", "lead@example.com"])
    assert message["Subject"] == "[TaskHub] 1 attempt finished, 1 failed"
    text, html = (part.get_payload(decode=True).decode() for part in message.get_payload())
    assert "nightly export: FAILED" in text and "Jira said 500" in text and "<table" in html


def test_unreachable_smtp_server_fails_the_report_and_keeps_it_for_later(smtp, make_task):
    t0 = timezone.now()
    finish(make_task("x"), at=t0)
    smtp.stop()

    [failed] = report_run(now=t0 + timedelta(seconds=1))

    assert failed.outcome == "FAILED" and "ConnectionRefusedError" in failed.error


def test_smtp_settings_come_from_the_email_section():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "taskhub.settings",
        "TASKHUB_EMAIL_SMTP_HOST": "mail.example.com",
        "TASKHUB_EMAIL_SMTP_PORT": "2525",
        "TASKHUB_EMAIL_SMTP_PASSWORD": "pw",
        "TASKHUB_EMAIL_USE_SSL": "true",
    }
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_SSL, s.EMAIL_USE_TLS)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)

    assert out.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.com",
        "2525",
        "pw",
        "True",
        "False",
    ]


def test_report_content_is_scrubbed_before_it_is_cut(smtp, make_task, monkeypatch):
    """Errors stored before scrubbing ran first (older data) hold config secrets: the report shows none of them."""
    import base64
    from urllib.parse import quote

    secret = "PLNT-smtp-report-6c2d91ab"
    monkeypatch.setitem(settings.TASKHUB["email"], "smtp_password", secret)
    t0 = timezone.now()
    encoded = f"token {quote(secret, safe='')} b64 {base64.b64encode(secret.encode()).decode()} "
    finish(make_task("forms"), AttemptStatus.FAILED, at=t0, error=encoded)
    # The report reads the first 400 characters; the secret straddles that and the 200-character summary cut.
    for pad in (200 - 10, 400 - 10):
        finish(make_task(f"straddle {pad}"), AttemptStatus.FAILED, at=t0, error="x" * pad + secret + "y" * 500)

    [report] = report_run(now=t0 + timedelta(seconds=1))

    assert report.outcome == "SENT", report.error
    [(_, _, message)] = smtp.messages
    text = "".join(part.get_payload(decode=True).decode() for part in message.get_payload())
    assert "forms: FAILED" in text and "<hidden>" in text
    pieces = [secret[i : i + 6] for i in range(len(secret) - 5)]
    assert [p for p in pieces if p in text] == []
    assert quote(secret, safe="") not in text and base64.b64encode(secret.encode()).decode() not in text
