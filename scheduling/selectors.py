"""Who sees and manages which retry policies and tags: one rule for the admin, the API, the CLI and the services.

A policy or tag is either owned by one user (only that user's tasks use it) or shared (owner empty),
which only a user with ``scheduling.share_retrypolicy`` / ``scheduling.share_tag`` (or a superuser)
creates, changes or deletes. A user sees their own and the shared ones; a user with
``view_all_tasks`` sees every one (as they see every task) but manages only their own and, with the
share permission, the shared ones. ``user=None`` is the system or the shell without ``--user``: all.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, Q, QuerySet

from scheduling.models import RetryPolicy, Tag, Task

VIEW_ALL = "scheduling.view_all_tasks"
SHARE_PERMISSION = {RetryPolicy: "scheduling.share_retrypolicy", Tag: "scheduling.share_tag"}


def _person(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) and user.pk else None


def visible(model: type[Model], user: Any, queryset: QuerySet[Any] | None = None) -> QuerySet[Any]:
    """The rows of ``model`` (RetryPolicy or Tag) that ``user`` may see."""
    queryset = model.objects.all() if queryset is None else queryset
    person = _person(user)
    if user is None or (person is not None and person.has_perm(VIEW_ALL)):
        return queryset
    if person is None:  # anonymous: the shared ones only
        return queryset.filter(owner__isnull=True)
    return queryset.filter(Q(owner=person) | Q(owner__isnull=True))


def visible_policies(user: Any, queryset: QuerySet[RetryPolicy] | None = None) -> QuerySet[RetryPolicy]:
    """Retry policies ``user`` may see, list, autocomplete and name: their own and the shared ones."""
    return visible(RetryPolicy, user, queryset)


def visible_tags(user: Any, queryset: QuerySet[Tag] | None = None) -> QuerySet[Tag]:
    """Tags ``user`` may see, list and filter on: their own and the shared ones."""
    return visible(Tag, user, queryset)


def may_share(user: Any, model: type[Model]) -> bool:
    """Whether ``user`` may create, change and delete shared objects of ``model``."""
    return user is None or bool(_person(user) and _person(user).has_perm(SHARE_PERMISSION[model]))


def may_manage(user: Any, obj: RetryPolicy | Tag) -> bool:
    """Whether ``user`` may change or delete ``obj``: their own, or a shared one with the share permission."""
    if user is None or (_person(user) and _person(user).is_superuser):
        return True
    person = _person(user)
    if person is None:
        return False
    if obj.owner_id is None:
        return may_share(person, type(obj))
    return obj.owner_id == person.pk


def attachable(obj: RetryPolicy | Tag, task_owner: Any) -> bool:
    """Whether a task of ``task_owner`` may use ``obj``: a shared one, or one of the task owner's."""
    return obj.owner_id is None or (task_owner is not None and obj.owner_id == task_owner.pk)


def visible_task_ids(user: Any, ids: Any) -> set[Any]:
    """The ids among ``ids`` of tasks ``user`` may see (all for the system)."""
    queryset = Task.objects.filter(pk__in=list(ids))
    person = _person(user)
    if user is not None and not (person is not None and person.has_perm(VIEW_ALL)):
        queryset = queryset.filter(owner=person) if person is not None else queryset.none()
    return set(queryset.values_list("pk", flat=True))


def describe_tasks(user: Any, tasks: list[tuple[Any, str]], limit: int = 10) -> str:
    """Name the tasks ``user`` may see and only count the others: "a, b and 2 tasks you cannot see"."""
    seen = visible_task_ids(user, [pk for pk, _ in tasks])
    names = [name for pk, name in tasks if pk in seen]
    hidden = len(tasks) - len(names)
    parts = names[:limit]
    if len(names) > limit:
        parts.append(f"{len(names) - limit} more")
    if hidden:
        parts.append(f"{hidden} task{'s' if hidden != 1 else ''} you cannot see")
    return ", ".join(parts)
