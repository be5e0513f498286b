"""URL routes: the admin and (from scheduling.urls) the REST API and its docs."""

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "TaskHub"
admin.site.site_title = "TaskHub"
admin.site.index_title = "Tasks, schedules and results"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("scheduling.urls")),
]
