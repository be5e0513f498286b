"""GET /metrics: Prometheus' text format, read from the database at each scrape.

Workers, beat and web processes are separate (and on several hosts), so no process holds
counters for the whole system; the database does. Each scrape runs a few queries, each on an
index whatever the table sizes: current states from the partial indexes (waiting, in flight),
the last hour's finished attempts from the history index. Figures about finished work (attempts
by outcome, durations, fires, and reporting's reports) cover the last hour and are gauges (the duration histogram
is a gauge histogram): rows are deleted by retention, so database counts are not monotonic and
would read as counter resets.

Access: from ``security.metrics_allowed_hosts`` (addresses or networks; loopback by default), or
from anywhere with ``Authorization: Bearer <security.metrics_token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduling import hooks
from scheduling.dashboard import status_counts
from scheduling.engine import clock, workers
from scheduling.models import FINISHED, IN_FLIGHT, WAITING, AttemptStatus, TaskResult, Worker, status_in

WINDOW = timedelta(hours=1)
#: Upper bounds (seconds) of the attempt duration histogram's buckets; +Inf is added.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)

REFUSED = (
    "GET /metrics is answered only from the addresses in security.metrics_allowed_hosts "
    "or with the header Authorization: Bearer <security.metrics_token>.\n"
)


class TaskHubCollector(Collector):
    """Everything /metrics shows, computed from the database when collected."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or clock.now()
        since = now - WINDOW
        # A fire is a run's first attempt with its fire time: finished ones are in the history range (a fire
        # finishes after it fires), the others among the few waiting or in flight. Counted in the same queries.
        fired = Q(attempt=1, fire_time__gte=since)
        live = self._live(now, fired)
        finished = {
            row["status"]: row
            for row in TaskResult.objects.filter(finished_at__gte=since)  # result_history_idx
            .order_by()
            .values("status")
            .annotate(n=Count("pk"), fires=Count("pk", filter=fired))
        }
        yield from self._tasks()
        yield from self._attempts(live)
        yield from self._finished(finished, since)
        yield from self._fires(live, finished)
        for contribute in hooks.metrics:  # reporting's report counts (reporting.apps)
            yield from contribute(since)
        yield from self._workers(now)

    def _tasks(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("taskhub_tasks", "Tasks by status.", labels=["status"])
        for status, n in status_counts().items():
            family.add_metric([status], n)
        yield family

    def _live(self, now: datetime, fired: Q) -> dict[str, int]:
        """Count the attempts waiting (result_pick_idx) and in flight (result_inflight_idx): one query each."""
        waiting = (
            TaskResult.objects.filter(status_in(WAITING))
            .order_by()
            .aggregate(
                pending=Count("pk", filter=Q(status=AttemptStatus.PENDING)),
                retry=Count("pk", filter=Q(status=AttemptStatus.RETRY)),
                due=Count("pk", filter=Q(available_at__lte=now)),
                waiting_fires=Count("pk", filter=fired),
            )
        )
        flight = (
            TaskResult.objects.filter(status_in(IN_FLIGHT))
            .order_by()
            .aggregate(
                queued=Count("pk", filter=Q(status=AttemptStatus.QUEUED)),
                running=Count("pk", filter=Q(status=AttemptStatus.RUNNING)),
                flight_fires=Count("pk", filter=fired),
            )
        )
        return {**waiting, **flight}

    def _attempts(self, live: dict[str, int]) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "taskhub_attempts", "Attempts waiting or in flight now, by status.", labels=["status"]
        )
        for status in (AttemptStatus.PENDING, AttemptStatus.RETRY, AttemptStatus.QUEUED, AttemptStatus.RUNNING):
            family.add_metric([status], live[status.lower()])
        yield family
        yield GaugeMetricFamily(
            "taskhub_attempts_in_flight",
            "Attempts queued with the broker or running (compare with taskhub_concurrency_cap).",
            value=live["queued"] + live["running"],
        )
        yield GaugeMetricFamily(
            "taskhub_concurrency_cap",
            "Most attempts in flight at once (scheduler.concurrency).",
            value=settings.TASKHUB.scheduler.concurrency,
        )
        yield GaugeMetricFamily(
            "taskhub_queue_depth",
            "Attempts waiting for a slot (PENDING, or RETRY in backoff).",
            value=live["pending"] + live["retry"],
        )
        yield GaugeMetricFamily("taskhub_queue_due", "Waiting attempts already due to start.", value=live["due"])

    def _finished(self, finished: Mapping[str, Mapping[str, Any]], since: datetime) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "taskhub_attempts_finished_last_hour", "Attempts finished in the last hour, by status.", labels=["status"]
        )
        for status in FINISHED:
            family.add_metric([status], finished.get(status, {}).get("n", 0))
        yield family

        buckets = {
            f"le_{index}": Count("pk", filter=Q(duration__lte=bound)) for index, bound in enumerate(DURATION_BUCKETS)
        }
        rows = (
            TaskResult.objects.filter(finished_at__gte=since, duration__isnull=False)
            .order_by()
            .values("task__handler")
            .annotate(total=Count("pk"), seconds=Sum("duration"), **buckets)
        )
        histogram = GaugeHistogramMetricFamily(
            "taskhub_attempt_duration_seconds",
            "Run time of the attempts that finished in the last hour, by handler.",
            labels=["handler"],
        )
        for row in sorted(rows, key=lambda r: r["task__handler"] or ""):
            counts: Mapping[str, Any] = row  # the le_N keys are built, not literals the row type knows
            cumulative: list[tuple[str, float]] = [
                (repr(bound), counts[f"le_{index}"]) for index, bound in enumerate(DURATION_BUCKETS)
            ]
            cumulative.append(("+Inf", row["total"]))
            histogram.add_metric([row["task__handler"] or ""], cumulative, gsum_value=row["seconds"] or 0.0)
        yield histogram

    def _fires(self, live: dict[str, int], finished: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
        fires = sum(row["fires"] for row in finished.values()) + live["waiting_fires"] + live["flight_fires"]
        yield GaugeMetricFamily(
            "taskhub_fires_last_hour", "Cron fires in the last hour (skipped ones included).", value=fires
        )
        yield GaugeMetricFamily(
            "taskhub_fires_skipped_last_hour",
            "Cron fires skipped in the last hour (overlap_policy skip with max_instances in flight).",
            value=finished.get(AttemptStatus.SKIPPED, {}).get("fires", 0),
        )

    def _workers(self, now: datetime) -> Iterator[Metric]:
        count = workers.counts(now)
        yield GaugeMetricFamily(
            "taskhub_workers_online", "Workers with a heartbeat within two intervals.", value=count["online"]
        )
        yield GaugeMetricFamily(
            "taskhub_workers_offline", "Known workers that stopped or went silent.", value=count["offline"]
        )
        family = GaugeMetricFamily(
            "taskhub_worker_online", "1 when the worker is online, 0 when not.", labels=["worker", "host"]
        )
        for worker in Worker.objects.order_by("name").only("name", "host", "stopped_at", "offline_after"):
            family.add_metric([worker.name, worker.host], 1 if worker.is_online(now) else 0)
        yield family


def render(now: datetime | None = None) -> bytes:
    """Return the metrics in Prometheus' text format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskHubCollector(now))
    return generate_latest(registry)


def _from_allowed_host(request: HttpRequest) -> bool:
    """Whether the peer's address is in security.metrics_allowed_hosts (X-Forwarded-For is never trusted)."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack socket shows 127.0.0.1 as ::ffff:127.0.0.1
    networks = settings.TASKHUB.security.metrics_allowed_hosts
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def _has_token(request: HttpRequest) -> bool:
    token = settings.TASKHUB.security.metrics_token
    scheme, _, sent = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(sent.strip().encode(), token.encode())


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve the metrics to allowed addresses or token holders; anyone else gets a 403 saying how to get in."""
    if not (_has_token(request) or _from_allowed_host(request)):
        return HttpResponse(REFUSED, status=403, content_type="text/plain; charset=utf-8")
    return HttpResponse(render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
