"""Helpers shared by TaskHub's management commands."""

from __future__ import annotations

import getpass
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
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


def add_actor_argument(parser: Any) -> None:
    """Add ``--user``: the TaskHub user the audit trail names for what this command does."""
    parser.add_argument(
        "--user",
        metavar="USERNAME",
        help="TaskHub user recorded in the audit trail (default: the user named like your OS login, if any)",
    )


def cli_actor(command: str, username: str | None) -> tuple[Any, str]:
    """Return (user or None, audit note) for a command run from the shell.

    ``--user`` must name an existing user. Without it the user whose username is the OS login is taken;
    the note always names the command and the OS login, so an entry without a user still says who ran it.
    """
    login = _os_login()
    name = username or login
    user = get_user_model().objects.filter(username=name).first() if name else None
    if username and user is None:
        raise CommandError(f"--user: no TaskHub user named {username!r}")
    return user, f"CLI {command}, OS user {login or 'unknown'}"


def _os_login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return ""
