from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """The domain core: tasks, lifecycle, dispatcher, executor, cron and handlers."""

    name = "scheduling"
    verbose_name = "Scheduling"

    def ready(self) -> None:
        from scheduling.builtin_handlers import register

        register()
