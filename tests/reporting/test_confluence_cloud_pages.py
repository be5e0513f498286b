"""Confluence Cloud: the report page through the v2 pages API (ConfluenceV2), never a removed v1 write."""

from __future__ import annotations

import pytest
from django.conf import settings

from integrations.confluence.client import ConfluenceClient
from reporting.confluence import CONFLICT_RETRIES, page_publish
from taskhub.exceptions import IntegrationError
from tests.fakes.fixtures import MAIN_PAGE_ID, REPORT_PAGE_ID


def v1_writes(server) -> list[tuple[str, str]]:
    return [(m, p) for m, p in server.requests if m in ("POST", "PUT") and "/rest/api/" in p]


def test_cloud_update_saves_the_next_version_through_v2_under_wiki(fake_confluence_cloud):
    assert ConfluenceClient().cloud  # auto: e-mail + API token are Cloud credentials
    page = page_publish(body="<p>first</p>")
    page = page_publish(body="<p>second</p>")
    stored = fake_confluence_cloud.pages[REPORT_PAGE_ID]
    assert (page.id, page.version) == (REPORT_PAGE_ID, 3)
    assert (stored.version, stored.body) == (3, "<p>second</p>")
    assert stored.history[-1] == "<p>first</p>"
    assert fake_confluence_cloud.count("PUT", f"/wiki/api/v2/pages/{REPORT_PAGE_ID}") == 2
    assert not v1_writes(fake_confluence_cloud)
    assert all(path.startswith("/wiki/") for _, path in fake_confluence_cloud.requests)


def test_cloud_version_conflict_is_read_again_and_saved(fake_confluence_cloud):
    fake_confluence_cloud.edit_before_next_put()
    page = page_publish(body="<p>ours</p>")
    assert page.version == fake_confluence_cloud.pages[REPORT_PAGE_ID].version == 3
    assert fake_confluence_cloud.pages[REPORT_PAGE_ID].body == "<p>ours</p>"
    assert fake_confluence_cloud.count("PUT") == 2


def test_cloud_endless_conflicts_give_up_with_a_409(fake_confluence_cloud):
    fake_confluence_cloud.edit_before_next_put(times=CONFLICT_RETRIES + 1)
    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>ours</p>")
    assert caught.value.status == 409


def test_cloud_missing_page_is_created_under_the_main_page_in_space_key(fake_confluence_cloud, monkeypatch):
    del fake_confluence_cloud.pages[REPORT_PAGE_ID]
    monkeypatch.setitem(settings.TASKHUB["confluence"], "space_key", "REPORTS")
    page = page_publish(body="<p>new</p>")
    created = fake_confluence_cloud.pages[page.id]
    assert (created.space, created.parent_id, created.body) == ("REPORTS", MAIN_PAGE_ID, "<p>new</p>")
    assert fake_confluence_cloud.count("POST", "/wiki/api/v2/pages") == 1
    assert fake_confluence_cloud.count("GET", "/wiki/api/v2/spaces") >= 1  # space_key -> space id
    assert not v1_writes(fake_confluence_cloud)
    # The next report finds it by title in that space instead of creating another.
    again = page_publish(body="<p>again</p>")
    assert again.id == page.id and fake_confluence_cloud.count("POST") == 1


def test_cloud_missing_page_without_space_key_goes_to_the_main_pages_space(fake_confluence_cloud):
    del fake_confluence_cloud.pages[REPORT_PAGE_ID]
    page = page_publish(body="<p>new</p>")
    assert fake_confluence_cloud.pages[page.id].space == "OPS"


def test_unknown_space_key_is_a_clear_permanent_error(fake_confluence_cloud, monkeypatch):
    del fake_confluence_cloud.pages[REPORT_PAGE_ID]
    monkeypatch.setitem(settings.TASKHUB["confluence"], "space_key", "NOPE")
    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")
    assert caught.value.permanent and "no space with key 'NOPE' (confluence.space_key)" in str(caught.value)


def test_wrong_cloud_token_names_email_and_api_token(fake_confluence_cloud, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["confluence"], "api_token", "ATATT-wrong")
    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")
    assert caught.value.status == 401 and caught.value.permanent
    assert "confluence.email and confluence.api_token" in str(caught.value)
    assert "ATATT-wrong" not in str(caught.value)


def test_the_removed_v1_writes_answer_410_and_say_what_to_change(fake_confluence_cloud, monkeypatch):
    # A Cloud site declared as server is written through v1, which Cloud removed.
    monkeypatch.setitem(settings.TASKHUB["confluence"], "deployment", "server")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "url", fake_confluence_cloud.url + "/wiki")
    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")
    assert caught.value.status == 410 and "set confluence.deployment to cloud" in str(caught.value)


def test_malformed_storage_is_refused_on_cloud_too(fake_confluence_cloud):
    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>unclosed")
    assert caught.value.status == 400 and caught.value.permanent
