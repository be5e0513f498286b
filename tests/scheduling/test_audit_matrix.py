"""Every way a person changes a task is audited with who did it: source (admin page, admin bulk action,
API, command line) x action (create, change, delete, run, cancel, retry, pause, resume).

Each case acts once through its source, then checks the one new audit entry (action, actor, field
changes) and that it is visible both in the admin and through GET /tasks/{id}/audit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import services
from scheduling.models import Task, TaskAudit
from tests.admin.conftest import task_form

pytestmark = pytest.mark.django_db

SOURCES = ["admin", "admin_bulk", "api", "cli"]
ACTIONS = ["created", "changed", "deleted", "run", "cancelled", "retried", "paused", "resumed"]
# The Django admin has no bulk create and no bulk edit (no list_editable): those pairs do not exist.
NOT_OFFERED = {("admin_bulk", "created"), ("admin_bulk", "changed")}
CASES = [(s, a) for s in SOURCES for a in ACTIONS if (s, a) not in NOT_OFFERED]

# action -> (admin task-page button, admin bulk action, API action path, CLI task_action verb)
VERBS = {
    "run": ("run", "run_now", "run", "run"),
    "cancelled": ("cancel", "cancel", "cancel", "cancel"),
    "retried": ("retry", "retry", "retry", "retry"),
    "paused": ("pause", "pause", "pause", "pause"),
    "resumed": ("resume", "resume", "resume", "resume"),
}


@pytest.fixture
def api(operator: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    return client


def prepared(action: str) -> Task | None:
    """A task in the state the action needs (set up by the system, so no person is in its trail yet)."""
    if action == "created":
        return None
    if action == "run":  # SCHEDULED: no waiting attempt, so "run now" is allowed
        return make(task_type="SCHEDULED", cron_expr="0 3 * * *")
    task = make()  # IMMEDIATE: one PENDING attempt
    if action == "retried":
        services.task_cancel(task=task)
    if action == "resumed":
        services.task_pause(task=task)
    return Task.objects.get(pk=task.pk)


def make(**fields: Any) -> Task:
    data = {"name": "audited", "tags": ["TEST_RECORD"], "parameters": {}, **fields}
    return services.task_create(data=data)


def act(source: str, action: str, task: Task | None, web: Client, api: APIClient) -> str:
    """Do ``action`` through ``source``; return the task's id."""
    changelist = reverse("admin:scheduling_task_changelist")
    if action == "created":
        if source == "admin":
            assert web.post(reverse("admin:scheduling_task_add"), task_form(name="audited")).status_code == 302
            return str(Task.objects.get(name="audited").pk)
        if source == "api":
            response = api.post("/tasks", {"name": "audited", "tags": ["TEST_RECORD"]}, format="json")
            assert response.status_code == 201, response.content
            return response.json()["id"]
        call_command("seed_examples", "--user", "operator", stdout=_null())
        return str(Task.objects.get(name="JIRA Extraction - Root Ticket").pk)
    assert task is not None
    pk = str(task.pk)
    if action == "changed":
        if source == "admin":
            response = web.post(
                reverse("admin:scheduling_task_change", args=[pk]), task_form(name="audited", priority="1")
            )
            assert response.status_code == 302, response.content.decode()[:2000]
        elif source == "api":
            assert api.patch(f"/tasks/{pk}", {"priority": "HIGH"}, format="json").status_code == 200
        else:
            call_command("task_action", "change", pk, "--set", "priority=HIGH", "--user", "operator", stdout=_null())
    elif action == "deleted":
        if source == "admin":
            response = web.post(reverse("admin:scheduling_task_delete", args=[pk]), {"post": "yes"})
            assert response.status_code == 302
        elif source == "admin_bulk":
            body = {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}
            assert web.post(changelist, body).status_code == 302
        elif source == "api":
            assert api.delete(f"/tasks/{pk}").status_code == 204
        else:
            call_command("task_action", "delete", pk, "--user", "operator", stdout=_null())
    else:
        page, bulk, endpoint, verb = VERBS[action]
        if source == "admin":
            assert web.post(reverse("admin:scheduling_task_do", args=[pk, page])).status_code == 302
        elif source == "admin_bulk":
            assert web.post(changelist, {"action": bulk, "_selected_action": [pk]}).status_code == 302
        elif source == "api":
            assert api.post(f"/tasks/{pk}/{endpoint}").status_code in (200, 202)
        else:
            call_command("task_action", verb, pk, "--user", "operator", stdout=_null())
    return pk


def _null() -> Any:
    import io

    return io.StringIO()


@pytest.mark.parametrize(("source", "action"), CASES, ids=[f"{s}-{a}" for s, a in CASES])
def test_action_is_audited_with_its_actor_and_shown(
    source: str, action: str, operator: Any, client_op: Client, api: APIClient
) -> None:
    task = prepared(action)
    before = set(TaskAudit.objects.values_list("pk", flat=True))
    pk = act(source, action, task, client_op, api)

    new = list(TaskAudit.objects.filter(task_id=pk).exclude(pk__in=before))
    assert [(e.action, e.actor) for e in new] == [(action, operator)]
    entry = new[0]
    if action == "changed":
        assert entry.changes == {"priority": ["MEDIUM", "HIGH"]}
    if action == "created":
        assert entry.changes["name"][0] is None and entry.changes["tags"][0] is None
    if source == "cli":
        assert "CLI task_action" in entry.detail or "CLI seed_examples" in entry.detail

    # Visible through the API (a deleted task's trail too, for a user who may see all tasks) ...
    response = api.get(f"/tasks/{pk}/audit")
    assert response.status_code == 200
    latest = response.json()["results"][0]
    assert (latest["action"], latest["actor"]) == (action, "operator")
    # ... and in the admin: on the task page, or in the audit list once the task is gone.
    if action == "deleted":
        listing = client_op.get(reverse("admin:scheduling_taskaudit_changelist"), {"q": pk}).content.decode()
        assert f"{pk} <small>(deleted)</small>" in listing and "audited" in listing
        detail = client_op.get(reverse("admin:scheduling_taskaudit_change", args=[entry.pk])).content.decode()
        assert "(deleted)" in detail and "operator" in detail
    else:
        page = client_op.get(reverse("admin:scheduling_task_change", args=[pk])).content.decode()
        history = page[page.index('id="th-audit"') :]
        assert f"<td>operator</td><td>{action}</td>" in history


def test_cli_without_user_names_the_os_login(monkeypatch: pytest.MonkeyPatch, db: None) -> None:
    task = make(task_type="SCHEDULED", cron_expr="0 3 * * *")
    monkeypatch.setenv("LOGNAME", "deploy")
    monkeypatch.setenv("USER", "deploy")
    call_command("task_action", "pause", str(task.pk), stdout=_null())
    entry = TaskAudit.objects.get(task_id=task.pk, action="paused")
    assert entry.actor is None and entry.detail == "CLI task_action pause, OS user deploy"
    # A TaskHub user named like the OS login is taken as the actor.
    deploy = get_user_model().objects.create_user("deploy")
    call_command("task_action", "resume", str(task.pk), stdout=_null())
    assert TaskAudit.objects.get(task_id=task.pk, action="resumed").actor == deploy


def test_cli_refuses_an_unknown_user_and_records_nothing(db: None) -> None:
    task = make(task_type="SCHEDULED", cron_expr="0 3 * * *")
    with pytest.raises(CommandError, match="--user: no TaskHub user named 'nobody'"):
        call_command("task_action", "pause", str(task.pk), "--user", "nobody")
    with pytest.raises(CommandError, match="--user: no TaskHub user named 'nobody'"):
        call_command("run_task", str(task.pk), "--user", "nobody")
    assert list(TaskAudit.objects.filter(task_id=task.pk).values_list("action", flat=True)) == ["created"]


def test_run_task_command_audits_the_run(operator: Any, db: None) -> None:
    task = make(task_type="SCHEDULED", cron_expr="0 3 * * *")
    call_command("run_task", str(task.pk), "--user", "operator", stdout=_null(), stderr=_null())
    entry = TaskAudit.objects.get(task_id=task.pk, action="run")
    assert entry.actor == operator and entry.detail.startswith("CLI run_task, OS user ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["change", "audited"], "give at least one --set"),
        (["change", "audited", "--set", "colour=red"], "expected FIELD=VALUE with FIELD one of name"),
        (["change", "audited", "--set", "priority=URGENT"], "priority"),
        (["pause", "audited", "--set", "priority=HIGH"], "--set is for 'change'"),
        (["retry", "audited"], "only a FAILED, TIMEOUT or CANCELLED task can be retried"),
    ],
)
def test_cli_refusals_are_one_line_and_record_nothing(args: list[str], message: str, db: None) -> None:
    task = make()
    with pytest.raises(CommandError, match=message):
        call_command("task_action", *args)
    assert list(TaskAudit.objects.filter(task_id=task.pk).values_list("action", flat=True)) == ["created"]


def test_deleted_trail_is_not_shown_to_users_who_may_only_see_their_own(
    make_plain_user: Callable[..., Any], operator: Any
) -> None:
    task = make()
    services.task_delete(task=task, actor=operator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_plain_user()).key}")
    assert client.get(f"/tasks/{task.pk}/audit").status_code == 404
    assert client.get("/tasks/not-a-uuid/audit").status_code == 404


@pytest.fixture
def make_plain_user(db: None) -> Callable[..., Any]:
    from django.contrib.auth.models import Permission

    def build() -> Any:
        user = get_user_model().objects.create_user("plain")
        user.user_permissions.set(Permission.objects.filter(codename__in=["view_task", "change_task"]))
        return user

    return build
