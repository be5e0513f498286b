"""Authentication (token, basic, session), model permissions, owner isolation and write throttling."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from scheduling.api.permissions import WriteRateThrottle
from scheduling.models import Task
from taskhub.auth import remembered_credentials
from tests.api.conftest import snapshot, task_body

ID = uuid.UUID(int=42)  # fixed: test ids must be the same in every pytest-xdist worker
PROTECTED = [
    ("get", "/tasks"),
    ("post", "/tasks"),
    ("get", f"/tasks/{ID}"),
    ("put", f"/tasks/{ID}"),
    ("patch", f"/tasks/{ID}"),
    ("delete", f"/tasks/{ID}"),
    ("get", "/tasks/status/DONE"),
    ("get", "/task_history"),
    ("get", f"/tasks/{ID}/results"),
    ("get", f"/tasks/{ID}/audit"),
    ("post", f"/tasks/{ID}/run"),
    ("post", f"/tasks/{ID}/cancel"),
    ("post", f"/tasks/{ID}/retry"),
    ("post", f"/tasks/{ID}/pause"),
    ("post", f"/tasks/{ID}/resume"),
    ("get", "/handlers"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_anonymous_requests_get_401(method: str, path: str) -> None:
    for variant in (path, path + "/"):
        response = getattr(APIClient(), method)(variant)
        assert response.status_code == 401, (variant, response.status_code)
        assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/health", "/docs", "/schema", "/docs/", "/schema/", "/health/"])
def test_health_docs_and_schema_need_no_login(path: str) -> None:
    assert APIClient().get(path).status_code == 200


@pytest.mark.django_db
def test_a_wrong_token_is_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/tasks").status_code == 401


def test_token_from_drf_create_token_works(alice: User) -> None:
    out = io.StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = out.getvalue().split()[2]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/tasks").status_code == 200


def test_basic_auth_works(alice: User) -> None:
    client = APIClient()
    credentials = base64.b64encode(b"alice:pw-alice").decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert client.get("/tasks").status_code == 200
    assert client.post("/tasks", task_body(), format="json").status_code == 201
    client.credentials(HTTP_AUTHORIZATION=f"Basic {base64.b64encode(b'alice:wrong').decode()}")
    assert client.get("/tasks").status_code == 401


def test_session_auth_works_and_needs_csrf_for_writes(alice: User) -> None:
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="pw-alice")
    assert client.get("/tasks").status_code == 200
    response = client.post("/tasks", task_body(), format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_user_without_permissions_gets_403(make_user, client_for, alice: User, task_of) -> None:
    nobody = client_for(make_user("nobody", perms=()))
    task = task_of(alice, "t")
    response = nobody.get("/tasks")
    assert response.status_code == 403
    assert "scheduling.view_task" in response.json()["detail"]
    assert nobody.post("/tasks", task_body(), format="json").status_code == 403
    assert nobody.get(f"/tasks/{task.pk}").status_code == 403
    assert nobody.get("/task_history").status_code == 403
    assert nobody.get("/handlers").status_code == 200  # the handler catalogue is not task data


def test_view_only_user_cannot_write(make_user, client_for, task_of) -> None:
    viewer = make_user("viewer", perms=("view_task",))
    client = client_for(viewer)
    task = task_of(viewer, "mine")
    before = snapshot()
    assert client.get(f"/tasks/{task.pk}").status_code == 200
    assert client.post("/tasks", task_body(), format="json").status_code == 403
    assert client.patch(f"/tasks/{task.pk}", {"name": "x"}, format="json").status_code == 403
    assert client.put(f"/tasks/{task.pk}", task_body(), format="json").status_code == 403
    response = client.delete(f"/tasks/{task.pk}")
    assert response.status_code == 403 and "scheduling.delete_task" in response.json()["detail"]
    for action in ("run", "cancel", "retry", "pause", "resume"):
        response = client.post(f"/tasks/{task.pk}/{action}")
        assert response.status_code == 403 and "scheduling.change_task" in response.json()["detail"]
    assert snapshot() == before


def test_user_cannot_see_or_touch_another_users_task(api: APIClient, bob: User, task_of) -> None:
    theirs = task_of(bob, "bob's secret")
    before = snapshot()
    assert api.get(f"/tasks/{theirs.pk}").status_code == 404
    assert api.get(f"/tasks/{theirs.pk}/results").status_code == 404
    assert api.patch(f"/tasks/{theirs.pk}", {"name": "mine now"}, format="json").status_code == 404
    assert api.put(f"/tasks/{theirs.pk}", task_body(), format="json").status_code == 404
    assert api.delete(f"/tasks/{theirs.pk}").status_code == 404
    for action in ("run", "cancel", "retry", "pause", "resume"):
        assert api.post(f"/tasks/{theirs.pk}/{action}").status_code == 404
    assert api.get("/tasks").json()["count"] == 0
    assert api.get("/tasks/status/PENDING").json()["count"] == 0
    assert snapshot() == before


def test_view_all_permission_shows_every_users_tasks(make_user, client_for, alice: User, bob: User, task_of) -> None:
    task_of(alice, "a")
    theirs = task_of(bob, "b")
    auditor = client_for(make_user("auditor", perms=("view_task", "view_all_tasks")))
    assert sorted(t["name"] for t in auditor.get("/tasks").json()["results"]) == ["a", "b"]
    assert auditor.get(f"/tasks/{theirs.pk}").json()["owner"] == "bob"
    assert auditor.patch(f"/tasks/{theirs.pk}", {"name": "x"}, format="json").status_code == 403


def test_superuser_sees_everything(client_for, alice: User, task_of) -> None:
    task_of(alice, "a")
    admin = User.objects.create_superuser("root", password="pw")
    assert client_for(admin).get("/tasks").json()["count"] == 1


def test_owner_is_always_the_requesting_user(api: APIClient, alice: User, bob: User, client_for) -> None:
    created = client_for(bob).post("/tasks", task_body(), format="json").json()
    assert created["owner"] == "bob"
    assert Task.objects.get(pk=created["id"]).owner == bob


def test_writes_are_throttled_reads_are_not(api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(WriteRateThrottle.THROTTLE_RATES, "writes", "3/minute")
    for _ in range(3):
        assert api.post("/tasks", task_body(), format="json").status_code == 201
    response = api.post("/tasks", task_body(), format="json")
    assert response.status_code == 429
    assert "Retry-After" in response
    assert Task.objects.count() == 3
    for _ in range(5):
        assert api.get("/tasks").status_code == 200


class CountingHasher(MD5PasswordHasher):
    """The test suite's fast hasher, counting how many passwords it verified."""

    verified = 0

    def verify(self, password: str, encoded: str) -> bool:
        CountingHasher.verified += 1
        return super().verify(password, encoded)


@pytest.fixture
def counting_hasher(settings: Any) -> Iterator[type[CountingHasher]]:
    settings.PASSWORD_HASHERS = ["tests.api.test_auth.CountingHasher"]
    CountingHasher.verified = 0
    remembered_credentials.clear()
    yield CountingHasher
    remembered_credentials.clear()


def basic(username: str, password: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    return client


@pytest.mark.django_db
def test_basic_auth_hashes_the_password_once_not_on_every_request(
    counting_hasher: type[CountingHasher], bob: User
) -> None:
    client = basic("bob", "pw-bob")
    for _ in range(5):
        assert client.get("/tasks").status_code == 200
    assert counting_hasher.verified == 1


@pytest.mark.django_db
def test_remembered_basic_credentials_never_let_a_wrong_password_in(
    counting_hasher: type[CountingHasher], bob: User
) -> None:
    assert basic("bob", "pw-bob").get("/tasks").status_code == 200
    for wrong in ("pw-bob ", "PW-BOB", "pw-bo", ""):
        assert basic("bob", wrong).get("/tasks").status_code == 401
    assert counting_hasher.verified == 1 + 4  # every wrong password is hashed (and counted by axes) as before


@pytest.mark.django_db
def test_a_password_change_or_deactivation_forgets_remembered_credentials(
    counting_hasher: type[CountingHasher], bob: User
) -> None:
    assert basic("bob", "pw-bob").get("/tasks").status_code == 200
    bob.set_password("pw-new")
    bob.save()
    assert basic("bob", "pw-bob").get("/tasks").status_code == 401
    assert basic("bob", "pw-new").get("/tasks").status_code == 200
    bob.is_active = False
    bob.save()
    assert basic("bob", "pw-new").get("/tasks").status_code == 401


@pytest.mark.django_db
def test_a_locked_out_user_name_is_refused_even_with_remembered_credentials(
    counting_hasher: type[CountingHasher], bob: User, settings: Any
) -> None:
    assert basic("bob", "pw-bob").get("/tasks").status_code == 200
    statuses = [basic("bob", f"guess-{n}").get("/tasks").status_code for n in range(settings.AXES_FAILURE_LIMIT)]
    assert statuses[-1] == 429
    assert basic("bob", "pw-bob").get("/tasks").status_code == 429
