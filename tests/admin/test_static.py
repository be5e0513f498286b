"""The admin's own assets load from the site itself: no CDN, no external URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
ASSETS = sorted((ROOT / "scheduling" / "static" / "scheduling").glob("*")) + sorted(
    (ROOT / "templates" / "admin").rglob("*.html")
)


@pytest.mark.parametrize("asset", ASSETS, ids=lambda p: p.name)
def test_asset_names_no_external_resource(asset: Path) -> None:
    text = asset.read_text()
    urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text) if "www.w3.org" not in u]
    assert urls == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["task-page.js", "taskhub-admin.css"])
def test_assets_are_served(client_op: Client, name: str) -> None:
    response = client_op.get(f"/static/scheduling/{name}")
    assert response.status_code == 200
