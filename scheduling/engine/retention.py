"""Result retention: delete finished attempts older than ``storage.result_retention_days``.

Never deleted: waiting (PENDING, RETRY) and in-flight (QUEUED, RUNNING) attempts, and the latest
finished attempt of each task (its last result), however old. Deletion runs in batches of short
transactions, so a million old rows never become one giant transaction or lock.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from scheduling.engine import clock
from scheduling.models import FINISHED, TaskResult

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000


@dataclass
class PurgeReport:
    """What a purge removed (or, for a dry run, would remove)."""

    days: int
    cutoff: datetime | None
    dry_run: bool
    attempts: int = 0
    tasks: set[str] = field(default_factory=set)
    by_status: dict[str, int] = field(default_factory=dict)
    batches: int = 0

    def __str__(self) -> str:
        if self.cutoff is None:
            return "result retention is 0 days (keep forever): nothing removed"
        verb = "would remove" if self.dry_run else "removed"
        statuses = ", ".join(f"{status} {count}" for status, count in sorted(self.by_status.items())) or "none"
        return (
            f"{verb} {self.attempts} finished attempt(s) of {len(self.tasks)} task(s) finished before "
            f"{self.cutoff:%Y-%m-%d %H:%M %Z} (older than {self.days} days; {statuses}); "
            "the latest result of every task, and waiting and running attempts, were kept"
        )


def purgeable(cutoff: datetime) -> QuerySet[TaskResult]:
    """Finished attempts that ended before ``cutoff`` and have a newer finished attempt of the same task."""
    newer = TaskResult.objects.filter(task_id=OuterRef("task_id"), status__in=FINISHED).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk"))
    )
    ended_before = Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    return TaskResult.objects.filter(ended_before, status__in=FINISHED).filter(Exists(newer))


def purge_results(
    now: datetime | None = None,
    *,
    days: int | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[PurgeReport], None] | None = None,
) -> PurgeReport:
    """Delete (or with ``dry_run`` count) the attempts past retention; ``days`` defaults to the config.

    ``progress`` is called after each batch with the report so far.
    """
    days = settings.TASKHUB.storage.result_retention_days if days is None else days
    if days < 0:
        raise ValueError(f"days: expected an integer >= 0 (0 keeps results forever), got {days}")
    if days == 0:
        return PurgeReport(days=0, cutoff=None, dry_run=dry_run)
    now = now or clock.now()
    cutoff = now - timedelta(days=days)
    report = PurgeReport(days=days, cutoff=cutoff, dry_run=dry_run)
    last_pk = 0
    while True:
        # Keyset pagination on the primary key: each batch is a short query and a short transaction.
        rows = list(
            purgeable(cutoff).filter(pk__gt=last_pk).order_by("pk").values_list("pk", "task_id", "status")[:batch_size]
        )
        if not rows:
            break
        last_pk = rows[-1][0]
        report.batches += 1
        if dry_run:
            _count(report, rows)
            if progress:
                progress(report)
            continue
        with transaction.atomic():
            # Re-check inside the transaction: only rows that still qualify go.
            still = list(
                purgeable(cutoff).filter(pk__in=[pk for pk, _, _ in rows]).values_list("pk", "task_id", "status")
            )
            TaskResult.objects.filter(pk__in=[pk for pk, _, _ in still]).only("pk").delete()  # cascades to report items
        _count(report, still)
        remove_artifacts(still)
        if progress:
            progress(report)
    if not dry_run and report.attempts:
        logger.info("result retention: %s", report)
    return report


def _count(report: PurgeReport, rows: Sequence[tuple[int, object, str]]) -> None:
    for _, task_id, status in rows:
        report.attempts += 1
        report.tasks.add(str(task_id))
        report.by_status[status] = report.by_status.get(status, 0) + 1


def remove_artifacts(rows: Sequence[tuple[int, object, str]]) -> None:
    """Remove the artifact folders of deleted attempts (storage.path/artifacts/<task>/<attempt id>)."""
    root = (Path(settings.STORAGE_DIR) / "artifacts").resolve()
    for pk, task_id, _ in rows:
        folder = (root / str(task_id) / str(pk)).resolve()
        if folder.parent.parent == root and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
