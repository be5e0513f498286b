"""Helpers shared by TaskHub's management commands."""

from __future__ import annotations

from uuid import UUID

from django.core.management.base import CommandError

from scheduling.models import Task


def get_task(ref: str) -> Task:
    """Find a task by UUID or exact name; a clear CommandError otherwise."""
    try:
        return Task.objects.get(pk=UUID(ref))
    except ValueError:
        pass
    except Task.DoesNotExist:
        raise CommandError(f"no task with id {ref}") from None
    matches = list(Task.objects.filter(name=ref)[:2])
    if not matches:
        raise CommandError(f"no task named {ref!r}")
    if len(matches) > 1:
        raise CommandError(f"several tasks are named {ref!r}; use the id")
    return matches[0]
