from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    """Registers the NOOP handler used to measure TaskHub's own overhead."""

    name = "bench.benchapp"
    label = "benchapp"

    def ready(self) -> None:
        from scheduling.handlers import registry

        registry.register("NOOP", lambda parameters, context: None, schema={"type": "object"})
