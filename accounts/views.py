from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from accounts.forms import ApiTokenForm, AuditFilterForm
from accounts.roles import ROLES, VIEW_AUDIT, role_names_of
from accounts.selectors import actor_text, audit_changes, audit_event_list, audit_filter_choices
from accounts.services import api_token_create, api_token_revoke, audit_log_export


def _roles_of(user):
    names = set(role_names_of(user))
    return [role for role in ROLES if role.name in names]


HOME_LOOKBACK = timedelta(days=7)  # failed work older than this no longer waits on anyone's home page


def _queues(user, roles) -> dict:
    """Each role's work queue for the home page, read through the apps' selectors (a few queries each)."""
    # Imported here: the apps import accounts (services, roles), so accounts loads their selectors late.
    from annotation import selectors as annotation_selectors
    from curation import selectors as curation_selectors
    from evaluation import selectors as evaluation_selectors
    from training import selectors as training_selectors

    slugs = {role.slug for role in roles}
    since = timezone.now() - HOME_LOOKBACK
    queues: dict = {}
    if "privacy_reviewer" in slugs:
        queues["privacy"] = curation_selectors.privacy_queue(user=user)
    if "annotator" in slugs or "annotation_reviewer" in slugs:
        queues["annotate"] = annotation_selectors.annotator_queue(user=user)
    if "annotation_reviewer" in slugs or "curator" in slugs:
        queues["disagreements"] = annotation_selectors.disagreements_waiting()
    if "curator" in slugs:
        queues["curate"] = curation_selectors.curator_queue(user=user)
    if "engineer" in slugs:
        queues["engineer"] = training_selectors.engineer_queue(user=user, since=since)
        queues["engineer"]["passing"] = evaluation_selectors.candidates_passing_gate()
    if "manager" in slugs:
        queues["manager"] = {
            "headline": evaluation_selectors.kpi_headline(),
            "promotions": list(evaluation_selectors.promotions_recent()),
        }
    if "admin" in slugs:
        failed = [
            *curation_selectors.failed_recent(since=since),
            *training_selectors.failed_recent(since=since),
            *evaluation_selectors.failed_recent(since=since),
            *annotation_selectors.failed_recent(since=since),
        ]
        failed.sort(key=lambda row: row["when"], reverse=True)
        queues["admin"] = {"events": list(audit_event_list()[:8]), "failed": failed, "days": HOME_LOOKBACK.days}
    return queues


@login_required
def home(request):
    roles = _roles_of(request.user)
    return render(request, "home.html", {"roles": roles, "queues": _queues(request.user, roles)})


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


AUDIT_PAGE_SIZE = 50


def _audit_filtered(request):
    """The filter form bound to the address, the events it selects, and the address's filters (for links)."""
    form = AuditFilterForm(request.GET, choices=audit_filter_choices())
    filters = form.filters()
    events = audit_event_list(**filters)
    params = QueryDict(mutable=True)
    for key, value in request.GET.lists():
        kept = [item for item in value if item.strip()]
        if key != "page" and kept:
            params.setlist(key, kept)
    return form, filters, events, params.urlencode()


@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def audit_list(request):
    form, filters, events, query = _audit_filtered(request)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"event": event, "who": actor_text(event), "changes": audit_changes(event)} for event in page]
    return render(
        request,
        "accounts/audit_list.html",
        {"page": page, "rows": rows, "form": form, "query": query, "filtered": any(filters.values())},
    )


@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def audit_export(request):
    """The filtered audit log as a CSV file (all pages), streamed."""
    _form, filters, events, _query = _audit_filtered(request)
    chunks = audit_log_export(actor=request.user, events=events, filters=filters)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = content_disposition_header(True, f"audit-log-{stamp}.csv")
    return response
