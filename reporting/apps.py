from django.apps import AppConfig


class ReportingConfig(AppConfig):
    """Periodic summaries of task results to Confluence, Mattermost and email."""

    name = "reporting"
    verbose_name = "Reporting"
