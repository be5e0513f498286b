"""The admin in a real browser: Playwright driving Debian's Chromium headless against a live server.

Test modules mark themselves with ``pytestmark = BROWSER`` and request the ``page``, ``step`` and ``shots``
fixtures (tests/admin/conftest.py). Screenshots of each step go to $TASKHUB_TEST_ARTIFACTS (or the test's tmp
dir); a failing step saves one named ``FAILED-<step>.png`` before the error propagates.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 30_000

BROWSER = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def log_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
