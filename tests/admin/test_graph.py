"""Dependency graphs: longest-path layers, arrowheads, edges routed around boxes, whole pipelines, visibility."""

from __future__ import annotations

import random
import re
from uuid import UUID, uuid4

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from scheduling import services
from scheduling.admin.graph import NODE_H, NODE_W, Graph, layout, render_svg
from scheduling.models import Task, TaskStatus
from tests.admin.conftest import create, task_url


def graph_of(edges: list[tuple[str, str]], names: list[str]) -> tuple[Graph, dict[str, UUID]]:
    ids = {name: uuid4() for name in names}
    graph = Graph(nodes={ids[n]: Task(pk=ids[n], name=n, status=TaskStatus.PENDING) for n in names})
    graph.column = dict.fromkeys(graph.nodes, 0)
    graph.edges = {(ids[a], ids[b]) for a, b in edges}
    return graph, ids


def curve_points(points: list[tuple[float, float]], steps: int = 24) -> list[tuple[float, float]]:
    """Sample the drawn path: the S-curve across each gap (as edge_path draws it) and the lines through columns."""
    samples = [points[0]]
    for index in range(len(points) - 1):
        (x0, y0), (x1, y1) = points[index], points[index + 1]
        for step in range(1, steps + 1):
            t = step / steps
            if index % 2 == 0:  # cubic with control points (mid, y0) and (mid, y1)
                mid = (x0 + x1) / 2
                x = (1 - t) ** 3 * x0 + 3 * (1 - t) ** 2 * t * mid + 3 * (1 - t) * t**2 * mid + t**3 * x1
                y = (1 - t) ** 3 * y0 + 3 * (1 - t) ** 2 * t * y0 + 3 * (1 - t) * t**2 * y1 + t**3 * y1
            else:
                x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            samples.append((x, y))
    return samples


def test_a_task_stands_right_of_all_its_dependencies_by_longest_path() -> None:
    # report needs clean (two levels deep) and extract (one level): it goes right of clean, not beside it.
    graph, ids = graph_of(
        [("extract", "clean"), ("clean", "enrich"), ("enrich", "report"), ("extract", "report")],
        ["extract", "clean", "enrich", "report"],
    )
    boxes = layout(graph).boxes
    xs = {name: boxes[pk][0] for name, pk in ids.items()}
    assert xs["extract"] < xs["clean"] < xs["enrich"] < xs["report"]


def test_every_edge_keeps_clear_of_every_other_box_and_ends_at_its_own() -> None:
    rng = random.Random(17)
    names = [f"task {n}" for n in range(50)]
    edges = set()
    for index, name in enumerate(names[1:], start=1):  # a random DAG of 50 tasks, edges only forwards
        for upstream in rng.sample(names[:index], k=min(index, rng.choice([1, 1, 2, 3]))):
            edges.add((upstream, name))
    graph, ids = graph_of(sorted(edges), names)
    placed = layout(graph)
    for (upstream, downstream), points in placed.routes.items():
        ux, uy = placed.boxes[upstream]
        dx, dy = placed.boxes[downstream]
        assert points[0] == (ux + NODE_W, uy + NODE_H / 2) and points[-1] == (dx, dy + NODE_H / 2)
        for x, y in curve_points(points):
            for pk, (bx, by) in placed.boxes.items():
                inside = bx + 1 < x < bx + NODE_W - 1 and by + 1 < y < by + NODE_H - 1
                assert not inside, f"an edge runs behind {graph.nodes[pk].name}"
    for pk, (x, y) in placed.boxes.items():  # boxes do not overlap either
        for other, (ox, oy) in placed.boxes.items():
            if other != pk and ox == x:
                assert abs(oy - y) >= NODE_H


def test_edges_have_arrowheads_and_long_edges_pass_through_free_slots() -> None:
    graph, ids = graph_of([("a", "b"), ("b", "c"), ("a", "c")], ["a", "b", "c"])
    svg = render_svg(graph, ids["a"], lambda pk: f"/t/{pk}/")
    assert '<marker id="th-arrow"' in svg
    paths = re.findall(r'<path class="th-edge" d="([^"]+)"[^>]*marker-end="url\(#th-arrow\)"', svg)
    assert len(paths) == 3
    assert sum(" L" in d for d in paths) == 1  # a -> c crosses b's column on a straight stretch


@pytest.mark.django_db
def test_whole_pipeline_of_a_task_includes_siblings_and_follows_status(
    client_op: Client, chain: dict[str, Task]
) -> None:
    lonely = create("unrelated")
    response = client_op.get(f"{task_url('pipeline')}?task={chain['load'].pk}")
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("extract", "transform", "load", "publish"):  # publish: neither up- nor downstream of load
        assert f">{name}</text>" in page
    assert lonely.name not in page
    assert page.count('class="th-edge"') == 3
    assert "<h1>Pipeline of load</h1>" in page
    Task.objects.filter(pk=chain["extract"].pk).update(status=TaskStatus.DONE)
    live = client_op.get(f"{task_url('pipeline_live')}?task={chain['load'].pk}").json()
    assert 'data-status="DONE"' in live["html"] and ">extract</text>" in live["html"]


@pytest.mark.django_db
def test_pipeline_by_tag_and_its_cost_does_not_grow_with_the_pipeline(client_op: Client) -> None:
    def count(tag: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client_op.get(f"{task_url('pipeline')}?tag={tag}").status_code == 200
        return len(queries)

    first = create("<b>first</b>", tags=["TEST_RECORD", "nightly"])
    few = count("nightly")
    previous = first
    for index in range(49):
        previous = create(f"step {index}", tags=["TEST_RECORD", "nightly"], dependencies=[previous.pk])
    create("other", tags=["TEST_RECORD"], dependencies=[previous.pk])
    assert count("nightly") == few
    page = client_op.get(f"{task_url('pipeline')}?tag=nightly").content.decode()
    assert page.count('class="th-node"') == 50 and ">other</text>" not in page
    assert "&lt;b&gt;first&lt;/b&gt;" in page and "<b>first</b>" not in page
    assert client_op.get(f"{task_url('pipeline')}?task=not-a-uuid").status_code == 404
    assert client_op.get(task_url("pipeline")).status_code == 404


@pytest.mark.django_db
def test_pipeline_never_names_tasks_the_user_may_not_see() -> None:
    bob = get_user_model().objects.create_user("bob", password="x", is_staff=True)
    bob.user_permissions.add(*Permission.objects.filter(codename__in=["view_task"]))
    client = Client()
    client.force_login(bob)
    mine = services.task_create(data={"name": "bob's", "tags": ["TEST_RECORD", "shared"], "parameters": {}}, owner=bob)
    secret = create("secret downstream", tags=["TEST_RECORD", "shared"], dependencies=[mine.pk])
    by_task = client.get(f"{task_url('pipeline')}?task={mine.pk}").content.decode()
    assert "secret downstream" not in by_task and str(secret.pk) not in by_task
    assert "another user&#x27;s task" in by_task
    by_tag = client.get(f"{task_url('pipeline')}?tag=shared").content.decode()
    assert "secret downstream" not in by_tag and by_tag.count('class="th-node"') == 1
    assert client.get(f"{task_url('pipeline')}?task={secret.pk}").status_code == 404
    assert client.get(f"{task_url('pipeline_live')}?task={secret.pk}").status_code == 404


@pytest.mark.django_db
def test_the_task_page_and_the_list_link_to_the_pipeline(client_op: Client, chain: dict[str, Task]) -> None:
    page = client_op.get(task_url("change", chain["load"].pk)).content.decode()
    assert f'href="{task_url("pipeline")}?task={chain["load"].pk}"' in page
    listing = client_op.get(task_url("changelist")).content.decode()
    assert f'action="{task_url("pipeline")}"' in listing and '<option value="TEST_RECORD">' in listing


@pytest.mark.django_db
def test_pipeline_of_an_unknown_tag_is_an_empty_graph_not_an_error(client_op: Client) -> None:
    response = client_op.get(f"{task_url('pipeline')}?tag=<nothing>")
    assert response.status_code == 200
    page = response.content.decode()
    assert "0 tasks" in page and "&lt;nothing&gt;" in page and "<nothing>" not in page
