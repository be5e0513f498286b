"""Unicode and control characters in task names, tags and parameters, through the API, the admin form and
search/filter query strings: stored and shown back faithfully, or a clear 400 naming the field, never a
500. Run on PostgreSQL too: it refuses NUL in text and jsonb, and lone surrogates anywhere.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from scheduling.models import Task
from tests.admin.conftest import task_form
from tests.api.conftest import snapshot, task_body

pytestmark = pytest.mark.django_db

# Stored and shown exactly as given (no normalisation: "é" as e + combining accent stays two code points).
FAITHFUL = {
    "arabic (RTL)": "تقرير يومي",
    "hebrew + latin (bidi)": "דוח daily דוח",
    "right-to-left override": "invoice \u202egnp.exe",
    "emoji with ZWJ and skin tone": "🚀 deploy 👩🏽‍💻",
    "flag and keycap": "🇫🇷 1️⃣",
    "combining accents": "cafe\u0301 \u0041\u030a",
    "zero-width joiner/space": "a\u200bb\u200dc",
    "astral math letters": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "cjk": "每日报告",
    "html": "<script>alert('x')</script> & \"quotes\"",
    "line separator": "one\u2028two",
}
# Refused with a 400 naming the field: NUL (PostgreSQL cannot store it), other C0/C1 controls, lone surrogates.
REFUSED_IN_NAMES = {
    "NUL": "a\x00b",
    "escape sequence": "\x1b[31mred",
    "newline": "two\nlines",
    "DEL": "a\x7fb",
    "C1 control": "a\x85b",
    "lone high surrogate": "a\ud800b",
    "lone low surrogate": "a\udfffb",
}
REFUSED_IN_JSON = {"NUL": "a\x00b", "lone high surrogate": "a\ud800b", "lone low surrogate": "\udc00"}


def post(api: APIClient, body: dict[str, Any]) -> Any:
    # Encoded by hand: json.dumps escapes lone surrogates as \\udXXX, which is how a client would send them.
    return api.post("/tasks", data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("text", list(FAITHFUL.values()), ids=list(FAITHFUL))
def test_unicode_name_tag_and_parameters_round_trip_through_the_api(api: APIClient, text: str) -> None:
    body = task_body(
        name=text,
        tags=["TEST_RECORD", text[:64]],
        parameters={"label": text, text: [text, {"nested": text}]},
        metadata={"note": text},
    )
    response = post(api, body)
    assert response.status_code == 201, response.content
    shown = api.get(f"/tasks/{response.json()['id']}").json()
    assert shown["name"] == text
    assert text[:64] in shown["tags"]
    assert shown["parameters"] == body["parameters"] and shown["metadata"] == {"note": text}
    # ... and found again by search and by tag.
    listing = api.get("/tasks", {"search": text}).json()
    assert [t["name"] for t in listing["results"]] == [text]
    assert api.get("/tasks", {"tag": text[:64]}).json()["count"] == 1


@pytest.mark.parametrize("text", list(FAITHFUL.values()), ids=list(FAITHFUL))
def test_unicode_is_shown_faithfully_and_escaped_in_the_admin(api: APIClient, admin_client: Client, text: str) -> None:
    task_id = post(api, task_body(name=text, tags=["TEST_RECORD", text[:64]], parameters={"label": text})).json()["id"]
    page = admin_client.get(reverse("admin:scheduling_task_change", args=[task_id]))
    assert page.status_code == 200
    html = page.content.decode()
    assert escape(text) in html
    if "<script>" in text:
        assert "<script>alert(" not in html
    listing = admin_client.get(reverse("admin:scheduling_task_changelist"), {"q": text})
    assert listing.status_code == 200 and escape(text) in listing.content.decode()


@pytest.mark.parametrize("text", list(REFUSED_IN_NAMES.values()), ids=list(REFUSED_IN_NAMES))
@pytest.mark.parametrize("field", ["name", "tags"])
def test_control_characters_in_names_and_tags_are_a_400_naming_the_field(api: APIClient, field: str, text: str) -> None:
    before = snapshot()
    body = task_body(**({"name": text} if field == "name" else {"tags": ["TEST_RECORD", text]}))
    response = post(api, body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert snapshot() == before


@pytest.mark.parametrize("text", list(REFUSED_IN_JSON.values()), ids=list(REFUSED_IN_JSON))
@pytest.mark.parametrize("where", ["value", "key", "deep value"])
@pytest.mark.parametrize("field", ["parameters", "metadata"])
def test_nul_and_lone_surrogates_in_json_are_a_400_naming_the_field(
    api: APIClient, field: str, where: str, text: str
) -> None:
    value = {"value": {"k": text}, "key": {text: 1}, "deep value": {"a": [{"b": [text]}]}}[where]
    before = snapshot()
    response = post(api, task_body(**{field: value}))
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert snapshot() == before


@pytest.mark.parametrize("text", list(REFUSED_IN_JSON.values()), ids=list(REFUSED_IN_JSON))
def test_patch_with_bad_characters_is_a_400_and_changes_nothing(
    api: APIClient, alice: Any, task_of: Any, text: str
) -> None:
    task = task_of(alice, "t")
    before = snapshot()
    for body in ({"name": text}, {"parameters": {"label": text}}, {"tags": ["TEST_RECORD", text]}):
        response = api.patch(f"/tasks/{task.pk}", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 400, (body, response.content)
    assert snapshot() == before


@pytest.mark.parametrize(
    "query",
    [
        {"search": "a\x00b"},
        {"name": "\x00"},
        {"tag": "\x00"},
        {"ordering": "\x00name"},
        {"owner": "\x00"},
        {"created_after": "2026-01-01\x00"},
        {"search": "x" * 10_000},
        {"search": "🚀" * 2000},
    ],
    ids=lambda q: repr(q)[:40],
)
def test_bad_characters_in_query_strings_are_never_a_500(api: APIClient, query: dict[str, str]) -> None:
    for path in ("/tasks", "/task_history"):
        response = api.get(path, query)
        assert response.status_code in (200, 400), (path, query, response.status_code)


@pytest.mark.parametrize("raw", ["search=%ED%A0%80", "search=%FF%FE", "name=%C0%80", "tag=%00%FF"])
def test_query_strings_that_are_not_utf8_are_never_a_500(api: APIClient, raw: str) -> None:
    for path in ("/tasks", "/task_history"):
        response = api.get(f"{path}?{raw}")
        assert response.status_code in (200, 400), (path, raw, response.status_code)


@pytest.mark.parametrize("query", ["a\x00b", "\x1b[2J", "\ufffd"], ids=["NUL", "escape", "replacement"])
def test_admin_search_and_filters_with_bad_characters_are_never_a_500(admin_client: Client, query: str) -> None:
    for url in (
        reverse("admin:scheduling_task_changelist"),
        reverse("admin:scheduling_taskresult_changelist"),
        reverse("admin:scheduling_taskaudit_changelist"),
    ):
        response = admin_client.get(url, {"q": query})
        assert response.status_code in (200, 400), (url, response.status_code)
    response = admin_client.get(reverse("admin:scheduling_task_changelist"), {"tag": query, "status": query})
    assert response.status_code in (200, 302, 400)


@pytest.mark.parametrize("text", list(FAITHFUL.values()), ids=list(FAITHFUL))
def test_admin_form_stores_unicode_faithfully(admin_client: Client, text: str) -> None:
    response = admin_client.post(
        reverse("admin:scheduling_task_add"),
        task_form(name=text, tag_names=text.replace(",", " ")[:64], parameters=json.dumps({"label": text})),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    task = Task.objects.get()
    assert task.name == text.strip() and task.parameters == {"label": text}


ADMIN_REFUSALS = {
    "NUL in name": ({"name": "a\x00b"}, "name"),
    "escape in name": ({"name": "\x1b[31mred"}, "name"),
    "NUL in a tag": ({"tag_names": "ok, a\x00b"}, "tag_names"),
    "control in a tag": ({"tag_names": "a\x07b"}, "tag_names"),
    "NUL in parameters": ({"parameters": '{"label": "a\\u0000b"}'}, "parameters"),
    "lone surrogate in parameters": ({"parameters": '{"label": "\\ud800"}'}, "parameters"),
    "NUL in metadata": ({"metadata": '{"\\u0000": 1}'}, "metadata"),
    "deep parameters": ({"parameters": '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"}, "parameters"),
    "parameters nested past 32": ({"parameters": '{"a": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"}, "parameters"),
    "parameters not an object": ({"parameters": "[1, 2]"}, "parameters"),
}


@pytest.mark.parametrize("case", list(ADMIN_REFUSALS))
def test_admin_form_refuses_bad_input_with_a_message_on_the_field(admin_client: Client, case: str) -> None:
    fields, field = ADMIN_REFUSALS[case]
    response = admin_client.post(reverse("admin:scheduling_task_add"), task_form(**fields))
    assert response.status_code == 200, response.status_code  # the form again, with errors
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert Task.objects.count() == 0


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.parametrize("path", ["/tasks", "/task_history", "/admin/scheduling/task/", "/admin/scheduling/taskaudit/"])
def test_nul_in_a_query_string_is_a_400_naming_the_parameter(api: APIClient, admin_client: Client, path: str) -> None:
    client = admin_client if path.startswith("/admin") else api
    response = client.get(f"{path}?q=a%00b&search=a%00b")
    assert response.status_code == 400
    assert "contains the NUL character" in response.json()["detail"]


def test_admin_form_with_parameters_over_the_size_limit_is_a_form_error(admin_client: Client, settings: Any) -> None:
    limit = settings.TASKHUB["security"]["max_parameters_bytes"]
    big = json.dumps({"label": "x" * (limit + 10)})
    response = admin_client.post(reverse("admin:scheduling_task_add"), task_form(parameters=big))
    assert response.status_code == 200
    assert "max_parameters_bytes" in " ".join(response.context["adminform"].form.errors["parameters"])
    assert Task.objects.count() == 0


def test_admin_form_body_over_the_request_limit_is_a_400_not_a_500(admin_client: Client, settings: Any) -> None:
    huge = json.dumps({"label": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1000)})
    response = admin_client.post(reverse("admin:scheduling_task_add"), task_form(metadata=huge))
    assert response.status_code in (400, 413)
    assert Task.objects.count() == 0
