"""The task form: live cron preview (description, next fires in the task's zone, DST notes) and the handler picker."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client

from scheduling.models import Task
from tests.admin.conftest import create, task_form, task_url

# The add form for a task named 'picked' with an extra tag; tests change fields by keyword.
add_form = partial(task_form, name="picked", tag_names="team-a")

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def preview(client: Client, expr: str, tz: str = "UTC") -> dict[str, Any]:
    response = client.get(task_url("cron_preview"), {"expr": expr, "tz": tz})
    assert response.status_code == 200
    return response.json()


@time_machine.travel(NOW, tick=False)
def test_preview_describes_and_lists_the_next_five_fires_in_the_zone(client_op: Client) -> None:
    data = preview(client_op, "0 6 * * 1-5", "America/New_York")
    assert data["ok"] and data["description"] == "At 06:00, Monday through Friday"
    assert [f["local"] for f in data["fires"]] == [
        "Mon 2026-11-30 06:00 EST",
        "Tue 2026-12-01 06:00 EST",
        "Wed 2026-12-02 06:00 EST",
        "Thu 2026-12-03 06:00 EST",
        "Fri 2026-12-04 06:00 EST",
    ]
    assert data["fires"][0]["utc"] == "2026-11-30T11:00:00+00:00"


@time_machine.travel(NOW, tick=False)
def test_preview_flags_daylight_saving_gaps_and_overlaps(client_op: Client) -> None:
    spring = preview(client_op, "30 2 28 3 *", "Europe/Berlin")["fires"][0]  # 2027-03-28: 02:00 -> 03:00
    assert spring["local"] == "Sun 2027-03-28 03:00 CEST"
    assert spring["note"].startswith("daylight-saving jump")
    autumn = preview(client_op, "30 2 31 10 *", "Europe/Berlin")["fires"][0]  # 2027-10-31: 02:00-03:00 twice
    assert autumn["local"] == "Sun 2027-10-31 02:30 CEST"
    assert autumn["note"].startswith("daylight-saving overlap")
    assert all(not f["note"] for f in preview(client_op, "0 12 * * *", "Europe/Berlin")["fires"])


@pytest.mark.parametrize(
    ("expr", "tz", "error"),
    [
        ("0 0 * *", "UTC", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 24 * * *", "UTC", "hour field '24' is not valid"),
        ("0 0 30 2 *", "UTC", "'0 0 30 2 *' never fires"),
        ("0 0 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_preview_explains_a_bad_expression_or_zone(client_op: Client, expr: str, tz: str, error: str) -> None:
    data = preview(client_op, expr, tz)
    assert not data["ok"] and data["error"].startswith(error) and data["fires"] == []


def test_preview_of_nothing_is_empty_and_needs_add_or_change_permission(
    client_op: Client, client_viewer: Client
) -> None:
    assert preview(client_op, "   ") == {"ok": False, "error": "", "description": "", "fires": []}
    assert client_viewer.get(task_url("cron_preview"), {"expr": "* * * * *"}).status_code == 403


def test_form_offers_the_registered_handlers_and_the_preview_wiring(client_op: Client) -> None:
    page = client_op.get(task_url("add")).content.decode()
    assert '<select name="handler_tag"' in page
    for tag in ("HTTP_REQUEST", "TEST_RECORD", "NOOP"):
        assert f'<option value="{tag}"' in page
    assert 'id="th-handlers"' in page and '"required": ["url"]' in page  # schemas for the help box
    assert "/admin/scheduling/task/cron-preview/" in page
    assert "scheduling/task-page.js" in page and "https://" not in page.split("</head>")[0]


def test_chosen_handler_becomes_the_handler_tag(client_op: Client) -> None:
    response = client_op.post(task_url("add"), add_form())
    assert response.status_code == 302
    task = Task.objects.get(name="picked")
    assert task.handler == "TEST_RECORD"
    assert sorted(task.tags.values_list("name", flat=True)) == ["TEST_RECORD", "team-a"]
    form = client_op.get(task_url("change", task.pk)).context["adminform"].form
    assert (form["handler_tag"].value(), form["tag_names"].value()) == ("TEST_RECORD", "team-a")


def test_parameters_are_checked_against_the_chosen_handlers_schema_inline(client_op: Client) -> None:
    response = client_op.post(
        task_url("add"),
        add_form(handler_tag="HTTP_REQUEST", parameters='{"method": 5}'),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "'url' is a required property" in " ".join(errors["parameters"])
    assert "&#x27;url&#x27; is a required property" in response.content.decode()
    assert not Task.objects.filter(name="picked").exists()


def test_a_second_handler_tag_among_the_tags_is_refused(client_op: Client) -> None:
    response = client_op.post(task_url("add"), add_form(tag_names="NOOP"))
    assert response.context["adminform"].form.errors["tag_names"] == [
        "must include exactly one handler tag, got 2: NOOP, TEST_RECORD"
    ]


def test_no_handler_at_all_is_refused_with_the_known_tags(client_op: Client) -> None:
    response = client_op.post(task_url("add"), add_form(handler_tag="", tag_names=""))
    assert "known handler tags" in response.context["adminform"].form.errors["tag_names"][0]


def test_save_checks_the_cron_again(client_op: Client) -> None:
    response = client_op.post(task_url("add"), add_form(task_type="SCHEDULED", cron_expr="61 * * * *"))
    assert response.context["adminform"].form.errors["cron_expr"] == [
        "minute field '61' is not valid (allowed: 0-59, *, lists, ranges, steps)"
    ]


def test_view_only_page_has_no_editable_handler_picker(client_viewer: Client) -> None:
    task = create("seen")
    page = client_viewer.get(task_url("change", task.pk)).content.decode()
    assert '<select name="handler_tag"' not in page
    assert get_user_model().objects.get(username="viewer").has_perm("scheduling.view_task")


def test_save_and_continue_opens_the_created_task(client_op: Client) -> None:
    response = client_op.post(task_url("add"), add_form(_continue="1"), follow=True)
    task = Task.objects.get(name="picked")
    assert response.redirect_chain[0][0] == task_url("change", task.pk)
    assert response.status_code == 200 and response.context["original"] == task


def test_a_retry_policy_can_be_typed_in_the_form(client_op: Client) -> None:
    response = client_op.post(
        task_url("add"),
        task_form(
            name="picked", tag_names="team-a", new_policy_retries="2", new_policy_delay="5", new_policy_backoff="3"
        ),
    )
    assert response.status_code == 302
    policy = Task.objects.get(name="picked").retry_policy
    assert (policy.name, policy.max_retries, policy.retry_delay, policy.backoff_factor, policy.max_delay) == (
        "policy for picked",
        2,
        5.0,
        3.0,
        3600.0,
    )


def test_a_bad_typed_retry_policy_is_an_inline_error(client_op: Client) -> None:
    response = client_op.post(task_url("add"), add_form(new_policy_retries="2", new_policy_backoff="0.5"))
    assert response.context["adminform"].form.errors["new_policy_backoff"] == [
        "Ensure this value is greater than or equal to 1."
    ]
    assert not Task.objects.filter(name="picked").exists()
