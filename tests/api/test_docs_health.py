"""/schema, /docs (offline Swagger UI), /health and /handlers."""

from __future__ import annotations

import json
import re

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from scheduling.api import views
from taskhub.celery import app as celery_app

EXPECTED_PATHS = {
    "/tasks": {"get", "post"},
    "/tasks/{id}": {"get", "put", "patch", "delete"},
    "/tasks/status/{status}": {"get"},
    "/task_history": {"get"},
    "/tasks/{id}/results": {"get"},
    "/tasks/{id}/audit": {"get"},
    "/tasks/{id}/run": {"post"},
    "/tasks/{id}/cancel": {"post"},
    "/tasks/{id}/retry": {"post"},
    "/tasks/{id}/pause": {"post"},
    "/tasks/{id}/resume": {"post"},
    "/handlers": {"get"},
    "/health": {"get"},
}


@pytest.fixture
def schema(db: None) -> dict:
    response = APIClient().get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_is_openapi_3_with_every_endpoint(schema: dict) -> None:
    assert schema["openapi"].startswith("3.")
    for path, methods in EXPECTED_PATHS.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))


def test_schema_shows_enums_as_upper_case_names_and_read_only_fields(schema: dict) -> None:
    components = schema["components"]["schemas"]
    task = components["Task"]["properties"]
    assert components["PriorityEnum"]["enum"] == ["HIGH", "MEDIUM", "LOW"]
    assert task["priority"]["allOf"] == [{"$ref": "#/components/schemas/PriorityEnum"}]
    assert task["status"]["readOnly"] is True
    write = components["TaskWriteRequest"]["properties"]
    assert "status" not in write and "owner" not in write and "created_at" not in write
    assert components["TaskTypeEnum"]["enum"] == ["IMMEDIATE", "SCHEDULED"]
    assert "PENDING" in components["TaskStatusEnum"]["enum"]


def test_schema_documents_token_basic_and_session_auth(schema: dict) -> None:
    assert {"tokenAuth", "basicAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_docs_render_from_local_assets_only(db: None) -> None:
    client = APIClient()
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), f"{asset} would need the internet"
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content if served.streaming else [served.content])
    assert "/schema" in html


def test_health_reports_database_and_broker(db: None) -> None:
    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_is_503_when_the_broker_is_down_without_leaking_its_url(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_url = "redis://:hunter2-secret@127.0.0.1:1/0"
    real = celery_app.connection_for_write
    monkeypatch.setattr(celery_app, "connection_for_write", lambda **kwargs: real(url=secret_url, **kwargs))
    response = APIClient().get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["broker"].startswith("unreachable")
    assert "hunter2" not in response.content.decode() and "127.0.0.1" not in response.content.decode()


def test_health_is_503_when_the_database_is_down(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise OperationalError("could not connect to server at 10.0.0.5 password=x")

    monkeypatch.setattr(views, "_check_database", broken)
    response = APIClient().get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable (OperationalError)"
    assert "10.0.0.5" not in response.content.decode()


def test_handlers_lists_tags_with_their_schemas(api: APIClient) -> None:
    for path in ("/handlers", "/handlers/"):
        response = api.get(path)
        assert response.status_code == 200
        handlers = {h["tag"]: h for h in response.json()}
        assert {"HTTP_REQUEST", "TEST_RECORD"} <= set(handlers)
        assert handlers["HTTP_REQUEST"]["schema"]["required"] == ["url"]
        assert "allowed_hosts" in handlers["HTTP_REQUEST"]["description"]
        assert list(handlers) == sorted(handlers)
