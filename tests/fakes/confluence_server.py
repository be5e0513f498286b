"""A fake Confluence (Server/Data Center REST API) on 127.0.0.1 that answers like the real one.

Pages live in memory with versions. It speaks the parts TaskHub uses:

- ``GET  /rest/api/content/{id}?expand=body.storage,version,space``: the page, or 404
- ``GET  /rest/api/content?spaceKey=&title=``: search by title
- ``PUT  /rest/api/content/{id}``: save; 409 unless ``version.number`` is the current one + 1;
  400 when the storage body is not well-formed XHTML (as Confluence's parser refuses it)
- ``POST /rest/api/content``: create (400 for a duplicate title in the space)
- 401 without the configured credentials (basic auth or a bearer token)
- ``GET /pages/{id}``: the page rendered as HTML, for people to look at (demo)

With ``cloud=True`` it answers as Confluence Cloud does (Atlassian's REST v2 docs; the
v1 content endpoints' removal): everything lives under ``/wiki``; the v1 content API
answers ``410 Gone``; pages are read, listed, created and updated through ``/wiki/api/v2``
(``pages/{id}?body-format=storage``, ``pages?space-id=&title=``, ``spaces?keys=``), a
space is named by its id, a save needs ``status``, ``title`` and ``version.number`` = the
current one + 1 (409 otherwise), the body as ``{"representation": "storage", "value"}``;
only HTTP Basic with the account's e-mail and an API token is accepted.

Tests steer it: ``fail_next`` queues error answers, ``edit_before_next_put`` simulates
someone saving the page just before us, ``down`` answers every request with 503.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import serving_thread

NAMESPACES = 'xmlns:ac="http://atlassian.com/content" xmlns:ri="http://atlassian.com/resource/identifier"'


@dataclass
class FakePage:
    id: str
    title: str
    space: str
    body: str
    version: int = 1
    parent_id: str | None = None
    history: list[str] = field(default_factory=list)

    def as_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "page",
            "status": "current",
            "title": self.title,
            "space": {"key": self.space, "name": self.space},
            "version": {"number": self.version, "minorEdit": False},
            "body": {"storage": {"value": self.body, "representation": "storage"}},
            "ancestors": [{"id": self.parent_id, "type": "page"}] if self.parent_id else [],
            "_links": {"webui": f"/pages/{self.id}", "base": base},
        }


def v2_error(status: int, title: str) -> dict[str, Any]:
    """Return Confluence Cloud v2's error shape."""
    codes = {400: "INVALID_REQUEST_PARAMETER", 404: "NOT_FOUND", 409: "CONFLICT"}
    return {"errors": [{"status": status, "code": codes.get(status, "ERROR"), "title": title, "detail": None}]}


def storage_error(body: str) -> str | None:
    """Return why Confluence would refuse ``body`` as storage format, or None when it is well-formed."""
    try:
        ET.fromstring(f"<root {NAMESPACES}>{body}</root>")
    except ET.ParseError as exc:
        return f"Error parsing xhtml: {exc}"
    return None


class FakeConfluence:
    """The server's state and controls; ``url`` is what a client connects to."""

    def __init__(
        self,
        username: str = "bot",
        password: str = "secret",
        token: str = "",
        *,
        cloud: bool = False,
        email: str = "",
        api_token: str = "",
    ) -> None:
        self.username, self.password, self.token = username, password, token
        self.cloud, self.email, self.api_token = cloud, email, api_token
        self.space_ids: dict[str, str] = {}
        self.pages: dict[str, FakePage] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[int] = []
        self.edits_before_put = 0
        self.down = False
        self.lock = threading.Lock()
        self._ids = itertools.count(100_000)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = serving_thread(self.httpd)

    # --- controls ---------------------------------------------------------------

    def start(self) -> FakeConfluence:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_page(
        self, page_id: str, title: str, *, space: str = "OPS", body: str = "<p>hello</p>", parent: str | None = None
    ) -> FakePage:
        with self.lock:
            self.pages[page_id] = FakePage(page_id, title, space, body, parent_id=parent)
            return self.pages[page_id]

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status``."""
        self.failures.extend([status] * times)

    def edit_before_next_put(self, times: int = 1) -> None:
        """Let 'someone else' save the page just before our next ``times`` saves (they get 409)."""
        self.edits_before_put += times

    def count(self, method: str, prefix: str = "") -> int:
        return sum(1 for m, path in self.requests if m == method and path.startswith(prefix))

    # --- request handling (called from the handler threads) --------------------------

    def space_id(self, key: str) -> str:
        """Return the (Cloud) id of a space, made up on first use."""
        return self.space_ids.setdefault(key, str(98_000 + len(self.space_ids)))

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        kind, _, value = header.partition(" ")
        if self.cloud:
            try:
                email, _, api_token = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            credentials = (email, api_token) == (self.email, self.api_token)
            return kind.lower() == "basic" and bool(self.api_token) and credentials
        if kind.lower() == "bearer":
            return bool(self.token) and value == self.token
        if kind.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and password == self.password
        return False

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if self.cloud:
            if parts[:1] != ["wiki"]:
                return 404, {"message": "Not Found"}
            parts = parts[1:]
            if parts[:3] == ["rest", "api", "content"]:
                return 410, {
                    "statusCode": 410,
                    "message": "This deprecated endpoint has been removed. Please use the v2 API "
                    "(https://developer.atlassian.com/cloud/confluence/rest/v2/)",
                }
            if parts[:2] == ["api", "v2"]:
                with self.lock:
                    return self._v2(method, parts[2:], query, body)
            return 404, {"message": "Not Found"}
        if parts[:3] != ["rest", "api", "content"]:
            return 404, {"statusCode": 404, "message": f"null for uri: {path}"}
        page_id = parts[3] if len(parts) > 3 else None
        with self.lock:
            if method == "GET" and page_id:
                page = self.pages.get(page_id)
                if page is None:
                    return 404, {"statusCode": 404, "message": f"No content found with id: ContentId{{id={page_id}}}"}
                return 200, page.as_json(self.url)
            if method == "GET":
                space, title = query.get("spaceKey", [""])[0], query.get("title", [""])[0]
                found = [p.as_json(self.url) for p in self.pages.values() if p.space == space and p.title == title]
                return 200, {"results": found, "start": 0, "limit": 25, "size": len(found)}
            if method == "PUT" and page_id:
                return self._update(page_id, body)
            if method == "POST" and not page_id:
                return self._create(body)
        return 405, {"statusCode": 405, "message": "Method not allowed"}

    def v2_json(self, page: FakePage, body: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": page.id,
            "status": "current",
            "title": page.title,
            "spaceId": self.space_id(page.space),
            "parentId": page.parent_id,
            "parentType": "page" if page.parent_id else None,
            "version": {"number": page.version, "message": "", "minorEdit": False},
            "_links": {"webui": f"/spaces/{page.space}/pages/{page.id}"},
        }
        if body:
            data["body"] = {"storage": {"representation": "storage", "value": page.body}}
        return data

    def _v2(self, method: str, parts: list[str], query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        resource, rest = (parts[0] if parts else ""), parts[1:]
        with_body = query.get("body-format", [""])[0] == "storage"
        if resource == "spaces" and method == "GET":
            keys = set(query.get("keys", []))
            spaces = {p.space for p in self.pages.values()}
            found = [{"id": self.space_id(k), "key": k, "name": k, "type": "global"} for k in sorted(spaces & keys)]
            return 200, {"results": found, "_links": {}}
        if resource != "pages":
            return 404, v2_error(404, "Not Found")
        if method == "GET" and rest:
            page = self.pages.get(rest[0])
            if page is None:
                return 404, v2_error(404, "Not Found")
            return 200, self.v2_json(page, with_body)
        if method == "GET":
            space_id, title = query.get("space-id", [""])[0], query.get("title", [""])[0]
            found = [
                self.v2_json(p, with_body)
                for p in self.pages.values()
                if self.space_id(p.space) == space_id and (not title or p.title == title)
            ]
            return 200, {"results": found, "_links": {}}
        if method == "POST" and not rest:
            return self._v2_create(body)
        if method == "PUT" and rest:
            return self._v2_update(rest[0], body)
        return 405, v2_error(405, "Method Not Allowed")

    def _v2_storage(self, body: Any) -> str | None:
        content = (body or {}).get("body") if isinstance(body, dict) else None
        if isinstance(content, dict) and content.get("representation") == "storage":
            return content.get("value")
        return None

    def _v2_create(self, body: Any) -> tuple[int, Any]:
        value = self._v2_storage(body)
        if not isinstance(body, dict) or not body.get("spaceId") or not body.get("title") or value is None:
            return 400, v2_error(400, "spaceId, title and body (representation storage) are required")
        space = next((key for key, sid in self.space_ids.items() if sid == str(body["spaceId"])), None)
        if space is None:
            return 404, v2_error(404, f"No space with id {body['spaceId']}")
        parent = body.get("parentId")
        if parent is not None and str(parent) not in self.pages:
            return 404, v2_error(404, f"No parent page with id {parent}")
        if any(p.space == space and p.title == body["title"] for p in self.pages.values()):
            return 400, v2_error(400, "A page with this title already exists in this space")
        error = storage_error(value)
        if error:
            return 400, v2_error(400, error)
        page_id = str(next(self._ids))
        self.pages[page_id] = FakePage(page_id, body["title"], space, value, parent_id=str(parent) if parent else None)
        return 200, self.v2_json(self.pages[page_id])

    def _v2_update(self, page_id: str, body: Any) -> tuple[int, Any]:
        page = self.pages.get(page_id)
        if page is None:
            return 404, v2_error(404, "Not Found")
        if self.edits_before_put:
            self.edits_before_put -= 1
            page.history.append(page.body)
            page.version += 1
            page.body = "<p>edited by someone else</p>"
        value = self._v2_storage(body)
        try:
            number = int(body["version"]["number"])
            status, title = body["status"], body["title"]
        except (KeyError, TypeError, ValueError):
            return 400, v2_error(400, "id, status, title and version.number are required")
        if value is None or status != "current" or not title:
            return 400, v2_error(400, "body (representation storage), status current and a title are required")
        if number != page.version + 1:
            return 409, v2_error(409, f"Version must be incremented on update. Current version is: {page.version}")
        error = storage_error(value)
        if error:
            return 400, v2_error(400, error)
        page.history.append(page.body)
        page.version, page.body, page.title = number, value, title
        return 200, self.v2_json(page)

    def _update(self, page_id: str, body: Any) -> tuple[int, Any]:
        page = self.pages.get(page_id)
        if page is None:
            return 404, {"statusCode": 404, "message": f"No content found with id: ContentId{{id={page_id}}}"}
        if self.edits_before_put:
            self.edits_before_put -= 1
            page.history.append(page.body)
            page.version += 1
            page.body = "<p>edited by someone else</p>"
        try:
            number = int(body["version"]["number"])
            value = body["body"]["storage"]["value"]
        except (KeyError, TypeError, ValueError):
            return 400, {"statusCode": 400, "message": "Invalid content: version and body.storage are required"}
        if number != page.version + 1:
            return 409, {
                "statusCode": 409,
                "message": f"Version must be incremented on update. Current version is: {page.version}",
            }
        error = storage_error(value)
        if error:
            return 400, {"statusCode": 400, "message": error}
        page.history.append(page.body)
        page.version, page.body = number, value
        page.title = body.get("title") or page.title
        return 200, page.as_json(self.url)

    def _create(self, body: Any) -> tuple[int, Any]:
        try:
            title, space = body["title"], body["space"]["key"]
            value = body["body"]["storage"]["value"]
        except (KeyError, TypeError):
            return 400, {"statusCode": 400, "message": "title, space.key and body.storage are required"}
        parent = (body.get("ancestors") or [{}])[0].get("id")
        if parent is not None and str(parent) not in self.pages:
            return 404, {"statusCode": 404, "message": f"No parent page with id {parent}"}
        if any(p.space == space and p.title == title for p in self.pages.values()):
            return 400, {"statusCode": 400, "message": "A page with this title already exists"}
        error = storage_error(value)
        if error:
            return 400, {"statusCode": 400, "message": error}
        page_id = str(next(self._ids))
        self.pages[page_id] = FakePage(page_id, title, space, value, parent_id=str(parent) if parent else None)
        return 200, self.pages[page_id].as_json(self.url)


def render_html(page: FakePage) -> str:
    """Show a storage-format page as a browser would roughly see it (status macros as coloured labels)."""
    colours = {"Green": "#36b37e", "Red": "#de350b", "Yellow": "#ffab00", "Blue": "#0065ff", "Grey": "#6b778c"}

    def status(match: re.Match[str]) -> str:
        colour = re.search(r'ac:name="colour">([^<]*)<', match.group(0))
        title = re.search(r'ac:name="title">([^<]*)<', match.group(0))
        background = colours.get(colour.group(1) if colour else "", "#6b778c")
        text = title.group(1) if title else ""
        return f'<span style="background:{background};color:#fff;padding:1px 6px;border-radius:3px">{text}</span>'

    body = re.sub(r'<ac:structured-macro ac:name="status">.*?</ac:structured-macro>', status, page.body, flags=re.S)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(page.title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} "
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head>"
        f"<body><h1>{html.escape(page.title)}</h1><p><small>fake Confluence, page {page.id}, "
        f"version {page.version}</small></p>{body}</body></html>"
    )


def _handler(server: FakeConfluence) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _answer(self, status: int, data: Any, content_type: str = "application/json") -> None:
            payload = (json.dumps(data) if content_type == "application/json" else data).encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type};charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            server.requests.append((method, parts.path))
            if method == "GET" and (parts.path.rstrip("/") in ("", "/pages") or parts.path.startswith("/pages/")):
                return self._pages(parts.path)
            if server.down:
                return self._answer(503, "Service Unavailable", "text/html")
            if server.failures:
                status = server.failures.pop(0)
                return self._answer(status, {"statusCode": status, "message": f"injected failure {status}"})
            if not server.authorized(self.headers.get("Authorization")):
                # Confluence answers unauthenticated REST calls with 401 and an HTML-ish body.
                return self._answer(401, "Basic authentication required", "text/plain")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._answer(400, {"statusCode": 400, "message": "Malformed JSON"})
            status, data = server.handle(method, parts.path, parse_qs(parts.query), body)
            self._answer(status, data)

        def _pages(self, path: str) -> None:
            page_id = path.rstrip("/").rpartition("/")[2]
            with server.lock:
                if page_id in server.pages:
                    return self._answer(200, render_html(server.pages[page_id]), "text/html")
                links = "".join(
                    f'<li><a href="/pages/{p.id}">{html.escape(p.title)}</a> (version {p.version})</li>'
                    for p in server.pages.values()
                )
            self._answer(
                200, f"<!DOCTYPE html><html><body><h1>Fake Confluence</h1><ul>{links}</ul></body></html>", "text/html"
            )

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
