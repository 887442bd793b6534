"""Sign-in lock-outs (django-axes, accounts/signin.py): per account, per client address, growing waits, audit."""

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessAttemptExpiration, AccessFailureLog
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent
from accounts.signin import client_ip, cool_off

PASSWORD = "pw-for-tests-123"  # tests/factories.py
LOCKED = "Too many failed sign-ins for this account or address. Try again in"

pytestmark = pytest.mark.django_db


def sign_in(client, username: str, password: str, address: str = "127.0.0.1", **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def get_token(username: str, password: str, address: str = "127.0.0.1", **extra):
    return APIClient().post(
        reverse("api-token"), {"username": username, "password": password}, format="json", REMOTE_ADDR=address, **extra
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- as found: the token endpoint trusted X-Forwarded-For ------------------------------------------------------


def test_rotating_x_forwarded_for_does_not_give_more_password_guesses(curator):
    for n in range(5):
        response = get_token("curator", f"guess-{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        # The fifth wrong password reaches the limit: its answer already says so.
        assert response.status_code == (429 if n == 4 else 400), n
    # Every guess came from 127.0.0.1, whatever the header said.
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}

    response = get_token("curator", "guess-5", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert response.status_code == 429
    assert response.json() == {"error": f"{LOCKED} 5 minutes."}
    assert 240 < int(response["Retry-After"]) <= 300

    # The right password does not get a token while the lock-out lasts.
    response = get_token("curator", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert response.status_code == 429
    assert "token" not in response.json()
    assert not ApiToken.objects.exists()


def test_the_token_rate_limit_counts_per_address_not_per_header(curator, settings):
    settings.AXES_FAILURE_LIMIT = 1000  # this test is about DRF's throttle (API_TOKEN_RATE, 20/min), not lock-outs
    for n in range(20):
        assert get_token("curator", PASSWORD, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code == 200, n
    response = get_token("curator", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.250")
    assert response.status_code == 429
    assert response.json()["error"].startswith("Request was throttled.")
    assert int(response["Retry-After"]) > 0
    assert get_token("curator", PASSWORD, address="192.0.2.10").status_code == 200  # another client


def test_client_address_comes_from_remote_addr_unless_proxies_are_trusted(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.20")
    assert client_ip(request) == "10.0.0.5"
    settings.TRUSTED_PROXY_COUNT = 1  # one proxy: it appended the address it saw, the rightmost entry
    assert client_ip(request) == "198.51.100.20"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "1.2.3.4"
    settings.TRUSTED_PROXY_COUNT = 5  # more proxies than entries: the leftmost, as DRF's NUM_PROXIES does
    assert client_ip(request) == "1.2.3.4"
    garbage = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="not-an-address")
    assert client_ip(garbage) is None
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(garbage) == "10.0.0.5"


def test_behind_a_trusted_proxy_each_client_is_counted_on_its_own(make_user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("curator", username="dana")
    make_user("engineer", username="eli")
    for n in range(5):  # the proxy at 10.0.0.1 forwards one client's guesses at several accounts
        get_token(f"nobody-{n}", "guess", address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    # That client is locked out; another client behind the same proxy is not; a spoofed entry changes nothing.
    assert get_token("dana", PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    spoofed = "198.51.100.1, 203.0.113.5"
    assert get_token("dana", PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR=spoofed).status_code == 429
    assert get_token("eli", PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 200


# --- as found: the web form had no limit at all ---------------------------------------------------------------


def test_sixty_wrong_passwords_on_the_form_then_the_right_one_is_refused(client, make_user):
    make_user("curator", username="dana")
    for n in range(60):
        sign_in(client, "dana", f"guess-{n}")
    response = sign_in(client, "dana", PASSWORD, HTTP_ACCEPT="text/html")
    assert response.status_code == 429
    html = response.content.decode()
    assert f"{LOCKED} 5 minutes." in html
    assert 'value="dana"' in html and 'action="/login/"' in html  # the form again, with the name typed
    assert 240 < int(response["Retry-After"]) <= 300
    assert not signed_in(client)
    # Only the guesses up to the limit count: waiting the time the page gives is enough.
    assert AccessAttempt.objects.get().failures_since_start == 5


def test_the_lockout_ends_after_the_wait(client, make_user, settings):
    settings.SIGN_IN_LOCKOUT_MINUTES = 0.02  # 1.2 seconds
    make_user("curator", username="dana")
    for n in range(5):
        assert sign_in(client, "dana", f"guess-{n}").status_code == (429 if n == 4 else 200)
    started = time.monotonic()
    response = sign_in(client, "dana", PASSWORD)
    assert response.status_code == 429 and f"{LOCKED} 1 minute." in response.content.decode()
    time.sleep(max(0.0, 1.3 - (time.monotonic() - started)))
    response = sign_in(client, "dana", PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_a_lockout_on_the_form_also_stops_the_token_endpoint_and_the_admin(client, make_user):
    make_user("admin", username="ada")
    for n in range(5):
        sign_in(client, "ada", f"guess-{n}")
    assert get_token("ada", PASSWORD).status_code == 429
    response = client.post(reverse("admin:login"), {"username": "ada", "password": PASSWORD}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert not signed_in(client)


def test_many_accounts_from_one_address_lock_that_address(client, make_user):
    make_user("curator", username="dana")
    for n in range(5):
        sign_in(client, f"user-{n}", "password", address="198.51.100.9")
    response = sign_in(client, "dana", PASSWORD, address="198.51.100.9")
    assert response.status_code == 429 and LOCKED in response.content.decode()
    # Dana herself is not locked out: from her own address she signs in.
    assert sign_in(client, "dana", PASSWORD, address="192.0.2.44").status_code == 302


def test_one_account_from_many_addresses_locks_that_account(client, make_user):
    make_user("curator", username="dana")
    for n in range(5):
        sign_in(client, "dana", f"guess-{n}", address=f"203.0.113.{n}")
    assert sign_in(client, "dana", PASSWORD, address="192.0.2.44").status_code == 429
    assert not signed_in(client)
    # Other people at those addresses are not locked out.
    make_user("engineer", username="eli")
    assert sign_in(client, "eli", PASSWORD, address="203.0.113.1").status_code == 302


def test_the_wait_doubles_for_every_further_limit_of_failures_in_a_day(client, make_user):
    make_user("curator", username="dana")
    for n in range(5):
        sign_in(client, "dana", f"guess-{n}")
    assert f"{LOCKED} 5 minutes." in sign_in(client, "dana", PASSWORD).content.decode()

    # Five minutes later (the stored expiries moved back instead of waiting): five more wrong guesses.
    AccessAttemptExpiration.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    for n in range(5):
        assert sign_in(client, "dana", f"again-{n}").status_code == (429 if n == 4 else 200)
    response = sign_in(client, "dana", PASSWORD)
    assert f"{LOCKED} 10 minutes." in response.content.decode()
    assert 540 < int(response["Retry-After"]) <= 600


def test_cool_off_grows_with_the_day_of_failures_up_to_the_maximum(settings):
    request = RequestFactory().post("/login/", {"username": "dana"})
    request.axes_ip_address = "127.0.0.1"

    def fail(count: int, **who):
        AccessFailureLog.objects.bulk_create(
            AccessFailureLog(user_agent="", http_accept="", path_info="/login/", **who) for _ in range(count)
        )

    assert cool_off(request) == timedelta(minutes=5)
    fail(4, username="dana", ip_address="192.0.2.1")
    assert cool_off(request) == timedelta(minutes=5)
    fail(1, username="someone-else", ip_address="127.0.0.1")  # the address counts too
    assert cool_off(request) == timedelta(minutes=10)
    fail(10, username="dana", ip_address="192.0.2.1")
    assert cool_off(request) == timedelta(minutes=40)
    fail(100, username="dana", ip_address="192.0.2.1")
    assert cool_off(request) == timedelta(minutes=settings.SIGN_IN_LOCKOUT_MAX_MINUTES)
    # Failures older than a day no longer count.
    AccessFailureLog.objects.update(attempt_time=timezone.now() - timedelta(days=1, minutes=1))
    assert cool_off(request) == timedelta(minutes=5)


def test_a_few_typos_then_the_right_password_signs_in(client, make_user):
    make_user("curator", username="dana")
    for n in range(4):
        sign_in(client, "dana", f"typo-{n}")
    assert sign_in(client, "dana", PASSWORD).status_code == 302


# --- audit ----------------------------------------------------------------------------------------------------


def test_sign_ins_failures_and_lockouts_are_in_the_audit_log_without_passwords(client, make_user):
    dana = make_user("curator", username="dana")
    sign_in(client, "dana", "secret-guess-1", address="192.0.2.7")
    sign_in(client, "dana", PASSWORD, address="192.0.2.7")
    get_token("dana", PASSWORD, address="192.0.2.8")

    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.actor is None
    assert failed.after == {"username": "dana", "ip_address": "192.0.2.7", "path": "/login/"}
    web, api = AuditEvent.objects.filter(action="auth.login").order_by("id")
    assert (web.actor, web.after) == (dana, {"username": "dana", "ip_address": "192.0.2.7", "path": "/login/"})
    assert (api.actor, api.after["ip_address"], api.after["path"]) == (dana, "192.0.2.8", "/api/v1/auth/token/")

    for n in range(5):
        get_token("ghost", f"secret-guess-{n}", address="192.0.2.9")
    lockout = AuditEvent.objects.filter(action="auth.lockout").get()
    assert lockout.actor is None and lockout.after["username"] == "ghost"
    assert lockout.after["ip_address"] == "192.0.2.9"
    assert AuditEvent.objects.filter(action="auth.login_failed", object_repr="ghost").count() == 5
    everything = str(list(AuditEvent.objects.values("object_repr", "before", "after")))
    assert "secret-guess" not in everything and PASSWORD not in everything

    client.force_login(make_user("admin", username="auditor"))
    html = client.get(reverse("accounts:audit_list"), {"action": "auth."}).content.decode()
    assert "auth.login_failed" in html and "not signed in" in html and "192.0.2.7" in html
