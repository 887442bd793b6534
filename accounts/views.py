from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent
from accounts.roles import ROLES, VIEW_AUDIT, role_names_of
from accounts.services import api_token_regenerate


def _roles_of(user):
    names = set(role_names_of(user))
    return [role for role in ROLES if role.name in names]


@login_required
def home(request):
    return render(request, "home.html", {"roles": _roles_of(request.user)})


@login_required
@never_cache  # the page may hold a new token: no browser or proxy should keep a copy
def profile(request):
    token = Token.objects.filter(user=request.user).first()
    new_token = request.session.pop("new_api_token", None)
    return render(
        request,
        "accounts/profile.html",
        {"token": token, "new_token": new_token, "roles": _roles_of(request.user)},
    )


@login_required
@require_POST
def token_regenerate(request):
    token = api_token_regenerate(user=request.user)
    # Shown once, right after creation; afterwards only its first characters are displayed.
    request.session["new_api_token"] = token.key
    messages.success(request, "Your new API token is ready. Copy it now: it will not be shown again.")
    return redirect("accounts:profile")


@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def audit_list(request):
    events = AuditEvent.objects.select_related("actor")
    action = request.GET.get("action", "").strip()
    if action:
        events = events.filter(action__startswith=action)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    actions = sorted(AuditEvent.objects.values_list("action", flat=True).distinct().order_by())
    prefixes = sorted({name.split(".")[0] + "." for name in actions if "." in name})
    return render(
        request,
        "accounts/audit_list.html",
        {"page": page, "action": action, "actions": actions, "prefixes": prefixes},
    )
