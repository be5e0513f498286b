"""Rich text both ways: Atlassian Document Format (Jira Cloud's REST v3) and plain text (v2's wiki text).

Jira Cloud's v3 API returns a description or comment as an ADF document (a JSON tree of
``doc`` > ``paragraph`` > ``text`` nodes) and refuses a plain string where one is written;
REST v2 (Server / Data Center) uses a string. TaskHub reads both as plain text and writes
text as the simplest ADF document: one paragraph per line, hard breaks kept.
"""

from __future__ import annotations

from typing import Any

#: ADF nodes that end a line of text when read back.
BLOCKS = {"paragraph", "heading", "blockquote", "codeBlock", "listItem", "rule", "panel", "tableRow", "mediaSingle"}


def plain_text(value: Any) -> str:
    """Return ``value`` (an ADF document, a string or None) as plain text, lines joined by newlines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return str(value)
    lines: list[str] = []
    current: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind == "text":
            current.append(str(node.get("text", "")))
        elif kind == "hardBreak":
            current.append("\n")
        elif kind == "mention":
            current.append(str((node.get("attrs") or {}).get("text", "")))
        elif kind in ("emoji", "status"):
            attrs = node.get("attrs") or {}
            current.append(str(attrs.get("text") or attrs.get("shortName") or ""))
        for child in node.get("content") or []:
            walk(child)
        if kind in BLOCKS and current:
            lines.append("".join(current))
            current.clear()

    walk(value)
    if current:
        lines.append("".join(current))
    return "\n".join(lines)


def text_to_adf(text: str) -> dict[str, Any]:
    """Return ``text`` as an ADF document: a paragraph per line (empty lines make empty paragraphs)."""
    paragraphs = []
    for line in text.split("\n"):
        paragraphs.append({"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []})
    return {"type": "doc", "version": 1, "content": paragraphs}
