"""One URL, one reading: the allow-list check and the connection agree on scheme, host and port, or nothing is sent.

Two real servers: 127.0.0.1 (listed, any port) and 127.0.0.2 (not listed, the "internal" target an attacker wants).
Every attack is judged by what reached 127.0.0.2: nothing, ever.
"""

from __future__ import annotations

import io
import ipaddress
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.core.management import CommandError

from scheduling import services
from scheduling.engine import dispatcher, executor
from scheduling.handlers.http_guard import AddressRefused, address_allowed, check_url, guarded_session
from scheduling.models import AttemptStatus, RetryPolicy, TaskAudit, TaskResult
from taskhub import config as taskhub_config
from taskhub import encryption
from taskhub.exceptions import ConfigError, ValidationError
from tests.fakes import serving_thread

pytestmark = pytest.mark.django_db


class Recorder(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append((self.path, dict(self.headers)))  # type: ignore[attr-defined]
        if self.path.startswith("/go?"):
            self.send_response(302)
            self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class Server:
    def __init__(self, host: str) -> None:
        self.httpd = ThreadingHTTPServer((host, 0), Recorder)
        self.httpd.hits = []  # type: ignore[attr-defined]
        self.httpd.location = ""  # type: ignore[attr-defined]
        self.host, self.port = host, self.httpd.server_address[1]
        serving_thread(self.httpd).start()

    @property
    def hits(self) -> list[tuple[str, dict[str, str]]]:
        return self.httpd.hits  # type: ignore[attr-defined]

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def redirect_to(self, location: str) -> str:
        self.httpd.location = location  # type: ignore[attr-defined]
        return f"http://{self.netloc}/go?x"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listed() -> Iterator[Server]:
    server = Server("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture
def internal() -> Iterator[Server]:
    server = Server("127.0.0.2")
    yield server
    server.stop()


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch):
    def set_hosts(*hosts: str, default_ports: list[int] | None = None) -> None:
        monkeypatch.setitem(settings.TASKHUB["http"], "allowed_hosts", list(hosts))
        if default_ports is not None:
            monkeypatch.setitem(settings.TASKHUB["http"], "default_ports", default_ports)

    return set_hosts


def create(url: str, **data):
    never = RetryPolicy.objects.create(name=f"no retry {RetryPolicy.objects.count()}", max_retries=3, retry_delay=0)
    return services.task_create(
        data={"name": "call", "tags": ["HTTP_REQUEST"], "parameters": {"url": url}, "retry_policy": never.pk, **data}
    )


def run(task) -> TaskResult:
    for queued in dispatcher.dispatch():
        executor.run_attempt(queued.pk)
    return TaskResult.objects.filter(task=task).order_by("attempt").first()


def refusal(url: str) -> str:
    with pytest.raises(ValidationError) as error:
        create(url)
    return " ".join(error.value.errors["parameters"])


# --- one reading at save time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        # A backslash before '@': urllib3 read the host as 127.0.0.2, the old check as 127.0.0.1.
        ("http://{listed}\\@{internal}/", "backslash"),
        ("http://{internal}\\@{listed}/", "backslash"),
        ("http://{listed}\\\\{internal}/", "backslash"),
        ("http://{listed}/\\\\{internal}/", "backslash"),
        # Userinfo, in every spelling.
        ("http://{listed}@{internal}/", "user names and passwords"),
        ("http://user:pass@{listed}/", "user names and passwords"),
        ("http://{listed}%40{internal}/", "expected an http"),  # %40 is no '@': a port that is no number
        ("http://127.0.0.1%40{internal}/", "percent-escapes are refused"),
        ("http://{listed};@{internal}/", "user names and passwords"),
        ("http://{listed}%2f@{internal}/", "user names and passwords"),
        ("http://@{listed}/", "user names and passwords"),
        # Control characters and whitespace that some parsers drop and others keep.
        ("http://{listed}\t/", "control or whitespace"),
        ("http://127.0.0.\t2:{internal_port}/", "control or whitespace"),
        ("http://{listed}\n@{internal}/", "control or whitespace"),
        ("http://{listed}\r\n/", "control or whitespace"),
        ("http://{listed}\x00/", "control or whitespace"),
        (" http://{internal}/", "control or whitespace"),
        ("http://{listed}\u200b/", "control or whitespace"),  # zero-width space (format character)
        ("http://{listed}\u3000/", "control or whitespace"),  # ideographic space
        # Hosts that normalise into another host.
        ("http://１２７.０.０.２:{internal_port}/", "must be ASCII"),  # fullwidth digits (NFKC -> 127.0.0.2)
        ("http://127。0。0。2:{internal_port}/", "must be ASCII"),  # ideographic full stops
        ("http://ⓛocalhost:{internal_port}/", "must be ASCII"),
        # Numbers a resolver reads as an IPv4 address.
        ("http://2130706434:{internal_port}/", "four decimal numbers"),
        ("http://0x7f.0.0.2:{internal_port}/", "four decimal numbers"),
        ("http://127.2:{internal_port}/", "four decimal numbers"),
        ("http://0177.0.0.02:{internal_port}/", "four decimal numbers"),
        ("http://017700000002:{internal_port}/", "four decimal numbers"),
        # Zone ids, odd ports, schemes.
        ("http://[fe80::1%25lo]:{internal_port}/", "ambiguous"),
        ("http://{listed}:80:81/", "expected an http"),
        ("http://127.0.0.1:0/", "port 0"),
        ("http:{internal}/", "expected an http"),
        ("http:/{internal}/", "expected an http"),
        ("gopher://{listed}/", "expected an http"),
    ],
)
def test_urls_that_parsers_read_differently_are_refused_when_saved(
    template: str, message: str, listed: Server, internal: Server
) -> None:
    url = template.format(listed=listed.netloc, internal=internal.netloc, internal_port=internal.port)
    assert message in refusal(url)
    assert internal.hits == [] and listed.hits == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::ffff:169.254.169.254]/", "stands for 169.254.169.254"),  # IPv4-mapped
        ("http://[::ffff:a9fe:a9fe]/", "stands for 169.254.169.254"),
        ("http://[::169.254.169.254]/", "stands for 169.254.169.254"),  # IPv4-compatible
        ("http://[2002:a9fe:a9fe::1]/", "stands for 169.254.169.254"),  # 6to4
        ("http://[64:ff9b::a9fe:a9fe]/", "stands for 169.254.169.254"),  # NAT64
        ("http://[64:ff9b::10.0.0.1]/", "stands for 10.0.0.1"),
        ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", "stands for 65.54.227.120, 169.254.169.254"),  # Teredo
    ],
)
def test_ipv6_forms_embedding_an_ipv4_address_are_judged_by_it(url: str, message: str) -> None:
    assert message in refusal(url)


def test_an_embedded_form_of_a_listed_address_is_that_address(listed: Server) -> None:
    result = run(create(f"http://[::ffff:127.0.0.1]:{listed.port}/ok"))
    assert result.status == AttemptStatus.DONE, result.error_message
    assert [path for path, _ in listed.hits] == ["/ok"]


def _teredo(client: str, server: str = "65.54.227.120") -> str:
    obfuscated = ~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64) | obfuscated
    return str(ipaddress.IPv6Address(value))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("::ffff:8.8.8.8", True),
        ("::ffff:127.0.0.1", True),  # listed in the test config
        ("::ffff:127.0.0.2", False),
        ("::127.0.0.2", False),  # IPv4-compatible
        ("::8.8.8.8", True),
        ("2002:7f00:2::", False),  # 6to4 of 127.0.0.2
        ("2002:808:808::", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::7f00:2", False),  # NAT64 of 127.0.0.2
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),
        ("64:ff9b:1::808:808", False),  # local-use NAT64 (RFC 8215): never public
        (_teredo("169.254.169.254"), False),
        (_teredo("8.8.8.8"), True),
        (_teredo("8.8.8.8", server="10.0.0.1"), False),  # both embedded addresses must pass
        ("::", False),
        ("::1", False),
    ],
)
def test_resolved_embedded_addresses_are_judged_by_the_embedded_one(address: str, allowed: bool) -> None:
    assert address_allowed(address, 443) is allowed


# --- one reading at run time: redirects -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("http://{listed}\\@{internal}/stolen", "backslash"),
        ("http://{internal}\\@{listed}/stolen", "backslash"),
        ("/\\{internal}/stolen", "backslash"),
        ("http://{listed}@{internal}/stolen", "user names and passwords"),
        ("//{listed}@{internal}/stolen", "user names and passwords"),
        ("http://127.0.0.\t2:{internal_port}/stolen", "control or whitespace"),
        ("http://{internal}/stolen", "not in http.allowed_hosts"),
        ("http://2130706434:{internal_port}/stolen", "four decimal numbers"),
        ("http://[::ffff:127.0.0.2]:{internal_port}/stolen", "stands for 127.0.0.2"),
        ("http://[64:ff9b::7f00:2]:{internal_port}/stolen", "stands for 127.0.0.2"),
        ("http://{internal}:80/stolen", "expected an http"),
    ],
)
def test_redirect_locations_get_the_same_reading(
    template: str, message: str, listed: Server, internal: Server, allow
) -> None:
    allow("127.0.0.1:*", "localhost")
    location = template.format(listed=listed.netloc, internal=internal.netloc, internal_port=internal.port)
    task = create(listed.redirect_to(location), secret_parameters={"headers": {"Authorization": "Bearer sk-9f8e7d"}})
    result = run(task)
    assert result.status == AttemptStatus.FAILED
    assert message in result.error_message, result.error_message
    assert TaskResult.objects.filter(task=task).count() == 1  # refused permanently: no retries
    assert internal.hits == []
    assert len(listed.hits) == 1


# --- the connection checks the name as well as the address ----------------------------------------------------


def test_the_connection_refuses_a_name_that_is_not_listed_even_on_a_listed_address(listed: Server, allow) -> None:
    """The check is bypassed here on purpose: the connection alone must still refuse."""
    allow("127.0.0.0/8:*")  # every loopback address may be reached, but by no name
    with pytest.raises(AddressRefused, match="'localhost' port .* is not listed"):
        guarded_session().get(f"http://localhost:{listed.port}/x", timeout=5)
    assert listed.hits == []
    guarded_session().get(f"http://127.0.0.1:{listed.port}/x", timeout=5)
    assert len(listed.hits) == 1


def test_the_connection_refuses_an_unlisted_address_literal(internal: Server, allow) -> None:
    allow("127.0.0.1:*", "localhost")
    with pytest.raises(AddressRefused, match="'127.0.0.2'"):
        guarded_session().get(f"http://{internal.netloc}/x", timeout=5)
    assert internal.hits == []


# --- ports ----------------------------------------------------------------------------------------------------


def test_an_ip_entry_without_ports_allows_only_the_default_ports(listed: Server, allow) -> None:
    allow("127.0.0.1")
    message = refusal(f"http://{listed.netloc}/x")
    assert f"port {listed.port} of host '127.0.0.1' is not allowed by http.allowed_hosts entry '127.0.0.1'" in message
    assert "http.default_ports (80, 443)" in message
    allow("10.0.0.0/8")
    assert "http.default_ports" in refusal("http://10.1.2.3:8080/")
    assert check_url("http://10.1.2.3/").port == 80 and check_url("https://10.1.2.3/").port == 443


def test_an_entry_naming_its_port_allows_that_port_only(listed: Server, allow) -> None:
    allow(f"127.0.0.1:{listed.port}")
    assert run(create(f"http://{listed.netloc}/ok")).status == AttemptStatus.DONE
    assert "is not allowed" in refusal(f"http://127.0.0.1:{listed.port + 1}/x")
    allow(f"127.0.0.0/8:{listed.port - 1}-{listed.port + 1}", "[::1]:8443")
    assert check_url(f"http://{listed.netloc}/").host == "127.0.0.1"
    assert check_url("https://[::1]:8443/").host == "::1"
    assert "is not allowed" in refusal("https://[::1]/")


def test_default_ports_can_be_configured(listed: Server, allow) -> None:
    allow("127.0.0.1", default_ports=[listed.port])
    assert run(create(f"http://{listed.netloc}/ok")).status == AttemptStatus.DONE
    assert "http.default_ports" in refusal("http://127.0.0.1/")


def test_the_port_rule_holds_at_connect_time_for_names_on_internal_addresses(listed: Server, allow) -> None:
    """'localhost' is listed by name (any port), but its address is only covered for 443."""
    allow("localhost", "127.0.0.0/8:443")
    result = run(create(f"http://localhost:{listed.port}/ok"))
    assert result.status == AttemptStatus.FAILED and "resolves to" in result.error_message
    assert listed.hits == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["10.0.0.1:99999"], "between 1 and 65535"),
        (["10.0.0.0/8:http"], "expected a port"),
        (["[fd00::1"], "expected [IPv6"),
        (["http://example.com"], "expected a port"),
        (["exa mple.com"], "expected a host name"),
    ],
)
def test_bad_allow_list_entries_stop_start_up_naming_the_key(entries: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        taskhub_config.parse({"http": {"allowed_hosts": entries}}, env={})
    assert str(error.value).startswith("http.allowed_hosts: ") and message in str(error.value)


def test_allow_list_and_default_ports_come_from_the_environment() -> None:
    loaded = taskhub_config.parse(
        {}, env={"TASKHUB_HTTP_ALLOWED_HOSTS": "10.0.0.0/8:8080, jira.example.com", "TASKHUB_HTTP_DEFAULT_PORTS": "443"}
    )
    assert loaded["http"] == {"allowed_hosts": ["10.0.0.0/8:8080", "jira.example.com"], "default_ports": [443]}
    with pytest.raises(ConfigError, match=r"http.default_ports \(from TASKHUB_HTTP_DEFAULT_PORTS\): expected a list"):
        taskhub_config.parse({}, env={"TASKHUB_HTTP_DEFAULT_PORTS": "80,0"})


# --- a new host does not inherit the task's secrets -----------------------------------------------------------


def _secrets_of(task) -> dict:
    task.refresh_from_db()
    return encryption.decrypt_json(task.secret_parameters)


@pytest.mark.parametrize(
    "new_url",
    [
        "http://localhost:{port}/ok",  # another host
        "http://127.0.0.1:{other}/ok",  # another port
        "https://127.0.0.1:{port}/ok",  # another scheme
    ],
)
def test_moving_the_url_to_another_origin_drops_the_secrets(listed: Server, new_url: str) -> None:
    secret = {"headers": {"Authorization": "Bearer sk-live-0a1b2c3d4e"}}
    task = create(f"http://{listed.netloc}/ok", secret_parameters=secret)
    url = new_url.format(port=listed.port, other=listed.port + 1)
    services.task_update(task=task, data={"parameters": {"url": url}})
    assert _secrets_of(task) == {}
    change = TaskAudit.objects.filter(task=task).order_by("-id").first().changes
    assert change["secret_parameters"] == [{"headers": {"Authorization": "<hidden>"}}, {}]


def test_the_same_origin_keeps_the_secrets_and_new_ones_given_with_the_move_are_kept(listed: Server) -> None:
    secret = {"headers": {"Authorization": "Bearer sk-live-0a1b2c3d4e"}}
    task = create(f"http://{listed.netloc}/ok", secret_parameters=secret)
    services.task_update(task=task, data={"parameters": {"url": f"http://{listed.netloc}/other?page=2"}})
    assert _secrets_of(task) == secret
    again = {"headers": {"Authorization": "Bearer sk-for-the-new-host"}}
    services.task_update(
        task=task, data={"parameters": {"url": f"http://localhost:{listed.port}/"}, "secret_parameters": again}
    )
    assert _secrets_of(task) == again
    run(task)
    assert [headers["Authorization"] for _, headers in listed.hits] == ["Bearer sk-for-the-new-host"]


def test_the_command_line_drops_the_secrets_on_a_move_too(listed: Server) -> None:
    from django.core.management import call_command

    task = create(f"http://{listed.netloc}/ok", secret_parameters={"headers": {"Authorization": "Bearer sk-cli-77"}})
    moved = json.dumps({"url": f"http://localhost:{listed.port}/ok"})
    call_command("task_action", "change", str(task.pk), "--set", f"parameters={moved}", stdout=io.StringIO())
    assert _secrets_of(task) == {}
    with pytest.raises(CommandError, match="backslash"):
        bad = json.dumps({"url": f"http://{listed.netloc}\\@127.0.0.2/"})
        call_command("task_action", "change", str(task.pk), "--set", f"parameters={bad}", stdout=io.StringIO())
