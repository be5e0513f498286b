"""REST framework glue: translate TaskHub's exceptions into HTTP answers with field-level messages."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from taskhub.exceptions import ConflictError, IllegalTransition
from taskhub.exceptions import ValidationError as TaskHubValidationError

logger = logging.getLogger(__name__)


class PayloadTooLarge(APIException):
    """A request body over DATA_UPLOAD_MAX_MEMORY_SIZE."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        super().__init__(f"request body is larger than the limit of {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)")


def _django_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
    return {"non_field_errors": list(exc.messages)}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer domain errors as 400/409 JSON, then defer to DRF's own handler."""
    if isinstance(exc, TaskHubValidationError):
        return Response(exc.tree(), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return Response(_django_errors(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ConflictError):
        return Response({"detail": str(exc), "current_status": exc.current_status}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, IllegalTransition):
        return Response({"detail": str(exc), "current_status": exc.current}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    return drf_exception_handler(exc, context)
