"""The ``taskhub`` app: project-wide pieces that need Django loaded (login throttling, its command)."""

from django.apps import AppConfig


class TaskHubConfig(AppConfig):
    name = "taskhub"
    verbose_name = "TaskHub"

    def ready(self) -> None:
        from taskhub import auth  # noqa: F401 - connects the reset-on-success receiver
