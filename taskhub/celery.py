"""The Celery application, configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery

from taskhub import config
from taskhub.startup import guarded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskhub.settings")

# Settings load lazily inside Celery, where a bad value would surface as a long
# traceback from deep in the worker; validate up front so the worker and beat
# stop with the same one line as manage.py.
guarded(config.load)

app = Celery("taskhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
