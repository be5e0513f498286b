"""Admin: "Backfill..." (a form over services.task_backfill), attempts naming their pipeline run, and the whole
pipeline coloured by one pipeline run (?pipeline_run=)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from scheduling import services
from scheduling.models import PipelineRun, Task, TaskAudit, TaskResult
from tests.admin.conftest import create, task_url

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


def test_backfill_form_dry_run_lists_then_backfills_with_dependents(client_op: Client, client_viewer: Client) -> None:
    with time_machine.travel(NOW, tick=False):
        export = create("export", task_type="SCHEDULED", cron_expr="30 2 * * *", timezone="Europe/Paris")
        report = create("report", dependencies=[export.pk])
        page = client_op.get(task_url("change", export.pk)).content.decode()
        assert "Backfill…" in page
        assert "Backfill…" not in client_op.get(task_url("change", report.pk)).content.decode()  # IMMEDIATE
        url = reverse("admin:scheduling_task_backfill", args=[export.pk])
        assert client_viewer.get(url).status_code == 403
        form = client_op.get(url)
        assert form.status_code == 200 and "scheduler.max_backfill" in form.content.decode()
        dry = client_op.post(
            url, {"start": "2026-05-01T00:00", "end": "2026-05-03T23:59", "dry_run": "on", "downstream": "on"}
        )
        text = dry.content.decode()
        assert dry.status_code == 200 and "dry run, nothing written: 3 fire(s)" in text
        assert "Fri 2026-05-01 02:30 CEST" in text
        assert not TaskResult.objects.filter(task=export).exists()
        refused = client_op.post(url, {"start": "2026-05-03T00:00", "end": "2026-05-01T00:00"})
        assert "before it starts" in refused.content.decode()
        done = client_op.post(url, {"start": "2026-05-01T00:00", "end": "2026-05-03T23:59", "downstream": "on"})
        assert done.status_code == 302 and done["Location"] == task_url("change", export.pk)
        assert PipelineRun.objects.filter(root=export, origin="backfill").count() == 3
        assert TaskResult.objects.filter(task=report, pipeline_run__isnull=False).count() == 3
        assert TaskAudit.objects.filter(task_id=export.pk, action="backfilled").count() == 1
        run = PipelineRun.objects.order_by("fire_time").first()
        timeline = client_op.get(task_url("change", report.pk)).content.decode()
        assert f"pipeline_run={run.pk}" in timeline
        results = client_op.get(reverse("admin:scheduling_taskresult_changelist")).content.decode()
        assert f"pipeline_run={run.pk}" in results


def test_the_whole_pipeline_is_coloured_by_a_pipeline_run(client_op: Client, chain: dict[str, Task]) -> None:
    for task in chain.values():
        TaskResult.objects.filter(task=task).update(status="DONE")
        Task.objects.filter(pk=task.pk).update(status="DONE")
    result = services.task_run_now(task=Task.objects.get(pk=chain["transform"].pk), downstream="all")
    run_id = services.downstream_of(result).pipeline_run
    url = f"{reverse('admin:scheduling_task_pipeline')}?task={chain['extract'].pk}&pipeline_run={run_id}"
    page = client_op.get(url).content.decode()
    assert f"pipeline run {run_id} (RUNNING" in page
    assert page.count('opacity="0.35"') == 2  # extract and publish are outside the run
    assert page.count('data-status="PENDING"') >= 2  # transform and load, by their attempts in the run
    assert client_op.get(url.replace(f"pipeline_run={run_id}", "pipeline_run=99999")).status_code == 404
    assert client_op.get(url.replace(f"pipeline_run={run_id}", "pipeline_run=x")).status_code == 404
