from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import models, transaction
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent
from accounts.roles import ROLE_BY_SLUG, ROLES


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


@transaction.atomic
def api_token_regenerate(*, user) -> Token:
    """Replace the user's API token with a new one; the old one stops working at once."""
    had_token = Token.objects.filter(user=user).delete()[0] > 0
    token = Token.objects.create(user=user)
    audit_record(
        actor=user,
        action="api_token.regenerate" if had_token else "api_token.create",
        obj=user,
        after={"token_prefix": token.key[:6]},
    )
    return token
