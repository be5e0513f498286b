"""A real worker process decrypts a task's secret parameters, uses them, and stores and logs none of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduling import services
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from tests.conftest import wait_until
from tests.fakes import serving_thread

TOKEN = "Bearer e2e-worker-secret-7d41c0aa"


class Echo(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        received = self.headers.get("Authorization", "")
        self.server.received.append(received)  # type: ignore[attr-defined]
        body = json.dumps({"echo": received}).encode()
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo() -> Iterator[tuple[str, list[str]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    httpd.received = []  # type: ignore[attr-defined]
    serving_thread(httpd).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.received  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def finished(*tasks: Task) -> bool:
    return all(
        Task.objects.get(pk=t.pk).status in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.TIMEOUT) for t in tasks
    )


def test_worker_sends_the_secret_header_and_stores_no_trace_of_it(start_worker, echo) -> None:
    url, received = echo
    worker = start_worker()
    secret = {"headers": {"Authorization": TOKEN}}

    def http(name: str) -> Task:
        parameters = {"url": f"{url}/{name}"}
        return services.task_create(
            data={"name": name, "tags": ["HTTP_REQUEST"], "parameters": parameters, "secret_parameters": secret}
        )

    ok, failing = http("ok"), http("fail")
    wait_until(lambda: finished(ok, failing))
    assert received == [TOKEN, TOKEN]  # the worker decrypted and sent it

    done = TaskResult.objects.get(task=ok)
    assert done.status == AttemptStatus.DONE
    assert json.loads(done.result["body"]) == {"echo": "<hidden>"}  # the server's echo was scrubbed
    failed = TaskResult.objects.get(task=failing)
    assert failed.status == AttemptStatus.FAILED and "unexpected status 500" in failed.error_message
    stored = json.dumps(list(TaskResult.objects.values("result", "error_message", "traceback", "progress_message")))
    assert TOKEN not in stored
    assert TOKEN not in worker.log.read_text(errors="replace")
