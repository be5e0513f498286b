from django.apps import AppConfig


class MattermostConfig(AppConfig):
    """The Mattermost integration: the webhook client and the NOTIFY_MATTERMOST task handler."""

    name = "integrations.mattermost"
    label = "mattermost_integration"
    verbose_name = "Mattermost integration"

    def ready(self) -> None:
        from integrations.mattermost.handlers import register

        register()
