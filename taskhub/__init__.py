"""TaskHub: schedule and run tasks around Jira and Confluence."""

from taskhub.celery import app as celery_app

__all__ = ["celery_app"]
