"""Home, login, profile (API token) and audit log pages."""

import csv
import io
import re

import pytest
from django.urls import reverse

from accounts.models import ApiToken, AuditEvent
from accounts.services import api_token_create, audit_record

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")


def test_login_page_explains_a_wrong_password(client, make_user):
    make_user("curator", username="dana")
    response = client.post(reverse("login"), {"username": "dana", "password": "not-it"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "The user name or password is not right" in html
    assert 'value="dana"' in html


def test_login_takes_a_person_where_they_were_going(client, make_user):
    make_user("curator", username="dana")
    target = reverse("curation:dataset_list")
    response = client.get(target)
    assert response.status_code == 302 and response["Location"] == f"{reverse('login')}?next={target}"
    response = client.post(reverse("login"), {"username": "dana", "password": "pw-for-tests-123", "next": target})
    assert response["Location"] == target


def test_logout_is_a_post_form_in_the_navigation(client, curator):
    client.force_login(curator)
    html = client.get(reverse("home")).content.decode()
    assert re.search(r'<form method="post" action="/logout/"', html)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 302  # logged out


@pytest.mark.parametrize(
    ("persona", "present", "absent"),
    [
        (
            "curator",
            ["Upload a file", "Clean a dataset", "Download a version", "read, search and filter"],
            ["Read the audit log"],
        ),
        ("engineer", ["Upload a file", "Clean a dataset"], ["Read the audit log"]),
        ("admin", ["Upload a file", "Read the audit log"], []),
        ("privacy_reviewer", ["See the datasets", "read, search and filter"], ["Upload a file", "Clean a dataset"]),
        ("manager", ["See the datasets", "not the text of the rows"], ["Upload a file", "read, search and filter"]),
        ("annotator", ["Label examples", "Annotator"], ["See the datasets", "Settle disagreements"]),
        ("annotation_reviewer", ["Label examples", "Settle disagreements"], ["See the datasets", "Upload a file"]),
        ("outsider", ["Your account has no role yet"], ["See the datasets"]),
    ],
)
def test_home_page_says_what_each_role_can_do(client, make_user, persona, present, absent):
    client.force_login(make_user(persona))
    html = client.get(reverse("home")).content.decode()
    for text in present:
        assert text in html, text
    for text in absent:
        assert text not in html, text


@pytest.mark.parametrize("persona", PERSONAS)
def test_profile_shows_roles(client, make_user, persona):
    client.force_login(make_user(persona))
    response = client.get(reverse("accounts:profile"))
    assert response.status_code == 200
    html = response.content.decode()
    if persona == "outsider":
        assert "No role yet" in html
    else:
        assert "Role" in html
    assert "Create API token" in html
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]


def test_api_token_is_shown_once_with_how_to_use_it(client, curator):
    client.force_login(curator)
    response = client.post(
        reverse("accounts:token_create"), {"name": "nightly export", "expires_in_days": "30"}, follow=True
    )
    html = response.content.decode()
    key = re.search(r'id="new-token" value="([^"]+)"', html).group(1)
    token = ApiToken.objects.get(user=curator)
    assert token.digest == ApiToken.digest_of(key) and token.name == "nightly export"
    assert f"Authorization: Token {key}" in html
    assert reverse("api-docs") in html
    assert "Copy it now" in html

    html = client.get(reverse("accounts:profile")).content.decode()
    assert key not in html  # only once
    assert f"{key[:10]}…" in html and "nightly export" in html and "never" in html  # not used yet

    client.post(reverse("accounts:token_create"), {"name": "dashboard", "expires_in_days": ""})
    assert set(curator.api_tokens.values_list("name", flat=True)) == {"nightly export", "dashboard"}
    assert AuditEvent.objects.filter(action="api_token.create", actor=curator).count() == 2


def test_a_token_needs_a_name(client, curator):
    client.force_login(curator)
    response = client.post(reverse("accounts:token_create"), {"name": "", "expires_in_days": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoke_stops_one_token_and_only_the_owner_can(client, curator, engineer):
    mine, _ = api_token_create(user=curator, name="old script")
    kept, _ = api_token_create(user=curator, name="new script")
    theirs, _ = api_token_create(user=engineer, name="engineer's")
    client.force_login(curator)
    html = client.get(reverse("accounts:profile")).content.decode()
    assert reverse("accounts:token_revoke", args=[mine.pk]) in html

    assert client.post(reverse("accounts:token_revoke", args=[theirs.pk])).status_code == 404
    response = client.post(reverse("accounts:token_revoke", args=[mine.pk]), follow=True)
    assert "no longer works" in response.content.decode()
    assert set(ApiToken.objects.values_list("name", flat=True)) == {"new script", "engineer's"}
    assert kept.pk in set(curator.api_tokens.values_list("pk", flat=True))


def test_token_views_refuse_get(client, curator):
    client.force_login(curator)
    token, _ = api_token_create(user=curator, name="script")
    assert client.get(reverse("accounts:token_create")).status_code == 405
    assert client.get(reverse("accounts:token_revoke", args=[token.pk])).status_code == 405
    assert ApiToken.objects.count() == 1


@pytest.mark.parametrize("persona", PERSONAS)
def test_audit_log_is_for_admins_only(client, make_user, persona):
    client.force_login(make_user(persona))
    expected = 200 if persona == "admin" else 403
    assert client.get(reverse("accounts:audit_list")).status_code == expected


def test_audit_log_shows_who_what_which_when_and_the_change(client, admin_user, curator):
    audit_record(
        actor=curator,
        action="upload.map",
        obj=curator,
        before={"task_type": "sft"},
        after={"task_type": "classification"},
    )
    client.force_login(admin_user)
    html = client.get(reverse("accounts:audit_list")).content.decode()
    assert "upload.map" in html and "curator" in html
    assert "auth.user #" in html
    assert "sft" in html and "classification" in html
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", html)


def test_audit_log_filters_by_action_and_pages(client, admin_user, curator):
    for number in range(60):
        audit_record(actor=curator, action="upload.create", obj=curator, after={"n": number})
    audit_record(actor=curator, action="version.create", obj=curator)
    client.force_login(admin_user)
    url = reverse("accounts:audit_list")

    page = client.get(url, {"action": "version."}).context["page"]
    assert [event.action for event in page.object_list] == ["version.create"]

    response = client.get(url, {"action": "upload.create"})
    assert response.context["page"].paginator.count == 60
    html = response.content.decode()
    assert "Page 1 of 2" in html
    assert "?action=upload.create&amp;page=2" in html
    assert '<option value="upload.create" selected>' in html
    second = client.get(url, {"action": "upload.create", "page": 2}).context["page"]
    assert len(second.object_list) == 10


def test_audit_log_escapes_what_people_typed(client, admin_user, curator):
    audit_record(actor=curator, action="upload.create", obj=curator, after={"file": "<script>alert(1)</script>"})
    client.force_login(admin_user)
    html = client.get(reverse("accounts:audit_list")).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_audit_log_shows_values_as_words_not_python(client, admin_user, curator):
    audit_record(
        actor=curator,
        action="upload.map",
        obj=curator,
        before={"task_type": "sft", "mapping": {"input": "question"}},
        after={"task_type": "classification", "mapping": {"input": "question", "label": "category"}, "ok": True},
    )
    client.force_login(admin_user)
    html = client.get(reverse("accounts:audit_list")).content.decode()
    assert 'task type:</span>\n        sft <span aria-label="changed to">→</span> classification' in html
    assert "input: question; label: category" in html
    assert "ok:</span>\n        yes" in html
    for python in ("{&#x27;", "{'", "&#x27;input&#x27;", "True"):
        assert python not in html


def test_audit_log_filters_by_person_object_date_and_search(client, admin_user, curator, engineer):
    old = audit_record(actor=curator, action="upload.create", obj=curator, after={"file": "tickets.csv"})
    AuditEvent.objects.filter(pk=old.pk).update(created_at="2026-01-15T10:00:00Z")
    audit_record(actor=engineer, action="training.start", obj=engineer, after={"base model": "tiny-gpt"})
    audit_record(actor=None, action="upload.validate", obj=curator, after={"rows": 12})
    client.force_login(admin_user)
    url = reverse("accounts:audit_list")

    def shown(**params):
        return [event.action for event in client.get(url, params).context["page"].object_list]

    assert shown(person=engineer.pk) == ["training.start"]
    assert shown(person="none") == ["upload.validate"]
    assert shown(object_type="auth.user", object_id=str(curator.pk)) == ["upload.validate", "upload.create"]
    assert shown(since="2026-01-01", until="2026-01-31") == ["upload.create"]
    assert shown(q="tickets") == ["upload.create"]  # a value
    assert shown(q="TINY-GPT") == ["training.start"]  # a value, any case
    assert shown(q="engineer") == ["training.start"]  # a person
    assert shown(q="validate") == ["upload.validate"]  # an action

    response = client.get(url, {"since": "2026-01-10", "until": "2026-01-01", "person": curator.pk})
    html = response.content.decode()
    assert "The end date is before the start date." in html
    assert [event.action for event in response.context["page"].object_list] == ["upload.create"]
    assert f'<option value="{curator.pk}" selected>curator</option>' in html


def test_audit_log_pages_keep_every_filter(client, admin_user, curator):
    for number in range(55):
        audit_record(actor=curator, action="upload.create", obj=curator, after={"n": number})
    client.force_login(admin_user)
    html = client.get(reverse("accounts:audit_list"), {"person": curator.pk, "q": "upload", "until": ""}).content
    html = html.decode()
    assert f"?person={curator.pk}&amp;q=upload&amp;page=2" in html
    assert f'href="/accounts/audit/export.csv?person={curator.pk}&amp;q=upload"' in html


def test_audit_log_csv_export_has_the_filtered_rows_and_is_audited(client, make_user, admin_user, curator, engineer):
    prankster = make_user("curator", username="=HYPERLINK(1)")
    audit_record(
        actor=curator, action="model.stage", obj=curator, before={"stage": "candidate"}, after={"stage": "production"}
    )
    audit_record(actor=curator, action="upload.create", obj=prankster, after={"file": "tickets.csv"})
    audit_record(actor=engineer, action="training.start", obj=engineer)
    client.force_login(admin_user)

    response = client.get(reverse("accounts:audit_export"), {"person": curator.pk})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-log-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["when", "who", "action", "object type", "object id", "object", "changes", "before", "after"]
    assert [row[2] for row in rows[1:]] == ["upload.create", "model.stage"]
    assert rows[2][1] == "curator" and rows[2][6] == "stage: candidate → production"
    assert rows[1][5] == "'=HYPERLINK(1)"  # a spreadsheet would run it as a formula

    export = AuditEvent.objects.get(action="audit.export")
    assert export.actor == admin_user
    assert export.after == {"filters": {"person": str(curator.pk)}, "rows": 2}


def test_audit_log_csv_export_is_for_admins_only(client, curator):
    client.force_login(curator)
    assert client.get(reverse("accounts:audit_export")).status_code == 403
    assert not AuditEvent.objects.filter(action="audit.export").exists()
