"""TaskHub's admin site: its own sections first, django-celery-beat's tables for superusers only, as internals."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest

# Apps in the order their sections appear; anything else follows, then the scheduler's internals.
TASKHUB_APPS = ["scheduling", "reporting", "jira_integration", "confluence_integration", "mattermost_integration"]
INTERNALS_APP = "django_celery_beat"
INTERNALS_NAME = "Scheduler internals (django-celery-beat)"


class TaskHubAdminSite(admin.AdminSite):
    site_header = "TaskHub"
    site_title = "TaskHub"
    index_title = "Tasks, schedules and results"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Order TaskHub's apps first; show beat's tables to superusers only, under a heading saying what they are."""
        apps = super().get_app_list(request, app_label)
        if not request.user.is_superuser:
            apps = [app for app in apps if app["app_label"] != INTERNALS_APP]
        for app in apps:
            if app["app_label"] == INTERNALS_APP:
                app["name"] = INTERNALS_NAME

        def place(app: dict[str, Any]) -> tuple[int, int]:
            if app["app_label"] in TASKHUB_APPS:
                return (0, TASKHUB_APPS.index(app["app_label"]))
            return (2, 0) if app["app_label"] == INTERNALS_APP else (1, 0)

        return sorted(apps, key=place)  # stable: Django's alphabetical order within a group


class TaskHubAdminConfig(AdminConfig):
    """Replaces django.contrib.admin in INSTALLED_APPS so that admin.site is a TaskHubAdminSite."""

    default_site = "taskhub.admin_site.TaskHubAdminSite"


class SuperuserOnly:
    """Mixed into django-celery-beat's model admins: TaskHub keeps those rows in step; only superusers see them."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser


def restrict_internals(site: admin.AdminSite) -> None:
    """Re-register every django-celery-beat model admin of ``site`` with superuser-only permissions."""
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label != INTERNALS_APP or isinstance(model_admin, SuperuserOnly):
            continue
        restricted = type(f"SuperuserOnly{type(model_admin).__name__}", (SuperuserOnly, type(model_admin)), {})
        site.unregister(model)
        site.register(model, restricted)
