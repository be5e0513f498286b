"""System checks: encrypted secrets in the database need security.encryption_keys to be usable."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, register
from django.db import DatabaseError


@register(Tags.database)
def encryption_keys_for_stored_secrets(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Error]:
    """Refuse to run (migrate, check --database) without a key while tasks hold encrypted secrets."""
    if not databases:
        return []
    from scheduling.models import Task
    from taskhub import encryption

    if encryption.configured():
        return []
    try:
        count = Task.objects.exclude(secret_parameters="").count()
    except DatabaseError:  # not migrated yet: nothing stored
        return []
    if not count:
        return []
    return [
        Error(
            f"{count} task(s) hold encrypted secret_parameters but no encryption key is configured",
            hint=f"set {encryption.KEYS_SETTING} to the key(s) that encrypted them",
            id="taskhub.E001",
        )
    ]
