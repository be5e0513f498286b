"""Jira extraction: by project (every page) or by root ticket (its tree and links), into an Excel workbook.

The same functions serve the ``JIRA_TASK_EXP`` handler and the ``jira_export``
command. Issues stream from Jira page by page into the workbook, so memory does
not grow with the size of the project.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.jira.checkpoint import Checkpoint
from integrations.jira.client import JiraClient, get_client
from integrations.jira.excel import Column, ExportWorkbook
from taskhub.exceptions import IntegrationError

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
KEY_BATCH = 50  # keys per "key in (...)" / "parent in (...)" query: keeps URLs well under proxy limits
DEFAULT_MAX_DEPTH = 5
DEFAULT_MAX_ISSUES = 10_000

Progress = Callable[[float | None, str], None]

COLUMNS = [
    Column("Key", 13, "link"),
    Column("Summary", 50),
    Column("Type", 12),
    Column("Status", 14),
    Column("Priority", 10),
    Column("Assignee", 20),
    Column("Reporter", 20),
    Column("Created", 17, "date"),
    Column("Updated", 17, "date"),
    Column("Resolution", 13),
    Column("Parent", 13),
    Column("Epic", 13),
    Column("Labels", 20),
    Column("Components", 20),
    Column("Fix Versions", 16),
    Column("Story Points", 8, "number"),
    Column("Links", 40),
    # Rich text: ADF on Cloud's REST v3, wiki text on Server's v2; plain text in both workbooks.
    Column("Description", 50),
    # Who people are, beyond their display name: the account id on Cloud, the user name on Server.
    Column("Assignee ID", 20),
    Column("Reporter ID", 20),
]
TREE_COLUMNS = [*COLUMNS, Column("Depth", 7, "number"), Column("Found via", 30)]


def _no_progress(percent: float | None, message: str = "") -> None:
    return None


# --- rows -------------------------------------------------------------------------------


def parse_jira_datetime(value: Any, tz: zoneinfo.ZoneInfo) -> datetime | None:
    """Return Jira's timestamp ("2024-03-10T12:34:56.000+0100") as a naive datetime in ``tz`` (Excel has no zones)."""
    if not isinstance(value, str) or not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            moment = datetime.strptime(value, pattern)
            break
        except ValueError:
            continue
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(tz).replace(tzinfo=None)


def _name(value: Any, *keys: str) -> str:
    """Return the first present display attribute of a Jira object (user, status, ...), or ''."""
    if not isinstance(value, dict):
        return ""
    for key in keys or ("name",):
        if value.get(key):
            return str(value[key])
    return ""


def _user(value: Any) -> str:
    return _name(value, "displayName", "name", "accountId")


def _user_id(value: Any) -> str:
    """Return a person's stable id: Cloud's accountId, Server's user name (Cloud has no name)."""
    return _name(value, "accountId", "name", "key")


def _links(fields: dict[str, Any]) -> str:
    """Return the issue's links as 'blocks PROJ-2; is blocked by PROJ-3'."""
    parts = []
    for link in fields.get("issuelinks") or []:
        kind = link.get("type") or {}
        if link.get("outwardIssue"):
            parts.append(f"{kind.get('outward', 'relates to')} {link['outwardIssue'].get('key', '?')}")
        elif link.get("inwardIssue"):
            parts.append(f"{kind.get('inward', 'relates to')} {link['inwardIssue'].get('key', '?')}")
    return "; ".join(parts)


@dataclass
class Row:
    """One issue as a sheet row, plus what the summary counts."""

    key: str
    values: list[Any]
    status: str
    type: str
    assignee: str


def issue_row(issue: dict[str, Any], client: JiraClient, tz: zoneinfo.ZoneInfo, extra: list[Any] | None = None) -> Row:
    """Turn an issue's raw JSON into a row of COLUMNS (plus ``extra`` values); absent fields stay empty."""
    fields = issue.get("fields") or {}
    custom = client.custom_fields()
    parent = fields.get("parent") or {}
    # Jira Cloud and new Data Center put a story's epic in "parent"; a sub-task's parent stays its parent.
    parent_is_epic = _name((parent.get("fields") or {}).get("issuetype")).lower() == "epic" and not (
        (fields.get("issuetype") or {}).get("subtask")
    )
    epic = fields.get(custom.epic_link) if custom.epic_link else None
    if not epic and parent_is_epic:
        epic = parent.get("key")
    points = fields.get(custom.story_points) if custom.story_points else None
    status, type_, assignee = _name(fields.get("status")), _name(fields.get("issuetype")), _user(fields.get("assignee"))
    values = [
        issue.get("key", ""),
        fields.get("summary") or "",
        type_,
        status,
        _name(fields.get("priority")),
        assignee,
        _user(fields.get("reporter")),
        parse_jira_datetime(fields.get("created"), tz),
        parse_jira_datetime(fields.get("updated"), tz),
        _name(fields.get("resolution")),
        "" if parent_is_epic else parent.get("key", ""),
        epic or "",
        ", ".join(str(label) for label in fields.get("labels") or []),
        ", ".join(_name(c) for c in fields.get("components") or []),
        ", ".join(_name(v) for v in fields.get("fixVersions") or []),
        points if isinstance(points, int | float) and not isinstance(points, bool) else None,
        _links(fields),
        client.text(fields.get("description")),
        _user_id(fields.get("assignee")),
        _user_id(fields.get("reporter")),
        *(extra or []),
    ]
    return Row(issue.get("key", ""), values, status, type_, assignee)


# --- extraction -------------------------------------------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jira_time(moment: datetime, zone: str) -> str:
    """Return ``moment`` as a JQL date ("yyyy/MM/dd HH:mm") in the Jira user's time zone, which JQL uses."""
    try:
        tz = zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        tz = zoneinfo.ZoneInfo("UTC")
    return moment.astimezone(tz).strftime("%Y/%m/%d %H:%M")


def project_jql(project: str, since: str | None = None) -> str:
    """Return the JQL of a project export, in a stable order so pages neither skip nor repeat issues."""
    jql = f"project = {_quote(project)}"
    if since:
        jql += f" AND updated >= {_quote(since)}"
    return jql + " ORDER BY key ASC"


@dataclass
class Walk:
    """What an extraction found besides the issues: the totals and what it had to leave out."""

    total: int | None = None
    fetched: int = 0
    truncated: bool = False
    missing: list[str] = field(default_factory=list)
    jql: str = ""
    resumed: int = 0  # issues taken from the run's checkpoint instead of Jira


def iter_project(
    client: JiraClient,
    project: str,
    walk: Walk,
    *,
    since: datetime | None = None,
    page_size: int = PAGE_SIZE,
    progress: Progress = _no_progress,
    checkpoint: Checkpoint | None = None,
    env: str = "",
) -> Iterator[dict[str, Any]]:
    """Yield every issue of ``project`` (updated since ``since`` if given), fetching page after page.

    With a ``checkpoint``, the issues of pages completed by an earlier attempt of the run are
    yielded from it first, then the search goes on from the page after them; each completed
    page is recorded before the next is asked for.
    """
    fields = client.export_fields()
    since_text = jira_time(since, client.myself().get("timeZone") or "UTC") if since else None
    walk.jql = project_jql(project, since_text)
    seen: set[str | None] = set()
    cursor: dict[str, Any] | None = None
    if checkpoint is not None:
        state = checkpoint.state(env)
        for issue in checkpoint.spooled_issues(env):
            seen.add(issue.get("id"))
            walk.fetched += 1
            yield issue
        walk.resumed = walk.fetched
        if state.done:
            return
        cursor = state.cursor
    resumed_cursor = cursor
    while True:
        try:
            page = client.search_page(walk.jql, fields=fields, max_results=page_size, cursor=cursor)
        except IntegrationError as exc:
            # Cloud's nextPageToken expires (after 7 days): read again from the first page; the issues
            # already written are recognised by id and skipped, so each still appears once.
            if cursor is None or cursor is not resumed_cursor or exc.status != 400:
                raise
            logger.warning("%s: the checkpoint's page no longer answers (%s); reading from the first page", env, exc)
            cursor = resumed_cursor = None
            continue
        fresh = []
        for issue in page.issues:
            # An issue moved between pages while we read (re-ranked, created) must appear once.
            if issue.get("id") in seen:
                continue
            seen.add(issue.get("id"))
            fresh.append(issue)
            walk.fetched += 1
            yield issue
        if checkpoint is not None:
            checkpoint.page_done(env, fresh, page.next)
        if page.total is None:
            # Cloud's search gives no total: count what came.
            progress(None, f"{walk.fetched} issues so far")
        else:
            walk.total = page.total
            progress(
                100 * min(walk.fetched, walk.total) / walk.total if walk.total else 100,
                f"{walk.fetched} of {walk.total} issues",
            )
        if page.next is None:
            return
        cursor = page.next


def _related(issue: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (key, how it relates) for the sub-tasks and linked issues named in an issue's fields."""
    key, fields = issue["key"], issue.get("fields") or {}
    for sub in fields.get("subtasks") or []:
        if sub.get("key"):
            yield sub["key"], f"sub-task of {key}"
    for link in fields.get("issuelinks") or []:
        kind = link.get("type") or {}
        # From the other issue's side: if KEY "blocks" it, it "is blocked by" KEY.
        if (link.get("outwardIssue") or {}).get("key"):
            yield link["outwardIssue"]["key"], f"{kind.get('inward', 'linked to')} {key}"
        elif (link.get("inwardIssue") or {}).get("key"):
            yield link["inwardIssue"]["key"], f"{kind.get('outward', 'linked to')} {key}"


def _child_via(issue: dict[str, Any], parents: list[str], epics: list[str], epic_field: str | None) -> str:
    """Return how a child found by the parent / Epic Link query relates to this level's issues."""
    fields = issue.get("fields") or {}
    parent = (fields.get("parent") or {}).get("key")
    if parent in parents:
        if (fields.get("issuetype") or {}).get("subtask"):
            return f"sub-task of {parent}"
        return f"in epic {parent}" if parent in epics else f"child of {parent}"
    epic = fields.get(epic_field) if epic_field else None
    return f"in epic {epic}" if epic else "child"


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]


def iter_tree(
    client: JiraClient,
    root: str,
    walk: Walk,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_issues: int = DEFAULT_MAX_ISSUES,
    progress: Progress = _no_progress,
) -> Iterator[tuple[dict[str, Any], int, str]]:
    """Yield (issue, depth, found via) for the root, its sub-tasks, children and links, breadth first.

    Steps, level by level up to ``max_depth`` hops from the root:
    1. children of this level's issues by JQL: ``parent in (...)`` (sub-tasks; on Cloud also epic
       children) and ``"Epic Link" in (...)`` for epics where Jira has that field (Data Center);
    2. sub-tasks and linked issues named in their fields, fetched with ``key in (...)``;
    each key is taken once, so link cycles end; invisible or deleted linked issues are listed in
    ``walk.missing``; past ``max_issues`` the walk stops and ``walk.truncated`` is set.
    """
    fields = client.export_fields()
    custom = client.custom_fields()
    first = client.get_issue(root, fields)
    seen = {first["key"].upper()}
    walk.fetched = 1
    yield first, 0, "root"
    level = [first]
    found: list[dict[str, Any]] = []

    def take(issue: dict[str, Any]) -> bool:
        """Record a newly found issue; False when the issue limit is reached."""
        if walk.fetched >= max_issues:
            walk.truncated = True
            return False
        seen.add(issue["key"].upper())
        walk.fetched += 1
        found.append(issue)
        return True

    for depth in range(1, max_depth + 1):
        if not level or walk.truncated:
            break
        # The tree's size is unknown until it is walked: report the share of levels done.
        progress(100 * (depth - 1) / max_depth, f"depth {depth}: around {len(level)} issues, {walk.fetched} found")
        parents = [i["key"] for i in level if not ((i.get("fields") or {}).get("issuetype") or {}).get("subtask")]
        epics = [i["key"] for i in level if _name((i.get("fields") or {}).get("issuetype")).lower() == "epic"]
        for keys in _chunks(parents, KEY_BATCH):
            clauses = [f"parent in ({', '.join(keys)})"]
            epic_keys = [k for k in keys if k in epics]
            # Cloud's epics own their issues through parent, which the clause above already asks for.
            if custom.epic_link_clause and epic_keys and not client.is_cloud:
                clauses.append(f"{custom.epic_link_clause} in ({', '.join(epic_keys)})")
            jql = " OR ".join(clauses) + " ORDER BY key ASC"
            for _, issue in client.search_all(jql, fields=fields, page_size=PAGE_SIZE, validate=False):
                if issue["key"].upper() in seen:
                    continue
                via = _child_via(issue, keys, epics, custom.epic_link)
                if not take(issue):
                    break
                yield issue, depth, via
        pending: dict[str, str] = {}
        for issue in level:
            for key, via in _related(issue):
                if key.upper() not in seen and key.upper() not in pending:
                    pending[key.upper()] = via
        for keys in _chunks(list(pending), KEY_BATCH):
            if walk.truncated:
                break
            # A linked issue that was deleted or is hidden is listed as missing, not an error.
            issues, missing = client.issues_by_key(keys, fields)
            for issue in issues:
                key = issue["key"].upper()
                if key in seen:
                    continue
                if not take(issue):
                    break
                yield issue, depth, pending.get(key, "linked")
            if not walk.truncated:
                walk.missing += [k for k in missing if k.upper() not in seen]
        level = list(found)
        found.clear()


# --- the export -------------------------------------------------------------------------


@dataclass
class ExportRequest:
    """What to export: environments, root ticket or project, and the limits."""

    envs: list[str]
    key_type: str  # root_ticket | project
    key_value: str
    user: str = ""
    since: datetime | None = None
    max_depth: int = DEFAULT_MAX_DEPTH
    max_issues: int = DEFAULT_MAX_ISSUES
    page_size: int = PAGE_SIZE


def export_timezone() -> zoneinfo.ZoneInfo:
    """Return the zone the workbook's dates are shown in (web.time_zone)."""
    return zoneinfo.ZoneInfo(settings.TIME_ZONE or "UTC")


def export_issues(
    request: ExportRequest, path: Path, *, progress: Progress = _no_progress, checkpoint: Checkpoint | None = None
) -> dict[str, Any]:
    """Extract the issues of every environment into a workbook at ``path``; return a JSON-able summary.

    A project export with a ``checkpoint`` resumes from the pages an earlier attempt of the run
    completed; the checkpoint is deleted once the workbook is saved.
    """
    tz = export_timezone()
    book = ExportWorkbook(path)
    try:
        summary = _export(request, book, tz, progress, checkpoint)
    except BaseException:
        # Openpyxl streams each sheet to a temporary file; a long-lived worker must not collect them.
        book.discard()
        raise
    if checkpoint is not None:
        checkpoint.discard()
    return summary


def _export(
    request: ExportRequest,
    book: ExportWorkbook,
    tz: zoneinfo.ZoneInfo,
    progress: Progress,
    checkpoint: Checkpoint | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {"key_type": request.key_type, "key_value": request.key_value, "environments": {}}
    notes: list[str] = []
    share = 95 / len(request.envs)
    for index, env in enumerate(request.envs):
        client = get_client(env)

        def env_progress(percent: float | None, message: str, index: int = index, env: str = env) -> None:
            overall = None if percent is None else index * share + share * percent / 100
            progress(overall, f"{env}: {message}")

        walk = Walk()
        tree = request.key_type == "root_ticket"
        sheet = book.add_sheet(env, TREE_COLUMNS if tree else COLUMNS)
        if tree:
            for issue, depth, via in iter_tree(
                client,
                request.key_value,
                walk,
                max_depth=request.max_depth,
                max_issues=request.max_issues,
                progress=env_progress,
            ):
                row = issue_row(issue, client, tz, [depth, via])
                sheet.append(
                    row.values,
                    link=client.browse_url(row.key),
                    status=row.status,
                    type_=row.type,
                    assignee=row.assignee,
                )
        else:
            for issue in iter_project(
                client,
                request.key_value,
                walk,
                since=request.since,
                page_size=request.page_size,
                progress=env_progress,
                checkpoint=checkpoint,
                env=env,
            ):
                row = issue_row(issue, client, tz)
                sheet.append(
                    row.values,
                    link=client.browse_url(row.key),
                    status=row.status,
                    type_=row.type,
                    assignee=row.assignee,
                )
        if walk.truncated:
            notes.append(f"{env}: stopped at {request.max_issues} issues (max_issues); the tree is larger")
        if walk.missing:
            shown = ", ".join(walk.missing[:20]) + (" ..." if len(walk.missing) > 20 else "")
            notes.append(f"{env}: linked issues not found or not visible to the Jira user: {shown}")
        summary["environments"][env] = {
            "url": client.url,
            "issues": sheet.counts.rows,
            "by_status": dict(sheet.counts.status.most_common()),
            "by_type": dict(sheet.counts.type.most_common()),
            "truncated": walk.truncated,
            "missing": walk.missing[:100],
            "deployment": "cloud" if client.is_cloud else "server",
        }
        if walk.resumed:
            summary["environments"][env]["resumed_issues"] = walk.resumed
        env_progress(100, f"{sheet.counts.rows} issues")
    info: list[tuple[str, Any]] = [
        ("Key type", request.key_type),
        ("Key value", request.key_value),
        ("Environments", ", ".join(request.envs)),
        ("Requested by", request.user),
        ("Generated", timezone.now().astimezone(tz).replace(tzinfo=None)),
        ("Dates shown in", str(tz)),
    ]
    if request.key_type == "root_ticket":
        info.append(("Depth limit", request.max_depth))
    if request.since:
        info.append(("Updated since", request.since.astimezone(tz).replace(tzinfo=None)))
    progress(97, "saving the workbook")
    book.save(info, notes)
    summary["total"] = sum(env["issues"] for env in summary["environments"].values())
    summary["notes"] = notes
    if request.since:
        summary["since"] = request.since.isoformat()
    return summary


def default_since(previous: datetime | None) -> datetime | None:
    """Return the incremental cut-off: the previous success's start, a minute early (JQL has minute precision)."""
    return previous - timedelta(minutes=1) if previous else None
