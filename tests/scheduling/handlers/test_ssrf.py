"""SSRF: HTTP_REQUEST reaches only http.allowed_hosts, and a listed name never reaches a private address.

The fakes listen on 127.0.0.1 (and 127.0.0.2), which is loopback: the test config allows 127.0.0.1 explicitly,
so these tests change http.allowed_hosts to show what happens without that explicit entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from scheduling import services
from scheduling.engine import dispatcher, executor
from scheduling.handlers.builtin import address_allowed
from scheduling.models import AttemptStatus, RetryPolicy, TaskResult
from taskhub.exceptions import ValidationError
from tests.fakes import serving_thread

pytestmark = pytest.mark.django_db


class Recorder(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", "http://" + self.path[len("/to/") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def _serve(host: str) -> Iterator[tuple[str, list[str]]]:
    httpd = ThreadingHTTPServer((host, 0), Recorder)
    httpd.hits = []  # type: ignore[attr-defined]
    thread = serving_thread(httpd)
    thread.start()
    yield f"{host}:{httpd.server_address[1]}", httpd.hits  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    yield from _serve("127.0.0.1")


@pytest.fixture
def server2() -> Iterator[tuple[str, list[str]]]:
    yield from _serve("127.0.0.2")


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch):
    def set_hosts(*hosts: str) -> None:
        monkeypatch.setitem(settings.TASKHUB["http"], "allowed_hosts", list(hosts))

    return set_hosts


def run_http(url: str) -> TaskResult:
    never = RetryPolicy.objects.create(name=f"retries for {url}"[:100], max_retries=3, retry_delay=0)
    task = services.task_create(
        data={"name": "call", "tags": ["HTTP_REQUEST"], "parameters": {"url": url}, "retry_policy": never.pk}
    )
    (queued,) = dispatcher.dispatch()
    executor.run_attempt(queued.pk)
    return TaskResult.objects.filter(task=task).order_by("attempt").first()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://localhost.evil.example/",
    ],
)
def test_unlisted_addresses_are_refused_when_the_task_is_saved(url: str) -> None:
    with pytest.raises(ValidationError) as error:
        services.task_create(data={"name": "x", "tags": ["HTTP_REQUEST"], "parameters": {"url": url}})
    assert "is not in http.allowed_hosts" in " ".join(error.value.errors["parameters"])


@pytest.mark.parametrize(
    "url", ["gopher://127.0.0.1/", "file:///etc/passwd", "dict://127.0.0.1:11211/", "ftp://127.0.0.1/", "//x/"]
)
def test_non_http_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as error:
        services.task_create(data={"name": "x", "tags": ["HTTP_REQUEST"], "parameters": {"url": url}})
    assert "expected an http:// or https:// URL" in " ".join(error.value.errors["parameters"])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", True),  # listed in the test config
        ("::ffff:127.0.0.1", True),  # the same address, IPv4-mapped
        ("127.0.0.2", False),
        ("::1", False),
        ("169.254.169.254", False),
        ("::ffff:169.254.169.254", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
    ],
)
def test_resolved_address_rule(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


def test_a_cidr_entry_allows_its_network(allow) -> None:
    allow("10.0.0.0/8", "fd00::/8")
    assert address_allowed("10.20.30.40") and address_allowed("fd12::1")
    assert address_allowed("8.8.8.8")  # public addresses stay allowed
    assert not address_allowed("192.168.0.1")


def test_listed_ip_is_reached(server) -> None:
    address, hits = server
    result = run_http(f"http://{address}/ok")
    assert result.status == AttemptStatus.DONE
    assert hits == ["/ok"]


def test_a_listed_name_that_resolves_to_loopback_is_refused_at_connect_time(server, allow) -> None:
    """'localhost' passes the name check; the address it resolves to does not: nothing is sent, no retry."""
    address, hits = server
    port = address.rsplit(":", 1)[1]
    allow("localhost")
    result = run_http(f"http://localhost:{port}/ok")
    assert result.status == AttemptStatus.FAILED
    assert "'localhost' resolves to" in result.error_message
    assert "127.0.0.1" in result.error_message and "http.allowed_hosts" in result.error_message
    assert TaskResult.objects.filter(task=result.task).count() == 1  # permanent: the policy's retries unused
    assert hits == []


def test_https_connections_are_checked_too(server, allow) -> None:
    address, hits = server
    port = address.rsplit(":", 1)[1]
    allow("localhost")
    result = run_http(f"https://localhost:{port}/ok")
    assert result.status == AttemptStatus.FAILED
    assert "'localhost' resolves to" in result.error_message and "http.allowed_hosts" in result.error_message
    assert hits == []


def test_a_cidr_entry_lets_the_name_through(server, allow) -> None:
    address, hits = server
    port = address.rsplit(":", 1)[1]
    allow("localhost", f"127.0.0.0/8:{port}")
    result = run_http(f"http://localhost:{port}/ok")
    assert result.status == AttemptStatus.DONE, result.error_message
    assert hits == ["/ok"]


def test_redirect_to_a_listed_name_on_an_unlisted_address_is_refused(server, server2, allow) -> None:
    """127.0.0.2 is listed; it redirects to 'localhost' (listed by name) whose address 127.0.0.1 is not."""
    first, first_hits = server2
    target, target_hits = server
    allow("127.0.0.2:*", "localhost")
    port = target.rsplit(":", 1)[1]
    result = run_http(f"http://{first}/to/localhost:{port}/ok")
    assert result.status == AttemptStatus.FAILED
    assert "refused" in result.error_message and "'localhost' resolves to" in result.error_message
    assert first_hits == [f"/to/localhost:{port}/ok"]
    assert target_hits == []


def test_redirect_to_an_unlisted_host_is_refused(server, allow) -> None:
    address, hits = server
    result = run_http(f"http://{address}/to/169.254.169.254/latest/meta-data/")
    assert result.status == AttemptStatus.FAILED
    assert "redirect refused" in result.error_message and "'169.254.169.254'" in result.error_message
    assert len(hits) == 1
