"""Request hygiene shared by the admin and the API."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse


class RefuseNulInQueryMiddleware:
    """Answer 400 to a query string holding the NUL character.

    PostgreSQL cannot compare text with NUL, so a search or filter such as ``?q=%00`` would otherwise
    end as a database error (500) in whichever view uses it; refusing it here covers every view.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for key, values in request.GET.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                name = key.replace("\x00", "\\u0000")[:100]
                return JsonResponse(
                    {"detail": f"query parameter {name!r} contains the NUL character (\\u0000), which is not allowed."},
                    status=400,
                )
        return self.get_response(request)
