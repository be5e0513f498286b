"""A task's dependency neighbourhood (upstream and downstream), laid out in columns and drawn as inline SVG."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from scheduling.models import Task, TaskStatus

# Fill colours by task status; text stays dark on every one of them.
STATUS_COLOURS = {
    TaskStatus.PENDING: "#e0e0e0",
    TaskStatus.QUEUED: "#cfe2ff",
    TaskStatus.RUNNING: "#9ec5fe",
    TaskStatus.DONE: "#a3cfbb",
    TaskStatus.FAILED: "#f1aeb5",
    TaskStatus.TIMEOUT: "#f5c2c7",
    TaskStatus.RETRY: "#ffe69c",
    TaskStatus.CANCELLED: "#c4c8cb",
}

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 190, 42, 60, 14, 10


@dataclass
class Graph:
    """Nodes by id with their column (0 = the task, negative = upstream), and edges dependency -> dependent."""

    nodes: dict[UUID, Task] = field(default_factory=dict)
    column: dict[UUID, int] = field(default_factory=dict)
    edges: set[tuple[UUID, UUID]] = field(default_factory=set)
    truncated: bool = False


def neighbourhood(task: Task, *, depth: int = 4, limit: int = 60) -> Graph:
    """Collect up to ``depth`` levels of dependencies and dependents of ``task``: one query per level and direction."""
    through = Task.dependencies.through
    graph = Graph(nodes={task.pk: task}, column={task.pk: 0})
    for direction in (-1, 1):
        frontier = {task.pk}
        for level in range(1, depth + 1):
            if not frontier:
                break
            # from_task depends on to_task: upstream walks from_task -> to_task, downstream the reverse.
            if direction < 0:
                pairs = through.objects.filter(from_task_id__in=frontier).values_list("to_task_id", "from_task_id")
            else:
                pairs = through.objects.filter(to_task_id__in=frontier).values_list("to_task_id", "from_task_id")
            found: set[UUID] = set()
            for upstream, downstream in pairs[: limit * 4]:
                graph.edges.add((upstream, downstream))
                other = upstream if direction < 0 else downstream
                if other not in graph.column:
                    if len(graph.column) >= limit:
                        graph.truncated = True
                        continue
                    graph.column[other] = direction * level
                    found.add(other)
            frontier = found
        if frontier:
            graph.truncated = graph.truncated or _has_more(frontier, direction)
    missing = [pk for pk in graph.column if pk not in graph.nodes]
    for node in Task.objects.filter(pk__in=missing).only("id", "name", "status", "enabled", "owner_id"):
        graph.nodes[node.pk] = node
    graph.edges = {(a, b) for a, b in graph.edges if a in graph.column and b in graph.column}
    return graph


def _has_more(frontier: set[UUID], direction: int) -> bool:
    through = Task.dependencies.through
    key = "from_task_id__in" if direction < 0 else "to_task_id__in"
    return through.objects.filter(**{key: frontier}).exists()


def render_svg(
    graph: Graph, focus: UUID, link: Callable[[UUID], str], can_see: Callable[[Task], bool] = lambda task: True
) -> SafeString:
    """Draw the graph as self-contained SVG: columns left (upstream) to right (downstream), nodes link to tasks.

    A task ``can_see`` refuses is drawn with its status only: no name, no link.
    """
    columns = sorted(set(graph.column.values()))
    by_column: dict[int, list[Task]] = {c: [] for c in columns}
    for pk, col in graph.column.items():
        by_column[col].append(graph.nodes[pk])
    for tasks in by_column.values():
        tasks.sort(key=lambda t: t.name.lower())
    rows = max(len(tasks) for tasks in by_column.values())
    width = PAD * 2 + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP
    position: dict[UUID, tuple[int, int]] = {}
    for index, col in enumerate(columns):
        tasks = by_column[col]
        offset = (rows - len(tasks)) * (NODE_H + ROW_GAP) // 2  # centre short columns
        for row, node in enumerate(tasks):
            position[node.pk] = (PAD + index * (NODE_W + COL_GAP), PAD + offset + row * (NODE_H + ROW_GAP))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="th-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="dependency graph">',
        '<defs><marker id="th-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>',
    ]
    for upstream, downstream in sorted(graph.edges, key=lambda e: (str(e[0]), str(e[1]))):
        x1, y1 = position[upstream]
        x2, y2 = position[downstream]
        parts.append(
            f'<line class="th-edge" x1="{x1 + NODE_W}" y1="{y1 + NODE_H // 2}" x2="{x2}" y2="{y2 + NODE_H // 2}" '
            'stroke="#666" stroke-width="1.5" marker-end="url(#th-arrow)"/>'
        )
    for pk, (x, y) in position.items():
        node = graph.nodes[pk]
        visible = can_see(node)
        full = node.name if visible else "another user's task"
        name = full if len(full) <= 26 else full[:25] + "…"
        colour = STATUS_COLOURS.get(node.status, "#eeeeee")
        stroke = ' stroke="#000" stroke-width="3"' if pk == focus else ' stroke="#888" stroke-width="1"'
        paused = " · paused" if not node.enabled else ""
        href = f' href="{escape(link(pk))}"' if visible else ""
        parts.append(
            f'<a{href} class="th-node" data-status="{escape(node.status)}">'
            f"<title>{escape(full)} ({escape(node.status)}{paused})</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{colour}"{stroke}/>'
            f'<text x="{x + 8}" y="{y + 17}" font-size="12" font-weight="bold" fill="#111">{escape(name)}</text>'
            f'<text x="{x + 8}" y="{y + 33}" font-size="11" fill="#333">{escape(node.status)}{paused}</text></a>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped
