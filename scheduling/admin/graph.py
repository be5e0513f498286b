"""Dependency graphs for the admin: a task's neighbourhood or a whole pipeline, layered and drawn as inline SVG.

Layout (Sugiyama style): each task goes in the layer of its longest path from a root, so it stands right of
all its dependencies; an edge spanning several layers gets a dummy node in each layer it crosses, so it runs
through a free slot of that column instead of behind a box; a few barycentre sweeps order each layer to
shorten edges and reduce crossings.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet
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
DUMMY_H = 8  # the slot an edge takes in a column it crosses
SWEEPS = 6  # barycentre passes (alternating directions) when ordering the layers
NODE_FIELDS = ("id", "name", "status", "enabled", "owner_id")
PIPELINE_LIMIT = 200  # tasks drawn in a pipeline view; beyond it the view says it is truncated


@dataclass
class Graph:
    """Nodes by id with their column (0 = the task, negative = upstream), and edges dependency -> dependent."""

    nodes: dict[UUID, Task] = field(default_factory=dict)
    column: dict[UUID, int] = field(default_factory=dict)
    edges: set[tuple[UUID, UUID]] = field(default_factory=set)
    truncated: bool = False
    faded: set[UUID] = field(default_factory=set)  #: drawn pale: not part of the pipeline run shown


def show_pipeline_run(graph: Graph, statuses: dict[Any, str]) -> None:
    """Colour the graph by a pipeline run: its tasks by their status in it (``statuses``, by task id), the others
    pale. An attempt status that is no task status (SKIPPED) reads as DONE."""
    for pk, node in graph.nodes.items():
        if pk in statuses:
            status = statuses[pk]
            node.status = status if status in TaskStatus.values else TaskStatus.DONE
        else:
            graph.faded.add(pk)


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
    for node in Task.objects.filter(pk__in=missing).only(*NODE_FIELDS):
        graph.nodes[node.pk] = node
    graph.edges = {(a, b) for a, b in graph.edges if a in graph.column and b in graph.column}
    return graph


def _has_more(frontier: set[UUID], direction: int) -> bool:
    through = Task.dependencies.through
    key = "from_task_id__in" if direction < 0 else "to_task_id__in"
    return through.objects.filter(**{key: frontier}).exists()


def component(task: Task, *, limit: int = PIPELINE_LIMIT) -> Graph:
    """Collect the whole pipeline of ``task``: every task connected to it by dependencies, either way."""
    through = Task.dependencies.through
    graph = Graph(nodes={task.pk: task}, column={task.pk: 0})
    frontier = {task.pk}
    while frontier:  # one query per level of the breadth-first walk
        pairs = through.objects.filter(Q(from_task_id__in=frontier) | Q(to_task_id__in=frontier))
        found: set[UUID] = set()
        for upstream, downstream in pairs.values_list("to_task_id", "from_task_id")[: limit * 4]:
            graph.edges.add((upstream, downstream))
            for other in (upstream, downstream):
                if other not in graph.column:
                    if len(graph.column) >= limit:
                        graph.truncated = True
                        continue
                    graph.column[other] = 0
                    found.add(other)
        frontier = found
    missing = [pk for pk in graph.column if pk not in graph.nodes]
    for node in Task.objects.filter(pk__in=missing).only(*NODE_FIELDS):
        graph.nodes[node.pk] = node
    graph.edges = {(a, b) for a, b in graph.edges if a in graph.nodes and b in graph.nodes}
    return graph


def tagged(tag: str, tasks: QuerySet[Task], *, limit: int = PIPELINE_LIMIT) -> Graph:
    """Collect the tasks of ``tasks`` (the ones the user may see) that carry ``tag``, with the edges between them."""
    found = list(tasks.filter(tags__name=tag).order_by("name", "pk").only(*NODE_FIELDS)[: limit + 1])
    graph = Graph(truncated=len(found) > limit)
    graph.nodes = {node.pk: node for node in found[:limit]}
    graph.column = dict.fromkeys(graph.nodes, 0)
    through = Task.dependencies.through
    pairs = through.objects.filter(from_task_id__in=list(graph.nodes), to_task_id__in=list(graph.nodes))
    graph.edges = set(pairs.values_list("to_task_id", "from_task_id"))
    return graph


@dataclass
class Layout:
    """Where each box goes (top-left corner) and the points each edge passes through, source to target."""

    width: int
    height: int
    boxes: dict[UUID, tuple[int, int]]
    routes: dict[tuple[UUID, UUID], list[tuple[float, float]]]


def longest_path_layers(nodes: list[UUID], edges: set[tuple[UUID, UUID]]) -> dict[UUID, int]:
    """Return each node's layer: 0 for a task without dependencies, else one more than its deepest dependency."""
    preds: dict[UUID, list[UUID]] = {n: [] for n in nodes}
    succs: dict[UUID, list[UUID]] = {n: [] for n in nodes}
    for upstream, downstream in edges:
        preds[downstream].append(upstream)
        succs[upstream].append(downstream)
    waiting = {n: len(preds[n]) for n in nodes}
    ready = [n for n in nodes if not waiting[n]]
    layer: dict[UUID, int] = {}
    while ready:  # Kahn's topological order: a node is placed once all its dependencies are
        node = ready.pop()
        layer[node] = max((layer[p] + 1 for p in preds[node]), default=0)
        for nxt in succs[node]:
            waiting[nxt] -= 1
            if not waiting[nxt]:
                ready.append(nxt)
    last = max(layer.values(), default=-1) + 1
    for node in nodes:  # only on a cycle, which the service refuses: keep the drawing total anyway
        layer.setdefault(node, last)
    return layer


def layout(graph: Graph) -> Layout:
    """Place the graph's boxes in longest-path layers and route every edge through free slots (see module doc)."""
    names = {pk: node.name.lower() for pk, node in graph.nodes.items()}
    layer = longest_path_layers(sorted(graph.nodes, key=lambda pk: (names[pk], str(pk))), graph.edges)
    depth = max(layer.values(), default=0) + 1
    columns: list[list[Hashable]] = [[] for _ in range(depth)]
    chains: dict[tuple[UUID, UUID], list[Hashable]] = {}
    preds: dict[Hashable, list[Hashable]] = {pk: [] for pk in graph.nodes}
    succs: dict[Hashable, list[Hashable]] = {pk: [] for pk in graph.nodes}
    for pk in sorted(graph.nodes, key=lambda pk: (names[pk], str(pk))):
        columns[layer[pk]].append(pk)
    for edge in sorted(graph.edges, key=lambda e: (str(e[0]), str(e[1]))):
        upstream, downstream = edge
        chain: list[Hashable] = [upstream]
        for crossed in range(layer[upstream] + 1, layer[downstream]):
            dummy = ("dummy", edge, crossed)
            columns[crossed].append(dummy)
            preds[dummy], succs[dummy] = [], []
            chain.append(dummy)
        chain.append(downstream)
        for a, b in zip(chain, chain[1:], strict=False):
            succs[a].append(b)
            preds[b].append(a)
        chains[edge] = chain

    def reorder(index: int, neighbours: dict[Hashable, list[Hashable]], other: list[Hashable]) -> None:
        rank = {key: i for i, key in enumerate(other)}
        current = {key: i for i, key in enumerate(columns[index])}

        def barycentre(key: Hashable) -> float:
            around = [rank[n] for n in neighbours[key] if n in rank]
            return sum(around) / len(around) if around else current[key]

        columns[index].sort(key=lambda key: (barycentre(key), current[key]))

    for sweep in range(SWEEPS):
        if sweep % 2 == 0:
            for index in range(1, depth):
                reorder(index, preds, columns[index - 1])
        else:
            for index in range(depth - 2, -1, -1):
                reorder(index, succs, columns[index + 1])

    def slot(key: Hashable) -> int:
        return DUMMY_H if isinstance(key, tuple) else NODE_H

    heights = [sum(slot(k) for k in column) + ROW_GAP * max(len(column) - 1, 0) for column in columns]
    height = PAD * 2 + max(heights, default=NODE_H)
    width = PAD * 2 + depth * NODE_W + (depth - 1) * COL_GAP
    top: dict[Hashable, tuple[int, int]] = {}  # key -> (x, y) of its slot's top-left corner
    for index, column in enumerate(columns):
        x = PAD + index * (NODE_W + COL_GAP)
        y = PAD + (height - PAD * 2 - heights[index]) // 2  # centre short columns
        for key in column:
            top[key] = (x, y)
            y += slot(key) + ROW_GAP
    routes: dict[tuple[UUID, UUID], list[tuple[float, float]]] = {}
    for edge, chain in chains.items():
        sx, sy = top[edge[0]]
        points = [(float(sx + NODE_W), sy + NODE_H / 2)]
        for stop in chain[1:-1]:  # straight through the free slot the dummy holds in that column
            dx, dy = top[stop]
            points += [(float(dx), dy + DUMMY_H / 2), (float(dx + NODE_W), dy + DUMMY_H / 2)]
        tx, ty = top[edge[1]]
        points.append((float(tx), ty + NODE_H / 2))
        routes[edge] = points
    boxes = {pk: top[pk] for pk in graph.nodes}
    return Layout(width=width, height=height, boxes=boxes, routes=routes)


def edge_path(points: list[tuple[float, float]]) -> str:
    """Return SVG path data: an S-curve across each gap between columns, a straight line through a crossed column."""
    (x, y), *rest = points
    parts = [f"M{x:g},{y:g}"]
    for index, (nx, ny) in enumerate(rest):
        if index % 2 == 0:  # from a column's right side to the next column's left side
            mid = (x + nx) / 2
            parts.append(f"C{mid:g},{y:g} {mid:g},{ny:g} {nx:g},{ny:g}")
        else:
            parts.append(f"L{nx:g},{ny:g}")
        x, y = nx, ny
    return " ".join(parts)


def render_svg(
    graph: Graph,
    focus: UUID | None,
    link: Callable[[UUID], str],
    can_see: Callable[[Task], bool] = lambda task: True,
) -> SafeString:
    """Draw the graph as self-contained SVG: dependencies left of the tasks that wait for them; nodes link to tasks.

    A task ``can_see`` refuses is drawn with its status only: no name, no link.
    """
    placed = layout(graph)
    width, height = placed.width, placed.height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="th-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="dependency graph">',
        '<defs><marker id="th-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for edge in sorted(placed.routes, key=lambda e: (str(e[0]), str(e[1]))):
        parts.append(
            f'<path class="th-edge" d="{edge_path(placed.routes[edge])}" fill="none" stroke="#666" '
            'stroke-width="1.5" marker-end="url(#th-arrow)"/>'
        )
    for pk, (x, y) in placed.boxes.items():
        parts.append(_node(graph.nodes[pk], x, y, pk == focus, link, can_see, pk in graph.faded))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped (here and in _node)


def _node(
    node: Task, x: int, y: int, focused: bool, link: Callable[[UUID], str], can_see: Any, faded: bool = False
) -> str:
    visible = can_see(node)
    full = node.name if visible else "another user's task"
    name = full if len(full) <= 26 else full[:25] + "…"
    colour = STATUS_COLOURS.get(TaskStatus(node.status), "#eeeeee")
    stroke = ' stroke="#000" stroke-width="3"' if focused else ' stroke="#888" stroke-width="1"'
    paused = " · paused" if not node.enabled else ""
    href = f' href="{escape(link(node.pk))}"' if visible else ""
    pale = ' opacity="0.35"' if faded else ""
    return (
        f'<a{href} class="th-node" data-status="{escape(node.status)}"{pale}>'
        f"<title>{escape(full)} ({escape(node.status)}{paused})</title>"
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{colour}"{stroke}/>'
        f'<text x="{x + 8}" y="{y + 17}" font-size="12" font-weight="bold" fill="#111">{escape(name)}</text>'
        f'<text x="{x + 8}" y="{y + 33}" font-size="11" fill="#333">{escape(node.status)}{paused}</text></a>'
    )
