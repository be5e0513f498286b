"""A fake Jira Server / Data Center (REST API v2) on 127.0.0.1 that answers like the real one.

Issues live in memory. It speaks the parts TaskHub uses, with Jira's shapes and errors:

- ``GET  /rest/api/2/serverInfo``, ``/field`` (with the Epic Link and Story Points custom
  fields), ``/myself`` (with the user's ``timeZone``, which JQL dates are read in)
- ``GET|POST /rest/api/2/search``: a JQL subset (``project``, ``key``/``issue``, ``parent``,
  ``"Epic Link"``, ``status``, ``assignee``, ``type``, ``labels``, ``created``/``updated``
  comparisons, ``issue in linkedIssues(KEY)``, AND/OR/NOT, parentheses, ORDER BY), paginated
  with ``startAt``/``maxResults``/``total``; ``maxResults`` is capped like Jira's
  ``jira.search.views.default.max``; ``validateQuery=false`` turns unknown values into warnings
- ``GET  /rest/api/2/issue/{key}`` with ``fields``; issues carry ``self`` links, sub-tasks,
  parent, issue links (both sides), labels, components, fix versions and custom fields, and
  fields marked absent are left out of the JSON as Jira does for fields not on the screen
- ``PUT  /rest/api/2/issue/{key}`` (field edits), ``GET|POST .../transitions``, ``POST .../comment``
- 401 without the configured credentials (basic auth or a bearer personal access token)

With ``cloud=True`` it answers as Jira Cloud does instead (Atlassian's REST v3 docs and the
changelog's CHANGE-2046 removal of the old search):

- ``serverInfo`` says ``deploymentType: Cloud``; REST v2 and v3 are both served;
- ``/rest/api/{2,3}/search`` answers ``410 Gone`` (the API was removed); the enhanced
  search ``/rest/api/{2,3}/search/jql`` pages with an opaque ``nextPageToken`` and
  ``isLast``, gives no ``total`` / ``startAt``, returns only ``id`` unless fields are
  named, caps a page at 100 issues, and refuses (400) a JQL naming unknown issue keys or
  projects, each listed (there is no ``validateQuery``);
- people have an ``accountId`` and ``displayName``, no ``name`` / ``key``; there is no
  "Epic Link" field: an epic owns its issues through ``parent`` (``parent in (EPIC)``
  finds them); story points live in "Story point estimate" (``customfield_10016``);
- REST v3 returns rich text (description) as ADF and refuses a plain string where ADF
  is written (comment bodies, description edits);
- only HTTP Basic with the account's e-mail and its API token is accepted: a password,
  a user name or a Bearer token answer 401, on every resource when the header is wrong.

Both answer ``fail_next(429, retry_after=...)`` with a ``Retry-After`` header, and with
``self_transitions=True`` every status offers a global "Done" transition, also from Done
(as workflows with global transitions do).

Tests steer it: ``fail_next(status, times, path=)`` queues error answers, ``delay`` slows
every answer, ``hidden`` keys are invisible to the user (404, left out of searches), and
``generate(project, n)`` creates many issues for big exports.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import re
import ssl
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import serving_thread

EPIC_LINK = "customfield_10100"
EPIC_NAME = "customfield_10101"
STORY_POINTS = "customfield_10106"
CLOUD_STORY_POINTS = "customfield_10016"
REMOVED_SEARCH = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
CLOUD_PAGE_CAP = 100

STATUSES = {
    "To Do": ("10000", "new", "To Do"),
    "In Progress": ("3", "indeterminate", "In Progress"),
    "Done": ("10001", "done", "Done"),
}
# status -> [(transition id, name, target status)]
WORKFLOW = {
    "To Do": [("11", "Start Progress", "In Progress"), ("31", "Done", "Done")],
    "In Progress": [("21", "Stop Progress", "To Do"), ("31", "Done", "Done")],
    "Done": [("41", "Reopen", "To Do")],
}
ISSUE_TYPES = {"Epic": "10000", "Story": "10001", "Task": "10002", "Bug": "10004", "Sub-task": "10003"}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
LINK_TYPES = {
    "Blocks": ("10000", "is blocked by", "blocks"),
    "Relates": ("10003", "relates to", "relates to"),
    "Cloners": ("10001", "is cloned by", "clones"),
}
FIELDS = [
    ("summary", "Summary", False, {"type": "string", "system": "summary"}),
    ("issuetype", "Issue Type", False, {"type": "issuetype", "system": "issuetype"}),
    ("status", "Status", False, {"type": "status", "system": "status"}),
    ("priority", "Priority", False, {"type": "priority", "system": "priority"}),
    ("assignee", "Assignee", False, {"type": "user", "system": "assignee"}),
    ("reporter", "Reporter", False, {"type": "user", "system": "reporter"}),
    ("created", "Created", False, {"type": "datetime", "system": "created"}),
    ("updated", "Updated", False, {"type": "datetime", "system": "updated"}),
    ("resolution", "Resolution", False, {"type": "resolution", "system": "resolution"}),
    ("parent", "Parent", False, {}),
    ("labels", "Labels", False, {"type": "array", "items": "string", "system": "labels"}),
    ("components", "Component/s", False, {"type": "array", "items": "component", "system": "components"}),
    ("fixVersions", "Fix Version/s", False, {"type": "array", "items": "version", "system": "fixVersions"}),
    ("issuelinks", "Linked Issues", False, {"type": "array", "items": "issuelinks", "system": "issuelinks"}),
    ("subtasks", "Sub-Tasks", False, {"type": "array", "items": "issuelinks", "system": "subtasks"}),
    ("description", "Description", False, {"type": "string", "system": "description"}),
    ("project", "Project", False, {"type": "project", "system": "project"}),
    (EPIC_LINK, "Epic Link", True, {"type": "any", "custom": "com.pyxis.greenhopper.jira:gh-epic-link"}),
    (EPIC_NAME, "Epic Name", True, {"type": "string", "custom": "com.pyxis.greenhopper.jira:gh-epic-label"}),
    (
        STORY_POINTS,
        "Story Points",
        True,
        {"type": "number", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float"},
    ),
]
SETTABLE = {"summary", "description", "labels", "priority", "assignee", "components", "fixVersions", STORY_POINTS}


class JqlError(Exception):
    """A JQL query Jira would refuse with 400."""


@dataclass(slots=True)
class FakeIssue:
    id: int
    key: str
    project: str
    summary: str
    type: str = "Task"
    status: str = "To Do"
    priority: str | None = "Medium"
    assignee: str | None = None
    reporter: str | None = "alice"
    created: datetime = field(default_factory=lambda: datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    updated: datetime = field(default_factory=lambda: datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    resolution: str | None = None
    parent: str | None = None
    epic: str | None = None
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    fix_versions: list[str] = field(default_factory=list)
    story_points: float | None = None
    description: str | None = None
    omit: frozenset[str] = frozenset()
    comments: list[str] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])


class FakeJira:
    """The server's state and controls; ``url`` is what a client connects to."""

    def __init__(
        self,
        *,
        username: str = "bot",
        password: str = "secret",
        token: str = "",
        time_zone: str = "Europe/Berlin",
        max_results_cap: int = 1000,
        epic_link_field: bool = True,
        tls: tuple[str, str] | None = None,
        cloud: bool = False,
        email: str = "",
        api_token: str = "",
        self_transitions: bool = False,
    ) -> None:
        self.username, self.password, self.token = username, password, token
        self.cloud, self.email, self.api_token = cloud, email, api_token
        self.self_transitions = self_transitions
        if cloud:
            epic_link_field = False
            max_results_cap = min(max_results_cap, CLOUD_PAGE_CAP)
        self.story_points_field = CLOUD_STORY_POINTS if cloud else STORY_POINTS
        self.time_zone = time_zone
        self.max_results_cap = max_results_cap
        self.epic_link_field = epic_link_field
        self.projects: dict[str, str] = {}
        self.issues: dict[str, FakeIssue] = {}  # upper-case key -> issue
        self.links: list[tuple[str, str, str, str]] = []  # (id, type, outward key, inward key)
        self.users: dict[str, str] = {"alice": "Alice Archer", "bob": "Bob Baker", "carol": "Carol Chen"}
        self.hidden: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.failures: list[tuple[int, str, str, str]] = []
        self.delay = 0.0
        self.lock = threading.RLock()
        self._ids = itertools.count(10_001)
        self._link_ids = itertools.count(20_001)
        self._version = 0
        self._api_version = "2"  # of the request being handled (under the lock)
        self._cache: dict[tuple[str, int], tuple[list[FakeIssue], list[str]]] = {}
        self._indexed = -1
        self._by_parent: dict[str, list[str]] = {}
        self._by_link: dict[str, list[tuple[str, str, str, str]]] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:  # (certificate file, key file): serve HTTPS with that certificate
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = serving_thread(self.httpd)

    # --- controls ---------------------------------------------------------------

    def start(self) -> FakeJira:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_project(self, key: str, name: str = "") -> None:
        with self.lock:
            self.projects[key.upper()] = name or key.title()

    def add_issue(self, key: str, summary: str = "", **fields: Any) -> FakeIssue:
        """Add an issue (its project too); ``omit={"priority"}`` leaves fields out of the JSON."""
        with self.lock:
            project = key.rsplit("-", 1)[0].upper()
            self.projects.setdefault(project, project.title())
            if "omit" in fields:
                fields["omit"] = frozenset(fields["omit"])
            issue = FakeIssue(next(self._ids), key.upper(), project, summary or f"Issue {key}", **fields)
            self.issues[issue.key] = issue
            self._version += 1
            return issue

    def link(self, outward: str, inward: str, kind: str = "Blocks") -> None:
        """Link two issues: ``outward`` <kind.outward> ``inward`` (PROJ-1 blocks PROJ-2)."""
        with self.lock:
            self.links.append((str(next(self._link_ids)), kind, outward.upper(), inward.upper()))
            self._version += 1

    def generate(self, project: str, count: int, *, seed: int = 7) -> None:
        """Create ``count`` issues PROJECT-1..count with varied fields, epics and links (for big exports)."""
        rng = random.Random(seed)
        start = datetime(2023, 1, 1, tzinfo=UTC)
        users = [*self.users, None]
        with self.lock:
            self.projects.setdefault(project.upper(), project.title())
            epics: list[str] = []
            for n in range(1, count + 1):
                key = f"{project.upper()}-{n}"
                kind = "Epic" if n % 50 == 1 else rng.choice(["Story", "Task", "Bug"])
                created = start + timedelta(minutes=17 * n)
                status = rng.choice(list(STATUSES))
                issue = FakeIssue(
                    next(self._ids),
                    key,
                    project.upper(),
                    f"{kind} number {n}: " + rng.choice(["fix login", "speed up export", "new report", "clean up"]),
                    type=kind,
                    status=status,
                    priority=rng.choice([*PRIORITIES, None]),
                    assignee=rng.choice(users),
                    reporter=rng.choice(users[:-1]),
                    created=created,
                    updated=created + timedelta(hours=rng.randint(0, 500)),
                    resolution="Done" if status == "Done" else None,
                    epic=epics[-1] if epics and kind != "Epic" and n % 3 else None,
                    labels=rng.sample(["backend", "frontend", "ops", "security"], k=rng.randint(0, 2)),
                    components=rng.sample(["API", "Web", "Reports"], k=rng.randint(0, 1)),
                    fix_versions=["1.0"] if n % 4 == 0 else [],
                    story_points=float(rng.choice([1, 2, 3, 5, 8])) if kind == "Story" else None,
                )
                self.issues[key] = issue
                if kind == "Epic":
                    epics.append(key)
                if n % 10 == 0 and n > 1:
                    self.links.append((str(next(self._link_ids)), "Relates", key, f"{project.upper()}-{n - 1}"))
            self._version += 1

    def fail_next(
        self, status: int, times: int = 1, *, path: str = "", method: str = "", retry_after: str = "1"
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path`` (and of ``method``) with ``status``."""
        with self.lock:
            self.failures.extend([(status, path, method.upper(), retry_after)] * times)

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, path, _ in self.requests if m == method and fragment in path)

    def searches(self) -> list[dict[str, list[str]]]:
        return [query for m, path, query in self.requests if path.endswith(("/search", "/search/jql"))]

    def account_id(self, name: str) -> str:
        """Return the Cloud account id of a user (stable, opaque)."""
        digest = hashlib.sha256(name.encode()).hexdigest()
        return f"712020:{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    # --- rendering ----------------------------------------------------------------

    def _time(self, moment: datetime) -> str:
        local = moment.astimezone(zoneinfo.ZoneInfo(self.time_zone))
        return local.strftime("%Y-%m-%dT%H:%M:%S.000%z")

    def _user(self, name: str | None) -> dict[str, Any] | None:
        if not name:
            return None
        if self.cloud:
            # Cloud (GDPR): an account id and a display name; no user name, no key, e-mail often hidden.
            account = self.account_id(name)
            return {
                "self": f"{self.url}/rest/api/3/user?accountId={account}",
                "accountId": account,
                "accountType": "atlassian",
                "displayName": self.users.get(name, name),
                "active": True,
                "timeZone": self.time_zone,
            }
        return {
            "self": f"{self.url}/rest/api/2/user?username={name}",
            "name": name,
            "key": name,
            "emailAddress": f"{name}@example.com",
            "displayName": self.users.get(name, name),
            "active": True,
            "timeZone": self.time_zone,
        }

    def _status(self, name: str) -> dict[str, Any]:
        status_id, category, _ = STATUSES[name]
        return {
            "self": f"{self.url}/rest/api/2/status/{status_id}",
            "name": name,
            "id": status_id,
            "statusCategory": {"key": category, "name": category.title()},
        }

    def _type(self, name: str) -> dict[str, Any]:
        type_id = ISSUE_TYPES.get(name, "10002")
        return {
            "self": f"{self.url}/rest/api/2/issuetype/{type_id}",
            "id": type_id,
            "name": name,
            "subtask": name == "Sub-task",
        }

    def _stub(self, issue: FakeIssue) -> dict[str, Any]:
        """The short form Jira nests for parents, sub-tasks and linked issues."""
        fields: dict[str, Any] = {
            "summary": issue.summary,
            "status": self._status(issue.status),
            "issuetype": self._type(issue.type),
        }
        if issue.priority:
            fields["priority"] = {"name": issue.priority, "id": PRIORITIES[issue.priority]}
        return {
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{self.url}/rest/api/2/issue/{issue.id}",
            "fields": fields,
        }

    def render(self, issue: FakeIssue, wanted: set[str] | None) -> dict[str, Any]:
        """Return the issue as Jira's REST API does, with only the ``wanted`` fields (None = all)."""
        fields: dict[str, Any] = {
            "summary": issue.summary,
            "issuetype": self._type(issue.type),
            "status": self._status(issue.status),
            "priority": {
                "self": f"{self.url}/rest/api/2/priority/{PRIORITIES[issue.priority]}",
                "name": issue.priority,
                "id": PRIORITIES[issue.priority],
            }
            if issue.priority
            else None,
            "assignee": self._user(issue.assignee),
            "reporter": self._user(issue.reporter),
            "created": self._time(issue.created),
            "updated": self._time(issue.updated),
            "resolution": {"name": issue.resolution, "id": "10000"} if issue.resolution else None,
            "labels": list(issue.labels),
            "components": [
                {"self": f"{self.url}/rest/api/2/component/{i}", "id": str(i), "name": name}
                for i, name in enumerate(issue.components, 10_000)
            ],
            "fixVersions": [
                {"self": f"{self.url}/rest/api/2/version/{i}", "id": str(i), "name": name, "released": False}
                for i, name in enumerate(issue.fix_versions, 10_100)
            ],
            "description": issue.description,
            "project": {"key": issue.project, "name": self.projects.get(issue.project, issue.project)},
            "subtasks": [
                self._stub(self.issues[key]) for key in self._index()[0].get(issue.key, []) if key not in self.hidden
            ],
            "issuelinks": self._links(issue),
            self.story_points_field: issue.story_points,
        }
        if self.epic_link_field:
            fields[EPIC_LINK] = issue.epic
            fields[EPIC_NAME] = issue.summary if issue.type == "Epic" else None
        # Cloud: an issue's epic is its parent (there is no Epic Link field).
        parent = self.issues.get(issue.parent or (issue.epic if self.cloud else None) or "")
        if parent is not None:
            fields["parent"] = self._stub(parent)
        if self.cloud and self._api_version == "3" and issue.description is not None:
            fields["description"] = _adf(issue.description)
        for name in issue.omit:
            fields.pop(self.story_points_field if name == STORY_POINTS else name, None)
        if wanted is not None:
            fields = {k: v for k, v in fields.items() if k in wanted}
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(issue.id),
            "self": f"{self.url}/rest/api/2/issue/{issue.id}",
            "key": issue.key,
            "fields": fields,
        }

    def _index(self) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, str, str, str]]]]:
        """Return sub-tasks by parent and links by issue, rebuilt when the data changed."""
        if self._indexed != self._version:
            children: dict[str, list[str]] = {}
            for issue in self.issues.values():
                if issue.parent:
                    children.setdefault(issue.parent, []).append(issue.key)
            links: dict[str, list[tuple[str, str, str, str]]] = {}
            for link in self.links:
                links.setdefault(link[2], []).append(link)
                links.setdefault(link[3], []).append(link)
            self._by_parent, self._by_link, self._indexed = children, links, self._version
        return self._by_parent, self._by_link

    def _links(self, issue: FakeIssue) -> list[dict[str, Any]]:
        result = []
        for link_id, kind, outward, inward in self._index()[1].get(issue.key, []):
            type_id, inward_text, outward_text = LINK_TYPES[kind]
            kind_json = {
                "id": type_id,
                "name": kind,
                "inward": inward_text,
                "outward": outward_text,
                "self": f"{self.url}/rest/api/2/issueLinkType/{type_id}",
            }
            item = {"id": link_id, "self": f"{self.url}/rest/api/2/issueLink/{link_id}", "type": kind_json}
            # A link to an issue the user cannot see still shows its key (Jira hides nothing here).
            if outward == issue.key and inward in self.issues:
                result.append({**item, "outwardIssue": self._stub(self.issues[inward])})
            elif inward == issue.key and outward in self.issues:
                result.append({**item, "inwardIssue": self._stub(self.issues[outward])})
        return result

    # --- JQL ---------------------------------------------------------------------------

    def search(self, jql: str, validate: bool) -> tuple[list[FakeIssue], list[str]]:
        """Return the visible issues matching ``jql`` in order, and warnings (cached per data version)."""
        with self.lock:
            cached = self._cache.get((f"{validate}:{jql}", self._version))
            if cached is not None:
                return cached
            warnings: list[str] = []
            predicate, order = Jql(self, jql, validate, warnings).parse()
            found = [i for i in self.issues.values() if i.key not in self.hidden and predicate(i)]
            for name, descending in reversed(order):
                found.sort(key=_sort_key(name), reverse=descending)
            self._cache = {(f"{validate}:{jql}", self._version): (found, warnings)}
            return found, warnings

    # --- request handling (called from the handler threads) -------------------------------

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        kind, _, value = header.partition(" ")
        if self.cloud:
            # Cloud: Basic with the account's e-mail and an API token, nothing else (no passwords, no PATs).
            if kind.lower() != "basic":
                return False
            try:
                email, _, api_token = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return bool(self.api_token) and email == self.email and api_token == self.api_token
        if kind.lower() == "bearer":
            return bool(self.token) and value == self.token
        if kind.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and password == self.password and bool(self.password)
        return False

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        versions = ("2", "3") if self.cloud else ("2",)
        if parts[:2] != ["rest", "api"] or len(parts) < 4 or parts[2] not in versions:
            return 404, {"errorMessages": [f"null for uri: {self.url}{path}"], "errors": {}}
        resource, rest = parts[3], parts[4:]
        with self.lock:
            self._api_version = parts[2]
            if self.cloud and resource == "search" and rest == ["jql"]:
                return self._search_jql(query if method == "GET" else _body_query(body))
            if self.cloud and resource == "search":
                return 410, {"errorMessages": [REMOVED_SEARCH], "errors": {}}
            if resource == "serverInfo" and self.cloud:
                return 200, {
                    "baseUrl": self.url,
                    "displayUrl": self.url,
                    "version": "1001.0.0-SNAPSHOT",
                    "versionNumbers": [1001, 0, 0],
                    "deploymentType": "Cloud",
                    "buildNumber": 100289,
                    "serverTitle": "Jira",
                }
            if resource == "serverInfo":
                return 200, {
                    "baseUrl": self.url,
                    "version": "9.12.2",
                    "versionNumbers": [9, 12, 2],
                    "deploymentType": "Server",
                    "buildNumber": 912002,
                    "serverTitle": "Fake Jira",
                }
            if resource == "field":
                return 200, [
                    self._field(*spec)
                    for spec in self._fields()
                    if self.epic_link_field or spec[0] not in (EPIC_LINK, EPIC_NAME)
                ]
            if resource == "myself":
                return 200, {**(self._user(self.username) or {}), "locale": "en_US"}
            if resource == "search":
                return self._search(query if method == "GET" else _body_query(body))
            if resource == "issue" and rest:
                return self._issue(method, rest, query, body)
        return 404, {"errorMessages": [f"null for uri: {self.url}{path}"], "errors": {}}

    def _fields(self) -> list[tuple[str, str, bool, dict[str, Any]]]:
        if not self.cloud:
            return FIELDS
        cloud_points = (
            CLOUD_STORY_POINTS,
            "Story point estimate",
            True,
            {"type": "number", "custom": "com.pyxis.greenhopper.jira:jsw-story-points"},
        )
        return [cloud_points if spec[0] == STORY_POINTS else spec for spec in FIELDS]

    def _search_jql(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        """Cloud's enhanced search: nextPageToken paging, isLast, no total; unknown values are errors."""
        jql = query.get("jql", [""])[0]
        try:
            limit = int(query.get("maxResults", ["50"])[0] or 50)
        except ValueError:
            return 400, {"errorMessages": ["maxResults must be a number"], "errors": {}}
        start = 0
        token = query.get("nextPageToken", [""])[0]
        if token:
            try:
                digest, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
                start = int(offset)
            except ValueError:
                return 400, {"errorMessages": ["The provided next page token is invalid or expired."], "errors": {}}
            if digest != hashlib.sha256(jql.encode()).hexdigest()[:12]:
                return 400, {"errorMessages": ["The provided next page token is invalid or expired."], "errors": {}}
        try:
            found, warnings = self.search(jql, False)
        except JqlError as exc:
            return 400, {"errorMessages": [str(exc)], "errors": {}}
        if warnings:
            return 400, {"errorMessages": warnings, "errors": {}}
        wanted = _wanted(query) if query.get("fields") else {"id"}
        limit = max(1, min(limit, self.max_results_cap))
        page = found[start : start + limit]
        body: dict[str, Any] = {"issues": [self._search_hit(i, wanted) for i in page]}
        if start + limit < len(found):
            digest = hashlib.sha256(jql.encode()).hexdigest()[:12]
            body["nextPageToken"] = base64.urlsafe_b64encode(f"{digest}:{start + limit}".encode()).decode()
            body["isLast"] = False
        else:
            body["isLast"] = True
        return 200, body

    def _search_hit(self, issue: FakeIssue, wanted: set[str] | None) -> dict[str, Any]:
        rendered = self.render(issue, wanted)
        if wanted == {"id"}:
            return {"id": rendered["id"]}
        return rendered

    def _field(self, field_id: str, name: str, custom: bool, schema: dict[str, Any]) -> dict[str, Any]:
        clauses = [f"cf[{field_id.split('_')[1]}]", name] if custom else [field_id]
        return {
            "id": field_id,
            "name": name,
            "custom": custom,
            "orderable": True,
            "navigable": True,
            "searchable": True,
            "clauseNames": clauses,
            "schema": schema,
        }

    def _search(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        jql = query.get("jql", [""])[0]
        try:
            start = int(query.get("startAt", ["0"])[0] or 0)
            limit = int(query.get("maxResults", ["50"])[0] or 50)
        except ValueError:
            return 400, {"errorMessages": ["startAt and maxResults must be numbers"], "errors": {}}
        validate = query.get("validateQuery", ["true"])[0].lower() not in ("false", "warn")
        try:
            found, warnings = self.search(jql, validate)
        except JqlError as exc:
            return 400, {"errorMessages": [str(exc)], "errors": {}}
        limit = max(0, min(limit, self.max_results_cap))
        wanted = _wanted(query)
        page = found[start : start + limit]
        body: dict[str, Any] = {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": limit,
            "total": len(found),
            "issues": [self.render(i, wanted) for i in page],
        }
        if warnings:
            body["warningMessages"] = warnings
        return 200, body

    def _issue(self, method: str, rest: list[str], query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        issue = self._find(rest[0])
        if issue is None:
            return 404, {"errorMessages": ["Issue Does Not Exist"], "errors": {}}
        action = rest[1] if len(rest) > 1 else ""
        if method == "GET" and not action:
            return 200, self.render(issue, _wanted(query))
        if method == "PUT" and not action:
            return self._edit(issue, body)
        if action == "transitions" and method == "GET":
            return 200, {
                "expand": "transitions",
                "transitions": [
                    {"id": tid, "name": name, "to": self._status(target), "hasScreen": False}
                    for tid, name, target in self._workflow(issue.status)
                ],
            }
        if action == "transitions" and method == "POST":
            return self._transition(issue, body)
        if action == "comment" and method == "POST":
            text = (body or {}).get("body") if isinstance(body, dict) else None
            if self._api_version == "3":
                if not _is_adf(text):
                    return 400, {"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}
                text = _adf_text(text)
            if not text:
                return 400, {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}
            issue.comments.append(str(text))
            return 201, {"id": str(len(issue.comments)), "body": text, "author": self._user(self.username)}
        return 405, {"errorMessages": ["Method not allowed"], "errors": {}}

    def _workflow(self, status: str) -> list[tuple[str, str, str]]:
        """Return the transitions out of ``status``; a global "Done" one too with ``self_transitions``."""
        transitions = list(WORKFLOW[status])
        if self.self_transitions and not any(t[0] == "31" for t in transitions):
            transitions.append(("31", "Done", "Done"))  # a global transition, offered in Done too
        return transitions

    def _find(self, key_or_id: str) -> FakeIssue | None:
        issue = self.issues.get(key_or_id.upper())
        if issue is None and key_or_id.isdigit():
            issue = next((i for i in self.issues.values() if i.id == int(key_or_id)), None)
        if issue is None or issue.key in self.hidden:
            return None
        return issue

    def _edit(self, issue: FakeIssue, body: Any) -> tuple[int, Any]:
        fields = (body or {}).get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return 400, {"errorMessages": ["Can not deserialize the request: fields expected"], "errors": {}}
        settable = (SETTABLE - {STORY_POINTS}) | {self.story_points_field}
        errors = {
            name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
            for name in fields
            if name not in settable
        }
        if self._api_version == "3" and "description" in fields and not _is_adf(fields["description"]):
            errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        if self.cloud and "assignee" in fields and (fields["assignee"] or {}).get("name"):
            errors["assignee"] = "Specify an accountId: the user name is no longer accepted (GDPR)"
        if "priority" in fields and (fields["priority"] or {}).get("name") not in PRIORITIES:
            errors["priority"] = "Priority name '{}' is not valid".format((fields["priority"] or {}).get("name"))
        if errors:
            return 400, {"errorMessages": [], "errors": errors}
        for name, value in fields.items():
            if name == "priority":
                issue.priority = value["name"]
            elif name == "assignee" and self.cloud:
                by_account = {self.account_id(n): n for n in self.users}
                issue.assignee = by_account.get((value or {}).get("accountId") or "")
            elif name == "assignee":
                issue.assignee = (value or {}).get("name")
            elif name == "description" and self._api_version == "3":
                issue.description = _adf_text(value)
            elif name == "components":
                issue.components = [c["name"] for c in value or []]
            elif name == "fixVersions":
                issue.fix_versions = [v["name"] for v in value or []]
            elif name == self.story_points_field:
                issue.story_points = value
            elif name == "labels":
                issue.labels = list(value or [])
            else:
                setattr(issue, name, value)
        issue.updated = datetime.now(UTC)
        self._version += 1
        return 204, None

    def _transition(self, issue: FakeIssue, body: Any) -> tuple[int, Any]:
        wanted = str(((body or {}).get("transition") or {}).get("id", "")) if isinstance(body, dict) else ""
        for tid, _name, target in self._workflow(issue.status):
            if tid == wanted:
                issue.status = target
                issue.resolution = "Done" if target == "Done" else None
                issue.updated = datetime.now(UTC)
                self._version += 1
                return 204, None
        return 400, {
            "errorMessages": [
                f"It seems that you have tried to perform a workflow operation ({wanted}) that is not valid for the "
                f"current state of this issue ({issue.key}). The likely cause is that somebody has changed the issue "
                "recently, please look at the issue history for details."
            ],
            "errors": {},
        }


def _adf(text: str) -> dict[str, Any]:
    """Return text as the ADF document Jira Cloud's REST v3 returns for rich text."""
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
            for line in text.split("\n")
        ],
    }


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


def _adf_text(value: Any) -> str:
    lines = []
    for block in (value or {}).get("content") or []:
        lines.append("".join(str(node.get("text", "")) for node in block.get("content") or []))
    return "\n".join(lines)


def _sort_key(name: str) -> Callable[[FakeIssue], Any]:
    if name in ("key", "issuekey", "id"):
        return lambda i: (i.project, i.number)
    if name in ("created", "updated"):
        return lambda i: getattr(i, name)
    return lambda i: str(getattr(i, name, "") or "")


def _wanted(query: dict[str, list[str]]) -> set[str] | None:
    names = {n.strip() for value in query.get("fields", []) for n in value.split(",") if n.strip()}
    if not names or names & {"*all", "*navigable"}:
        return None
    return names


def _body_query(body: Any) -> dict[str, list[str]]:
    """Turn a POST /search body into the GET query form."""
    body = body if isinstance(body, dict) else {}
    query = {k: [str(v).lower() if isinstance(v, bool) else str(v)] for k, v in body.items() if k != "fields"}
    if body.get("fields"):
        query["fields"] = [",".join(body["fields"])]
    return query


# --- a small JQL interpreter ------------------------------------------------------------------

TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|>=|<=|=|>|<|~|\(|\)|,)'
    r'|(?P<word>[^\s=!<>~(),"\']+))'
)
DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")


class Jql:
    """Parse a JQL subset into a predicate over FakeIssue and an ORDER BY list."""

    def __init__(self, server: FakeJira, text: str, validate: bool, warnings: list[str]) -> None:
        self.server, self.validate, self.warnings = server, validate, warnings
        self.tokens: list[str] = []
        position = 0
        while position < len(text):
            match = TOKEN.match(text, position)
            if not match or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise JqlError(f"Error in the JQL Query: the character '{text[position]}' is a reserved JQL character.")
            position = match.end()
            value = match.group("str")
            if value is not None:
                self.tokens.append("\0" + re.sub(r"\\(.)", r"\1", value[1:-1]))  # \0 marks a quoted string
            else:
                self.tokens.append(match.group("op") or match.group("word"))
        self.pos = 0

    def peek(self, upper: bool = True) -> str | None:
        if self.pos >= len(self.tokens):
            return None
        token = self.tokens[self.pos]
        return token.upper() if upper and not token.startswith("\0") else token

    def take(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> tuple[Callable[[FakeIssue], bool], list[tuple[str, bool]]]:
        predicate: Callable[[FakeIssue], bool] = lambda i: True  # noqa: E731
        if self.peek() not in (None, "ORDER"):
            predicate = self.expr()
        order: list[tuple[str, bool]] = []
        if self.peek() == "ORDER":
            self.take()
            if self.peek() != "BY":
                raise JqlError("Error in the JQL Query: Expecting 'BY' after 'ORDER'.")
            self.take()
            while True:
                name = self.take().lstrip("\0").lower()
                descending = False
                if self.peek() in ("ASC", "DESC"):
                    descending = self.take().upper() == "DESC"
                order.append((name, descending))
                if self.peek() != ",":
                    break
                self.take()
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: Expecting either 'OR' or 'AND' but got '{self.peek(False)}'.")
        return predicate, order

    def expr(self) -> Callable[[FakeIssue], bool]:
        parts = [self.conjunction()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda i: any(p(i) for p in parts))

    def conjunction(self) -> Callable[[FakeIssue], bool]:
        parts = [self.unary()]
        while self.peek() == "AND":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda i: all(p(i) for p in parts))

    def unary(self) -> Callable[[FakeIssue], bool]:
        if self.peek() == "NOT":
            self.take()
            inner = self.unary()
            return lambda i: not inner(i)
        if self.peek() == "(":
            self.take()
            inner = self.expr()
            if self.peek() != ")":
                raise JqlError("Error in the JQL Query: Expecting ')' before the end of the query.")
            self.take()
            return inner
        return self.clause()

    def values(self) -> list[str]:
        if self.peek() == "(":
            self.take()
            items = [self.take().lstrip("\0")]
            while self.peek() == ",":
                self.take()
                items.append(self.take().lstrip("\0"))
            if self.peek() != ")":
                raise JqlError("Error in the JQL Query: Expecting ')' after the list of values.")
            self.take()
            return items
        if self.pos >= len(self.tokens):
            raise JqlError("Error in the JQL Query: Expecting a value before the end of the query.")
        value = self.take()
        if not value.startswith("\0") and self.peek() == "(":  # a function: linkedIssues(KEY)
            args = self.values()
            return [f"{value}({','.join(args)})"]
        return [value.lstrip("\0")]

    def clause(self) -> Callable[[FakeIssue], bool]:
        if self.pos >= len(self.tokens):
            raise JqlError("Error in the JQL Query: Expecting a field name before the end of the query.")
        name = self.take().lstrip("\0").lower()
        op = self.take().upper()
        if op == "NOT" and self.peek() == "IN":
            self.take()
            op = "NOT IN"
        if op == "IS":
            negate = self.peek() == "NOT"
            if negate:
                self.take()
            self.take()  # EMPTY / NULL
            getter = self.getter(name)
            return (lambda i: bool(getter(i))) if negate else (lambda i: not getter(i))
        if op not in ("=", "!=", "IN", "NOT IN", ">=", "<=", ">", "<", "~"):
            raise JqlError(f"Error in the JQL Query: operator '{op}' is not supported here.")
        values = self.values()
        if name in ("created", "updated"):
            return self.date_clause(name, op, values[0])
        if name == "summary" and op == "~":
            needle = values[0].lower()
            return lambda i: needle in i.summary.lower()
        if name in ("issue", "issuekey", "key") and values[0].lower().startswith("linkedissues("):
            target = values[0][len("linkedissues(") : -1].upper()
            linked = {o for _, _, o, n in self.server.links if n == target} | {
                n for _, _, o, n in self.server.links if o == target
            }
            return lambda i: i.key in linked
        getter = self.getter(name)
        wanted = {self.check_value(name, v) for v in values}
        wanted.discard(None)
        if op in ("=", "IN"):
            return lambda i: _matches(getter(i), wanted)
        if op in ("!=", "NOT IN"):
            return lambda i: not _matches(getter(i), wanted)
        raise JqlError(f"Error in the JQL Query: operator '{op}' does not support the field '{name}'.")

    def getter(self, name: str) -> Callable[[FakeIssue], Any]:
        getters: dict[str, Callable[[FakeIssue], Any]] = {
            "project": lambda i: i.project,
            "key": lambda i: i.key,
            "issuekey": lambda i: i.key,
            "issue": lambda i: i.key,
            "id": lambda i: str(i.id),
            # Cloud: an epic is its issues' parent.
            "parent": (lambda i: i.parent or i.epic) if self.server.cloud else (lambda i: i.parent),
            "status": lambda i: i.status.upper(),
            "assignee": lambda i: (i.assignee or "").upper(),
            "reporter": lambda i: (i.reporter or "").upper(),
            "type": lambda i: i.type.upper(),
            "issuetype": lambda i: i.type.upper(),
            "labels": lambda i: [label.upper() for label in i.labels],
            "priority": lambda i: (i.priority or "").upper(),
        }
        if self.server.epic_link_field:
            getters["epic link"] = getters["cf[10100]"] = lambda i: i.epic
        if name not in getters:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        return getters[name]

    def check_value(self, name: str, value: str) -> str | None:
        """Upper-case a value; refuse (or warn about) an unknown project or issue key as Jira does."""
        value = value.upper()
        if name == "project" and value not in self.server.projects:
            self.unknown(f"The value '{value}' does not exist for the field 'project'.")
            return None
        if name in ("key", "issuekey", "issue", "parent", "epic link", "cf[10100]"):
            issue = self.server.issues.get(value)
            if issue is None or issue.key in self.server.hidden:
                field_name = "key" if name in ("issuekey", "issue") else name
                self.unknown(f"An issue with key '{value}' does not exist for field '{field_name}'.")
                return None
        return value

    def unknown(self, message: str) -> None:
        if self.validate:
            raise JqlError(message)
        self.warnings.append(message)
        return None

    def date_clause(self, name: str, op: str, value: str) -> Callable[[FakeIssue], bool]:
        for pattern in DATE_FORMATS:
            try:
                local = datetime.strptime(value, pattern)
                break
            except ValueError:
                continue
        else:
            raise JqlError(
                f"Date value '{value}' for field '{name}' is invalid. Valid formats include: "
                "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d'."
            )
        # JQL dates are in the searching user's time zone.
        moment = local.replace(tzinfo=zoneinfo.ZoneInfo(self.server.time_zone))
        compare = {
            ">=": lambda a: a >= moment,
            "<=": lambda a: a <= moment,
            ">": lambda a: a > moment,
            "<": lambda a: a < moment,
            "=": lambda a: a == moment,
            "!=": lambda a: a != moment,
        }
        if op not in compare:
            raise JqlError(f"Error in the JQL Query: operator '{op}' does not support the field '{name}'.")
        check = compare[op]
        return lambda i: check(getattr(i, name))


def _matches(value: Any, wanted: set[str | None]) -> bool:
    if isinstance(value, list):
        return any(v in wanted for v in value)
    return value in wanted


# --- HTTP ----------------------------------------------------------------------------------------


def _handler(server: FakeJira) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            return

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with server.lock:
                server.requests.append((method, parts.path, query))
                failure = next(
                    (
                        (n, spec)
                        for n, spec in enumerate(server.failures)
                        if spec[1] in parts.path and spec[2] in ("", method)
                    ),
                    None,
                )
                if failure is not None:
                    server.failures.pop(failure[0])
            if server.delay:
                time.sleep(server.delay)
            if failure is not None:
                self._fail(failure[1][0], failure[1][3])
                return
            public = parts.path.rstrip("/").endswith("/serverInfo")
            header = self.headers.get("Authorization")
            # Cloud refuses wrong credentials everywhere, even where it would answer anonymously.
            if (server.cloud and header and not server.authorized(header)) or (
                not public and not server.authorized(header)
            ):
                self._send(
                    401,
                    "<html><body>Basic Authentication Failure - Reason : AUTHENTICATED_FAILED</body></html>",
                    {
                        "X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
                        "X-AUSERNAME": "anonymous",
                        "WWW-Authenticate": 'Basic realm="protected-area"',
                    },
                    content_type="text/html",
                )
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._send(400, {"errorMessages": ["Unexpected character in the request body"], "errors": {}})
                return
            status, payload = server.handle(method, parts.path, query, body)
            self._send(status, payload)

        def _fail(self, status: int, retry_after: str = "1") -> None:
            if status == 429:
                headers = {"Retry-After": retry_after} if retry_after else {}
                self._send(429, {"errorMessages": ["Rate limit exceeded"], "errors": {}}, headers)
            elif status >= 500:
                self._send(
                    status, "<html><body><h1>Oops, an error occurred</h1></body></html>", content_type="text/html"
                )
            elif status == 401:
                self._send(
                    401,
                    "<html><body>Unauthorized</body></html>",
                    {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"},
                    content_type="text/html",
                )
            else:
                self._send(status, {"errorMessages": [f"HTTP {status}"], "errors": {}})

        def _send(
            self,
            status: int,
            payload: Any,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json;charset=UTF-8",
        ) -> None:
            data = b"" if payload is None else (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if data:
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

    return Handler
