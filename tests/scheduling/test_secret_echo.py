"""Secrets a server echoes back never reach a stored attempt, a log line or a report, in any form, at any offset.

A careless (or hostile) server on 127.0.0.1 answers the task that sent ``Authorization: Bearer T`` with T: alone,
inside "Bearer T", URL-encoded, base64-encoded inside "Basic base64(user:T)", in a redirect's Location, and placed
at every offset around each cut (the 2,000-character body excerpt, the 200-character excerpt in the error, the
10,000-character error and traceback). Scrubbing runs before cutting, so not even part of T survives.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest
from django.conf import settings

from scheduling import services
from scheduling.engine import dispatcher, executor
from scheduling.engine.executor import MAX_ERROR
from scheduling.handlers.builtin import BODY_EXCERPT
from scheduling.models import AttemptStatus, RetryPolicy, TaskResult
from taskhub import scrubbing
from tests.fakes import serving_thread

pytestmark = pytest.mark.django_db

TOKEN = "sk-LIVE-7f3a9c1e5b2d"  # planted: no 6 consecutive characters of it may come back out
CONFIG_TOKEN = "PLNT-jira-cfg-4a8b2c"  # a configuration secret the server has somehow learnt
SURVIVOR = 6  # the shortest piece of a secret that counts as a leak


def _pieces(secret: str) -> list[str]:
    return [secret[i : i + SURVIVOR] for i in range(len(secret) - SURVIVOR + 1)]


def leaked(text: str, *secrets: str) -> list[str]:
    """Return the pieces of the secrets, in their plain and encoded forms, that appear in ``text``."""
    found = []
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), quote_plus(secret)}
        for form in forms:
            found += [piece for piece in _pieces(form) if piece in text]
    return found


class Echo(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        received = self.headers.get("Authorization", "")
        token = received.removeprefix("Bearer ")
        self.server.received.append(received)  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        pad = "x" * int(query.get("pad", 0))
        secret = CONFIG_TOKEN if query.get("which") == "config" else token
        if url.path == "/body":  # a 200 whose body holds the secret at offset ``pad``
            self._reply(200, pad + secret + "z" * 3000)
        elif url.path == "/deny":  # the classic: "401 invalid token T"
            self._reply(401, pad + "invalid token " + secret)
        elif url.path == "/forms":
            basic = base64.b64encode(f"taskhub-bot:{token}".encode()).decode()
            self._reply(
                403,
                f"got {received!r}; as Basic {basic}; quoted {quote(token, safe='').lower()}; plus {quote_plus(token)};"
                f" b64 {base64.urlsafe_b64encode(token.encode()).decode().rstrip('=')}; json {json.dumps(received)}",
            )
        elif url.path == "/hop":  # a redirect that puts the secret in the next URL, padded to reach a cut
            before, after = "a" * int(query.get("before", 0)), "b" * int(query.get("after", 0))
            self._reply(302, headers={"Location": f"/deny?long={before}&t={secret}&more={after}"})
        else:
            self._reply(404)


@pytest.fixture
def echo() -> Iterator[tuple[str, list[str]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    httpd.received = []  # type: ignore[attr-defined]
    serving_thread(httpd).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.received  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def config_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(settings.TASKHUB["jira"], "token", CONFIG_TOKEN)


def attempt(url: str, **parameters) -> TaskResult:
    policy, _ = RetryPolicy.objects.get_or_create(name="echo: never retry", defaults={"max_retries": 0})
    task = services.task_create(
        data={
            "name": "echo",
            "tags": ["HTTP_REQUEST"],
            "parameters": {"url": url, **parameters},
            "secret_parameters": {"headers": {"Authorization": f"Bearer {TOKEN}"}},
            "retry_policy": policy.pk,
        }
    )
    for queued in dispatcher.dispatch():
        executor.run_attempt(queued.pk)
    return TaskResult.objects.get(task=task, attempt=1)


def stored(result: TaskResult) -> str:
    result.refresh_from_db()
    return "\n".join([result.error_message, result.traceback, json.dumps(result.result), result.progress_message])


def test_the_token_is_scrubbed_in_every_form_the_server_echoes(echo, caplog) -> None:
    base, received = echo
    caplog.set_level(logging.DEBUG)
    result = attempt(f"{base}/forms")
    assert received == [f"Bearer {TOKEN}"]  # the secret was really sent
    assert result.status == AttemptStatus.FAILED and "HTTP 403" in result.error_message
    assert "<hidden>" in result.error_message
    assert leaked(stored(result), TOKEN) == []
    basic = base64.b64encode(f"taskhub-bot:{TOKEN}".encode()).decode()
    assert basic[12:30] not in stored(result)  # the token's part of base64(user:token)
    assert leaked(caplog.text, TOKEN) == [] and basic[12:30] not in caplog.text


@pytest.mark.parametrize("pad", range(BODY_EXCERPT - len(TOKEN) - 2, BODY_EXCERPT + 2))
def test_a_secret_straddling_the_body_excerpt_cut_leaves_no_part(echo, pad: int) -> None:
    base, _ = echo
    result = attempt(f"{base}/body?pad={pad}")
    assert result.status == AttemptStatus.DONE
    assert len(result.result["body"]) == BODY_EXCERPT
    assert leaked(stored(result), TOKEN) == [], result.result["body"][-40:]


@pytest.mark.parametrize("which", ["task", "config"])
@pytest.mark.parametrize("pad", range(200 - len("invalid token ") - len(TOKEN) - 2, 200 - len("invalid token ") + 2))
def test_a_secret_straddling_the_error_excerpt_cut_leaves_no_part(echo, pad: int, which: str) -> None:
    base, _ = echo
    result = attempt(f"{base}/deny?pad={pad}&which={which}")
    assert result.status == AttemptStatus.FAILED and "unexpected status 401" in result.error_message
    assert leaked(stored(result), TOKEN, CONFIG_TOKEN) == [], result.error_message[-80:]


def _calibrate(base: str) -> tuple[int, int]:
    """Return where a redirect's padding starts in the stored error and how long the uncut traceback is."""
    result = attempt(f"{base}/hop?before=0")
    result.refresh_from_db()
    assert len(result.error_message) < MAX_ERROR and len(result.traceback) < MAX_ERROR
    return result.error_message.index("long=") + len("long=&t="), len(result.traceback)


def test_a_secret_straddling_the_error_cut_leaves_no_part(echo) -> None:
    """The token sits in the redirected URL; the padding before it moves it across the error's MAX_ERROR cut."""
    base, _ = echo
    start, _ = _calibrate(base)
    pads = range(MAX_ERROR - start - len(TOKEN) - 2, MAX_ERROR - start + 2)
    for pad in pads:
        result = attempt(f"{base}/hop?before={pad}")
        text = stored(result)
        assert len(result.error_message) == MAX_ERROR  # the cut really fell in the token
        assert leaked(text, TOKEN) == [], (pad, result.error_message[-40:])
        assert "/deny?long=" in result.error_message


def test_a_secret_straddling_the_traceback_cut_leaves_no_part(echo) -> None:
    """The traceback keeps its last MAX_ERROR characters: padding after the token moves it across that cut."""
    base, _ = echo
    first = attempt(f"{base}/hop?after=0")
    first.refresh_from_db()
    at, length = first.traceback.index("t=<hidden>") + 2, len(first.traceback)
    # The window starts at len - MAX_ERROR: sweep it over the token, in scrubbed and in raw (longer) coordinates.
    centre = MAX_ERROR - length + at
    for after in range(centre - len(TOKEN) - 16, centre + 16):
        result = attempt(f"{base}/hop?after={after}")
        assert len(result.traceback) == MAX_ERROR
        assert leaked(stored(result), TOKEN) == [], (after, result.traceback[:40])


# --- the one scrubber ----------------------------------------------------------------------------------------


def _forms_of(token: str) -> list[str]:
    """Forms written here independently of the scrubber's own list."""
    raw = token.encode()
    return [
        token,
        f"Bearer {token}",
        quote(token, safe=""),
        quote(token, safe="").lower(),
        quote_plus(token),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        json.dumps(token)[1:-1],
    ]


SECRETS = ["sk-LIVE-7f3a9c1e5b2d", "p@ss/w0rd+with=odd&chars", "ünïcode-sëcret-ß", 'quote"back\\slash']


@pytest.mark.parametrize("secret", SECRETS)
def test_scrub_removes_every_form_of_a_header_token(secret: str) -> None:
    for form in _forms_of(secret):
        text = f"before {form} after"
        assert scrubbing.scrub(text, [f"Bearer {secret}"]) == "before <hidden> after", form


@pytest.mark.parametrize("user", ["u", "us", "usr", "taskhub-bot"])
def test_scrub_removes_the_token_from_base64_of_user_and_token_at_every_alignment(user: str) -> None:
    token = "sk-LIVE-7f3a9c1e5b2d"
    for secret in (token, f"Basic {base64.b64encode(f'{user}:{token}'.encode()).decode()}"):
        for encoded in (f"{user}:{token}", f"{user}:{token}:tail"):
            text = base64.b64encode(encoded.encode()).decode()
            scrubbed = scrubbing.scrub(text, [secret])
            assert "<hidden>" in scrubbed, (secret, text)
            # at most the two characters on each side that also depend on the neighbouring bytes survive
            assert len(scrubbed) - len("<hidden>") <= len(text) - (len(token) * 4 // 3 - 4)


def test_basic_credentials_are_scrubbed_decoded_too() -> None:
    header = "Basic " + base64.b64encode(b"taskhub-bot:pa55-w0rd-xyz").decode()
    assert scrubbing.scrub("login taskhub-bot:pa55-w0rd-xyz refused; pa55-w0rd-xyz", [header]) == (
        "login <hidden> refused; <hidden>"
    )


@pytest.mark.parametrize("keep", ["start", "end"])
@pytest.mark.parametrize("secret", SECRETS)
def test_cut_scrubs_before_cutting_at_every_offset(secret: str, keep: str) -> None:
    limit = 100
    for form in _forms_of(secret):
        for offset in range(limit - len(form) - 2, limit + 2):
            text = "." * offset + form + "," * 200 if keep == "start" else "." * 200 + form + "," * offset
            out = scrubbing.cut(text, limit, [secret], keep=keep)
            assert len(out) <= limit
            secret_part = secret if form.startswith("Bearer ") else form  # "Bearer " itself is no secret
            assert not any(piece in out for piece in _pieces(secret_part)), (form, offset, out)


def test_cut_of_text_read_in_part_drops_a_secret_start_at_its_end() -> None:
    secret = "sk-LIVE-7f3a9c1e5b2d"
    for keep in range(3, len(secret)):
        partial = "." * 50 + secret[:keep]  # the reader stopped inside the secret
        out = scrubbing.cut(partial, 1000, [secret], complete=False)
        assert not any(piece in out for piece in _pieces(secret)), out


def test_config_secrets_and_the_running_handlers_are_scrubbed_by_default() -> None:
    from taskhub import encryption

    with encryption.secrets_in_use(["task-secret-0042"]):
        text = scrubbing.scrub({"a": [f"{CONFIG_TOKEN} task-secret-0042", {quote(CONFIG_TOKEN): 1}]})
    assert text == {"a": ["<hidden> <hidden>", {"<hidden>": 1}]}
    assert scrubbing.scrub("task-secret-0042") == "task-secret-0042"  # only while its handler runs


def test_log_lines_are_scrubbed_in_every_form(caplog) -> None:
    from taskhub.logconfig import RedactSecrets

    logger = logging.getLogger("tests.scrub.forms")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactSecrets([f"Bearer {TOKEN}"]))
    logger.addHandler(handler)
    try:
        logger.warning("server said %s and %s", TOKEN, base64.b64encode(TOKEN.encode()).decode())
    finally:
        logger.removeHandler(handler)
    assert records == ["server said <hidden> and <hidden>"]
