"""/task_history counts at most CappedCountPagination.count_cap attempts, and still pages through every one."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scheduling.api.pagination import CappedCountPagination
from tests.api.conftest import finish


@pytest.fixture
def five_finished(alice: User, task_of) -> list[str]:
    names = [f"run {n}" for n in range(5)]
    for name in names:
        finish(task_of(alice, name))
    return names[::-1]  # newest first


def test_below_the_cap_the_count_is_exact(api: APIClient, five_finished: list[str]) -> None:
    body = api.get("/task_history?page_size=2").json()
    assert body["count"] == 5 and body["count_capped"] is False
    assert [row["task_name"] for row in body["results"]] == five_finished[:2]


def test_above_the_cap_count_stops_and_the_pages_go_on(
    api: APIClient, five_finished: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CappedCountPagination, "count_cap", 3)
    seen, url, pages = [], "/task_history?page_size=2", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["count"] == 3 and body["count_capped"] is True
        seen += [row["task_name"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    assert seen == five_finished and pages == 3
    assert api.get("/task_history?page_size=2&page=3").json()["previous"].endswith("page=2&page_size=2")
    assert api.get("/task_history?page_size=2&page=4").status_code == 404
    assert api.get("/task_history?page_size=2&page=0").status_code == 404
    assert api.get("/task_history?page_size=2&page=x").status_code == 404


def test_the_schema_documents_count_capped(api: APIClient) -> None:
    schema = api.get("/schema?format=json").json()
    page = schema["components"]["schemas"]["PaginatedTaskResultList"]
    assert page["properties"]["count_capped"]["type"] == "boolean" and "count_capped" in page["required"]
