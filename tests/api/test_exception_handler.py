"""taskhub.api.exception_handler: domain errors become 400/409 JSON; other errors are left to DRF."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound

from taskhub.api import exception_handler
from taskhub.exceptions import ConflictError, IllegalTransition, ValidationError


def test_domain_validation_error_is_400_with_field_messages() -> None:
    response = exception_handler(ValidationError({"cron_expr": "bad", "tags": ["a", "b"]}), {})
    assert response.status_code == 400
    assert response.data == {"cron_expr": ["bad"], "tags": ["a", "b"]}


def test_django_validation_error_is_400_per_field() -> None:
    response = exception_handler(DjangoValidationError({"name": ["taken"], "__all__": ["both"]}), {})
    assert response.status_code == 400
    assert response.data == {"name": ["taken"], "non_field_errors": ["both"]}
    assert exception_handler(DjangoValidationError("plain"), {}).data == {"non_field_errors": ["plain"]}


def test_conflict_is_409_naming_the_current_status() -> None:
    response = exception_handler(ConflictError("nothing to cancel", current_status="DONE"), {})
    assert response.status_code == 409
    assert response.data == {"detail": "nothing to cancel", "current_status": "DONE"}


def test_illegal_transition_is_409() -> None:
    response = exception_handler(IllegalTransition("attempt", "DONE", "RUNNING"), {})
    assert response.status_code == 409 and response.data["current_status"] == "DONE"


def test_other_errors_are_left_to_drf() -> None:
    assert exception_handler(NotFound(), {}).status_code == 404
    assert exception_handler(RuntimeError("bug"), {}) is None  # a real bug stays a 500, and is logged
