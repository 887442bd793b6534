import pytest
from django.contrib.auth import get_user_model

from accounts.models import AuditEvent
from accounts.services import api_token_create, api_token_revoke, roles_sync, user_create

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


def test_a_new_token_leaves_the_others_working_and_is_audited_without_its_secret(curator):
    first, first_secret = api_token_create(user=curator, name="nightly export")
    second, second_secret = api_token_create(user=curator, name="dashboard", expires_in_days=30)
    assert first_secret != second_secret
    assert set(curator.api_tokens.values_list("name", flat=True)) == {"nightly export", "dashboard"}
    assert first.prefix == first_secret[:10] and first.expires_at is None
    assert abs((second.expires_at - second.created_at).total_seconds() - 30 * 86400) < 1
    actions = list(AuditEvent.objects.filter(actor=curator).values_list("action", flat=True))
    assert actions == ["api_token.create", "api_token.create"]
    logged = str(list(AuditEvent.objects.values_list("after", flat=True)))
    assert first_secret not in logged and second_secret not in logged

    api_token_revoke(token=first, actor=curator)
    assert list(curator.api_tokens.values_list("name", flat=True)) == ["dashboard"]
    assert AuditEvent.objects.filter(action="api_token.revoke", actor=curator).exists()


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
