"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

from taskhub.startup import guarded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskhub.settings")

application = guarded(get_wsgi_application)
