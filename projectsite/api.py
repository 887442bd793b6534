"""REST API plumbing shared by every app: the error format, JSON errors for every /api/ address, the schema class."""

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.openapi import AutoSchema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from projectsite.errors import error_messages

GENERAL_KEYS = ("__all__", "non_field_errors")


class ErrorOutput(serializers.Serializer):
    """Every error answer: one sentence for a person, and the messages of each field that was wrong.

    Errors inside a list or an object are keyed by their dotted path: ``{"gate.0.margin": ["..."]}``.
    """

    error = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class RequiredBooleanField(serializers.BooleanField):
    """A yes/no the caller must give. DRF reads a form that leaves a checkbox out as False; here it is missing."""

    default_empty_html = serializers.empty


# --- what every app's endpoints say in the schema ----------------------------------------------


def describe(text: str, perm: str | None) -> str:
    """An endpoint's OpenAPI description: what it does, then the permission it checks and who holds it."""
    from accounts.apis import permission_note  # accounts.apis imports this module

    return f"{text}\n\n{permission_note(perm)}"


def error_responses(*codes: int) -> dict:
    """``responses`` entries for the error answers an endpoint documents: ``{**error_responses(401, 403)}``."""
    return dict.fromkeys(codes, ErrorOutput)


def choice_error(what: str, choices) -> dict:
    """A ChoiceField's ``error_messages`` that name the choices: "Unknown split “x”. Use one of: train, test."."""
    listed = ", ".join(str(value) for value, _ in choices)
    return {"invalid_choice": f"Unknown {what} “{{input}}”. Use one of: {listed}."}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """Field messages one level deep: a nested error gets a dotted key (``metrics.0``, ``gate.1.margin``)."""
    found: dict[str, list[str]] = {}

    def add(key: str, messages: list[str]) -> None:
        found.setdefault(key, []).extend(messages)

    if isinstance(detail, dict):
        for key, value in detail.items():
            # An object's own errors belong to the object, not to a field called "non_field_errors".
            name = prefix if prefix and key in GENERAL_KEYS else (f"{prefix}.{key}" if prefix else str(key))
            for inner, messages in _flatten(value, name).items():
                add(inner, messages)
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                # A list of objects (many=True): one entry per item, empty for the items that were fine.
                for inner, messages in _flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    add(inner, messages)
            else:
                add(prefix, [str(item)])
    else:
        add(prefix, [str(detail)])
    return found


def _too_big_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024
    return (
        f"The request is larger than the {limit:g} MB this address accepts. "
        "Send less at a time, or send a big file as a file upload (multipart) to uploads/."
    )


def exception_handler(exc, context):
    """Errors are JSON: ``{"error": "<one sentence>", "fields": {"<field or dotted path>": ["..."]}}``.

    Django ValidationErrors become 400s; a body over DATA_UPLOAD_MAX_MEMORY_SIZE becomes a 413.
    """
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": _too_big_message()}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):  # too many fields or files: the request as sent cannot be read
        return Response({"error": "The request could not be read: it has too many fields or files."}, status=400)
    if isinstance(exc, exceptions.UnsupportedMediaType) and context.get("view") is not None:
        readable = " or ".join(parser.media_type for parser in context["view"].get_parsers())
        sent = context["request"].content_type.split(";")[0] or "no Content-Type"
        exc = exceptions.UnsupportedMediaType(sent, detail=f"Send the body as {readable} (this one was {sent}).")
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(error_messages(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        response.data = {"error": str(detail["detail"])}
    elif isinstance(detail, dict):
        fields = _flatten(detail)
        general = [message for key in GENERAL_KEYS for message in fields.pop(key, [])]
        first = general or next(iter(fields.values()), [""])
        response.data = {"error": first[0], "fields": fields}
    else:
        response.data = {"error": " ".join(message for messages in _flatten(detail).values() for message in messages)}
    return response


# Django's own error pages for /api/ addresses, which DRF never sees: a route that does not match (a non-numeric
# id), a body too big for Django to read, a crash. Everything under /api/ answers JSON; other pages stay HTML.


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


NOT_FOUND = "There is nothing at this address. Check the path and the ids in it (ids are whole numbers)."


@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """Any /api/ address that no route matches (also with DEBUG on, where Django's handler404 is not used)."""
    return JsonResponse({"error": NOT_FOUND}, status=404)


def _error_page(request, template: str, status: int, exception=None):
    """A styled error page with the menu; the roles the person has, and what each may do, so they know where to go."""
    from accounts.roles import ROLES, role_names_of

    names = set(role_names_of(request.user)) if hasattr(request, "user") else set()
    # Only a sentence meant for people (a service's refusal) is shown, not Django's empty or technical messages.
    reason = str(exception) if isinstance(exception, PermissionDenied) and exception.args else ""
    context = {"roles": [role for role in ROLES if role.name in names], "reason": reason}
    return render(request, template, context, status=status)


def page_not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"error": NOT_FOUND}, status=404)
    return _error_page(request, "404.html", 404)


def bad_request(request, exception=None):
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"error": _too_big_message()}, status=413)
        return JsonResponse({"error": "The request could not be read. Check its headers and body."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return JsonResponse({"error": "You do not have permission to do this."}, status=403)
    return _error_page(request, "403.html", 403, exception)


def server_error(request):
    if _is_api(request):
        message = "Something went wrong on our side. It was logged; try again, and tell an administrator if it stays."
        return JsonResponse({"error": message}, status=500)
    return defaults.server_error(request)


def _reads_nullable_column(field) -> bool:
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    source = getattr(field, "source", "")
    if model is None or not source or source == "*" or "." in source:
        return False
    try:
        return bool(model._meta.get_field(source).null)
    except FieldDoesNotExist:
        return False


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the error answers any endpoint can give, so the schema lists every status.

    An operation may document a code itself (with its own description); only the missing ones are added.
    """

    def _get_serializer_field_meta(self, field, direction):
        # A read-only field declared by hand (``SlugRelatedField(read_only=True)``) does not inherit the column's
        # null=True the way ModelSerializer's own fields do: an unset "adjudicated_by" or "production" is null.
        meta = super()._get_serializer_field_meta(field, direction)
        if getattr(field, "read_only", False) and _reads_nullable_column(field):
            meta["nullable"] = True
        return meta

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        view = self.view
        has_body = "requestBody" in operation
        queries = any(parameter["in"] == "query" for parameter in operation.get("parameters", []))
        signs_in = bool(getattr(view, "authentication_classes", ()))
        checks_permission = any(permission is not AllowAny for permission in getattr(view, "permission_classes", ()))
        throttled = bool(getattr(view, "throttle_scope", None))
        common = {
            "400": (has_body or queries, "The request is not valid; `fields` says what to change."),
            "401": (signs_in, "No token, or a token that does not work (anymore)."),
            "403": (checks_permission, "Your roles do not allow this."),
            "404": ("{" in self.path, "Nothing with this id or name, or one you may not see."),
            "413": (has_body, "The request body is too large."),
            "415": (has_body, "The body is not in a format this endpoint reads (see the request body types)."),
            "429": (throttled, "Too many requests: wait and try again."),
        }
        responses = operation["responses"]
        for code, (applies, description) in common.items():
            if applies and code not in responses:
                responses[code] = {**self._get_response_for_code(ErrorOutput, code), "description": description}
        operation["responses"] = dict(sorted(responses.items()))
        return operation
