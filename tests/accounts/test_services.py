import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent
from accounts.services import api_token_regenerate, roles_sync, user_create

pytestmark = pytest.mark.django_db


def test_user_create_gives_roles_and_writes_the_audit_log(admin_user):
    user = user_create(username="ana", password="a-long-password-1", roles=["engineer"], actor=admin_user)
    assert user.check_password("a-long-password-1")
    assert user.has_perm("curation.add_upload") and not user.has_perm("accounts.view_auditevent")
    event = AuditEvent.objects.for_object(user).get()
    assert (event.actor, event.action, event.after) == (admin_user, "user.create", {"roles": ["engineer"]})


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="Unknown role"):
        user_create(username="x", password="a-long-password-1", roles=["wizard"])
    assert not get_user_model().objects.exists()


def test_regenerating_a_token_revokes_the_old_one(curator):
    first = api_token_regenerate(user=curator).key
    second = api_token_regenerate(user=curator).key
    assert first != second
    assert list(Token.objects.filter(user=curator).values_list("key", flat=True)) == [second]
    actions = list(AuditEvent.objects.filter(actor=curator).values_list("action", flat=True))
    assert sorted(actions) == ["api_token.create", "api_token.regenerate"]
    assert second not in str(AuditEvent.objects.values_list("after", flat=True))


def test_roles_sync_is_idempotent_and_exact(make_user):
    groups = roles_sync()
    roles_sync()
    annotator = next(group for group in groups if group.name == "Annotator")
    # Annotators label and see projects; nothing of the datasets themselves, nor anyone else's answers.
    assert sorted(annotator.permissions.values_list("codename", flat=True)) == [
        "add_annotation",
        "view_annotationproject",
    ]
    admin = next(group for group in groups if group.name == "Admin")
    assert admin.permissions.filter(codename="view_auditevent").exists()
