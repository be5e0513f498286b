"""The built-in HTTP_REQUEST handler against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduling import services
from scheduling.engine import dispatcher, executor
from scheduling.models import AttemptStatus, RetryPolicy, TaskResult, TaskStatus
from taskhub.exceptions import ValidationError
from tests.fakes import serving_thread

pytestmark = pytest.mark.django_db


class Handler(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict]] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, dict(self.headers)))
        if self.path == "/ok":
            self._reply(200, "x" * 5000)
        elif self.path == "/down":
            self._reply(503, "maintenance")
        elif self.path == "/hop":
            self._reply(302, headers={"Location": "/ok"})
        elif self.path == "/away":
            self._reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        else:
            self._reply(404, "no such page")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        self.received.append(("POST", self.path, body))
        self._reply(201, json.dumps({"created": body}))


@pytest.fixture
def server() -> Iterator[str]:
    Handler.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = serving_thread(httpd)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def run(task) -> TaskResult:
    (queued,) = dispatcher.dispatch()
    executor.run_attempt(queued.pk)
    return TaskResult.objects.filter(task=task).order_by("-attempt").first()


def http_task(url: str, **parameters):
    return services.task_create(
        data={"name": "call", "tags": ["HTTP_REQUEST"], "parameters": {"url": url, **parameters}},
    )


def test_get_records_status_duration_and_bounded_body(server):
    task = http_task(f"{server}/ok")
    result = run(task)
    assert result.status == AttemptStatus.DONE
    assert result.result["status"] == 200
    assert result.result["duration"] >= 0
    assert len(result.result["body"]) == 2000  # an excerpt, not the 5000-byte body


def test_post_sends_json_and_headers(server):
    task = http_task(f"{server}/items", method="POST", json={"a": 1}, headers={"X-Token": "t"}, expected_status=[201])
    result = run(task)
    assert result.status == AttemptStatus.DONE
    assert Handler.received[-1] == ("POST", "/items", {"a": 1})


def test_unexpected_status_fails_and_retries_per_policy(server):
    policy = RetryPolicy.objects.create(name="http", max_retries=1, retry_delay=0)
    task = services.task_create(
        data={
            "name": "down",
            "tags": ["HTTP_REQUEST"],
            "parameters": {"url": f"{server}/down"},
            "retry_policy": policy.pk,
        }
    )
    first = run(task)
    assert first.status == AttemptStatus.RETRY  # the new attempt waits for its turn
    failed = TaskResult.objects.get(task=task, attempt=1)
    assert failed.status == AttemptStatus.FAILED
    assert "HTTP 503" in failed.error_message and "unexpected status 503" in failed.error_message


def test_redirect_on_the_same_host_is_followed(server):
    result = run(http_task(f"{server}/hop"))
    assert result.status == AttemptStatus.DONE and result.result["url"].endswith("/ok")


def test_redirect_to_another_host_is_refused_without_retry(server):
    policy = RetryPolicy.objects.create(name="never-helps", max_retries=3, retry_delay=0)
    task = services.task_create(
        data={
            "name": "ssrf",
            "tags": ["HTTP_REQUEST"],
            "parameters": {"url": f"{server}/away"},
            "retry_policy": policy.pk,
        }
    )
    result = run(task)
    assert result.status == AttemptStatus.FAILED
    assert "redirect refused" in result.error_message and "169.254.169.254" in result.error_message
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert [r[0] for r in Handler.received] == ["GET"]  # the metadata address was never called


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/", "host 'example.com' is not in http.allowed_hosts"),
        ("file:///etc/passwd", "expected an http:// or https:// URL"),
        ("ftp://127.0.0.1/x", "expected an http:// or https:// URL"),
    ],
)
def test_disallowed_urls_are_refused_when_the_task_is_created(url, message):
    with pytest.raises(ValidationError) as error:
        http_task(url)
    assert message in " ".join(error.value.errors["parameters"])


def test_parameters_are_checked_against_the_schema():
    with pytest.raises(ValidationError) as error:
        services.task_create(
            data={"name": "bad", "tags": ["HTTP_REQUEST"], "parameters": {"url": "http://127.0.0.1/", "method": "BREW"}}
        )
    assert "method: 'BREW' is not one of" in " ".join(error.value.errors["parameters"])
