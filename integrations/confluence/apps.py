from django.apps import AppConfig


class ConfluenceConfig(AppConfig):
    """The Confluence integration: the page client (read, find, create, update); it has no task handler."""

    name = "integrations.confluence"
    label = "confluence_integration"
    verbose_name = "Confluence integration"
