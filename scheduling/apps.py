from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """The domain core: tasks, lifecycle, dispatcher, executor, cron and handlers."""

    name = "scheduling"
    verbose_name = "Scheduling"

    def ready(self) -> None:
        from scheduling import checks  # noqa: F401 - registers the system checks
        from scheduling.handlers.builtin import register

        register()
