from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Handlers that exist only in the test suite (no-op, sleep, flaky, recorder)."""

    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from tests.testapp.handlers import register

        register()
