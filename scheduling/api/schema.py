"""drf-spectacular hooks for the OpenAPI document."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
FIELD_ERRORS = {"$ref": "#/components/schemas/FieldErrors"}
COMPONENTS = {
    "Error": {
        "type": "object",
        "description": "What went wrong, in one sentence; a 409 also carries the task's current_status.",
        "properties": {"detail": {"type": "string"}, "current_status": {"type": "string", "nullable": True}},
        "required": ["detail"],
    },
    "FieldErrors": {
        "type": "object",
        "description": "Invalid input: each wrong field (or query parameter) with its messages; "
        "a nested object (retry_policy) has nested messages; a body that is not JSON gives 'detail'.",
        "additionalProperties": {},
    },
    "ItemFieldErrors": {
        "type": "object",
        "description": "Invalid tasks in a list body (POST /tasks with a JSON list): the index of each bad task in "
        "the list (from 0) with its FieldErrors, as DRF reports a list; nothing was created. A list that is empty or "
        "longer than security.max_bulk gives FieldErrors with non_field_errors instead.",
        "additionalProperties": FIELD_ERRORS,
    },
}
ITEM_FIELD_ERRORS = {"$ref": "#/components/schemas/ItemFieldErrors"}
#: Operations whose body may be a JSON list of objects: their 400 may be FieldErrors by index.
LIST_BODIES = {("/tasks", "post")}
# Paths anyone may call: no 401/403 there.
PUBLIC = ("/health", "/schema", "/docs", "/redoc")


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors_for(path: str, method: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the error answers an operation can give, so clients and schemathesis know to expect them."""
    errors: dict[str, dict[str, Any]] = {}
    writes = method in ("post", "put", "patch", "delete")
    if operation.get("requestBody") or operation.get("parameters") or "{status}" in path:
        errors["400"] = _json(FIELD_ERRORS, "Invalid input; nothing was changed.")
        if (path, method) in LIST_BODIES:
            errors["400"] = _json(
                {"anyOf": [FIELD_ERRORS, ITEM_FIELD_ERRORS]},
                "Invalid input; nothing was changed. A list body answers ItemFieldErrors: the bad tasks by index.",
            )
    if not path.startswith(PUBLIC):
        errors["401"] = _json(ERROR, "Not authenticated: send a token, Basic credentials or a session cookie.")
        errors["403"] = _json(ERROR, "Authenticated, but missing the Task permission this needs.")
    if "{id}" in path or "{name}" in path or any(p.get("name") == "page" for p in operation.get("parameters", [])):
        errors["404"] = _json(ERROR, "No such task (or not yours to see), or no such page.")
    if operation.get("requestBody"):
        errors["413"] = _json(ERROR, "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.")
        errors["415"] = _json(ERROR, "The body is not application/json.")
    if writes and not path.startswith(PUBLIC):
        errors["429"] = _json(ERROR, "Too many writes: wait for the number of seconds in Retry-After.")
    return errors


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Document the 4xx answers every operation can give, next to its success answers."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "id":
                    parameter["schema"] = {"type": "string", "format": "uuid", "description": "A task id."}
                if parameter.get("in") == "query":
                    # An empty filter means "no filter", as the browsable API's filter form sends it.
                    parameter["allowEmptyValue"] = True
            for code, response in _errors_for(path, method, operation).items():
                operation["responses"].setdefault(code, response)
    return result


def strip_trailing_slashes(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """List paths as /tasks rather than /tasks/: both work, and the seed's table names them so."""
    result["paths"] = {(path.rstrip("/") or "/"): operations for path, operations in result.get("paths", {}).items()}
    return result
