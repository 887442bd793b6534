"""API tokens: several named ones per user, stored hashed, optional expiry, listed and revoked (accounts/apis.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent

PASSWORD = "pw-for-tests-123"

pytestmark = pytest.mark.django_db


def new_token(username: str = "curator", **extra) -> dict:
    response = APIClient().post(
        reverse("api-token"), {"username": username, "password": PASSWORD, **extra}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def as_script(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_two_scripts_each_get_a_token_and_both_keep_working(curator):
    # As found: the second POST auth/token/ replaced the first script's token ("Invalid token.").
    first = new_token(name="nightly export")
    second = new_token(name="dashboard", expires_in_days=30)
    assert first["token"] != second["token"]
    assert (first["name"], first["expires_at"]) == ("nightly export", None)
    assert first["prefix"] == first["token"][:10]
    assert as_script(first["token"]).get(reverse("api-me")).json()["username"] == "curator"
    assert as_script(second["token"]).get(reverse("api-me")).json()["username"] == "curator"

    listed = as_script(first["token"]).get(reverse("api-token-list")).json()
    assert [row["name"] for row in listed["results"]] == ["dashboard", "nightly export"]
    assert set(listed["results"][0]) == {
        "id",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "is_expired",
    }
    assert first["token"] not in str(listed) and second["token"] not in str(listed)


def test_revoking_one_token_stops_only_that_one(curator, engineer):
    first = new_token(name="old script")
    second = new_token(name="new script")
    theirs = new_token("engineer", name="engineer's script")

    client = as_script(second["token"])
    assert client.delete(reverse("api-token-revoke", args=[theirs["id"]])).status_code == 404
    response = client.delete(reverse("api-token-revoke", args=[first["id"]]))
    assert response.status_code == 204

    response = as_script(first["token"]).get(reverse("api-me"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"error": "Invalid token."}
    assert as_script(second["token"]).get(reverse("api-me")).status_code == 200
    assert as_script(theirs["token"]).get(reverse("api-me")).status_code == 200
    assert AuditEvent.objects.filter(action="api_token.revoke", actor=curator).count() == 1


def test_the_secret_is_not_stored_in_plain_text(curator):
    secret = new_token(name="script")["token"]
    token = ApiToken.objects.get()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")  # noqa: S608 (the model's own table name)
        columns = [column[0] for column in cursor.description]
        (row,) = cursor.fetchall()
    assert not [name for name, value in zip(columns, row, strict=True) if secret in str(value)]
    assert token.digest == ApiToken.digest_of(secret) and len(token.digest) == 64
    assert secret not in str(list(AuditEvent.objects.values("object_repr", "before", "after")))


def test_an_expired_token_is_refused_with_a_clear_message(curator):
    data = new_token(name="short-lived", expires_in_days=1)
    client = as_script(data["token"])
    assert client.get(reverse("api-me")).status_code == 200
    a_day_ago = timezone.now() - timedelta(days=1)  # made a day ago, expired a minute ago
    ApiToken.objects.filter(pk=data["id"]).update(
        created_at=a_day_ago, expires_at=timezone.now() - timedelta(minutes=1)
    )
    response = client.get(reverse("api-me"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"].startswith("This token expired on ")
    assert "Make a new one on your profile page" in response.json()["error"]
    listed = as_script(new_token()["token"]).get(reverse("api-token-list")).json()["results"]
    assert [row["is_expired"] for row in listed if row["id"] == data["id"]] == [True]


@pytest.mark.parametrize("days", [0, -1, 3651, "soon"])
def test_expiry_must_be_a_sensible_number_of_days(curator, days):
    response = APIClient().post(
        reverse("api-token"),
        {"username": "curator", "password": PASSWORD, "expires_in_days": days},
        format="json",
    )
    assert response.status_code == 400
    assert "expires_in_days" in response.json()["fields"]
    assert not ApiToken.objects.exists()


def test_last_used_is_noted_at_most_once_a_minute(curator):
    data = new_token(name="script")
    client = as_script(data["token"])
    assert ApiToken.objects.get().last_used_at is None
    client.get(reverse("api-me"))
    first_use = ApiToken.objects.get().last_used_at
    assert first_use is not None and timezone.now() - first_use < timedelta(seconds=10)
    client.get(reverse("api-me"))
    assert ApiToken.objects.get().last_used_at == first_use  # no write for every request

    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    client.get(reverse("api-me"))
    assert timezone.now() - ApiToken.objects.get().last_used_at < timedelta(seconds=10)


def test_tokens_of_rest_framework_authtoken_keep_working_after_the_migration(curator):
    import importlib
    from types import SimpleNamespace

    from django.apps import apps

    copy_old_tokens = importlib.import_module("accounts.migrations.0002_api_tokens").copy_old_tokens
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:  # the table as rest_framework.authtoken made it
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp with time zone NOT NULL,"
            " user_id bigint NOT NULL UNIQUE)"
            if connection.vendor == "postgresql"
            else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created datetime NOT NULL,"
            " user_id bigint NOT NULL UNIQUE)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [old_key, timezone.now() - timedelta(days=100), curator.pk],
        )
    copy_old_tokens(apps, SimpleNamespace(connection=connection))  # the migration's function reads only this

    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (curator, "Token from before", old_key[:10])
    assert timezone.now() - token.created_at > timedelta(days=99)
    assert as_script(old_key).get(reverse("api-me")).json()["username"] == "curator"
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)  # no plain-text key left behind


def test_the_schema_documents_the_token_endpoints_and_429(client, curator):
    client.force_login(curator)
    schema = client.get("/api/schema/?format=json").json()
    post = schema["paths"]["/api/v1/auth/token/"]["post"]
    assert set(post["responses"]) >= {"200", "400", "429"}
    assert post["responses"]["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOutput"
    }
    assert "Retry-After" in post["responses"]["429"]["headers"]
    assert "token" in schema["components"]["schemas"]["TokenOutput"]["properties"]
    assert "token" not in schema["components"]["schemas"]["ApiTokenOutput"]["properties"]
    assert "404" in schema["paths"]["/api/v1/auth/tokens/{token_id}/"]["delete"]["responses"]
