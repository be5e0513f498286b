"""Admin and CLI, run-scoped dependencies: the mode on the form, the waiting reason, retry with downstream."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from scheduling.engine import lifecycle
from scheduling.models import AttemptStatus, Task, TaskAudit, TaskResult
from tests.admin.conftest import create, task_form, task_url

pytestmark = pytest.mark.django_db


def fail_with_dependents(task: Task) -> None:
    TaskResult.objects.filter(task=task).update(status=AttemptStatus.FAILED, finished_at=timezone.now())
    Task.objects.filter(pk=task.pk).update(status="FAILED")
    lifecycle.fail_dependents(Task.objects.get(pk=task.pk), reason=f"dependency {task.name!r} failed")


def test_the_form_sets_a_dependency_mode_and_the_timeout(client_op: Client) -> None:
    export = create("export")
    other = create("other")
    response = client_op.post(
        task_url("add"),
        task_form(
            name="report",
            dependencies=[str(export.pk), str(other.pk)],
            any_run_dependencies=[str(export.pk)],
            dependency_timeout="900",
        ),
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    report = Task.objects.get(name="report")
    assert set(report.dependencies.all()) == {export, other}
    assert list(report.any_run_dependencies.all()) == [export]
    assert report.dependency_timeout == 900
    page = client_op.get(task_url("change", report.pk)).content.decode()
    assert 'name="any_run_dependencies"' in page and "admin-autocomplete" in page


def test_the_task_page_says_which_upstream_it_waits_for_and_since_when(client_op: Client) -> None:
    export = create("export")
    TaskResult.objects.filter(task=export).update(status=AttemptStatus.DONE, finished_at=timezone.now())
    Task.objects.filter(pk=export.pk).update(status="DONE")
    report = create("report", dependencies=[export.pk], task_type="SCHEDULED", cron_expr="0 3 * * *")
    client_op.post(task_url("do", report.pk, "run"))
    started = timezone.now()
    TaskResult.objects.filter(task=report).update(status=AttemptStatus.DONE, started_at=started, finished_at=started)
    Task.objects.filter(pk=report.pk).update(status="DONE")
    client_op.post(task_url("do", report.pk, "run"))
    page = client_op.get(task_url("change", report.pk)).content.decode()
    assert f"export (no run finished since {started:%Y-%m-%d %H:%M:%S} UTC)" in page


def test_retry_with_failed_downstream_button(client_op: Client, chain) -> None:
    fail_with_dependents(chain["extract"])
    page = client_op.get(task_url("change", chain["extract"].pk)).content.decode()
    assert 'data-action="retry_downstream"' in page
    response = client_op.post(task_url("do", chain["extract"].pk, "retry_downstream"), follow=True)
    (message,) = [str(m) for m in response.context["messages"]]
    assert message == "Retrying 'extract' from attempt 1; 3 dependent(s) run again: publish, transform, load."
    assert set(Task.objects.values_list("status", flat=True)) == {"PENDING"}
    assert TaskAudit.objects.filter(action="retried").count() == 4


def test_cli_retry_with_downstream_and_change_of_mode(chain, capsys) -> None:
    fail_with_dependents(chain["extract"])
    call_command("task_action", "retry", "extract", "--downstream", "failed")
    out = capsys.readouterr().out
    assert "downstream=failed: 3 dependent(s) run again: publish, transform, load" in out
    assert "pipeline run " in out
    extract = chain["extract"]
    call_command("task_action", "change", "publish", "--set", f'dependencies=[{{"id": "{extract.pk}", "mode": "any"}}]')
    assert list(Task.objects.get(name="publish").any_run_dependencies.all()) == [extract]
    entry = TaskAudit.objects.filter(task_name="publish", action="changed").get()
    assert entry.changes["dependencies"] == [["extract"], ["extract (any run)"]]
