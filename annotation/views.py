"""HTML pages for annotation: projects, label schemas, the labelling page, review, publishing and Label Studio.

Views are thin: they load the object (404/403), read the form, call a service in annotation.services and redirect.
Services raise ValidationError with plain messages (AnnotationConflict when another tab or an expired reservation got
in the way); they are shown next to the field or on top of the page, and what the person typed is shown again.

The labelling page works without JavaScript: the answer is a form, Skip and Undo are its other buttons. label.js adds
the keyboard shortcuts, the autosave of drafts (``assignment_draft``, JSON), the timer of visible seconds, and a
Submit without a page load (``label_submit`` answers JSON holding the next example's page when asked for JSON).
Annotators only ever see their own answers there; the answers of everyone are on the task page, for reviewers.
"""

from __future__ import annotations

import contextlib
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.roles import (
    ADJUDICATE,
    ANNOTATE,
    MANAGE_LABEL_STUDIO,
    MANAGE_PROJECTS,
    VIEW_ANSWERS,
    VIEW_DATASETS,
    VIEW_PROJECTS,
)
from annotation import presenters, selectors, services
from annotation import schema as schemas
from annotation.forms import (
    LabelStudioConnectionForm,
    ProjectForm,
    PublishForm,
    SchemaForm,
    answer_from_post,
    revision_from_post,
    seconds_from_post,
)
from annotation.models import AnnotationProject, Assignment, LabelSchema, PublishRun, Task
from annotation.services import AnnotationConflict
from curation import selectors as curation_selectors
from curation.forms import add_service_errors
from projectsite.errors import error_messages, error_text

PROJECTS_PER_PAGE = 25
TASKS_PER_PAGE = 50

SHORTCUTS = (
    ("Enter", "submit the answer (Ctrl+Enter inside a text box)"),
    ("S", "skip this example"),
    ("U", "undo your last submission"),
    ("C", "write in the text box, after its text"),
    ("Esc", "leave the text box, so the keys work again"),
    ("Tab", "move to the next field"),
)


# --- loading objects -----------------------------------------------------------------------------------------------


def _project_or_404(project_id: int) -> AnnotationProject:
    project = selectors.project_list().filter(pk=project_id).first()
    if project is None:
        raise Http404("No such annotation project.")
    return project


def _task_or_404(task_id: int) -> Task:
    return get_object_or_404(
        Task.objects.select_related("project__version__dataset", "example", "adjudicated_by"), pk=task_id
    )


def _own_assignment_or_404(request, project: AnnotationProject | None, assignment_id) -> Assignment:
    """One of the signed-in annotator's own reservations: anyone else's is "not found", not "forbidden"."""
    try:
        pk = int(assignment_id)
    except (TypeError, ValueError):
        raise Http404("No such example reserved for you.") from None
    assignments = selectors.assignments_of(request.user).select_related("task__project")
    if project is not None:
        assignments = assignments.filter(task__project=project)
    assignment = assignments.filter(pk=pk).first()
    if assignment is None:
        raise Http404("No such example reserved for you.")
    return assignment


def _error_dict(exc: ValidationError) -> dict[str, str]:
    """{field name or "__all__": one sentence} from a service's ValidationError."""
    return {name: " ".join(errors) for name, errors in error_messages(exc).items()}


def _label_studio_services():
    """The Label Studio services, or None when this installation does not have them yet."""
    try:
        from annotation import services_label_studio
    except ImportError:
        return None
    return services_label_studio


# --- projects ------------------------------------------------------------------------------------------------------


@login_required
@permission_required(VIEW_PROJECTS, raise_exception=True)
def project_list(request):
    page = Paginator(selectors.project_list(), PROJECTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [{"project": project, "progress": selectors.project_progress(project, request.user)} for project in page]
    return render(
        request,
        "annotation/project_list.html",
        {
            "page": page,
            "rows": rows,
            "can_manage": request.user.has_perm(MANAGE_PROJECTS),
            "can_annotate": request.user.has_perm(ANNOTATE),
            "can_manage_label_studio": request.user.has_perm(MANAGE_LABEL_STUDIO),
        },
    )


@login_required
@permission_required(MANAGE_PROJECTS, raise_exception=True)
def project_create(request):
    if request.method == "POST":
        form = ProjectForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                project = services.annotation_project_create(
                    name=data["name"],
                    version=data["version"],
                    actor=request.user,
                    annotations_per_example=data["annotations_per_example"],
                    reservation_minutes=data["reservation_minutes"],
                    limit=data["limit"],
                    gold_count=data["gold_count"] or 0,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(
                    request, f"Project “{project.name}” is open: {project.task_count:,} examples to annotate."
                )
                return redirect("annotation:project_detail", project.pk)
    else:
        form = ProjectForm(initial={"version": request.GET.get("version")})
    # Which datasets of the approved versions have a label schema: a project needs one.
    datasets = {}
    for version in form.fields["version"].queryset.filter(privacy="approved").select_related("dataset__label_schema"):
        datasets.setdefault(version.dataset.pk, version.dataset)
    schema_rows = [
        {"dataset": dataset, "has_schema": hasattr(dataset, "label_schema")}
        for dataset in sorted(datasets.values(), key=lambda d: d.name.lower())
    ]
    return render(
        request,
        "annotation/project_form.html",
        {"form": form, "has_versions": form.has_versions, "schema_rows": schema_rows},
    )


def _label_studio_block(project: AnnotationProject, request) -> dict:
    module = _label_studio_services()
    if module is None:
        return {"available": False}
    connection = module.label_studio_connection_get()
    return {
        "available": True,
        "connection": connection,
        "last_pull": request.session.get(f"annotation-pull-{project.pk}"),
    }


@login_required
@permission_required(VIEW_PROJECTS, raise_exception=True)
def project_detail(request, project_id: int):
    project = _project_or_404(project_id)
    user = request.user
    can_manage = user.has_perm(MANAGE_PROJECTS)
    agreement = selectors.project_agreement(project)
    context = {
        "project": project,
        "version": project.version,
        "dataset": project.version.dataset,
        "progress": selectors.project_progress(project, user),
        "agreement_fields": presenters.agreement_fields(agreement, with_counts=user.has_perm(VIEW_ANSWERS)),
        "annotators": agreement["annotators"] if user.has_perm(VIEW_ANSWERS) else [],
        "gold_examples": agreement["gold_examples"],
        "published": selectors.published_versions(project),
        "can_manage": can_manage,
        "can_view_answers": user.has_perm(VIEW_ANSWERS),
        "can_adjudicate": user.has_perm(ADJUDICATE),
        "can_annotate": user.has_perm(ANNOTATE),
        "can_view_datasets": user.has_perm(VIEW_DATASETS),
        "can_manage_label_studio": user.has_perm(MANAGE_LABEL_STUDIO),
        "publish_form": PublishForm(),
        "publish": presenters.publish_summary(selectors.publish_run_latest(project)) if can_manage else {},
        "label_studio": _label_studio_block(project, request) if can_manage else {},
        "instructions": project.schema.get("instructions", ""),
        "schema_rows": [
            {
                "title": field["title"],
                "kind": field["kind"],
                "required": field["required"],
                "values": ", ".join(field["options"])
                if field["kind"] == "choice"
                else (f"1 to {field['scale']}" if field["kind"] == "rating" else "free text"),
                "writes": field["writes"],
            }
            for field in project.schema["fields"]
        ],
    }
    return render(request, "annotation/project_detail.html", context)


@login_required
@permission_required(MANAGE_PROJECTS, raise_exception=True)
@require_POST
def project_publish(request, project_id: int):
    project = _project_or_404(project_id)
    form = PublishForm(request.POST)
    form.is_valid()  # two check boxes: nothing can be invalid
    try:
        services.publish_run_start(
            project=project,
            actor=request.user,
            finish=form.cleaned_data.get("finish", False),
            settled_only=form.cleaned_data.get("settled_only", False),
        )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect(reverse("annotation:project_detail", args=[project.pk]) + "#publish-title")


@login_required
@permission_required(VIEW_PROJECTS, raise_exception=True)
@never_cache
def publish_progress(request, run_id: int):
    return JsonResponse(presenters.publish_run_progress(get_object_or_404(PublishRun, pk=run_id)))


@login_required
@permission_required(MANAGE_PROJECTS, raise_exception=True)
@require_POST
def project_reopen(request, project_id: int):
    project = services.annotation_project_reopen(project=_project_or_404(project_id), actor=request.user)
    messages.success(request, f"“{project.name}” is open again: annotators can add answers.")
    return redirect("annotation:project_detail", project.pk)


# --- label schema --------------------------------------------------------------------------------------------------


@login_required
@permission_required(MANAGE_PROJECTS, raise_exception=True)
def schema_edit(request, dataset_id: int):
    dataset = get_object_or_404(curation_selectors.dataset_list(), pk=dataset_id)
    saved = LabelSchema.objects.filter(dataset=dataset).select_related("updated_by").first()
    if request.method == "POST":
        form = SchemaForm(request.POST)
        if form.is_valid():
            try:
                services.label_schema_save(dataset=dataset, schema=form.cleaned_data["schema"], actor=request.user)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"The label schema of {dataset.name} is saved. New projects use it; "
                    "projects already running keep the schema they started with.",
                )
                return redirect("annotation:schema_edit", dataset.pk)
    else:
        current = saved.schema if saved else services.default_schema(dataset)
        form = SchemaForm(initial={"schema": json.dumps(current, indent=2, ensure_ascii=False)})
    keys = []
    if saved:
        titles = {field["name"]: field["title"] for field in saved.schema["fields"]}
        keys = [(titles[name], list(options.items())) for name, options in schemas.hotkeys(saved.schema).items()]
    return render(
        request,
        "annotation/schema_form.html",
        {"dataset": dataset, "form": form, "saved": saved, "keys": keys},
    )


# --- labelling -----------------------------------------------------------------------------------------------------


def _initial_values(assignment: Assignment) -> dict:
    """What the fields start with: the draft (a reservation that ran out hands its draft to the next one), else the
    example's current target in the field that writes the target."""
    if assignment.draft:
        return assignment.draft
    example = assignment.task.example
    return {
        field["name"]: example.target
        for field in assignment.task.project.schema["fields"]
        if field["kind"] == "text" and field["writes"] == "target" and example.target
    }


def _label_page(
    request,
    project: AnnotationProject,
    assignment: Assignment | None,
    *,
    values: dict | None = None,
    errors: dict | None = None,
    conflict: str = "",
    status: int = 200,
):
    progress = selectors.project_progress(project, request.user)
    has_text = any(field["kind"] == "text" for field in project.schema["fields"])
    can_undo = progress.get("mine", {}).get("answers", 0) > 0
    hidden = {*(() if has_text else ("C", "Esc")), *(() if can_undo else ("U",))}
    context = {
        "project": project,
        "progress": progress,
        "assignment": assignment,
        "shortcuts": [(key, what) for key, what in SHORTCUTS if key not in hidden],
        "instructions": project.schema.get("instructions", ""),
        "conflict": conflict,
        "errors_all": (errors or {}).get("__all__", ""),
        "has_errors": bool(errors),
        "can_undo": can_undo,
    }
    if assignment is not None:
        example = assignment.task.example
        has_target_field = any(f["kind"] == "text" and f["writes"] == "target" for f in project.schema["fields"])
        context.update(
            task=assignment.task,
            example=example,
            original_target=example.target,
            target_in_field=has_target_field,
            widgets=presenters.answer_widgets(
                project.schema,
                _initial_values(assignment) if values is None else values,
                errors or {},
                keys=schemas.hotkeys(project.schema),
            ),
            still_reserved=assignment.status == Assignment.Status.ACTIVE and assignment.expires_at > timezone.now(),
        )
    return render(request, "annotation/label.html", context, status=status)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _page_as_json(page, *, ok: bool, message: str = "") -> JsonResponse:
    """The labelling page for label.js, which swaps its #label-page in place instead of loading the page."""
    return JsonResponse({"ok": ok, "message": message, "html": page.content.decode()}, status=page.status_code)


def _go_on_json(request, project: AnnotationProject, message: str) -> JsonResponse:
    """``_go_on`` for label.js: the next example's page, or where to go when there is none (with the message)."""
    try:
        assignment = services.assignment_next(project=project, annotator=request.user)
    except ValidationError as exc:
        messages.success(request, message)
        messages.info(request, error_text(exc))
        return JsonResponse({"ok": True, "redirect": reverse("annotation:project_detail", args=[project.pk])})
    if assignment is None:
        messages.success(request, message)
        return JsonResponse({"ok": True, "redirect": reverse("annotation:label_done", args=[project.pk])})
    return _page_as_json(_label_page(request, project, assignment), ok=True, message=message)


def _go_on(request, project: AnnotationProject):
    """Reserve the next example and show it, or say that nothing is left."""
    try:
        assignment = services.assignment_next(project=project, annotator=request.user)
    except ValidationError as exc:
        messages.info(request, error_text(exc))
        return redirect("annotation:project_detail", project.pk)
    if assignment is None:
        return redirect("annotation:label_done", project.pk)
    return redirect("annotation:label", project.pk)


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@never_cache
def label(request, project_id: int):
    """The example reserved for the annotator, or a button to get the next one (reserving is a POST)."""
    project = _project_or_404(project_id)
    assignment = services.assignment_current(project=project, annotator=request.user) if project.is_open else None
    return _label_page(request, project, assignment)


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@require_POST
def label_next(request, project_id: int):
    return _go_on(request, _project_or_404(project_id))


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@never_cache
def label_done(request, project_id: int):
    project = _project_or_404(project_id)
    if project.is_open and services.assignment_current(project=project, annotator=request.user):
        return redirect("annotation:label", project.pk)
    return render(
        request,
        "annotation/label_done.html",
        {
            "project": project,
            "progress": selectors.project_progress(project, request.user, timing=True),
            "can_adjudicate": request.user.has_perm(ADJUDICATE),
        },
    )


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@require_POST
def label_submit(request, project_id: int):
    project = _project_or_404(project_id)
    assignment = _own_assignment_or_404(request, project, request.POST.get("assignment"))
    answer = answer_from_post(project.schema, request.POST)
    try:
        services.annotation_submit(
            assignment=assignment,
            annotator=request.user,
            answer=answer,
            active_seconds=seconds_from_post(request.POST.get("active_seconds")),
        )
    except AnnotationConflict as exc:
        assignment.refresh_from_db()
        page = _label_page(request, project, assignment, values=answer, conflict=error_text(exc), status=409)
        return _page_as_json(page, ok=False, message=error_text(exc)) if _wants_json(request) else page
    except ValidationError as exc:
        page = _label_page(request, project, assignment, values=answer, errors=_error_dict(exc), status=400)
        return _page_as_json(page, ok=False, message="The answer could not be saved.") if _wants_json(request) else page
    message = f"Your answer to example {assignment.task.position + 1} is saved."
    if _wants_json(request):
        return _go_on_json(request, project, message)
    messages.success(request, message)
    return _go_on(request, project)


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@require_POST
def label_skip(request, project_id: int):
    project = _project_or_404(project_id)
    assignment = _own_assignment_or_404(request, project, request.POST.get("assignment"))
    try:
        services.assignment_skip(assignment=assignment, annotator=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.info(request, f"Example {assignment.task.position + 1} skipped: it goes to someone else.")
    return _go_on(request, project)


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@require_POST
def label_undo(request, project_id: int):
    """Take back the last submission. What is typed in the current example is kept as its draft first."""
    project = _project_or_404(project_id)
    if request.POST.get("assignment"):
        current = _own_assignment_or_404(request, project, request.POST.get("assignment"))
        # The reservation may have ended or a value be outside the schema: then there is no draft worth keeping.
        with contextlib.suppress(ValidationError):
            services.assignment_draft_save(
                assignment=current,
                annotator=request.user,
                draft=answer_from_post(project.schema, request.POST),
                active_seconds=seconds_from_post(request.POST.get("active_seconds")),
            )
    try:
        assignment = services.annotation_undo(project=project, annotator=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.info(
            request, f"Your answer to example {assignment.task.position + 1} is taken back: change it and submit again."
        )
    return redirect("annotation:label", project.pk)


@login_required
@permission_required(ANNOTATE, raise_exception=True)
@require_POST
@never_cache
def assignment_draft(request, assignment_id: int):
    """Autosave (JSON): the half-written answer with the page's revision; 409 with the newer draft after another
    tab saved, 409 with a message when the reservation ended, 400 for a value outside the schema."""
    assignment = _own_assignment_or_404(request, None, assignment_id)
    project = assignment.task.project
    revision = revision_from_post(request.POST.get("revision"))
    try:
        saved = services.assignment_draft_save(
            assignment=assignment,
            annotator=request.user,
            draft=answer_from_post(project.schema, request.POST),
            revision=revision,
            active_seconds=seconds_from_post(request.POST.get("active_seconds")),
        )
    except AnnotationConflict as exc:
        assignment.refresh_from_db()
        data = {"ok": False, "message": error_text(exc)}
        still_mine = assignment.status == Assignment.Status.ACTIVE and assignment.expires_at > timezone.now()
        if still_mine and revision is not None and revision != assignment.revision:
            data.update(draft=assignment.draft, revision=assignment.revision)
        return JsonResponse(data, status=409)
    except ValidationError as exc:
        errors = _error_dict(exc)
        return JsonResponse({"ok": False, "message": " ".join(errors.values()), "errors": errors}, status=400)
    return JsonResponse(
        {
            "ok": True,
            "revision": saved.revision,
            "saved_at": timezone.localtime(saved.draft_saved_at).strftime("%H:%M:%S"),
        }
    )


# --- review --------------------------------------------------------------------------------------------------------

# The session keys of the offer to undo the decision a reviewer just made (see task_adjudicate): made by the decision,
# moved to "offered" by the next page, which shows it once; the Undo button uses the offered one.
UNDO_SESSION_KEY = "annotation:settle-undo"
UNDO_OFFERED_KEY = "annotation:settle-undo-offered"


def _undo_offer(request, project: AnnotationProject) -> dict | None:
    offer = request.session.pop(UNDO_SESSION_KEY, None)
    if not offer or offer["project"] != project.pk:
        return None
    request.session[UNDO_OFFERED_KEY] = offer
    return offer


REVIEW_FILTERS = (
    ("disagreement", "Disagreements"),
    ("all", "All examples"),
    ("agreed", "Agreed"),
    ("adjudicated", "Settled by a reviewer"),
    ("open", "Still being annotated"),
    ("gold", "Gold examples"),
)


@login_required
@permission_required(ADJUDICATE, raise_exception=True)
def review_queue(request, project_id: int):
    project = _project_or_404(project_id)
    show = request.GET.get("show", "disagreement")
    if show not in dict(REVIEW_FILTERS):
        show = "disagreement"
    if show == "disagreement":
        tasks = selectors.review_queue(project)
    elif show == "gold":
        tasks = selectors.project_tasks(project).filter(is_gold=True)
    else:
        tasks = selectors.project_tasks(project, status=None if show == "all" else show)
    page = Paginator(tasks, TASKS_PER_PAGE).get_page(request.GET.get("page"))
    titles = {field["name"]: field["title"] for field in project.schema["fields"]}
    rows = [{"task": task, "fields": [titles.get(name, name) for name in task.disagreements]} for task in page]
    undo = _undo_offer(request, project)
    return render(
        request,
        "annotation/review_queue.html",
        {
            "project": project,
            "page": page,
            "rows": rows,
            "show": show,
            "filters": REVIEW_FILTERS,
            "progress": selectors.project_progress(project),
            "extra": f"show={show}",
            "undo": undo,
        },
    )


def _task_page(request, task: Task, *, values: dict | None = None, errors: dict | None = None, status: int = 200):
    project = task.project
    schema = project.schema
    annotations = list(task.annotations.all())
    if values is None:
        if task.answer:
            values = task.answer
        elif task.is_gold and task.gold_answer:
            values = task.gold_answer
        else:
            # The fields the annotators agree on start filled in; the ones they disagree on are for the reviewer.
            values, _ = schemas.resolve(schema, [a.answer for a in annotations]) if annotations else ({}, [])
    disagreements = set(task.disagreements or [])
    answer_table = [
        {
            "title": field["title"],
            "disagree": field["name"] in disagreements,
            "cells": [presenters.answer_rows({"fields": [field]}, a.answer)[0][1] for a in annotations],
        }
        for field in schema["fields"]
    ]
    queue = selectors.review_queue(project).exclude(pk=task.pk).values_list("pk", flat=True)
    undo = _undo_offer(request, project)
    return render(
        request,
        "annotation/task_detail.html",
        {
            "project": project,
            "task": task,
            "example": task.example,
            "annotations": annotations,
            "answer_table": answer_table,
            "widgets": presenters.answer_widgets(schema, values, errors or {}),
            "errors_all": (errors or {}).get("__all__", ""),
            "instructions": schema.get("instructions", ""),
            "settled_rows": presenters.answer_rows(schema, task.answer) if task.answer else [],
            "gold_rows": presenters.answer_rows(schema, task.gold_answer) if task.is_gold else [],
            "next_task": queue.first(),
            "remaining": queue.count(),
            "undo": undo,
        },
        status=status,
    )


@login_required
@permission_required(ADJUDICATE, raise_exception=True)
def task_detail(request, task_id: int):
    return _task_page(request, _task_or_404(task_id))


def _posted_answer(request, task: Task) -> dict:
    """The answer of one annotator ("use this answer") or the one typed in the form."""
    use = request.POST.get("use")
    if use:
        annotation = task.annotations.filter(pk=use if str(use).isdigit() else 0).first()
        if annotation is None:
            raise Http404("No such answer to this example.")
        return annotation.answer
    return answer_from_post(task.project.schema, request.POST)


@login_required
@permission_required(ADJUDICATE, raise_exception=True)
@require_POST
def task_adjudicate(request, task_id: int):
    task = _task_or_404(task_id)
    answer = _posted_answer(request, task)
    try:
        settled = services.task_adjudicate(
            task=task, actor=request.user, answer=answer, settled_seen=request.POST.get("settled_seen")
        )
    except AnnotationConflict as exc:
        # Their answer is on the page now; the form keeps this reviewer's, to save again on purpose.
        return _task_page(request, _task_or_404(task_id), values=answer, errors=_error_dict(exc), status=409)
    except ValidationError as exc:
        return _task_page(request, task, values=answer, errors=_error_dict(exc), status=400)
    # The next page offers to take this decision back (once): what it replaced, and the stamp it made.
    request.session[UNDO_SESSION_KEY] = {
        "project": task.project_id,
        "task": task.pk,
        "position": task.position + 1,
        "previous": settled.undo,
        "stamp": settled.settled_stamp,
    }
    following = selectors.review_queue(task.project).exclude(pk=task.pk).first()
    if following is not None:
        messages.success(request, f"Example {task.position + 1} is settled. Here is the next disagreement.")
        return redirect("annotation:task_detail", following.pk)
    messages.success(request, f"Example {task.position + 1} is settled. No disagreement is left to review.")
    return redirect("annotation:review_queue", task.project_id)


@login_required
@permission_required(ADJUDICATE, raise_exception=True)
@require_POST
def task_adjudicate_undo(request, task_id: int):
    """Take back the decision just made on this example (offered once, on the page after it)."""
    task = _task_or_404(task_id)
    offer = request.session.pop(UNDO_OFFERED_KEY, None) or request.session.pop(UNDO_SESSION_KEY, None)
    if not offer or offer["task"] != task.pk:
        messages.error(request, "There is no decision on this example to undo here; change its final answer below.")
        return redirect("annotation:task_detail", task.pk)
    try:
        services.task_adjudicate_undo(
            task=task, actor=request.user, previous=offer["previous"], settled_seen=offer["stamp"]
        )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Your decision on example {task.position + 1} is undone: decide it again.")
    return redirect("annotation:task_detail", task.pk)


@login_required
@permission_required(ADJUDICATE, raise_exception=True)
@require_POST
def task_gold(request, task_id: int):
    task = _task_or_404(task_id)
    unmark = request.POST.get("gold") == "unmark"
    answer = None if unmark else _posted_answer(request, task)
    try:
        services.task_gold_set(task=task, actor=request.user, answer=answer)
    except ValidationError as exc:
        return _task_page(request, task, values=answer, errors=_error_dict(exc), status=400)
    if unmark:
        messages.success(request, f"Example {task.position + 1} is no longer a gold example.")
    else:
        messages.success(
            request,
            f"Example {task.position + 1} is a gold example: annotators' answers to it are "
            "checked against this answer.",
        )
    return redirect("annotation:task_detail", task.pk)


# --- Label Studio --------------------------------------------------------------------------------------------------


@login_required
@permission_required(MANAGE_LABEL_STUDIO, raise_exception=True)
def label_studio_settings(request):
    module = _label_studio_services()
    connection = module.label_studio_connection_get() if module else None
    if request.method == "POST" and module is not None:
        form = LabelStudioConnectionForm(request.POST)
        if form.is_valid():
            try:
                module.label_studio_connection_save(
                    url=form.cleaned_data["url"], token=form.cleaned_data["token"], actor=request.user
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Connected: Tuning Desk can reach your Label Studio with this token.")
                return redirect("annotation:label_studio_settings")
    else:
        form = LabelStudioConnectionForm(initial={"url": connection.url if connection else ""})
    return render(
        request,
        "annotation/label_studio_settings.html",
        {
            "form": form,
            "connection": connection,
            "available": module is not None,
        },
    )


def _label_studio_action(request, project_id: int, action: str):
    project = _project_or_404(project_id)
    module = _label_studio_services()
    if module is None:
        messages.error(request, "Label Studio is not available in this installation yet.")
        return redirect("annotation:project_detail", project.pk)
    try:
        if action == "push":
            module.label_studio_push(project=project, actor=request.user)
        else:
            report = module.label_studio_pull(project=project, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        if action == "push":
            messages.success(
                request,
                "The examples are in Label Studio. Annotators can work there; use “Bring "
                "answers back” to count their answers here.",
            )
        else:
            text = str(report.get("message", "Answers brought back from Label Studio."))
            request.session[f"annotation-pull-{project.pk}"] = {
                "message": text,
                "at": timezone.localtime().strftime("%d %B %Y, %H:%M"),
            }
            messages.success(request, text)
    return redirect(reverse("annotation:project_detail", args=[project.pk]) + "#label-studio")


@login_required
@permission_required(MANAGE_PROJECTS, raise_exception=True)
@require_POST
def label_studio_push(request, project_id: int):
    return _label_studio_action(request, project_id, "push")


@login_required
@permission_required(MANAGE_PROJECTS, raise_exception=True)
@require_POST
def label_studio_pull(request, project_id: int):
    return _label_studio_action(request, project_id, "pull")
