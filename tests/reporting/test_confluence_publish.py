"""The report page through the real atlassian-python-api client against the fake Confluence: versions, conflicts,
errors, creation."""

from __future__ import annotations

import pytest
from django.conf import settings

from reporting.confluence import CONFLICT_RETRIES, page_publish, render_page
from taskhub.exceptions import IntegrationError
from tests.fakes.fixtures import MAIN_PAGE_ID, REPORT_PAGE_ID


def test_update_saves_the_next_version_of_the_page(fake_confluence):
    page = page_publish(body="<p>first</p>")
    page = page_publish(body="<p>second</p>")

    stored = fake_confluence.pages[REPORT_PAGE_ID]
    assert (page.id, page.version) == (REPORT_PAGE_ID, 3)
    assert (stored.version, stored.body) == (3, "<p>second</p>")
    assert stored.history[-1] == "<p>first</p>"


def test_version_conflict_is_read_again_and_saved(fake_confluence):
    fake_confluence.edit_before_next_put()  # someone saves between our read and our write

    page = page_publish(body="<p>ours</p>")

    stored = fake_confluence.pages[REPORT_PAGE_ID]
    assert stored.body == "<p>ours</p>"
    assert page.version == stored.version == 3  # 1 -> their edit 2 -> ours 3
    assert fake_confluence.count("PUT") == 2


def test_endless_conflicts_give_up_with_a_409_error(fake_confluence):
    fake_confluence.edit_before_next_put(times=CONFLICT_RETRIES + 1)

    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>ours</p>")

    assert caught.value.status == 409
    assert "conflict" in str(caught.value)


def test_wrong_password_is_a_permanent_authentication_error(fake_confluence, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["confluence"], "password", "wrong")

    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")

    error = caught.value
    assert (error.system, error.status, error.permanent) == ("Confluence", 401, True)
    assert "confluence.username" in str(error) and "wrong" not in str(error)


def test_forbidden_is_a_clear_permission_error(fake_confluence):
    fake_confluence.fail_next(403)

    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")

    assert caught.value.status == 403
    assert "permission denied" in str(caught.value)


def test_personal_access_token_is_sent_as_bearer(fake_confluence, monkeypatch):
    fake_confluence.token = "pat-123"
    monkeypatch.setitem(settings.TASKHUB["confluence"], "password", "")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "token", "pat-123")

    page_publish(body="<p>with a token</p>")

    assert fake_confluence.pages[REPORT_PAGE_ID].body == "<p>with a token</p>"


def test_missing_page_is_created_under_the_main_page(fake_confluence, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", "999")
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "title", "Nightly results")

    page = page_publish(body="<p>new</p>")

    created = fake_confluence.pages[page.id]
    assert (created.title, created.space, created.parent_id, created.body) == (
        "Nightly results",
        "OPS",
        MAIN_PAGE_ID,
        "<p>new</p>",
    )
    # The next report finds the page by its title instead of creating a duplicate.
    again = page_publish(body="<p>newer</p>")
    assert again.id == page.id and fake_confluence.pages[page.id].body == "<p>newer</p>"
    assert sum(p.title == "Nightly results" for p in fake_confluence.pages.values()) == 1


def test_missing_page_and_missing_main_page_is_a_clear_404(fake_confluence, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", "999")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "main_page_id", "998")

    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")

    assert caught.value.status == 404
    assert "'999' does not exist" in str(caught.value) and "'998'" in str(caught.value)


def test_server_down_is_a_transient_error(fake_confluence):
    fake_confluence.down = True

    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>x</p>")

    assert caught.value.status == 503 and not caught.value.permanent


def test_unknown_template_names_what_was_tried(monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "template", "nope")

    with pytest.raises(IntegrationError) as caught:
        render_page({})

    assert "reporting/nope.xml" in str(caught.value) and caught.value.permanent


def test_malformed_storage_format_is_refused_with_confluences_reason(fake_confluence):
    with pytest.raises(IntegrationError) as caught:
        page_publish(body="<p>unclosed <b>tag</p>")

    assert caught.value.status == 400 and caught.value.permanent
    assert "Error parsing xhtml" in str(caught.value)
    assert fake_confluence.pages[REPORT_PAGE_ID].version == 1


def test_seed_task_result_page_id_is_used_when_reporting_page_id_is_empty(fake_confluence, monkeypatch):
    fake_confluence.add_page("555", "Seed results page", space="OPS", parent=MAIN_PAGE_ID)
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", "")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "task_result_page_id", "555")

    page = page_publish(body="<p>here</p>")

    assert page.id == "555" and fake_confluence.pages["555"].body == "<p>here</p>"
