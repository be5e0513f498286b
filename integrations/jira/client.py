"""The one seam to Jira: a real ``jira.JIRA`` client per configured environment, with our typed errors.

Environments come from ``settings.TASKHUB.jira_environments`` (``jira.environments``
in config.yaml, plus the seed's single ``jira.url``); a task names them and never
carries a URL or credentials. The library's own retries (up to minutes of sleeping
on 429/503 and connection errors, blind to the task's timeout) are turned off: a
429 is waited out here, after its Retry-After, a bounded number of times and never
past the attempt's deadline; everything else is left to the task's retry policy.

Jira Cloud and Server / Data Center differ (``deployment``: auto reads serverInfo's
``deploymentType`` once per client): Cloud authenticates with e-mail + API token as
HTTP Basic, searches through the enhanced JQL search (``/rest/api/3/search/jql``,
``nextPageToken``, no total) and speaks REST v3, whose rich text is ADF.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from jira import JIRA

from integrations.jira.adf import plain_text, text_to_adf
from integrations.jira.errors import jira_call, system_name
from taskhub.exceptions import IntegrationError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Waits after a 429 inside one attempt before the error goes to the task's retry policy.
RATE_LIMIT_WAITS = 5
#: The longest single wait; a Retry-After beyond it is cut to it.
RATE_LIMIT_MAX_WAIT = 60.0
#: Fields whose values are rich text (ADF on Cloud's REST v3, wiki text on v2).
RICH_TEXT_SYSTEM = {"description", "environment"}
RICH_TEXT_CUSTOM = "com.atlassian.jira.plugin.system.customfieldtypes:textarea"

# The attempt's deadline (time.monotonic()), set by the handler: a 429 wait never passes it.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("jira_deadline", default=None)


@contextmanager
def attempt_deadline(seconds_left: float | None) -> Iterator[None]:
    """Run a block whose Jira calls must not wait (for a rate limit) past ``seconds_left`` from now."""
    token = _deadline.set(None if seconds_left is None else time.monotonic() + seconds_left)
    try:
        yield
    finally:
        _deadline.reset(token)


#: Fields every export asks for; custom fields (epic link, story points) are added per environment.
EXPORT_FIELDS = [
    "summary",
    "issuetype",
    "status",
    "priority",
    "assignee",
    "reporter",
    "created",
    "updated",
    "resolution",
    "parent",
    "labels",
    "components",
    "fixVersions",
    "issuelinks",
    "subtasks",
    "description",
]
EPIC_LINK_SCHEMA = "com.pyxis.greenhopper.jira:gh-epic-link"
STORY_POINT_NAMES = ("story points", "story point estimate")


def configured_environments() -> dict[str, dict[str, Any]]:
    """Return the configured Jira environments by name."""
    return settings.TASKHUB.jira_environments


@dataclass
class CustomFields:
    """Ids of the custom fields an export reads, as this Jira names them (absent ones are None)."""

    epic_link: str | None = None
    epic_link_clause: str | None = None
    story_points: str | None = None
    by_name: dict[str, str] = field(default_factory=dict)
    rich_text: set[str] = field(default_factory=set)


@dataclass
class Page:
    """One page of a search: its issues, the total when Jira tells it (Server), and where the next page starts."""

    issues: list[dict[str, Any]]
    total: int | None
    next: dict[str, Any] | None  # {"startAt": n} (Server) or {"nextPageToken": t} (Cloud); None after the last


def _retry_after(exc: IntegrationError, waits: int) -> float:
    """Return how long to wait after a 429: its Retry-After, else 1, 2, 4... seconds."""
    after = exc.retry_after
    return float(after) if after is not None else 2.0**waits


class JiraClient:
    """A ``jira.JIRA`` client for one environment; every call raises IntegrationError on failure."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.url = config["url"].rstrip("/")
        self.timeout = float(config["timeout"])
        self.system = system_name(name)
        setting = config.get("deployment") or "auto"
        #: Cloud credentials are an e-mail + API token; they name the keys an authentication error points to.
        self.cloud_credentials = bool(config.get("api_token"))
        auth: dict[str, Any] = {}
        if self.cloud_credentials:
            auth["basic_auth"] = (config.get("email") or "", config["api_token"])
        elif config.get("token"):
            auth["token_auth"] = config["token"]
        elif config.get("username"):
            auth["basic_auth"] = (config["username"], config.get("password") or "")
        self.api = JIRA(
            server=self.url,
            options={"verify": bool(config["verify_ssl"])},
            timeout=self.timeout,
            max_retries=0,  # 429s are waited out in _run, within the attempt's deadline; the rest is the policy's
            get_server_info=False,  # no request at construction: the first real call reports errors
            logging=False,
            **auth,
        )
        self._deployment: str | None = {"cloud": "Cloud", "server": "Server"}.get(setting)
        if self._deployment:
            self._apply_deployment()
        self._custom: CustomFields | None = None

    def call(self, operation: str) -> Any:
        """Return a context manager translating errors of ``operation`` into IntegrationError."""
        return jira_call(self.name, operation, url=self.url, timeout=self.timeout, cloud=self.cloud_credentials)

    def _run(self, operation: str, request: Callable[[], T]) -> T:
        """Return ``request()``; after a 429, wait its Retry-After and try again (bounded, within the deadline)."""
        for waits in range(RATE_LIMIT_WAITS + 1):
            try:
                with self.call(operation):
                    return request()
            except IntegrationError as exc:
                if exc.status != 429 or waits == RATE_LIMIT_WAITS:
                    raise
                wait = min(RATE_LIMIT_MAX_WAIT, _retry_after(exc, waits))
                deadline = _deadline.get()
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise IntegrationError(
                        self.system,
                        operation,
                        f"rate limited by Jira (Retry-After: {wait:g} s), and waiting would pass the task's "
                        "timeout_seconds",
                        status=429,
                    ) from None
                logger.info("%s %s: rate limited; trying again in %g s", self.system, operation, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def browse_url(self, key: str) -> str:
        """Return the URL people open to see an issue."""
        return f"{self.url}/browse/{key}"

    # --- deployment ------------------------------------------------------------------------

    @property
    def is_cloud(self) -> bool:
        """Return whether this Jira is Cloud; with ``deployment: auto``, serverInfo is read once to know."""
        if self._deployment is None:
            info = self.server_info()
            self._deployment = "Cloud" if str(info.get("deploymentType", "")).lower() == "cloud" else "Server"
            self._apply_deployment()
        return self._deployment == "Cloud"

    def _apply_deployment(self) -> None:
        """Tell the library what it talks to: its Cloud-only methods (enhanced search) check deploymentType."""
        self.api.deploymentType = self._deployment
        if self._deployment == "Cloud":
            # REST v3: the current Cloud API (v2's search is gone there); rich text is ADF.
            self.api._options["rest_api_version"] = "3"

    # --- reads -----------------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        """Return Jira's serverInfo (version, deployment type)."""
        return self._run("read server info", self.api.server_info)

    def myself(self) -> dict[str, Any]:
        """Return the authenticated user (name or accountId, timeZone); a 401 here means wrong credentials."""
        self.is_cloud  # noqa: B018 - the deployment decides the REST version the next call uses
        return self._run("read the current user", self.api.myself)

    def custom_fields(self) -> CustomFields:
        """Find the epic-link, story-point and rich-text fields by their schema and name (ids vary per Jira)."""
        if self._custom is None:
            self.is_cloud  # noqa: B018
            fields = self._run("list fields", self.api.fields)
            # Prime the library's clause-name cache from the same answer, saving it a second GET /field.
            self.api._fields_cache_value = {
                name: item["id"] for item in fields if "id" in item for name in item.get("clauseNames") or []
            }
            found = CustomFields()
            for item in fields:
                name, field_id = str(item.get("name", "")), str(item.get("id", ""))
                found.by_name.setdefault(name.lower(), field_id)
                schema = item.get("schema") or {}
                if schema.get("custom") == EPIC_LINK_SCHEMA or (name == "Epic Link" and found.epic_link is None):
                    found.epic_link = field_id
                    found.epic_link_clause = '"Epic Link"'
                if name.lower() in STORY_POINT_NAMES and found.story_points is None:
                    found.story_points = field_id
                if schema.get("system") in RICH_TEXT_SYSTEM or schema.get("custom") == RICH_TEXT_CUSTOM:
                    found.rich_text.add(field_id)
            self._custom = found
        return self._custom

    def export_fields(self) -> list[str]:
        """Return the field ids an export asks for on this Jira."""
        custom = self.custom_fields()
        return EXPORT_FIELDS + [f for f in (custom.epic_link, custom.story_points) if f]

    def text(self, value: Any) -> str:
        """Return a rich-text value as plain text: ADF (Cloud, REST v3) and wiki text (v2) alike."""
        return plain_text(value)

    def get_issue(self, key: str, fields: list[str]) -> dict[str, Any]:
        """Return one issue's raw JSON; a missing issue is a permanent 404 error."""
        self.is_cloud  # noqa: B018
        return self._run(f"read issue {key}", lambda: self.api.issue(key, fields=",".join(fields)).raw)

    def search_page(
        self,
        jql: str,
        *,
        fields: list[str],
        max_results: int,
        cursor: dict[str, Any] | None = None,
        validate: bool = True,
    ) -> Page:
        """Return one page of a JQL search; ``cursor`` is a previous page's ``next`` (None: the first page).

        Cloud: the enhanced search (``search/jql``, nextPageToken, isLast, no total); Server /
        Data Center: ``search`` with startAt and total. Fields are always named explicitly.
        """
        cursor = cursor or {}
        if self.is_cloud:
            token = cursor.get("nextPageToken")
            data = self._run(
                f"search {jql!r}" + (" (next page)" if token else ""),
                lambda: self.api.enhanced_search_issues(
                    jql, nextPageToken=token, maxResults=max_results, fields=list(fields), json_result=True
                ),
            )
            issues = self._issues(data, jql)
            next_token = data.get("nextPageToken")
            last = bool(data.get("isLast", not next_token)) or not next_token
            return Page(issues, None, None if last else {"nextPageToken": next_token})
        start = int(cursor.get("startAt") or 0)
        data = self._run(
            f"search {jql!r} from {start}",
            lambda: self.api.search_issues(
                jql,
                startAt=start,
                maxResults=max_results,
                validate_query=validate,
                fields=list(fields),
                json_result=True,
            ),
        )
        issues = self._issues(data, jql)
        total = int(data.get("total") or 0)
        following = start + len(issues)
        # Jira may return fewer than asked (its own cap): advance by what came, stop on an empty page.
        return Page(issues, total, {"startAt": following} if issues and following < total else None)

    def _issues(self, data: Any, jql: str) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or not isinstance(data.get("issues"), list):
            raise IntegrationError(self.system, f"search {jql!r}", "unexpected answer: no 'issues' list")
        return data["issues"]

    def search_all(
        self, jql: str, *, fields: list[str], page_size: int = 100, validate: bool = True
    ) -> Iterator[tuple[Page, dict[str, Any]]]:
        """Yield (page, issue) for every issue matching ``jql``, page after page until the last."""
        cursor: dict[str, Any] | None = None
        while True:
            page = self.search_page(jql, fields=fields, max_results=page_size, cursor=cursor, validate=validate)
            for issue in page.issues:
                yield page, issue
            if page.next is None:
                return
            cursor = page.next

    def issues_by_key(self, keys: list[str], fields: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """Return the visible issues among ``keys`` and the keys Jira does not know or hides.

        Server: ``validateQuery=false`` turns unknown keys into warnings. Cloud's enhanced
        search has no such switch and refuses the query (400) naming each unknown key:
        those are dropped and the query asked again.
        """
        wanted = list(keys)
        missing: list[str] = []
        while wanted:
            jql = f"key in ({', '.join(wanted)}) ORDER BY key ASC"
            try:
                found = [issue for _, issue in self.search_all(jql, fields=fields, validate=False)]
            except IntegrationError as exc:
                unknown = {key.upper() for key in exc.unknown_keys}
                if exc.status != 400 or not unknown & {k.upper() for k in wanted}:
                    raise
                missing += [k for k in wanted if k.upper() in unknown]
                wanted = [k for k in wanted if k.upper() not in unknown]
                continue
            got = {issue["key"].upper() for issue in found}
            return found, missing + [k for k in wanted if k.upper() not in got]
        return [], missing

    # --- writes ----------------------------------------------------------------------------

    def transitions(self, key: str) -> list[dict[str, Any]]:
        """Return the transitions available to the Jira user on an issue now."""
        self.is_cloud  # noqa: B018
        return self._run(f"list transitions of {key}", lambda: list(self.api.transitions(key)))

    def transition(self, key: str, transition_id: str) -> None:
        """Apply a transition by id."""
        self._run(f"transition {key}", lambda: self.api.transition_issue(key, transition_id))

    def update_fields(self, key: str, fields: dict[str, Any]) -> None:
        """Set fields on an issue (PUT /issue/{key}); on Cloud, text for a rich-text field is sent as ADF."""
        if self.is_cloud:
            rich = self.custom_fields().rich_text
            fields = {f: text_to_adf(v) if f in rich and isinstance(v, str) else v for f, v in fields.items()}
        # Through the session: Issue.update() would first GET the issue and then GET it again.
        self._run(
            f"update fields of {key}",
            lambda: self.api._session.put(self.api._get_url(f"issue/{key}"), data=json.dumps({"fields": fields})),
        )

    def add_comment(self, key: str, body: str) -> None:
        """Add a comment to an issue (on Cloud's REST v3 the body must be ADF, which the library does not build)."""
        if self.is_cloud:
            payload = json.dumps({"body": text_to_adf(body)})
            self._run(
                f"comment on {key}",
                lambda: self.api._session.post(self.api._get_url(f"issue/{key}/comment"), data=payload),
            )
            return
        self._run(f"comment on {key}", lambda: self.api.add_comment(key, body))


_clients: dict[tuple[str, tuple[tuple[str, Any], ...]], JiraClient] = {}


def get_client(name: str) -> JiraClient:
    """Return the client of a configured environment (one per environment and configuration)."""
    environments = configured_environments()
    if name not in environments:
        known = ", ".join(sorted(environments)) or "none configured"
        raise IntegrationError(
            system_name(name),
            "connect",
            f"no Jira environment named {name!r} is configured (configured: {known})",
            permanent=True,
        )
    config = environments[name]
    cache_key = (name, tuple(sorted(config.items())))
    client = _clients.get(cache_key)
    if client is None:
        client = _clients[cache_key] = JiraClient(name, config)
    return client
