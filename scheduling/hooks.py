"""Where the apps above scheduling plug into what scheduling runs, so that scheduling never imports them.

Imports run one way (taskhub core <- scheduling <- integrations <- reporting). Three places in
scheduling show or install something that belongs to an app above it; each such app contributes
it from its ``AppConfig.ready()`` instead (reporting does all three)::

    hooks.periodic_tasks.add("reporting", schedule.install)   # beat start: create/update its PeriodicTask rows
    hooks.metrics.add("reporting", metrics.collect)           # GET /metrics: yield its metric families
    hooks.config_summary.add("reporting", channels.summary)   # manage.py check_config: one line about it

Contributions run in the order the apps registered them (INSTALLED_APPS order). Adding under a
name already taken replaces the earlier one, so a repeated ``ready()`` registers nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Generic, TypeVar

from prometheus_client.core import Metric

F = TypeVar("F", bound=Callable[..., Any])


class Hook(Generic[F]):
    """Named contributions of one kind, kept in registration order."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self._items: dict[str, F] = {}

    def add(self, name: str, func: F) -> F:
        self._items[name] = func
        return func

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def __iter__(self) -> Iterator[F]:
        return iter(list(self._items.values()))

    def names(self) -> list[str]:
        return list(self._items)


#: Called when beat starts (scheduling.engine.beat.install_periodic_tasks), after the dispatcher
#: sweep's row and before the result clean-up's: each creates or updates its app's PeriodicTask rows.
periodic_tasks: Hook[Callable[[], object]] = Hook("Installers of PeriodicTask rows, run at beat start.")

#: Called at each scrape of GET /metrics with the start of the last-hour window; yields metric families,
#: shown after the fire counts and before the worker gauges.
metrics: Hook[Callable[[datetime], Iterable[Metric]]] = Hook("Metric families for GET /metrics.")

#: Called by ``manage.py check_config``; each returns one line, printed after the Jira environments.
config_summary: Hook[Callable[[], str]] = Hook("One-line summaries for manage.py check_config.")
