"""The Celery application, configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from django.conf import settings

from taskhub import config
from taskhub.startup import guarded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskhub.settings")

# Settings load lazily inside Celery, where a bad value would surface as a long
# traceback from deep in the worker; validate up front so the worker and beat
# stop with the same one line as manage.py.
guarded(config.load)

app = Celery("taskhub")


@app.on_configure.connect
def _load_settings(sender: Any = None, **kwargs: Any) -> None:
    """Load Django settings (folders, database URL) under the same guard, before Celery reads them."""
    # Not at import time: this package is imported while settings themselves load.
    guarded(lambda: settings.TASKHUB)


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
