"""The task form's "Secret parameters" box: write-only, stored encrypted, kept when left empty, removed by {}."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from scheduling.models import Task, TaskAudit
from taskhub import encryption

pytestmark = pytest.mark.django_db

TOKEN = "Bearer admin-form-secret-6b1f93"


def form(**fields: Any) -> dict[str, Any]:
    data = {
        "name": "crm sync",
        "handler_tag": "HTTP_REQUEST",
        "task_type": "IMMEDIATE",
        "timezone": "UTC",
        "overlap_policy": "skip",
        "priority": "2",
        "parameters": '{"url": "http://127.0.0.1:9/sync"}',
        "metadata": "{}",
        "enabled": "on",
        "results-TOTAL_FORMS": "0",
        "results-INITIAL_FORMS": "0",
    }
    data.update(fields)
    return data


def test_secret_typed_in_the_form_is_stored_encrypted_and_never_shown(client_op: Client) -> None:
    response = client_op.post(
        reverse("admin:scheduling_task_add"), form(secrets=json.dumps({"headers": {"Authorization": TOKEN}}))
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    task = Task.objects.get(name="crm sync")
    assert TOKEN not in task.secret_parameters
    assert encryption.decrypt_json(task.secret_parameters) == {"headers": {"Authorization": TOKEN}}

    page = client_op.get(reverse("admin:scheduling_task_change", args=[task.pk])).content.decode()
    assert TOKEN not in page and "Currently: set (hidden)" in page
    for name in ("changelist", "dashboard"):
        assert TOKEN not in client_op.get(reverse(f"admin:scheduling_task_{name}")).content.decode()
    audit_page = client_op.get(reverse("admin:scheduling_taskaudit_changelist")).content.decode()
    assert TOKEN not in audit_page
    assert TOKEN not in str(TaskAudit.objects.filter(task_id=task.pk).values_list("changes", flat=True)[0])

    # Saving with the box empty keeps the secret; {} removes it.
    change = reverse("admin:scheduling_task_change", args=[task.pk])
    assert client_op.post(change, form(name="crm sync 2", secrets="")).status_code == 302
    task.refresh_from_db()
    assert task.name == "crm sync 2" and encryption.decrypt_json(task.secret_parameters)["headers"]
    assert client_op.post(change, form(secrets="{}")).status_code == 302
    task.refresh_from_db()
    assert task.secret_parameters == ""


def test_a_refused_form_does_not_show_the_typed_secret_again(client_op: Client) -> None:
    response = client_op.post(
        reverse("admin:scheduling_task_add"),
        form(secrets=json.dumps({"headers": {"Authorization": TOKEN}, "timeout": TOKEN})),
    )
    assert response.status_code == 200  # the form again, with the schema error
    page = response.content.decode()
    assert "timeout" in page and TOKEN not in page
    assert not Task.objects.filter(name="crm sync").exists()


def test_moving_the_url_to_another_host_in_the_form_drops_the_secret(client_op: Client) -> None:
    client_op.post(
        reverse("admin:scheduling_task_add"), form(secrets=json.dumps({"headers": {"Authorization": TOKEN}}))
    )
    task = Task.objects.get(name="crm sync")
    change = reverse("admin:scheduling_task_change", args=[task.pk])
    moved = form(parameters='{"url": "http://localhost:9/sync"}', secrets="")
    assert client_op.post(change, moved).status_code == 302
    task.refresh_from_db()
    assert task.secret_parameters == ""  # not sent to the new host unless typed again


def test_a_url_with_a_backslash_is_refused_in_the_form(client_op: Client) -> None:
    bad = form(parameters=json.dumps({"url": "http://127.0.0.1:9\\@127.0.0.2:9/"}))
    page = client_op.post(reverse("admin:scheduling_task_add"), bad).content.decode()
    assert "backslash" in page and not Task.objects.exists()
