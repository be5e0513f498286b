"""Make an encryption key, check that stored secrets decrypt, or re-encrypt them with the first key (rotation)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from scheduling.models import Task
from taskhub import encryption
from taskhub.exceptions import ConfigError


class Command(BaseCommand):
    help = (
        "Manage security.encryption_keys: --generate prints a new key; --check says whether every stored secret "
        "decrypts; --rotate re-encrypts every stored secret with the first key, so older keys can then be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--generate", action="store_true", help="Print a new Fernet key.")
        group.add_argument("--check", action="store_true", help="Decrypt every stored secret; exit 1 if one fails.")
        group.add_argument("--rotate", action="store_true", help="Re-encrypt every stored secret with the first key.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["generate"]:
            self.stdout.write(encryption.generate_key())
            return
        stored = Task.objects.exclude(secret_parameters="")
        if not encryption.configured():
            if stored.exists():
                raise CommandError(
                    f"{stored.count()} task(s) hold encrypted secrets but {encryption.KEYS_SETTING} is empty"
                )
            self.stdout.write("no encryption key configured and no encrypted secrets stored")
            return
        failed: list[str] = []
        done = 0
        for pk in stored.values_list("pk", flat=True).iterator():
            with transaction.atomic():
                task = Task.objects.select_for_update().only("id", "name", "secret_parameters").get(pk=pk)
                try:
                    if options["rotate"]:
                        Task.objects.filter(pk=pk).update(secret_parameters=encryption.rotate(task.secret_parameters))
                    else:
                        encryption.decrypt_json(task.secret_parameters)
                except ConfigError:
                    failed.append(f"{task.name} ({task.pk})")
                    continue
            done += 1
        verb = "re-encrypted with the first key" if options["rotate"] else "decrypt"
        self.stdout.write(f"{done} task(s) with secrets {verb}")
        if failed:
            raise CommandError(
                f"{len(failed)} task(s) hold secrets no configured key decrypts: {', '.join(failed[:20])}; "
                "add back the key that wrote them, or give those tasks new secret_parameters"
            )
