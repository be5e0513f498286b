"""Validate config.yaml (settings loading already did) and say which file and backends are in use."""

from django.conf import settings
from django.core.management.base import BaseCommand

from scheduling import hooks


class Command(BaseCommand):
    help = "Validate the configuration and print where TaskHub keeps its data (secrets are never printed)."

    def handle(self, *args: object, **options: object) -> None:
        config = settings.TASKHUB
        source = str(config.path) if config.path else "built-in defaults (no config.yaml found)"
        database = settings.DATABASES["default"]
        broker = config.broker.url.split("://", 1)[0]
        self.stdout.write(self.style.SUCCESS(f"configuration OK: {source}"))
        self.stdout.write(f"  database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}")
        self.stdout.write(f"  broker:   {broker}")
        self.stdout.write(f"  storage:  {settings.STORAGE_DIR}")
        self.stdout.write(f"  jira environments: {', '.join(config.jira_environments) or 'none'}")
        for summary in hooks.config_summary:  # reporting's channels (reporting.apps)
            self.stdout.write(f"  {summary()}")
