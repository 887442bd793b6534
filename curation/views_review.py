"""HTML pages for privacy review: start detection, follow it, review the findings, approve.

Views are thin: they load the object (404/403), check a form, call a service in
curation.services.redaction and redirect. Services raise ValidationError with plain messages; they are
shown next to the field or on top of the page.

The review page works without JavaScript (every button is a form). With review.js, decisions are sent
with fetch and answered with JSON holding the re-rendered row card (escaped here, on the server), so a
reviewer can work through a queue with the keyboard without reloading.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import REVIEW_REDACTION, VIEW_PSEUDONYMS, VIEW_REDACTION
from curation import pii, selectors, services
from curation.forms import add_service_errors
from curation.forms_review import (
    ENTITY_CHOICES,
    OPERATOR_LABELS,
    PROFILE_LABELS,
    BulkDecideForm,
    FindingAddForm,
    FindingDecideForm,
    RedactionStartForm,
    ReviewFilterForm,
    entity_label,
)
from curation.models import DatasetVersion, Example, Finding, RedactionRun
from curation.views import _version_or_404

EXAMPLES_PER_PAGE = 10

SHORTCUTS = (
    ("j", "next finding"),
    ("k", "previous finding"),
    ("x", "redact it (replace it once approved)"),
    ("s", "keep it as is (not personal data)"),
    ("t", "change its kind"),
    ("n", "add the selected text (choose its kind, then Enter)"),
    ("?", "show or hide this help (also h)"),
)


def _run_or_404(run_id: int) -> RedactionRun:
    try:
        return selectors.redaction_run_get(run_id)
    except RedactionRun.DoesNotExist:
        raise Http404("No such personal-data review.") from None


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# --- highlighted text --------------------------------------------------------------------------


def field_label(field: str) -> str:
    if field == "input":
        return "Input"
    if field == "target":
        return "Target (response)"
    return f"Metadata: {field.removeprefix('metadata.')}"


def highlighted(text: str, findings: list[Finding]) -> SafeString:
    """The text as escaped segments, each carrying its offsets in the original text (Python code points).

    Findings become <mark>s; where spans overlap, the segment shows the narrowest one and lists all in its
    title. review.js computes the offsets of a mouse selection from ``data-start`` of these segments.
    """
    length = len(text)
    spans = [(max(0, min(f.start, length)), max(0, min(f.end, length)), f) for f in findings]
    bounds = sorted({0, length, *(start for start, _, _ in spans), *(end for _, end, _ in spans)})
    parts = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        # The HTML parser would turn CR and CR LF into LF and shift every offset after it: keep CR as a reference.
        piece = mark_safe(escape(text[start:end]).replace("\r", "&#13;"))  # noqa: S308 (escaped on this line)
        covering = [f for s, e, f in spans if s <= start and end <= e]
        if not covering:
            parts.append(format_html('<span class="seg" data-start="{}" data-end="{}">{}</span>', start, end, piece))
            continue
        top = min(covering, key=lambda f: (f.end - f.start, -f.score))
        title = "; ".join(
            f"{entity_label(f.entity_type)} · score {f.score:.2f} · {f.get_status_display()}" for f in covering
        )
        parts.append(
            format_html(
                '<mark class="pii pii-{} is-{}" data-start="{}" data-end="{}" data-findings="{}" title="{}">{}</mark>',
                top.entity_type,
                top.status,
                start,
                end,
                " ".join(str(f.pk) for f in covering),
                title,
                piece,
            )
        )
    return mark_safe("".join(parts))  # noqa: S308 (every part comes from format_html)


def _cards(run: RedactionRun, examples: list[Example]) -> list[dict]:
    """What the review page shows of each row: its text fields, highlighted, and its findings."""
    grouped = selectors.findings_of_examples(run, [example.pk for example in examples])
    cards = []
    for example in examples:
        findings = grouped.get(example.pk, [])
        fields, shown = [], []
        for name, text in selectors.example_text_fields(example):
            own = [f for f in findings if f.field == name]
            for finding in own:
                finding.span_text = text[finding.start : finding.end]
                finding.label = entity_label(finding.entity_type)
                finding.field_label = field_label(name)
            shown.extend(sorted(own, key=lambda f: (f.start, f.end)))
            fields.append(
                {"name": name, "label": field_label(name), "html": highlighted(text, own), "length": len(text)}
            )
        cards.append(
            {
                "example": example,
                "fields": fields,
                "findings": shown,
                "pending": sum(f.status == Finding.Status.PENDING for f in findings),
            }
        )
    return cards


def _left(run: RedactionRun) -> dict:
    pending = selectors.findings_pending_by_type(run)
    return {"total": sum(pending.values()), "types": [(code, entity_label(code), n) for code, n in pending.items()]}


def _card_context(request, run: RedactionRun, example: Example, back: str) -> dict:
    return {
        "card": _cards(run, [example])[0],
        "run": run,
        "back": back,
        "can_decide": run.status == RedactionRun.Status.REVIEW,
        "entity_choices": ENTITY_CHOICES,
    }


# --- start and follow detection ------------------------------------------------------------------


def _start_page(request, version: DatasetVersion, form: RedactionStartForm, status: int = 200):
    return render(
        request,
        "curation/review_start.html",
        {"version": version, "dataset": version.dataset, "form": form},
        status=status,
    )


@login_required
@permission_required(REVIEW_REDACTION, raise_exception=True)
def redaction_start(request, version_id: int):
    """GET: the form alone (the version page shows it too); POST: start detection in the background."""
    version = _version_or_404(version_id)
    if request.method != "POST":
        return _start_page(request, version, RedactionStartForm())
    form = RedactionStartForm(request.POST)
    if form.is_valid():
        try:
            run = services.redaction_run_start(version=version, actor=request.user, config=form.config())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.info(request, "Looking for personal data. This page follows the work as it goes.")
            return redirect("curation:redaction_detail", run.pk)
    return _start_page(request, version, form)


def _progress(run: RedactionRun) -> dict:
    eta = None
    if run.status == RedactionRun.Status.RUNNING and run.started_at and 0.01 <= run.progress < 1:
        elapsed = (timezone.now() - run.started_at).total_seconds()
        eta = elapsed * (1 - run.progress) / run.progress
    return {
        "status": run.status,
        "label": run.get_status_display(),
        "fraction": run.progress,
        "eta_seconds": eta,
        "rows": run.processed,
        "total_rows": run.version.row_count,
        "finished": not run.is_detecting,
    }


@login_required
@permission_required(VIEW_REDACTION, raise_exception=True)
def redaction_detail(request, run_id: int):
    """The run's page: progress while detecting, then the summary and (for reviewers) the approve button."""
    run = _run_or_404(run_id)
    summary = selectors.redaction_summary(run)
    for row in summary["by_type"]:
        row["label"] = entity_label(row["entity_type"])
    config = run.config or {}
    operators = config.get("operators") or {}
    return render(
        request,
        "curation/review_run.html",
        {
            "run": run,
            "version": run.version,
            "dataset": run.version.dataset,
            "run_progress": _progress(run),
            "summary": summary,
            "looked_for": [
                (entity_label(code), (config.get("thresholds") or {}).get(code), OPERATOR_LABELS.get(op, op))
                for code in config.get("entities", [])
                for op in [operators.get(code, config.get("default_operator", ""))]
            ],
            "profile": PROFILE_LABELS[pii.profile_of(config.get("entities", []))] if config.get("entities") else "",
            "allow_list": config.get("allow_list") or [],
            "deny_list": [(term, entity_label(code)) for term, code in (config.get("deny_list") or {}).items()],
            "can_review": request.user.has_perm(REVIEW_REDACTION),
            "can_read_pseudonyms": request.user.has_perm(VIEW_PSEUDONYMS),
        },
    )


@login_required
@permission_required(VIEW_REDACTION, raise_exception=True)
@require_GET
@never_cache
def redaction_progress(request, run_id: int):
    return JsonResponse(_progress(_run_or_404(run_id)))


# --- review --------------------------------------------------------------------------------------


@login_required
@permission_required(REVIEW_REDACTION, raise_exception=True)
@require_GET
def redaction_review(request, run_id: int):
    run = _run_or_404(run_id)
    if run.is_detecting:
        messages.info(request, "Detection is still running; the findings can be reviewed when it has finished.")
        return redirect("curation:redaction_detail", run.pk)
    filter_form = ReviewFilterForm(request.GET or None)
    filters = filter_form.filters()
    page = Paginator(selectors.review_queue(run, **filters), EXAMPLES_PER_PAGE).get_page(request.GET.get("page"))
    back = request.get_full_path()
    bulk = BulkDecideForm(
        initial={key: filters.get(key) for key in ("entity_type", "min_score", "max_score")}, auto_id="bulk_%s"
    )
    return render(
        request,
        "curation/review_queue.html",
        {
            "run": run,
            "version": run.version,
            "dataset": run.version.dataset,
            "filter_form": filter_form,
            "filtered": bool(request.GET.keys() - {"page"}),
            "page": page,
            "cards": _cards(run, list(page.object_list)),
            "left": _left(run),
            "bulk_form": bulk,
            "add_form": FindingAddForm(),
            "back": back,
            "extra": urlencode([(key, value) for key, value in request.GET.items() if key != "page"]),
            "can_decide": run.status == RedactionRun.Status.REVIEW,
            "entity_choices": ENTITY_CHOICES,
            "shortcuts": SHORTCUTS,
        },
    )


def _back(request, run: RedactionRun) -> str:
    """Where to return after a decision: the review page it came from (same site only)."""
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=False):
        return back
    return reverse("curation:redaction_review", args=[run.pk])


def _answer(request, run: RedactionRun, example: Example | None, *, ok: bool, message: str, status: int, anchor=""):
    """JSON with the fresh row card for review.js, or a message and a redirect for a plain form."""
    back = _back(request, run)
    if _wants_json(request):
        run.refresh_from_db()
        data = {
            "ok": ok,
            "message": message,
            "left": render_to_string("curation/_review_left.html", {"left": _left(run)}),
        }
        if example is not None:
            data["card"] = render_to_string(
                "curation/_review_example.html", _card_context(request, run, example, back), request=request
            )
        return JsonResponse(data, status=status)
    (messages.success if ok else messages.error)(request, message)
    return redirect(back + (f"#{anchor}" if anchor and "#" not in back else ""))


@login_required
@permission_required(REVIEW_REDACTION, raise_exception=True)
@require_POST
def finding_decide(request, finding_id: int):
    finding = get_object_or_404(
        Finding.objects.select_related("run__version__dataset", "example"),
        pk=finding_id,
        run__version__in=DatasetVersion.objects.ready(),
    )
    run, example = finding.run, finding.example
    form = FindingDecideForm(request.POST)
    if not form.is_valid():
        message = "The form was damaged; reload the page and try again."
        return _answer(request, run, example, ok=False, message=message, status=400)
    data = form.cleaned_data
    try:
        services.finding_decide(
            finding=finding,
            actor=request.user,
            status=data["status"],
            revision=data["revision"],
            entity_type=data["entity_type"] or None,
        )
    except ValidationError as exc:
        # Someone else decided since this page was drawn: the service refused, the card shows their decision.
        stale = Finding.objects.filter(pk=finding.pk).values_list("revision", flat=True).first() != data["revision"]
        return _answer(request, run, example, ok=False, message=" ".join(exc.messages), status=409 if stale else 400)
    except IntegrityError:
        # The same span is already a finding of the chosen kind (finding_unique_span).
        message = f"This text is already marked as {entity_label(data['entity_type']).lower()}; decide that one."
        return _answer(request, run, example, ok=False, message=message, status=400)
    kind = entity_label(finding.entity_type).lower()
    message = {
        Finding.Status.ACCEPTED: f"Will be redacted: this {kind} is replaced once the review is approved.",
        Finding.Status.REJECTED: f"Kept as is: this {kind} stays in the text.",
    }.get(finding.status, "Back to not reviewed.")
    if data["entity_type"]:
        message = f"Changed to {kind}. Will be redacted: it is replaced once the review is approved."
    return _answer(request, run, example, ok=True, message=message, status=200, anchor=f"finding-{finding.pk}")


@login_required
@permission_required(REVIEW_REDACTION, raise_exception=True)
@require_POST
def finding_add(request, run_id: int):
    run = _run_or_404(run_id)
    form = FindingAddForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{form.fields[name].label or name}: {' '.join(e)}" for name, e in form.errors.items())
        return _answer(request, run, None, ok=False, message=f"The span could not be added. {errors}", status=400)
    data = form.cleaned_data
    example = Example.objects.filter(pk=data["example"], version=run.version).first()
    if example is None:
        return _answer(request, run, None, ok=False, message="This row is not part of this review.", status=400)
    try:
        finding = services.finding_add(
            run=run,
            example=example,
            field=data["field"],
            start=data["start"],
            end=data["end"],
            entity_type=data["entity_type"],
            actor=request.user,
        )
    except ValidationError as exc:
        return _answer(request, run, example, ok=False, message=" ".join(exc.messages), status=400)
    kind = entity_label(finding.entity_type).lower()
    message = f"Added. Will be redacted: this {kind} is replaced once the review is approved."
    return _answer(request, run, example, ok=True, message=message, status=201, anchor=f"finding-{finding.pk}")


@login_required
@permission_required(REVIEW_REDACTION, raise_exception=True)
@require_POST
def findings_bulk(request, run_id: int):
    run = _run_or_404(run_id)
    form = BulkDecideForm(request.POST)
    back = _back(request, run)
    if not form.is_valid():
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            messages.error(request, f"{label + ': ' if label else ''}{' '.join(errors)}")
        return redirect(back)
    data = form.cleaned_data
    try:
        count = services.findings_bulk_decide(
            run=run,
            actor=request.user,
            status=data["status"],
            entity_type=data["entity_type"],
            min_score=data["min_score"],
            max_score=data["max_score"],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back)
    verb = "will be redacted" if data["status"] == Finding.Status.ACCEPTED else "kept as is"
    what = entity_label(data["entity_type"]).lower() if data["entity_type"] else "finding"
    if count:
        messages.success(request, f"{count:,} {what} finding{'s' if count != 1 else ''} {verb}.")
    else:
        messages.info(request, "No finding that is not yet reviewed matches; nothing changed.")
    return redirect(back)


@login_required
@permission_required(REVIEW_REDACTION, raise_exception=True)
@require_POST
def redaction_approve(request, run_id: int):
    run = _run_or_404(run_id)
    try:
        version = services.redaction_run_approve(run=run, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("curation:redaction_detail", run.pk)
    messages.success(
        request,
        f"Version {version.number} is ready: personal data replaced and approved. "
        "It can now be exported and used for training.",
    )
    return redirect("curation:version_detail", version.pk)


@login_required
@permission_required(VIEW_PSEUDONYMS, raise_exception=True)
@require_GET
@never_cache
def redaction_pseudonyms(request, run_id: int):
    """The original → made-up value map of an approved run; each opening is written to the audit log."""
    run = _run_or_404(run_id)
    mapping = services.pseudonyms_read(run=run, actor=request.user)
    return render(
        request,
        "curation/review_pseudonyms.html",
        {
            "run": run,
            "version": run.version,
            "dataset": run.version.dataset,
            "entries": sorted(mapping.items(), key=lambda item: item[0].casefold()),
        },
    )
