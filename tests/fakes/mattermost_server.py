"""A fake Mattermost incoming-webhook endpoint on 127.0.0.1 that answers like the real one.

``POST /hooks/{key}`` with a JSON body (or a form field ``payload`` holding JSON) posts a
message: 200 ``ok``. Like Mattermost it answers 400 with a JSON error for an unknown hook,
a body that is not JSON, or a message with neither ``text`` nor ``attachments``.
``GET /`` shows the received messages as HTML (demo). ``down`` answers 503.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import serving_thread


def _error(error_id: str, message: str) -> dict[str, Any]:
    return {
        "id": error_id,
        "message": message,
        "detailed_error": "",
        "request_id": secrets.token_hex(13),
        "status_code": 400,
    }


def _inline(text: str) -> str:
    """Render the inline markdown our messages use: escapes, **bold**, _italic_, [text](url), :emoji:."""
    escaped: list[str] = []

    def keep(match: re.Match[str]) -> str:
        escaped.append(match.group(1))
        return f"\x00{len(escaped) - 1}\x00"

    text = html.escape(re.sub(r"\\(.)", keep, text), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"<i>\1</i>", text)
    text = re.sub(r"\[([^\]]*)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)
    text = text.replace(":red_circle:", "\U0001f534").replace(":large_green_circle:", "\U0001f7e2")
    return re.sub("\x00(\\d+)\x00", lambda m: html.escape(escaped[int(m.group(1))]), text)


def markdown_html(text: str) -> str:
    """Show a message roughly as Mattermost would: headings, paragraphs and pipe tables."""
    out: list[str] = []
    table: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            if not all(re.fullmatch(r"\s*:?-+:?\s*", cell) for cell in cells):
                table.append(cells)
            continue
        if table:
            head, *body = table
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c.strip())}</td>" for c in r) + "</tr>" for r in body)
            out.append(
                "<table border=1 cellpadding=4 style='border-collapse:collapse'><tr>"
                + "".join(f"<th>{_inline(c.strip())}</th>" for c in head)
                + f"</tr>{rows}</table>"
            )
            table = []
        if line.startswith("#"):
            out.append(f"<h4>{_inline(line.lstrip('#').strip())}</h4>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return "".join(out)


class FakeMattermost:
    """Records every accepted message; ``webhook_url`` is the URL to configure."""

    def __init__(self) -> None:
        self.key = secrets.token_hex(13)
        self.messages: list[dict[str, Any]] = []
        self.attempts = 0
        self.down = False
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.webhook_url = f"{self.url}/hooks/{self.key}"
        self.thread = serving_thread(self.httpd)

    def start(self) -> FakeMattermost:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def texts(self) -> list[str]:
        with self.lock:
            return [m.get("text", "") for m in self.messages]

    def receive(self, path: str, content_type: str, raw: bytes) -> tuple[int, Any]:
        """Apply Mattermost's checks to one webhook call; return (status, body)."""
        self.attempts += 1
        if self.down:
            return 503, "Service Unavailable"
        if path.rstrip("/") != f"/hooks/{self.key}":
            return 400, _error("web.incoming_webhook.invalid.app_error", "Invalid webhook.")
        text = raw.decode("utf-8", errors="replace")
        if content_type.startswith("application/x-www-form-urlencoded"):
            text = parse_qs(text).get("payload", [""])[0]
        try:
            payload = json.loads(text)
        except ValueError:
            return 400, _error("web.incoming_webhook.parse.app_error", "Unable to parse incoming data.")
        if not isinstance(payload, dict):
            return 400, _error("web.incoming_webhook.parse.app_error", "Unable to parse incoming data.")
        if not payload.get("text") and not payload.get("attachments"):
            return 400, _error("web.incoming_webhook.text.app_error", "No text specified.")
        with self.lock:
            self.messages.append(payload)
        return 200, "ok"

    def page(self) -> str:
        with self.lock:
            items = "".join(
                f"<li><p><b>{html.escape(str(m.get('username', '')))}</b> "
                f"{html.escape(str(m.get('channel', '')))}</p>{markdown_html(str(m.get('text', '')))}</li>"
                for m in reversed(self.messages)
            )
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Fake Mattermost</title></head>"
            f"<body style='font-family:sans-serif'><h1>Fake Mattermost: {len(self.messages)} messages</h1>"
            f"<ol reversed>{items}</ol></body></html>"
        )


def _handler(server: FakeMattermost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _answer(self, status: int, data: Any) -> None:
            is_json = not isinstance(data, str)
            payload = (json.dumps(data) if is_json else data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if is_json else "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, data = server.receive(urlsplit(self.path).path, self.headers.get("Content-Type", ""), raw)
            self._answer(status, data)

        def do_GET(self) -> None:
            payload = server.page().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
