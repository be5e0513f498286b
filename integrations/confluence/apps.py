from django.apps import AppConfig


class ConfluenceConfig(AppConfig):
    """The Confluence integration: client, services and task handlers."""

    name = "integrations.confluence"
    label = "confluence_integration"
    verbose_name = "Confluence integration"
