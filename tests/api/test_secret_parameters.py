"""Secret parameters: written through the API, stored encrypted (Fernet), given to the handler, never shown.

Also: key rotation (``manage.py encryption_keys --rotate``), and clear errors without a usable key.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from scheduling.engine import dispatcher, executor
from scheduling.models import AttemptStatus, Task, TaskAudit, TaskResult
from taskhub import config as taskhub_config
from taskhub import encryption
from taskhub.exceptions import ConfigError
from tests.api.conftest import task_body
from tests.fakes import serving_thread

TOKEN = "Bearer sk-live-7f3a9c1e5b2d4f6a8c0e"  # planted: must never come back out


class Recorder(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.headers_seen.append(dict(self.headers))  # type: ignore[attr-defined]
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.headers_seen = []  # type: ignore[attr-defined]
    serving_thread(httpd).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.headers_seen  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch):
    """Set security.encryption_keys for the test."""

    def set_keys(*values: str) -> None:
        monkeypatch.setitem(settings.TASKHUB["security"], "encryption_keys", list(values))

    return set_keys


def raw_column(task: Task) -> str:
    with connection.cursor() as cursor:
        key = task.pk.hex if connection.vendor == "sqlite" else task.pk  # SQLite stores UUIDs as 32 hex digits
        cursor.execute("SELECT secret_parameters FROM scheduling_task WHERE id = %s", [key])
        return cursor.fetchone()[0]


def http_body(url: str, **fields) -> dict:
    return task_body(tags=["HTTP_REQUEST"], parameters={"url": url}, **fields)


def test_secret_header_is_encrypted_at_rest_sent_to_the_server_and_never_returned(api: APIClient, server) -> None:
    url, seen = server
    response = api.post(
        "/tasks", http_body(f"{url}/x", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    )
    assert response.status_code == 201, response.json()
    assert TOKEN not in response.content.decode()
    assert response.json()["secret_parameters"] == "<hidden>"
    task = Task.objects.get(pk=response.json()["id"])

    stored = raw_column(task)
    assert stored and TOKEN not in stored and "Authorization" not in stored  # the key name is secret too
    assert encryption.decrypt_json(stored) == {"headers": {"Authorization": TOKEN}}
    assert TOKEN not in json.dumps(list(Task.objects.filter(pk=task.pk).values()), default=str)

    (queued,) = dispatcher.dispatch()
    executor.run_attempt(queued.pk)
    result = TaskResult.objects.get(task=task)
    assert result.status == AttemptStatus.DONE, result.error_message
    assert seen[-1]["Authorization"] == TOKEN  # the handler got the merged parameters

    for path in (f"/tasks/{task.pk}", "/tasks", f"/tasks/{task.pk}/results", f"/tasks/{task.pk}/audit"):
        body = api.get(path).content.decode()
        assert TOKEN not in body, path
    entry = TaskAudit.objects.get(task_id=task.pk, action="created")
    assert entry.changes["secret_parameters"] == [None, {"headers": {"Authorization": "<hidden>"}}]


def test_secret_and_plain_headers_merge(api: APIClient, server) -> None:
    url, seen = server
    body = http_body(f"{url}/x", secret_parameters={"headers": {"Authorization": TOKEN}})
    body["parameters"]["headers"] = {"X-Plain": "1"}
    assert api.post("/tasks", body, format="json").status_code == 201
    (queued,) = dispatcher.dispatch()
    executor.run_attempt(queued.pk)
    assert seen[-1]["Authorization"] == TOKEN and seen[-1]["X-Plain"] == "1"


@pytest.mark.parametrize("header", ["Authorization", "cookie", "X-Api-Key"])
def test_a_credential_header_in_plain_parameters_is_refused_pointing_to_secret_parameters(
    api: APIClient, header: str
) -> None:
    body = http_body("http://127.0.0.1/")
    body["parameters"]["headers"] = {header: TOKEN, "X-Plain": "1"}
    response = api.post("/tasks", body, format="json")
    assert response.status_code == 400
    (message,) = response.json()["parameters"]
    assert f"headers.{header} carries a credential" in message and "secret_parameters" in message
    assert TOKEN not in response.content.decode()
    assert Task.objects.count() == 0


def test_secret_parameters_are_checked_against_the_handler_schema(api: APIClient) -> None:
    response = api.post(
        "/tasks", http_body("http://127.0.0.1/", secret_parameters={"headers": {"Authorization": 5}}), format="json"
    )
    assert response.status_code == 400
    assert "headers.Authorization" in json.dumps(response.json()["parameters"])
    assert Task.objects.count() == 0


def test_patch_keeps_secrets_unless_given_and_empty_object_clears(api: APIClient) -> None:
    created = api.post(
        "/tasks", http_body("http://127.0.0.1/", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    ).json()
    task_id = created["id"]
    assert api.patch(f"/tasks/{task_id}", {"name": "renamed"}, format="json").status_code == 200
    assert api.put(f"/tasks/{task_id}", http_body("http://127.0.0.1/"), format="json").status_code == 200
    task = Task.objects.get(pk=task_id)
    assert encryption.decrypt_json(task.secret_parameters) == {"headers": {"Authorization": TOKEN}}

    new = "Bearer rotated-credential-0042"
    response = api.patch(f"/tasks/{task_id}", {"secret_parameters": {"headers": {"Authorization": new}}}, format="json")
    assert response.status_code == 200 and new not in response.content.decode()
    task.refresh_from_db()
    assert encryption.decrypt_json(task.secret_parameters)["headers"]["Authorization"] == new
    change = TaskAudit.objects.filter(task_id=task_id, action="changed").first()
    assert "secret_parameters" in change.changes and new not in json.dumps(change.changes)

    response = api.patch(f"/tasks/{task_id}", {"secret_parameters": {}}, format="json")
    assert response.status_code == 200 and response.json()["secret_parameters"] is None
    task.refresh_from_db()
    assert task.secret_parameters == ""


def test_moving_the_url_to_another_host_drops_the_secrets_unless_given_again(api: APIClient, server) -> None:
    url, seen = server
    created = api.post(
        "/tasks", http_body(f"{url}/a", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    ).json()
    task_id = created["id"]
    response = api.patch(f"/tasks/{task_id}", {"parameters": {"url": f"{url}/b?page=2"}}, format="json")
    assert response.json()["secret_parameters"] == "<hidden>"  # same host: kept

    moved = url.replace("127.0.0.1", "localhost")
    response = api.patch(f"/tasks/{task_id}", {"parameters": {"url": f"{moved}/c"}}, format="json")
    assert response.status_code == 200 and response.json()["secret_parameters"] is None
    assert Task.objects.get(pk=task_id).secret_parameters == ""
    audit = TaskAudit.objects.filter(task_id=task_id, action="changed").order_by("-id").first()
    assert audit.changes["secret_parameters"] == [{"headers": {"Authorization": "<hidden>"}}, {}]

    again = {"headers": {"Authorization": "Bearer for-localhost-only-51"}}
    body = {"parameters": {"url": f"{url}/d"}, "secret_parameters": again}
    assert api.patch(f"/tasks/{task_id}", body, format="json").json()["secret_parameters"] == "<hidden>"
    assert encryption.decrypt_json(Task.objects.get(pk=task_id).secret_parameters) == again


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1\\@127.0.0.2/", "backslash"),
        ("http://user:pw@127.0.0.1/", "user names and passwords"),
        ("http://127.0.0.1/\r\nX-Injected: 1", "control or whitespace"),
        ("http://0x7f.0.0.1/", "four decimal numbers"),
    ],
)
def test_ambiguous_urls_are_a_400_naming_the_field(api: APIClient, url: str, problem: str) -> None:
    response = api.post("/tasks", http_body(url), format="json")
    assert response.status_code == 400
    messages = " ".join(response.json()["parameters"])
    assert messages.startswith("url: ") and problem in messages
    assert not Task.objects.exists()


def test_a_refused_secret_value_is_not_quoted_in_the_error(api: APIClient) -> None:
    bad = {"headers": {"Authorization": TOKEN}, "timeout": TOKEN}  # timeout must be a number
    response = api.post("/tasks", http_body("http://127.0.0.1/", secret_parameters=bad), format="json")
    assert response.status_code == 400
    assert "timeout" in json.dumps(response.json()["parameters"]) and "<hidden>" in json.dumps(response.json())
    assert TOKEN not in response.content.decode()


@pytest.mark.parametrize("value", [[1], "text", 5])
def test_secret_parameters_must_be_an_object(api: APIClient, value) -> None:
    response = api.post("/tasks", http_body("http://127.0.0.1/", secret_parameters=value), format="json")
    assert response.status_code == 400 and "secret_parameters" in response.json()


def test_without_a_key_secrets_are_refused_with_the_setting_named(api: APIClient, keys) -> None:
    keys()
    response = api.post(
        "/tasks", http_body("http://127.0.0.1/", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    )
    assert response.status_code == 400
    message = response.json()["secret_parameters"][0]
    assert "no encryption key is configured" in message and "TASKHUB_SECURITY_ENCRYPTION_KEYS" in message
    assert Task.objects.count() == 0
    # Tasks without secrets need no key.
    assert api.post("/tasks", http_body("http://127.0.0.1/"), format="json").status_code == 201


def test_rotation_re_encrypts_with_the_first_key_so_the_old_one_can_go(api: APIClient, keys) -> None:
    old = settings.TASKHUB["security"]["encryption_keys"][0]
    created = api.post(
        "/tasks", http_body("http://127.0.0.1/", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    ).json()
    task = Task.objects.get(pk=created["id"])
    before = raw_column(task)

    new = Fernet.generate_key().decode()
    keys(new)  # the old key dropped too early: the stored secret cannot be read
    out = io.StringIO()
    with pytest.raises(CommandError, match="no configured key decrypts"):
        call_command("encryption_keys", "--check", stdout=out)

    keys(new, old)  # new first (encrypts), old still decrypts
    call_command("encryption_keys", "--rotate", stdout=out)
    after = raw_column(task)
    assert after != before and TOKEN not in after
    assert "1 task(s) with secrets re-encrypted" in out.getvalue()

    keys(new)  # now the old key can go
    call_command("encryption_keys", "--check", stdout=out)
    assert encryption.decrypt_json(after) == {"headers": {"Authorization": TOKEN}}
    with pytest.raises(ConfigError, match="no configured key decrypts"):
        encryption.decrypt_json(before)  # written with the removed key


def test_a_task_whose_secret_cannot_be_decrypted_fails_permanently_naming_the_setting(
    api: APIClient, keys, server
) -> None:
    url, seen = server
    created = api.post(
        "/tasks", http_body(f"{url}/x", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    ).json()
    keys(Fernet.generate_key().decode())
    (queued,) = dispatcher.dispatch()
    executor.run_attempt(queued.pk)
    result = TaskResult.objects.get(task_id=created["id"])
    assert result.status == AttemptStatus.FAILED
    assert "security.encryption_keys" in result.error_message
    assert seen == []  # not sent without its credentials


def test_system_check_reports_stored_secrets_without_a_key(api: APIClient, keys) -> None:
    api.post(
        "/tasks", http_body("http://127.0.0.1/", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    )
    assert not [e for e in run_checks(databases=["default"]) if e.id == "taskhub.E001"]
    keys()
    errors = [e for e in run_checks(databases=["default"]) if e.id == "taskhub.E001"]
    assert errors and "1 task(s) hold encrypted secret_parameters" in errors[0].msg
    with pytest.raises(CommandError, match="hold encrypted secrets"):
        call_command("encryption_keys", "--check", stdout=io.StringIO())


def test_generate_prints_a_usable_key() -> None:
    out = io.StringIO()
    call_command("encryption_keys", "--generate", stdout=out)
    key = out.getvalue().strip()
    assert taskhub_config.parse({"security": {"encryption_keys": [key]}}, env={})["security"]["encryption_keys"]


@pytest.mark.parametrize("bad", ["not-a-key", "x" * 44, ["ok", 5]])
def test_an_invalid_key_is_a_config_error_that_does_not_echo_it(bad) -> None:
    with pytest.raises(ConfigError) as error:
        taskhub_config.parse({"security": {"encryption_keys": bad}}, env={})
    message = str(error.value)
    assert message.startswith("security.encryption_keys: expected a list of Fernet keys") and "<hidden>" in message
    assert "not-a-key" not in message and "x" * 44 not in message


def test_keys_from_the_environment_are_comma_separated_and_secret() -> None:
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    loaded = taskhub_config.parse({}, env={"TASKHUB_SECURITY_ENCRYPTION_KEYS": f"{first}, {second}"})
    assert loaded["security"]["encryption_keys"] == [first, second]
    assert {first, second} <= set(loaded.secret_values())


def test_other_users_cannot_touch_the_secret(api: APIClient, bob: User, client_for) -> None:
    created = api.post(
        "/tasks", http_body("http://127.0.0.1/", secret_parameters={"headers": {"Authorization": TOKEN}}), format="json"
    ).json()
    theirs = client_for(bob)
    assert theirs.get(f"/tasks/{created['id']}").status_code == 404
    assert theirs.patch(f"/tasks/{created['id']}", {"secret_parameters": {}}, format="json").status_code == 404
