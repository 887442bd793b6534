from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

from django.contrib.auth.models import Group, Permission
from django.db import models, transaction
from django.utils import timezone

from accounts.models import ApiToken, AuditEvent
from accounts.roles import ROLE_BY_SLUG, ROLES
from accounts.selectors import audit_events_csv


def audit_record(
    *,
    actor,
    action: str,
    obj: models.Model,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Write one audit-log row. Call it inside the transaction of the change it describes."""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        before=before or {},
        after=after or {},
    )


def audit_log_export(*, actor, events: models.QuerySet, filters: dict) -> Iterator[str]:
    """The filtered audit log as CSV chunks. The export is itself an audit event (not part of its own file)."""
    shown = {
        key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in filters.items() if value
    }
    event = audit_record(
        actor=actor, action="audit.export", obj=actor, after={"filters": shown, "rows": events.count()}
    )
    return audit_events_csv(events.exclude(pk=event.pk))


@transaction.atomic
def roles_sync() -> list[Group]:
    """Create the role groups and give each exactly the permissions listed in accounts.roles."""
    groups = []
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role.name)
        perms = []
        for dotted in role.permissions:
            app_label, codename = dotted.split(".")
            perms.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(perms)
        groups.append(group)
    return groups


@transaction.atomic
def user_create(*, username: str, password: str, roles: list[str], email: str = "", actor=None):
    from django.contrib.auth import get_user_model

    unknown = [slug for slug in roles if slug not in ROLE_BY_SLUG]
    if unknown:
        raise ValueError(f"Unknown role(s): {', '.join(unknown)}. Known: {', '.join(ROLE_BY_SLUG)}.")
    roles_sync()
    user_model = get_user_model()
    user = user_model(username=username, email=email, is_staff="admin" in roles, is_superuser="admin" in roles)
    user.set_password(password)
    user.full_clean()
    user.save()
    user.groups.set(Group.objects.filter(name__in=[ROLE_BY_SLUG[slug].name for slug in roles]))
    audit_record(actor=actor, action="user.create", obj=user, after={"roles": roles})
    return user


def sign_in_record(*, action: str, username: str, ip_address: str | None, path: str, user=None) -> AuditEvent:
    """One audit row for a sign-in (``auth.login``), a failed one (``auth.login_failed``, no actor) or a refusal
    during a lock-out (``auth.lockout``): the user name that was typed and the client address, never the password."""
    return AuditEvent.objects.create(
        actor=user,
        action=action,
        object_type="auth.user",
        object_id=str(user.pk) if user is not None else "",
        object_repr=username[:200],
        after={"username": username, "ip_address": ip_address, "path": path},
    )


TOKEN_LAST_USED_PRECISION = timedelta(minutes=1)


@transaction.atomic
def api_token_create(*, user, name: str, expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """Make a new API token for ``user``; their other tokens keep working. Returns the row and the secret,
    which is stored only as a digest: show it once."""
    secret = "td_" + secrets.token_urlsafe(32)
    created_at = timezone.now()
    token = ApiToken(
        user=user,
        name=name.strip() or "API token",
        prefix=secret[:10],
        digest=ApiToken.digest_of(secret),
        created_at=created_at,
        expires_at=created_at + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    token.full_clean()
    token.save()
    audit_record(
        actor=user,
        action="api_token.create",
        obj=user,
        after={
            "name": token.name,
            "prefix": token.prefix,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
    return token, secret


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor) -> None:
    """Delete one token: requests that send it are refused from now on."""
    audit_record(
        actor=actor,
        action="api_token.revoke",
        obj=token.user,
        before={"name": token.name, "prefix": token.prefix},
    )
    token.delete()


def api_token_mark_used(*, token: ApiToken) -> None:
    """Note that the token was just used, at most once a minute per token, so a busy script does not write on
    every request."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
