"""REST API plumbing shared by every app: error format."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def _messages(detail) -> dict | list:
    if isinstance(detail, dict):
        return {key: _messages(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [str(item) for item in detail]
    return [str(detail)]


def _first(value) -> str:
    """The first message in a nested dict/list of messages."""
    while isinstance(value, dict | list) and value:
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return str(value) if value else ""


def exception_handler(exc, context):
    """Errors are JSON: ``{"error": "<one sentence>", "fields": {...}}``; Django ValidationErrors become 400s."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        response.data = {"error": str(detail["detail"])}
    elif isinstance(detail, dict):
        fields = _messages(detail)
        general = fields.pop("__all__", None) or fields.pop("non_field_errors", None)
        response.data = {"error": _first(general) if general else _first(fields), "fields": fields}
    else:
        response.data = {"error": " ".join(_messages(detail))}
    return response
