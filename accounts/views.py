from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from accounts.forms import ApiTokenForm
from accounts.models import AuditEvent
from accounts.roles import ROLES, VIEW_AUDIT, role_names_of
from accounts.services import api_token_create, api_token_revoke


def _roles_of(user):
    names = set(role_names_of(user))
    return [role for role in ROLES if role.name in names]


@login_required
def home(request):
    return render(request, "home.html", {"roles": _roles_of(request.user)})


def _profile_page(request, form: ApiTokenForm, status: int = 200):
    response = render(
        request,
        "accounts/profile.html",
        {
            "tokens": request.user.api_tokens.all(),
            "form": form,
            "new_token": request.session.pop("new_api_token", None),
            "roles": _roles_of(request.user),
        },
        status=status,
    )
    add_never_cache_headers(response)  # the page may hold a new token: no browser or proxy should keep a copy
    return response


@login_required
def profile(request):
    return _profile_page(request, ApiTokenForm())


@login_required
@require_POST
def token_create(request):
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _profile_page(request, form, status=400)
    token, secret = api_token_create(
        user=request.user, name=form.cleaned_data["name"], expires_in_days=form.cleaned_data["expires_in_days"]
    )
    # Shown once, right after creation; afterwards only its first characters are displayed.
    request.session["new_api_token"] = secret
    messages.success(request, f"Your new API token “{token.name}” is ready. Copy it now: it will not be shown again.")
    return redirect("accounts:profile")


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(request.user.api_tokens, pk=token_id)
    api_token_revoke(token=token, actor=request.user)
    messages.success(request, f"The API token “{token.name}” ({token.prefix}…) no longer works.")
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
