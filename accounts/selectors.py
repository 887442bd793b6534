"""Reads of the audit log: the filtered list, its values as readable text, and its CSV form."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from accounts.models import AuditEvent
from projectsite.spreadsheet import neutralise

# The person filter's value for events that no signed-in person made (the system, or a failed sign-in).
NO_PERSON = "none"


def audit_event_list(
    *,
    person: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    since: date | None = None,
    until: date | None = None,
    search: str = "",
) -> QuerySet[AuditEvent]:
    """Audit events, newest first. `action` may be a prefix ("upload."); dates are whole days, both included."""
    events = AuditEvent.objects.select_related("actor")
    if person == NO_PERSON:
        events = events.filter(actor__isnull=True)
    elif person:
        events = events.filter(actor_id=person)
    if action:
        events = events.filter(action__startswith=action)
    if object_type:
        events = events.filter(object_type=object_type)
    if object_id:
        events = events.filter(object_id=object_id)
    if since:
        events = events.filter(created_at__date__gte=since)
    if until:
        events = events.filter(created_at__date__lte=until)
    if search:
        events = events.annotate(before_text=Cast("before", TextField()), after_text=Cast("after", TextField())).filter(
            Q(action__icontains=search)
            | Q(object_repr__icontains=search)
            | Q(object_type__icontains=search)
            | Q(object_id=search)
            | Q(actor__username__icontains=search)
            | Q(before_text__icontains=search)
            | Q(after_text__icontains=search)
        )
    return events


def audit_filter_choices() -> dict[str, list[tuple[str, str]]]:
    """What the filter form offers: the people, actions (and their groups) and object types in the log."""
    people = (
        get_user_model()
        .objects.filter(pk__in=AuditEvent.objects.filter(actor__isnull=False).values("actor"))
        .order_by("username")
    )
    actions = sorted(AuditEvent.objects.values_list("action", flat=True).distinct().order_by())
    prefixes = sorted({name.split(".")[0] + "." for name in actions if "." in name})
    types = AuditEvent.objects.values_list("object_type", flat=True).distinct().order_by("object_type")
    return {
        "person": [(str(user.pk), user.get_username()) for user in people] + [(NO_PERSON, "System or not signed in")],
        "action": [(prefix, f"All {prefix.rstrip('.').replace('_', ' ')} actions") for prefix in prefixes]
        + [(name, name) for name in actions],
        "object_type": [(name, name) for name in types],
    }


# --- values as readable text ------------------------------------------------------------------


@dataclass(frozen=True)
class AuditChange:
    """One field of an event: its value before and after (None where the event does not give one)."""

    field: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before is not None and self.after is not None and self.before != self.after

    def __str__(self) -> str:
        if self.changed:
            return f"{self.field}: {self.before} → {self.after}"
        if self.after is not None:
            return f"{self.field}: {self.after}"
        return f"{self.field}: {self.before} (before)"


def _field_name(key: str) -> str:
    return str(key).replace("_", " ")


def value_text(value) -> str:
    """A stored JSON value as words: no quotes, brackets or Python reprs."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value if value else "(empty)"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{_field_name(key)}: {value_text(item)}" for key, item in value.items()) if value else "none"
    return str(value)


def audit_changes(event: AuditEvent) -> list[AuditChange]:
    """The event's before/after summary as one line per field (in the order the database keeps the keys)."""
    before = event.before if isinstance(event.before, dict) else {"value": event.before}
    after = event.after if isinstance(event.after, dict) else {"value": event.after}
    keys = list(before) + [key for key in after if key not in before]
    return [
        AuditChange(
            field=_field_name(key),
            before=value_text(before[key]) if key in before else None,
            after=value_text(after[key]) if key in after else None,
        )
        for key in keys
    ]


def actor_text(event: AuditEvent) -> str:
    if event.actor_id:
        return event.actor.get_username()
    return "not signed in" if event.action.startswith("auth.") else "system"


# --- CSV --------------------------------------------------------------------------------------

AUDIT_CSV_FIELDS = ("when", "who", "action", "object type", "object id", "object", "changes", "before", "after")


def audit_events_csv(events: QuerySet[AuditEvent]) -> Iterator[str]:
    """The events as CSV, a few hundred rows per chunk, so a long log streams instead of filling memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(AUDIT_CSV_FIELDS)
    for count, event in enumerate(events.iterator(chunk_size=2000), start=1):
        cells = [
            event.created_at.isoformat(),
            actor_text(event),
            event.action,
            event.object_type,
            event.object_id,
            event.object_repr,
            "\n".join(str(change) for change in audit_changes(event)),
            json.dumps(event.before, ensure_ascii=False) if event.before else "",
            json.dumps(event.after, ensure_ascii=False) if event.after else "",
        ]
        writer.writerow([neutralise(cell) for cell in cells])
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
