"""The admin: pages load with data present, and the task form runs the same validation as every other entry point."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from scheduling import services
from scheduling.models import AttemptStatus, RetryPolicy, Task, TaskResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data() -> dict[str, Any]:
    """A few tasks of each kind, a shared retry policy and finished results."""
    owner = get_user_model().objects.create_user("alice", password="x")
    policy = RetryPolicy.objects.create(name="three tries", max_retries=3, retry_delay=5)
    upstream = services.task_create(
        data={"name": "extract issues", "tags": ["TEST_RECORD", "jira"], "parameters": {}, "priority": "HIGH"},
        owner=owner,
    )
    nightly = services.task_create(
        data={
            "name": "nightly report",
            "task_type": "SCHEDULED",
            "cron_expr": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "tags": ["TEST_RECORD"],
            "parameters": {},
            "dependencies": [upstream.pk],
            "retry_policy": policy.pk,
            "timeout_seconds": 600,
        },
        owner=owner,
    )
    now = timezone.now()
    result = TaskResult.objects.create(
        task=nightly,
        attempt=1,
        status=AttemptStatus.FAILED,
        fire_time=now - timedelta(hours=1),
        started_at=now - timedelta(minutes=50),
        finished_at=now - timedelta(minutes=49),
        duration=60.0,
        worker="w1@host",
        error_message="boom <script>alert(1)</script>",
        traceback="Traceback (most recent call last): ...",
        result={"rows": 3},
    )
    return {"owner": owner, "policy": policy, "upstream": upstream, "nightly": nightly, "result": result}


def url(model: str, view: str, *args: Any) -> str:
    return reverse(f"admin:scheduling_{model}_{view}", args=args)


# --- pages load ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["task", "retrypolicy", "taskresult", "tag"])
def test_changelist_loads_with_data(admin_client_logged_in: Client, data: dict[str, Any], model: str) -> None:
    response = admin_client_logged_in.get(url(model, "changelist"))
    assert response.status_code == 200


def test_task_changelist_shows_the_columns(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    page = admin_client_logged_in.get(url("task", "changelist")).content.decode()
    for text in ("nightly report", "extract issues", "SCHEDULED", "HIGH", "alice", "column-updated_at"):
        assert text in page


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ({"status__exact": "PENDING"}, "extract issues", None),
        ({"task_type__exact": "SCHEDULED"}, "nightly report", "extract issues"),
        ({"priority__exact": "1"}, "extract issues", "nightly report"),
        ({"tag": "jira"}, "extract issues", "nightly report"),
        ({"q": "nightly"}, "nightly report", "extract issues"),
    ],
)
def test_task_changelist_filters_and_search(
    admin_client_logged_in: Client, data: dict[str, Any], query: dict[str, str], shown: str, hidden: str | None
) -> None:
    response = admin_client_logged_in.get(url("task", "changelist"), query)
    assert response.status_code == 200
    names = [task.name for task in response.context["cl"].result_list]
    assert shown in names
    if hidden:
        assert hidden not in names


def test_task_changelist_filters_by_owner(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    response = admin_client_logged_in.get(url("task", "changelist"), {"owner__id__exact": data["owner"].pk})
    assert {t.name for t in response.context["cl"].result_list} == {"nightly report", "extract issues"}


def test_task_change_page_shows_schedule_dependencies_and_results(
    admin_client_logged_in: Client, data: dict[str, Any]
) -> None:
    task = data["nightly"]
    response = admin_client_logged_in.get(url("task", "change", task.pk))
    assert response.status_code == 200
    page = response.content.decode()
    assert "At 02:30" in page  # the cron described
    assert "extract issues" in page  # the dependency
    assert "w1@host" in page  # the inline result
    assert "<script>alert(1)</script>" not in page  # escaped
    inline = response.context["inline_admin_formsets"][0]
    assert inline.formset.queryset.count() == 1
    assert not (inline.has_add_permission or inline.has_change_permission or inline.formset.can_delete)


def test_task_change_page_lists_the_actual_next_fire(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    task = Task.objects.get(pk=data["nightly"].pk)
    page = admin_client_logged_in.get(url("task", "change", task.pk)).content.decode()
    berlin = task.next_fire_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"next: {berlin:%Y-%m-%d %H:%M}" in page  # the stored next fire comes first, in the task's zone


@pytest.mark.parametrize("model", ["task", "retrypolicy"])
def test_add_page_loads(admin_client_logged_in: Client, data: dict[str, Any], model: str) -> None:
    assert admin_client_logged_in.get(url(model, "add")).status_code == 200


def test_retry_policy_change_page_loads(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    assert admin_client_logged_in.get(url("retrypolicy", "change", data["policy"].pk)).status_code == 200


def test_results_are_read_only(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    result = data["result"]
    response = admin_client_logged_in.get(url("taskresult", "change", result.pk))
    assert response.status_code == 200
    assert "boom" in response.content.decode()
    assert admin_client_logged_in.get(url("taskresult", "add")).status_code == 403
    admin_client_logged_in.post(url("taskresult", "change", result.pk), {"status": "DONE"})
    result.refresh_from_db()
    assert result.status == AttemptStatus.FAILED


def test_results_changelist_filters_by_status(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    response = admin_client_logged_in.get(url("taskresult", "changelist"), {"status__exact": "FAILED"})
    assert list(response.context["cl"].result_list) == [data["result"]]


def test_dependency_autocomplete_finds_tasks(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    response = admin_client_logged_in.get(
        reverse("admin:autocomplete"),
        {"term": "extract", "app_label": "scheduling", "model_name": "task", "field_name": "dependencies"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["extract issues"]


def test_non_staff_user_is_sent_to_login(data: dict[str, Any]) -> None:
    client = Client()
    client.force_login(data["owner"])
    response = client.get(url("task", "changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- the add and change forms ---------------------------------------------------------------------------------


def form_data(**fields: Any) -> dict[str, Any]:
    """POST data for the task add form, with the (empty) results inline's management form."""
    data: dict[str, Any] = {
        "name": "from the admin",
        "task_type": "IMMEDIATE",
        "cron_expr": "",
        "timezone": "UTC",
        "overlap_policy": "skip",
        "priority": "2",
        "tag_names": "TEST_RECORD, team-a",
        "parameters": '{"label": "admin"}',
        "metadata": "{}",
        "timeout_seconds": "",
        "retry_policy": "",
        "enabled": "on",
        "results-TOTAL_FORMS": "0",
        "results-INITIAL_FORMS": "0",
        "results-MIN_NUM_FORMS": "0",
        "results-MAX_NUM_FORMS": "0",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def change_data(client: Client, task: Task, **fields: Any) -> dict[str, Any]:
    """POST data for a task's change form: its current values, plus the results inline as the page renders it."""
    response = client.get(url("task", "change", task.pk))
    form = response.context["adminform"].form
    data = form_data()
    for name in form.fields:
        value = form.initial.get(name, form.fields[name].initial)
        if name in ("dependencies", "any_run_dependencies"):
            data[name] = [str(getattr(v, "pk", v)) for v in (value or [])]
        elif name in ("parameters", "metadata"):
            data[name] = form[name].value()
        elif name == "enabled":
            data[name] = "on" if value else None
        else:
            data[name] = "" if value is None else str(value)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = str(value)
        for index, inline_form in enumerate(formset.forms):
            data[f"{formset.prefix}-{index}-id"] = str(inline_form.instance.pk)
            data[f"{formset.prefix}-{index}-task"] = str(task.pk)
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def test_creating_a_task_through_the_add_form(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    response = admin_client_logged_in.post(
        url("task", "add"),
        form_data(
            priority="1",
            dependencies=[str(data["upstream"].pk)],
            retry_policy=str(data["policy"].pk),
            timeout_seconds="120",
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    task = Task.objects.get(name="from the admin")
    assert task.handler == "TEST_RECORD"
    assert sorted(task.tags.values_list("name", flat=True)) == ["TEST_RECORD", "team-a"]
    assert task.owner.username == "root"
    assert task.priority_name == "HIGH"
    assert list(task.dependencies.all()) == [data["upstream"]]
    assert task.retry_policy == data["policy"]
    assert task.timeout_seconds == 120
    assert task.parameters == {"label": "admin"}
    assert TaskResult.objects.filter(task=task, attempt=1).exists()  # an immediate task gets its first attempt


def test_creating_a_scheduled_task_through_the_add_form(admin_client_logged_in: Client) -> None:
    response = admin_client_logged_in.post(
        url("task", "add"),
        form_data(task_type="SCHEDULED", cron_expr="0 6 * * 1-5", timezone="America/New_York"),
    )
    assert response.status_code == 302
    task = Task.objects.get(name="from the admin")
    assert task.next_fire_at is not None
    assert task.crontab is not None


def form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form should be shown again with errors"
    return {field: list(messages) for field, messages in response.context["adminform"].form.errors.items()}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"task_type": "SCHEDULED", "cron_expr": "0 0 * *"},
            "cron_expr",
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4: '0 0 * *'",
        ),
        (
            {"task_type": "SCHEDULED", "cron_expr": "0 24 * * *"},
            "cron_expr",
            "hour field '24' is not valid (allowed: 0-23, *, lists, ranges, steps)",
        ),
        (
            {"task_type": "SCHEDULED", "cron_expr": ""},
            "cron_expr",
            "is required for a SCHEDULED task (5 fields, e.g. '0 0 * * *')",
        ),
        (
            {"cron_expr": "0 0 * * *"},
            "cron_expr",
            "is only allowed on SCHEDULED tasks; set task_type to SCHEDULED or leave it empty",
        ),
        ({"tag_names": "nightly"}, "tag_names", "must include exactly one handler tag; known handler tags: "),
        (
            {"timezone": "Mars/Olympus", "task_type": "SCHEDULED", "cron_expr": "0 0 * * *"},
            "timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
    ],
)
def test_add_form_shows_validation_errors_inline(
    admin_client_logged_in: Client, fields: dict[str, str], field: str, message: str
) -> None:
    response = admin_client_logged_in.post(url("task", "add"), form_data(**fields))
    errors = form_errors(response)
    assert any(m.startswith(message) for m in errors.get(field, [])), errors
    assert message.split("'")[0] in response.content.decode()
    assert not Task.objects.filter(name="from the admin").exists()


def test_change_form_shows_a_dependency_cycle_inline(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    upstream, nightly = data["upstream"], data["nightly"]  # nightly depends on upstream
    response = admin_client_logged_in.post(
        url("task", "change", upstream.pk),
        change_data(admin_client_logged_in, upstream, dependencies=[str(nightly.pk)]),
    )
    errors = form_errors(response)
    assert errors["dependencies"] == ["would create a cycle: extract issues -> nightly report -> extract issues"]
    assert "would create a cycle: extract issues -&gt; nightly report -&gt; extract issues" in response.content.decode()
    assert list(upstream.dependencies.all()) == []


def test_change_form_refuses_self_dependency(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    upstream = data["upstream"]
    response = admin_client_logged_in.post(
        url("task", "change", upstream.pk),
        change_data(admin_client_logged_in, upstream, dependencies=[str(upstream.pk)]),
    )
    assert form_errors(response)["dependencies"] == ["a task cannot depend on itself (extract issues)"]


def test_change_form_saves_an_edit(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    nightly = data["nightly"]
    response = admin_client_logged_in.post(
        url("task", "change", nightly.pk),
        change_data(admin_client_logged_in, nightly, cron_expr="15 4 * * *", priority="3"),
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    nightly.refresh_from_db()
    assert (nightly.cron_expr, nightly.priority_name) == ("15 4 * * *", "LOW")
    assert list(nightly.dependencies.all()) == [data["upstream"]]
    assert nightly.results.count() == 1  # the read-only inline result is untouched


def test_retry_policy_add_form_refuses_a_backoff_below_one(admin_client_logged_in: Client) -> None:
    response = admin_client_logged_in.post(
        url("retrypolicy", "add"),
        {"name": "bad", "max_retries": "2", "retry_delay": "5", "backoff_factor": "0.5", "max_delay": "60"},
    )
    errors = form_errors(response)
    assert errors["backoff_factor"] == ["Ensure this value is greater than or equal to 1."]
    assert not RetryPolicy.objects.filter(name="bad").exists()


def test_pause_action_reports_through_messages(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    nightly = data["nightly"]
    response = admin_client_logged_in.post(
        url("task", "changelist"), {"action": "pause", "_selected_action": [str(nightly.pk)]}, follow=True
    )
    assert response.status_code == 200
    assert "Paused: nightly report" in [str(m) for m in response.context["messages"]]
    nightly.refresh_from_db()
    assert nightly.enabled is False


@pytest.mark.parametrize("model", ["task", "taskresult"])
def test_changelist_queries_do_not_grow_with_rows(
    admin_client_logged_in: Client, data: dict[str, Any], model: str
) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client_logged_in.get(url(model, "changelist")).status_code == 200
        return len(queries)

    few = count_queries()
    for index in range(30):
        task = services.task_create(
            data={"name": f"bulk {index}", "tags": ["TEST_RECORD", f"t{index}"], "parameters": {}}, owner=data["owner"]
        )
        TaskResult.objects.create(task=task, attempt=2, status=AttemptStatus.DONE, finished_at=timezone.now())
    assert count_queries() <= few


# --- deleting ----------------------------------------------------------------------------------------------


def test_delete_page_refuses_a_task_others_depend_on(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    upstream = data["upstream"]
    page = admin_client_logged_in.get(url("task", "delete", upstream.pk))
    assert page.status_code == 200
    assert "Task: nightly report (depends on extract issues)" in page.content.decode()
    response = admin_client_logged_in.post(url("task", "delete", upstream.pk), {"post": "yes"}, follow=True)
    assert "deleted successfully" not in " ".join(str(m) for m in response.context["messages"])
    assert Task.objects.filter(pk=upstream.pk).exists()


def test_deleting_a_task_with_no_dependents(admin_client_logged_in: Client, data: dict[str, Any]) -> None:
    nightly = data["nightly"]
    response = admin_client_logged_in.post(url("task", "delete", nightly.pk), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert not Task.objects.filter(pk=nightly.pk).exists()
    assert not TaskResult.objects.filter(pk=data["result"].pk).exists()


def test_bulk_delete_of_a_task_with_its_dependents_deletes_both(
    admin_client_logged_in: Client, data: dict[str, Any]
) -> None:
    selected = [str(data["upstream"].pk), str(data["nightly"].pk)]  # the depended-on task comes first
    response = admin_client_logged_in.post(
        url("task", "changelist"),
        {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
        follow=True,
    )
    assert "Successfully deleted 2 tasks." in [str(m) for m in response.context["messages"]]
    assert not Task.objects.exists()


def test_bulk_delete_is_refused_while_an_unselected_task_depends_on_one(
    admin_client_logged_in: Client, data: dict[str, Any]
) -> None:
    response = admin_client_logged_in.post(
        url("task", "changelist"),
        {"action": "delete_selected", "_selected_action": [str(data["upstream"].pk)], "post": "yes"},
    )
    assert "Task: nightly report (depends on extract issues)" in response.content.decode()
    assert Task.objects.count() == 2
