"""Pagination of every REST list: one of two styles, both with ``next`` and ``previous`` links (README, "REST API").

- ``CursorPagination`` (and ``NewestFirst``): rows, and lists that grow with every run. Query ``cursor`` (from a
  page's ``next``/``previous`` link) and ``page_size``. No COUNT, no OFFSET: page 20 000 costs what page 1 costs.
- ``LimitOffset`` (the default for lists that name no paginator): short lists of named things. Query ``limit``
  and ``offset``; the page also says ``count``.

``page_size`` and ``limit`` above ``API_MAX_PAGE_SIZE`` are lowered to it. A paging value that is not a whole
number in range (``abc``, ``null``, ``-1``, a size of 0, an offset past ``MAX_OFFSET``) and a cursor this API did
not make are 400s in the API's error shape, so no paging value reaches the database unchecked.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError

MAX_OFFSET = 1_000_000_000
INVALID_CURSOR = (
    "This page link is not valid: follow the next or previous link of a page, or leave cursor out to start at the "
    "first page."
)


def _query_number(request, name: str, *, minimum: int, maximum: int, lower_to_maximum: bool) -> int | None:
    """The whole-number query parameter ``name``, None when absent or empty; anything else out of range is a 400.

    Given more than once (a ``next`` link with ``&page_size=10`` added), the last counts, but each must be valid.
    """
    numbers = [
        _whole_number(raw, name, minimum=minimum, maximum=maximum, lower_to_maximum=lower_to_maximum)
        for raw in request.query_params.getlist(name)
    ]
    return numbers[-1] if numbers else None


def _whole_number(raw: str, name: str, *, minimum: int, maximum: int, lower_to_maximum: bool) -> int | None:
    if not raw:
        return None
    if raw.isascii() and raw.isdigit():
        digits = raw.lstrip("0") or "0"
        number = int(digits) if len(digits) <= 20 else maximum + 1  # longer is past any maximum; no giant int()
        if minimum <= number <= maximum:
            return number
        if number > maximum and lower_to_maximum:
            return maximum
    raise ValidationError({name: [f"{name} must be a whole number from {minimum} to {maximum}."]})


def _size_description(default: int) -> str:
    maximum = settings.API_MAX_PAGE_SIZE
    return f"How many per page: default {default}, at most {maximum} (a larger number is lowered to {maximum})."


class LimitOffset(pagination.LimitOffsetPagination):
    """``limit`` (1 to API_MAX_PAGE_SIZE, larger is lowered) and ``offset`` (0 to MAX_OFFSET); 400 otherwise."""

    @property
    def max_limit(self) -> int:
        return settings.API_MAX_PAGE_SIZE

    def get_limit(self, request) -> int:
        number = _query_number(
            request, self.limit_query_param, minimum=1, maximum=self.max_limit, lower_to_maximum=True
        )
        return min(self.default_limit, self.max_limit) if number is None else number

    def get_offset(self, request) -> int:
        number = _query_number(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET, lower_to_maximum=False)
        return number or 0

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": _size_description(self.default_limit),
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "How many to skip before the first one returned (default 0).",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            },
        ]


class CursorPagination(pagination.CursorPagination):
    """Cursor pages with ``page_size`` (1 to API_MAX_PAGE_SIZE, larger is lowered); a bad cursor is a 400.

    Subclasses set ``ordering`` (its first field must be a column of the model) and ``page_size``.
    """

    page_size_query_param = "page_size"
    invalid_cursor_message = INVALID_CURSOR

    @property
    def max_page_size(self) -> int:
        return settings.API_MAX_PAGE_SIZE

    def get_page_size(self, request) -> int:
        number = _query_number(
            request, self.page_size_query_param, minimum=1, maximum=self.max_page_size, lower_to_maximum=True
        )
        return min(self.page_size, self.max_page_size) if number is None else number

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model  # decode_cursor checks the cursor's position against its ordering field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        if not request.query_params.get(self.cursor_query_param):
            return None
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from None
        if cursor.position is not None and not self._position_fits(cursor.position):
            # A made-up position ("p=abc", a number past bigint) would fail in the database: a 500.
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]})
        return cursor

    def _position_fits(self, position: str) -> bool:
        try:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:
            return True
        try:
            field.run_validators(field.to_python(position))
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            return False
        return True

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Which page: copy it from a page's next or previous link (leave out for the first).",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": _size_description(self.page_size),
                "schema": {"type": "integer", "minimum": 1},
            },
        ]


class NewestFirst(CursorPagination):
    """Cursor pages of rows that have a ``created_at``, newest first (jobs, evaluations, models, the audit log)."""

    ordering = ("-created_at", "-id")
    page_size = 50
