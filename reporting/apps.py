from django.apps import AppConfig


class ReportingConfig(AppConfig):
    """Periodic summaries of task results to Confluence, Mattermost and email.

    ``ready()`` plugs reporting into scheduling (scheduling.hooks), which never imports reporting:
    its PeriodicTask is installed at beat start, its report counts are shown on GET /metrics and
    its channels are summed up by ``manage.py check_config``.
    """

    name = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        from reporting import channels, metrics, schedule
        from scheduling import hooks

        hooks.periodic_tasks.add("reporting", schedule.install)
        hooks.metrics.add("reporting", metrics.collect)
        hooks.config_summary.add("reporting", channels.summary)
