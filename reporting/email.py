"""Email reports through Django's mail framework (console backend unless email.smtp_host is set)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from reporting.content import Content
from taskhub import scrubbing
from taskhub.exceptions import IntegrationError

SYSTEM = "Email"


def recipients() -> list[str]:
    """Return email.to, the report's recipients."""
    return list(settings.TASKHUB.email.to)


def subject(content: Content) -> str:
    """Return a one-line subject that says how many attempts finished and failed."""
    summary = content.summary
    failed = f", {summary.failed} failed" if summary.failed else ""
    subject = f"{summary.total} attempt{'s' if summary.total != 1 else ''} finished{failed}"
    return settings.TASKHUB.email.subject_prefix + subject


def report_send(content: Content) -> None:
    """Mail the report (plain text plus an HTML alternative) to email.to."""
    to = recipients()
    if not to:
        raise IntegrationError(SYSTEM, "send report", "email.to lists no recipients", permanent=True)
    context = content.context()
    message = EmailMultiAlternatives(
        subject=subject(content),
        body=render_to_string("reporting/email.txt", context),
        from_email=settings.TASKHUB.email.from_address,
        to=to,
    )
    message.attach_alternative(render_to_string("reporting/email.html", context), "text/html")
    try:
        message.send(fail_silently=False)
    except (OSError, ValueError) as exc:  # smtplib errors are OSErrors
        raise IntegrationError(SYSTEM, "send report", scrubbing.cut(f"{exc.__class__.__name__}: {exc}", 300)) from None
