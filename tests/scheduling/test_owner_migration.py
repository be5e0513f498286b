"""Migration 0007 gives existing retry policies and tags an owner: the one owner of their tasks, else shared."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("scheduling", "0006_scale_owner_index")]
AFTER = [("scheduling", "0007_owned_shared_objects")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_rows_get_the_single_owner_of_their_tasks_or_become_shared() -> None:
    apps = _migrate(BEFORE)
    try:
        User = apps.get_model("auth", "User")
        Task = apps.get_model("scheduling", "Task")
        RetryPolicy = apps.get_model("scheduling", "RetryPolicy")
        Tag = apps.get_model("scheduling", "Tag")
        alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
        names = ("alice-only", "two-owners", "with-system", "unused")
        policies = {n: RetryPolicy.objects.create(name=n) for n in names}
        tags = {n: Tag.objects.create(name=n) for n in ("alice-tag", "TEST_RECORD", "mixed", "system-tag", "idle")}

        def task(owner: Any, policy: str | None, *tag_names: str) -> None:
            row = Task.objects.create(
                name=f"t-{owner and owner.username}-{policy}",
                handler="TEST_RECORD",
                owner=owner,
                retry_policy=policies[policy] if policy else None,
            )
            row.tags.set([tags[n] for n in tag_names])

        task(alice, "alice-only", "TEST_RECORD", "alice-tag", "mixed")
        task(alice, "alice-only", "TEST_RECORD", "alice-tag")
        task(alice, "two-owners", "TEST_RECORD")
        task(bob, "two-owners", "mixed")
        task(alice, "with-system")
        task(None, "with-system", "system-tag")

        apps = _migrate(AFTER)
        owners = dict(apps.get_model("scheduling", "RetryPolicy").objects.values_list("name", "owner__username"))
        assert owners == {"alice-only": "alice", "two-owners": None, "with-system": None, "unused": None}
        owners = dict(apps.get_model("scheduling", "Tag").objects.values_list("name", "owner__username"))
        # TEST_RECORD is used by Alice's tasks only, but is a handler's tag: shared, as new handler tags are.
        assert owners == {"alice-tag": "alice", "TEST_RECORD": None, "mixed": None, "system-tag": None, "idle": None}
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
