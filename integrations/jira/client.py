"""The one seam to Jira: a real ``jira.JIRA`` client per configured environment, with our typed errors.

Environments come from ``settings.TASKHUB.jira_environments`` (``jira.environments``
in config.yaml, plus the seed's single ``jira.url``); a task names them and never
carries a URL or credentials. The library's own retries (up to minutes of sleeping
on 429/503 and connection errors) are turned off, so a task's retry policy alone
decides when to try again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from jira import JIRA

from integrations.jira.errors import jira_call, system_name
from taskhub.exceptions import IntegrationError

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


class JiraClient:
    """A ``jira.JIRA`` client for one environment; every call raises IntegrationError on failure."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.url = config["url"].rstrip("/")
        self.timeout = float(config["timeout"])
        self.system = system_name(name)
        auth: dict[str, Any] = {}
        if config.get("token"):
            auth["token_auth"] = config["token"]
        elif config.get("username"):
            auth["basic_auth"] = (config["username"], config.get("password") or "")
        self.api = JIRA(
            server=self.url,
            options={"verify": bool(config["verify_ssl"])},
            timeout=self.timeout,
            max_retries=0,  # the task's retry policy decides; the library would sleep up to minutes
            get_server_info=False,  # no request at construction: the first real call reports errors
            logging=False,
            **auth,
        )
        self._custom: CustomFields | None = None

    def call(self, operation: str) -> Any:
        """Return a context manager translating errors of ``operation`` into IntegrationError."""
        return jira_call(self.name, operation, url=self.url, timeout=self.timeout)

    def browse_url(self, key: str) -> str:
        """Return the URL people open to see an issue."""
        return f"{self.url}/browse/{key}"

    # --- reads -----------------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        """Return Jira's serverInfo (version, deployment type)."""
        with self.call("read server info"):
            return self.api.server_info()

    def myself(self) -> dict[str, Any]:
        """Return the authenticated user (name, timeZone); a 401 here means wrong credentials."""
        with self.call("read the current user"):
            return self.api.myself()

    def custom_fields(self) -> CustomFields:
        """Find the epic-link and story-point custom fields by their schema and name (ids vary per Jira)."""
        if self._custom is None:
            with self.call("list fields"):
                fields = self.api.fields()
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
            self._custom = found
        return self._custom

    def export_fields(self) -> list[str]:
        """Return the field ids an export asks for on this Jira."""
        custom = self.custom_fields()
        return EXPORT_FIELDS + [f for f in (custom.epic_link, custom.story_points) if f]

    def get_issue(self, key: str, fields: list[str]) -> dict[str, Any]:
        """Return one issue's raw JSON; a missing issue is a permanent 404 error."""
        with self.call(f"read issue {key}"):
            return self.api.issue(key, fields=",".join(fields)).raw

    def search_page(
        self, jql: str, *, start_at: int, max_results: int, fields: list[str], validate: bool = True
    ) -> dict[str, Any]:
        """Return one page of a JQL search as raw JSON (issues, startAt, maxResults, total)."""
        with self.call(f"search {jql!r} from {start_at}"):
            page = self.api.search_issues(
                jql,
                startAt=start_at,
                maxResults=max_results,
                validate_query=validate,
                fields=list(fields),
                json_result=True,
            )
        if not isinstance(page, dict) or not isinstance(page.get("issues"), list):
            raise IntegrationError(self.system, f"search {jql!r}", "unexpected answer: no 'issues' list")
        return page

    def search_all(
        self, jql: str, *, fields: list[str], page_size: int = 100, validate: bool = True
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Yield (page, issue) for every issue matching ``jql``, page after page until the last."""
        start = 0
        while True:
            page = self.search_page(jql, start_at=start, max_results=page_size, fields=fields, validate=validate)
            issues = page["issues"]
            for issue in issues:
                yield page, issue
            start += len(issues)
            # Jira may return fewer than asked (its own cap): advance by what came, stop on an empty page.
            if not issues or start >= int(page.get("total") or 0):
                return

    # --- writes ----------------------------------------------------------------------------

    def transitions(self, key: str) -> list[dict[str, Any]]:
        """Return the transitions available to the Jira user on an issue now."""
        with self.call(f"list transitions of {key}"):
            return list(self.api.transitions(key))

    def transition(self, key: str, transition_id: str) -> None:
        """Apply a transition by id."""
        with self.call(f"transition {key}"):
            self.api.transition_issue(key, transition_id)

    def update_fields(self, key: str, fields: dict[str, Any]) -> None:
        """Set fields on an issue (PUT /issue/{key})."""
        with self.call(f"update fields of {key}"):
            # Through the session: Issue.update() would first GET the issue and then GET it again.
            self.api._session.put(self.api._get_url(f"issue/{key}"), json={"fields": fields})

    def add_comment(self, key: str, body: str) -> None:
        """Add a comment to an issue."""
        with self.call(f"comment on {key}"):
            self.api.add_comment(key, body)


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
