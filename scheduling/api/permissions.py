"""Who may call what: the Django model permission each API action needs, and the write throttle.

Which tasks a user sees is the domain's rule (scheduling.selectors), the same for the admin and the CLI.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import UserRateThrottle

# The Task permission each API action needs; actions change a task's state, so they need "change".
ACTION_PERMISSION = {
    "list": "view",
    "retrieve": "view",
    "by_status": "view",
    "results": "view",
    "audit": "view",
    "create": "add",
    "update": "change",
    "partial_update": "change",
    "destroy": "delete",
    "run": "change",
    "cancel": "change",
    "retry": "change",
    "pause": "change",
    "resume": "change",
}


class TaskPermission(BasePermission):
    """Require the Django model permission (view/add/change/delete on Task) the action needs."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "action", None)
        kind = ACTION_PERMISSION.get(action or "", "view" if request.method in SAFE_METHODS else "change")
        if user.has_perm(f"scheduling.{kind}_task"):
            return True
        self.message = f"You need the permission scheduling.{kind}_task for this."
        return False


class WorkerPermission(BasePermission):
    """Reading workers needs Django's view permission on Worker (scheduling.view_worker)."""

    message = "You need the permission scheduling.view_worker for this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("scheduling.view_worker"))


class WriteRateThrottle(UserRateThrottle):
    """Throttle writes (POST, PUT, PATCH, DELETE) per user at the "writes" rate; reads are free."""

    scope = "writes"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
