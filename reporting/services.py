"""ResultReportingService: send each channel the attempts finished since its last successful report.

Steps of :func:`report_channel`, per channel:
1. Take the channel's lease (a conditional update), so two runs never report at once.
2. Pick the finished attempts this channel has not reported yet: finished after its
   watermark (less a margin, see LATE_COMMITS) and not among its ReportedResult rows.
3. Render and send outside any transaction.
4. On success, in one transaction: record the Report, the ReportedResult rows and the
   new watermark. On failure: record a FAILED Report and keep the watermark, so the
   next run sends these attempts again together with the new ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from reporting import channels
from reporting import content as report_content
from reporting.models import Channel, ChannelState, Report, ReportedResult, ReportOutcome
from scheduling.models import FINISHED, TaskResult
from taskhub import scrubbing
from taskhub.exceptions import TaskHubError

logger = logging.getLogger(__name__)

#: How long a run may hold a channel; a run whose worker died frees it after this.
LEASE = timedelta(minutes=10)
#: finished_at is stamped just before the attempt's transaction commits, so an attempt can
#: appear after a report whose period already covers its time; looking back this far catches
#: it, and the ReportedResult rows keep what was already sent from being sent again.
LATE_COMMITS = timedelta(minutes=10)
#: Most attempts one report carries; a larger backlog is reported over the next runs.
MAX_BATCH = 5000
#: Longest wait before retrying a failing channel.
MAX_BACKOFF = timedelta(minutes=10)


def pending(channel: str, *, watermark: datetime | None, now: datetime) -> QuerySet[TaskResult]:
    """Return the finished attempts ``channel`` has not reported yet, oldest first."""
    reported = ReportedResult.objects.filter(channel=channel, result=OuterRef("pk"))
    results = TaskResult.objects.filter(status__in=FINISHED, finished_at__isnull=False, finished_at__lte=now)
    if watermark is not None:
        results = results.filter(finished_at__gt=watermark - LATE_COMMITS)
    return results.filter(~Exists(reported)).order_by("finished_at", "pk")


# --- senders: render and deliver one channel's report; return where it went ----------------


def _destination(channel: str) -> str:
    config = settings.TASKHUB
    if channel == Channel.CONFLUENCE:
        from reporting.confluence import report_page_id

        return f"page {report_page_id()}"
    if channel == Channel.MATTERMOST:
        name = config.mattermost.channel
        return f"channel {name}" if name else "the webhook's channel"
    return ", ".join(config.email.to)[:300]


def _send_confluence(batch: QuerySet[TaskResult], start: datetime | None, end: datetime, now: datetime) -> str:
    from reporting.confluence import page_publish, render_page

    # The page is a standing view (latest attempts and totals), not a log of deltas.
    content = report_content.build(report_content.page_results(now), period_start=start, period_end=now)
    content.new_count = batch.count()
    page = page_publish(body=render_page(content.context()))
    return f"page {page.id}"


def _send_mattermost(batch: QuerySet[TaskResult], start: datetime | None, end: datetime, now: datetime) -> str:
    from reporting.mattermost import digest_post

    digest_post(report_content.build(batch, period_start=start, period_end=end, alerts=True))
    return _destination(Channel.MATTERMOST)


def _send_email(batch: QuerySet[TaskResult], start: datetime | None, end: datetime, now: datetime) -> str:
    from reporting.email import report_send

    report_send(report_content.build(batch, period_start=start, period_end=end, alerts=True))
    return _destination(Channel.EMAIL)


Sender = Callable[[QuerySet[TaskResult], datetime | None, datetime, datetime], str]
SENDERS: dict[str, Sender] = {
    Channel.CONFLUENCE: _send_confluence,
    Channel.MATTERMOST: _send_mattermost,
    Channel.EMAIL: _send_email,
}


# --- the service ------------------------------------------------------------------------


def report_run(
    *, channel: str | None = None, now: datetime | None = None, reasons: dict[str, str] | None = None
) -> list[Report]:
    """Report to every configured channel of reporting.report_types, or only to ``channel`` (at once, no backoff).

    Channels that are not configured (reporting.channels) are skipped, never failed. ``reasons``, when
    given, receives why each channel that got no report got none (not configured, backing off, nothing new...).
    """
    if channel is not None and channel not in SENDERS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(SENDERS)}")
    reasons = {} if reasons is None else reasons
    if channel:
        why = channels.missing(channel)
        if why:
            reasons[channel] = f"not configured ({why})"
            return []
        names = [channel]
    else:
        names, skipped = channels.split()
        reasons.update({name: f"not configured ({why})" for name, why in skipped.items()})
    reports = []
    for name in names:
        report = report_channel(name, now=now, force=channel is not None, reasons=reasons)
        if report is not None:
            reports.append(report)
    return reports


def report_channel(
    channel: str, *, now: datetime | None = None, force: bool = False, reasons: dict[str, str] | None = None
) -> Report | None:
    """Send ``channel`` what it has not reported yet; return the Report, or None if there was nothing to do."""
    now = now or timezone.now()
    reasons = {} if reasons is None else reasons
    state, _ = ChannelState.objects.get_or_create(channel=channel)
    if not force and state.next_try_at and state.next_try_at > now:
        reasons[channel] = (
            f"backing off after {state.failures} failed report(s) until {state.next_try_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(last error: {state.last_error[:200] or 'none recorded'}); --channel {channel} reports at once"
        )
        return None
    lease = now + LEASE
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if ChannelState.objects.filter(free, pk=state.pk).update(lease_until=lease) != 1:
        logger.info("%s: another report is being sent; skipping", channel)
        reasons[channel] = "another report to it is being sent right now"
        return None
    try:
        state.refresh_from_db()  # another run may have moved the watermark before we took the lease
        return _report(state, now, reasons)
    finally:
        ChannelState.objects.filter(pk=state.pk, lease_until=lease).update(lease_until=None)


def _report(state: ChannelState, now: datetime, reasons: dict[str, str]) -> Report | None:
    channel = state.channel
    picked = list(pending(channel, watermark=state.watermark, now=now).values_list("pk", "finished_at")[:MAX_BATCH])
    ChannelState.objects.filter(pk=state.pk).update(last_run_at=now)
    if not picked:
        ChannelState.objects.filter(pk=state.pk).update(watermark=now)
        since = f" since {state.watermark:%Y-%m-%d %H:%M:%S} UTC" if state.watermark else ": no attempt has finished"
        reasons[channel] = f"nothing new{since}"
        return None
    ids = [pk for pk, _ in picked]
    # A capped backlog ends at its last attempt; the rest follows in the next run.
    # (pending() picks only attempts with a finished_at: the "or now" is for the type checker.)
    period_end = (picked[-1][1] or now) if len(picked) == MAX_BATCH else now
    batch = TaskResult.objects.filter(pk__in=ids)
    started = time.monotonic()
    try:
        destination = SENDERS[channel](batch, state.watermark, period_end, now)
    except Exception as exc:  # noqa: BLE001 - any failure keeps the watermark and is recorded on the report
        if not isinstance(exc, TaskHubError):
            logger.exception("%s report failed unexpectedly", channel)
        return _failed(state, now, period_end, len(ids), exc, time.monotonic() - started)
    with transaction.atomic():
        report = Report.objects.create(
            channel=channel,
            destination=destination[:300],
            period_start=state.watermark,
            period_end=period_end,
            count=len(ids),
            outcome=ReportOutcome.SENT,
            created_at=now,
            duration=time.monotonic() - started,
        )
        ReportedResult.objects.bulk_create(
            [ReportedResult(report=report, result_id=pk, channel=channel) for pk in ids],
            batch_size=500,
            ignore_conflicts=True,
        )
        ChannelState.objects.filter(pk=state.pk).update(
            watermark=period_end, last_success_at=now, failures=0, next_try_at=None, last_error=""
        )
    logger.info("%s: reported %d attempts to %s", channel, len(ids), destination)
    return report


def _failed(
    state: ChannelState, now: datetime, period_end: datetime, count: int, exc: Exception, duration: float
) -> Report:
    """Record a failed report and back the channel off; the watermark stays where it was."""
    error = str(exc) if isinstance(exc, TaskHubError) else f"{exc.__class__.__name__}: {exc}"
    error = scrubbing.cut(error, 5000)  # scrubbed before it is cut, stored or logged
    failures = state.failures + 1
    interval = settings.TASKHUB.reporting.interval
    # The first failure retries on the next tick; further ones wait 1, 3, 7... intervals more.
    backoff = min(timedelta(seconds=interval * (2 ** (failures - 1) - 1)), MAX_BACKOFF)
    with transaction.atomic():
        report = Report.objects.create(
            channel=state.channel,
            destination=_destination(state.channel)[:300],
            period_start=state.watermark,
            period_end=period_end,
            count=count,
            outcome=ReportOutcome.FAILED,
            error=error,
            created_at=now,
            duration=duration,
        )
        ChannelState.objects.filter(pk=state.pk).update(failures=failures, next_try_at=now + backoff, last_error=error)
    logger.warning("%s report of %d attempts failed (retry in %s): %s", state.channel, count, backoff, error)
    return report
