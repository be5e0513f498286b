"""REST API routes and docs; every API route answers with and without a trailing slash. / redirects to the admin."""

from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from scheduling import metrics
from scheduling.api import views


class OptionalSlashRouter(SimpleRouter):
    """A router whose routes match with or without the trailing slash (no redirect, so POST bodies survive)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("tasks", views.TaskViewSet, basename="task")
router.register("workers", views.WorkerViewSet, basename="worker")

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    *router.urls,
    re_path(r"^task_history/?$", views.TaskHistoryView.as_view(), name="task-history"),
    re_path(r"^pipeline_runs/(?P<pk>[^/]+)/?$", views.PipelineRunView.as_view(), name="pipeline-run"),
    re_path(r"^handlers/?$", views.HandlerListView.as_view(), name="handlers"),
    re_path(r"^health/?$", views.HealthView.as_view(), name="health"),
    re_path(r"^metrics/?$", metrics.metrics_view, name="metrics"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(r"^redoc/?$", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # Log in and out of the browsable API.
    path("api-auth/", include("rest_framework.urls")),
    re_path(r"^(?:tasks|task_history|handlers|workers|pipeline_runs)(?:/.*)?$", views.not_found),
]
