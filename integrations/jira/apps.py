from django.apps import AppConfig


class JiraConfig(AppConfig):
    """The Jira integration: client, services and task handlers."""

    name = "integrations.jira"
    label = "jira_integration"
    verbose_name = "Jira integration"

    def ready(self) -> None:
        from integrations.jira.handlers import register

        register()
