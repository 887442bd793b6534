"""Sign-in protection: which address a client has, how long a lock-out lasts, what a locked-out person sees.

django-axes counts failed sign-ins (the web form, the admin and ``POST /api/v1/auth/token/`` all go through
``django.contrib.auth.authenticate``) per account and per client address, and refuses sign-ins while either has
reached ``SIGN_IN_FAILURE_LIMIT``. The settings point axes at the functions here (see settings.py, "Sign-in
protection"). The receivers at the end write every sign-in, failed or not, to the audit log.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessFailureLog
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Q
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

# How far back failures make the next lock-out longer.
FAILURE_MEMORY = timedelta(days=1)


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or with TRUSTED_PROXY_COUNT proxies in front, the X-Forwarded-For entry
    that many places from the right (the one the outermost trusted proxy saw). The same rule as DRF's NUM_PROXIES,
    so lock-outs and API throttles agree. Entries left of it are whatever the client sent and are never used."""
    address = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        entries = [entry.strip() for entry in forwarded.split(",")]
        address = entries[-min(proxies, len(entries))]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def cool_off(request) -> timedelta:
    """How long a failure of this request counts: SIGN_IN_LOCKOUT_MINUTES, doubled for every SIGN_IN_FAILURE_LIMIT
    failures of the same account or address in the last day, at most SIGN_IN_LOCKOUT_MAX_MINUTES.

    Axes stores this with each failed attempt (AXES_USE_ATTEMPT_EXPIRATION), so the wait a lock-out got does not
    change afterwards; SignInAttemptHandler counts the attempts that have not expired.
    """
    base = timedelta(minutes=settings.SIGN_IN_LOCKOUT_MINUTES)
    longest = timedelta(minutes=settings.SIGN_IN_LOCKOUT_MAX_MINUTES)
    if request is None:
        return base
    who = Q()
    username = get_client_username(request)
    if username:
        who |= Q(username=username)
    address = getattr(request, "axes_ip_address", None)
    if address:
        who |= Q(ip_address=address)
    if not who:
        return base
    failures = AccessFailureLog.objects.filter(who, attempt_time__gte=timezone.now() - FAILURE_MEMORY).count()
    doublings = min(failures // settings.SIGN_IN_FAILURE_LIMIT, 32)  # 2**32 minutes is past any maximum
    return min(base * 2**doublings, longest)


class SignInAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler, counting each failed attempt until its own expiry.

    Axes counts the attempts newer than the *current* request's cool-off and deletes older ones for everybody;
    with a cool-off that grows per account and address, that would end the longer lock-outs early. Here an
    attempt counts until the expiry stored with it, and only expired attempts are deleted.
    """

    def get_user_attempts(self, request, credentials=None):
        now = timezone.now()
        return [
            attempts.filter(expiration__expires_at__gt=now)
            for attempts in self.filter_user_attempts(request, credentials)
        ]

    def clean_expired_user_attempts(self, request=None, credentials=None) -> int:
        count = super().clean_expired_user_attempts(request, credentials)
        # The failure log only decides how long the next lock-out lasts; older entries no longer matter.
        AccessFailureLog.objects.filter(attempt_time__lt=timezone.now() - FAILURE_MEMORY).delete()
        return count

    def lockout_seconds(self, request, credentials=None) -> int:
        """Seconds until neither the account nor the address is locked any more (0: not locked)."""
        now = timezone.now()
        limit = get_failure_limit(request, credentials)
        unlocked_at = None
        for attempts in self.get_user_attempts(request, credentials):
            counted = 0
            # Newest expiry first: the lock-out ends when the attempt that brings the count to the limit expires.
            for failures, expires_at in attempts.order_by("-expiration__expires_at").values_list(
                "failures_since_start", "expiration__expires_at"
            ):
                counted += failures
                if counted >= limit:
                    unlocked_at = max(unlocked_at or expires_at, expires_at)
                    break
        return math.ceil((unlocked_at - now).total_seconds()) if unlocked_at else 0


def lockout_seconds(request, credentials=None) -> int:
    """Seconds until this request's account and address may sign in again (0: they may now)."""
    AxesProxyHandler.update_request(request)
    return AxesProxyHandler.get_implementation().lockout_seconds(request, credentials)


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        "Too many failed sign-ins for this account or address. "
        f"Try again in {minutes} minute{'' if minutes == 1 else 's'}."
    )


def lockout_response(request, original_response=None, credentials=None):
    """What a locked-out person sees after the sign-in form (AXES_LOCKOUT_CALLABLE): the form again with the wait,
    status 429 and Retry-After. (The API answers its own 429 in accounts.apis.TokenObtainApi.)"""
    seconds = max(lockout_seconds(request, credentials), 1)
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = ""
    form = AuthenticationForm(request, initial={"username": username})
    response = render(
        request,
        "registration/login.html",
        {"form": form, "next": next_url, "lockout_message": lockout_message(seconds)},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


# --- audit -------------------------------------------------------------------------------------------------------
# Receivers of django.contrib.auth's and axes' signals, connected in AccountsConfig.ready(). Signals are the one
# place that sees every sign-in: the login form, the admin, the token endpoint and axes' lock-outs.


def _record(action: str, request, username: str, user=None) -> None:
    from accounts.services import sign_in_record

    sign_in_record(
        action=action,
        username=username or "",
        ip_address=client_ip(request) if request is not None else None,
        path=getattr(request, "path", "") or "",
        user=user,
    )


def on_user_logged_in(sender, request, user, **kwargs) -> None:
    _record("auth.login", request, user.get_username(), user=user)


def on_user_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django hides the password in credentials; only the user name is kept.
    _record("auth.login_failed", request, str(credentials.get("username") or "")[:150])


def on_user_locked_out(sender, request, username, ip_address, **kwargs) -> None:
    _record("auth.lockout", request, str(username or "")[:150])
