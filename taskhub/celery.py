"""The Celery application, configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import close_old_connections

from scheduling.engine.heartbeat import Heartbeat
from taskhub import config
from taskhub.startup import guarded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskhub.settings")

# Settings load lazily inside Celery, where a bad value would surface as a long
# traceback from deep in the worker; validate up front so the worker and beat
# stop with the same one line as manage.py.
guarded(config.load)

app = Celery("taskhub")
# Each worker's main process keeps its row in scheduling.Worker fresh (the dashboard's and /workers' source).
app.steps["worker"].add(Heartbeat)


@app.on_configure.connect
def _load_settings(sender: Any = None, **kwargs: Any) -> None:
    """Load Django settings (folders, database URL) under the same guard, before Celery reads them."""
    # Not at import time: this package is imported while settings themselves load.
    guarded(lambda: settings.TASKHUB)


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs: Any) -> None:
    """Around each task, as Django does around each request: drop a connection past CONN_MAX_AGE or broken.

    With CELERY_DB_REUSE_MAX set, Celery's own fixup no longer closes it after every task.
    """
    close_old_connections()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
