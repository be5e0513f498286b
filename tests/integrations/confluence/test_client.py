"""The Confluence client (integrations.confluence.client) against the fake Confluence; the report page built on it
is tested in tests/reporting/test_confluence_publish.py and test_confluence_cloud_pages.py."""

from __future__ import annotations

import pytest

from integrations.confluence.client import ConfluenceClient
from taskhub.exceptions import IntegrationError
from tests.fakes.fixtures import REPORT_PAGE_ID


def test_unreachable_server_is_a_transient_error(fake_confluence, monkeypatch):
    fake_confluence.stop()

    with pytest.raises(IntegrationError) as caught:
        ConfluenceClient().get_page(REPORT_PAGE_ID)

    assert "cannot connect" in str(caught.value) and not caught.value.permanent
