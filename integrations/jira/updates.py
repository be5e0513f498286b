"""Jira issue updates: transitions by name and field edits, planned for every issue before any change.

Steps:
1. choose the issues (explicit keys, or a JQL capped by ``max_issues``);
2. resolve field names to ids and each issue's transition by name (case-insensitive; the
   target status name also works);
3. if any issue cannot take the transition, fail before changing anything, listing what is
   available for it;
4. unless ``dry_run``: set fields, then transition, then comment, issue by issue.
An issue already in the requested status is skipped and reported unchanged, even when its
workflow offers a transition into its own status (taking it would re-run the workflow's
post-functions and notifications), so a retry after a partial run converges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integrations.jira.client import JiraClient, get_client
from taskhub.exceptions import IntegrationError

MAX_LISTED = 200

Progress = Callable[[float | None, str], None]


@dataclass
class UpdateRequest:
    """What to change, on which issues of which environment."""

    env: str
    keys: list[str] = field(default_factory=list)
    jql: str = ""
    transition: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    comment: str = ""
    dry_run: bool = False
    max_issues: int = 100


@dataclass
class Plan:
    """The change planned for one issue."""

    key: str
    status: str
    transition_id: str | None = None
    transition_name: str = ""
    target_status: str = ""
    skipped: str = ""
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "status": self.status}
        if self.transition_name:
            data["transition"] = self.transition_name
            data["to_status"] = self.target_status
        if self.skipped:
            data["skipped"] = self.skipped
        if self.changes:
            data["fields"] = self.changes
        return data


def resolve_fields(client: JiraClient, wanted: dict[str, Any]) -> dict[str, Any]:
    """Map field ids or names (case-insensitive) to ids; an unknown field is a permanent error."""
    custom = client.custom_fields()
    ids = set(custom.by_name.values())
    resolved: dict[str, Any] = {}
    unknown = []
    for name, value in wanted.items():
        if name in ids:
            resolved[name] = value
        elif name.lower() in custom.by_name:
            resolved[custom.by_name[name.lower()]] = value
        else:
            unknown.append(name)
    if unknown:
        raise IntegrationError(
            client.system,
            "update fields",
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            "give a field id (summary, customfield_10106) or its name as Jira shows it",
            permanent=True,
        )
    return resolved


def _same(current: Any, new: Any) -> bool:
    """Return whether setting ``new`` would leave ``current`` as it is ({"name": "High"} matches a full object)."""
    if isinstance(new, dict) and isinstance(current, dict):
        return all(_same(current.get(k), v) for k, v in new.items())
    if isinstance(new, list) and isinstance(current, list):
        return len(new) == len(current) and all(_same(c, n) for c, n in zip(current, new, strict=True))
    return current == new


def _shown(value: Any) -> Any:
    """Return a short form of a field value for the result (an object's name or key)."""
    if isinstance(value, dict):
        for key in ("name", "value", "key", "displayName"):
            if key in value:
                return value[key]
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


def _select(client: JiraClient, request: UpdateRequest, field_ids: list[str]) -> list[dict[str, Any]]:
    fields = ["summary", "status", *field_ids]
    if request.keys:
        return [client.get_issue(key, fields) for key in request.keys]
    issues: list[dict[str, Any]] = []
    for page, issue in client.search_all(request.jql, fields=fields, page_size=100):
        # Server tells the total on the first page; Cloud does not, so count until one too many.
        total = page.total if page.total is not None else len(issues) + 1
        if total > request.max_issues:
            matches = f"{total} issues" if page.total is not None else f"more than {request.max_issues} issues"
            raise IntegrationError(
                client.system,
                "select issues",
                f"the JQL matches {matches}, more than max_issues={request.max_issues}; "
                "narrow the JQL or raise max_issues",
                permanent=True,
            )
        issues.append(issue)
    return issues


def _plan_transition(client: JiraClient, plan: Plan, wanted: str, targets: dict[str, str]) -> str | None:
    """Fill the plan's transition; return an error line when the issue cannot take it."""
    available = client.transitions(plan.key)
    wanted_lower = wanted.strip().lower()
    for item in available:
        targets.setdefault(str(item.get("name", "")).lower(), str((item.get("to") or {}).get("name", "")))
    match = next((t for t in available if str(t.get("name", "")).lower() == wanted_lower), None)
    if match is None:
        by_status = [t for t in available if str((t.get("to") or {}).get("name", "")).lower() == wanted_lower]
        match = by_status[0] if len(by_status) == 1 else None
    if match is not None:
        target = str((match.get("to") or {}).get("name", ""))
        if target.lower() == plan.status.lower():
            # Already there: a transition into its own status would run the workflow again (post-functions, mails).
            plan.skipped = f"already in status {plan.status}"
            return None
        plan.transition_id = str(match["id"])
        plan.transition_name = str(match.get("name", ""))
        plan.target_status = target
        return None
    if plan.status.lower() in {wanted_lower, targets.get(wanted_lower, "").lower()}:
        plan.skipped = f"already in status {plan.status}"
        return None
    names = ", ".join(f"{t.get('name')} (-> {(t.get('to') or {}).get('name', '?')})" for t in available) or "none"
    return f"{plan.key} (status {plan.status}): no transition {wanted!r}; available: {names}"


def update_issues(request: UpdateRequest, *, progress: Progress, logger: logging.Logger) -> dict[str, Any]:
    """Plan and (unless dry_run) apply the update; return what changed or would change."""
    client = get_client(request.env)
    fields = resolve_fields(client, request.fields) if request.fields else {}
    issues = _select(client, request, list(fields))
    progress(10, f"{len(issues)} issues selected")
    plans: list[Plan] = []
    problems: list[str] = []
    targets: dict[str, str] = {}  # transition name -> target status, learnt from every issue
    for issue in issues:
        current = issue.get("fields") or {}
        plan = Plan(key=issue["key"], status=str((current.get("status") or {}).get("name", "")))
        rich = client.custom_fields().rich_text
        for field_id, value in fields.items():
            before = current.get(field_id)
            if field_id in rich and isinstance(value, str):
                # Rich text reads as ADF on Cloud, as text on Server: compare and show it as text.
                before = client.text(before) or None
                if (before or "") == value:
                    continue
            elif _same(before, value):
                continue
            plan.changes[field_id] = {"from": _shown(before), "to": _shown(value)}
        if request.transition:
            problem = _plan_transition(client, plan, request.transition, targets)
            if problem:
                problems.append(problem)
        plans.append(plan)
    # A retry after a partial run: issues moved last time are now in the target status.
    if request.transition:
        target = targets.get(request.transition.strip().lower(), "").lower()
        for plan in plans:
            if plan.transition_id is None and not plan.skipped and target and plan.status.lower() == target:
                plan.skipped = f"already in status {plan.status}"
        problems = [line for line in problems if not any(p.skipped and line.startswith(f"{p.key} ") for p in plans)]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise IntegrationError(
            client.system, f"transition to {request.transition!r}", f"nothing changed: {shown}", permanent=True
        )
    changed = 0
    if not request.dry_run:
        for index, plan in enumerate(plans, 1):
            touched = False
            if plan.changes:
                client.update_fields(plan.key, {f: fields[f] for f in plan.changes})
                touched = True
            if plan.transition_id and not plan.skipped:
                client.transition(plan.key, plan.transition_id)
                touched = True
            if request.comment:
                client.add_comment(plan.key, request.comment)
                touched = True
            changed += touched
            progress(10 + 90 * index / len(plans), f"{plan.key} updated")
            if touched:
                logger.info("%s: %s", plan.key, plan.as_json())
    return {
        "environment": request.env,
        "dry_run": request.dry_run,
        "selected": len(plans),
        "changed": changed,
        "would_change": sum(1 for p in plans if p.changes or (p.transition_id and not p.skipped) or request.comment),
        "issues": [plan.as_json() for plan in plans[:MAX_LISTED]],
    }
