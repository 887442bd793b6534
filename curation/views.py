"""HTML pages for datasets: browse, export, curate, upload and import.

Views are thin: they load the object (404/403), check a form, call a service and redirect.
Services raise ValidationError with plain messages; they are shown next to the field or on top.
"""

from __future__ import annotations

import copy
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import CURATE, EXPORT, UPLOAD, VIEW_DATASETS, VIEW_EXAMPLES
from curation import formats, selectors, services
from curation.forms import (
    BrowseForm,
    DedupeForm,
    FilterForm,
    MappingForm,
    SplitForm,
    UploadForm,
    add_service_errors,
    parse_keep,
)
from curation.models import DatasetVersion, DedupeRun, Example, Split, TaskType, Upload
from curation.text import diff_segments
from projectsite.progress import progress_read

LIST_PAGE_SIZE = 50
PROBLEM_PAGE_SIZE = 50
GROUP_PAGE_SIZE = 20
STATS_SHOWN = 15
DUP_INPUT_CHARS = 600
DUP_TARGET_CHARS = 400


def _version_or_404(version_id: int) -> DatasetVersion:
    try:
        return selectors.version_ready_get(version_id)
    except DatasetVersion.DoesNotExist:
        raise Http404("No such version.") from None


def _top(counts: dict, limit: int = STATS_SHOWN) -> tuple[list[tuple[str, int]], int]:
    """The largest counts first, and how many more were left out."""
    items = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return items[:limit], max(len(items) - limit, 0)


def _download(chunks, *, filename: str, content_type: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


# --- datasets and versions -------------------------------------------------------------------


@login_required
@permission_required(VIEW_DATASETS, raise_exception=True)
def dataset_list(request):
    page = Paginator(selectors.dataset_list_summary(), LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "curation/dataset_list.html", {"page": page})


@login_required
@permission_required(VIEW_DATASETS, raise_exception=True)
def dataset_detail(request, dataset_id: int):
    dataset = get_object_or_404(selectors.dataset_list(), pk=dataset_id)
    versions = selectors.version_list(dataset).select_related("parent", "created_by")
    return render(request, "curation/dataset_detail.html", {"dataset": dataset, "versions": versions})


def _version_page(
    request,
    version: DatasetVersion,
    *,
    split_form=None,
    filter_form=None,
    dedupe_form=None,
    export_refused: str = "",
    status: int = 200,
):
    """The version page: statistics, downloads, curation steps and (with permission) the rows."""
    user = request.user
    stats = version.stats or {}
    classification = version.dataset.task_type == TaskType.CLASSIFICATION
    context = {
        "version": version,
        "dataset": version.dataset,
        "lineage": selectors.version_lineage(version),
        "split_counts": [(label, stats.get("splits", {}).get(value, 0)) for value, label in Split.choices],
        "labels": _top(stats.get("labels", {})),
        # Instruction/response rows show their label too when the upload mapped a label column.
        "label_column": classification or any(stats.get("labels", {})),
        "groups": _top({k: v for k, v in stats.get("groups", {}).items() if k}),
        "flags": sorted(stats.get("flags", {}).items()),
        "can_view_rows": user.has_perm(VIEW_EXAMPLES),
        "can_export": user.has_perm(EXPORT),
        "export_refused": export_refused,
        "can_curate": user.has_perm(CURATE),
    }
    if context["can_curate"]:
        context.update(
            split_form=split_form or SplitForm(version=version),
            filter_form=filter_form or FilterForm(classification=classification),
            dedupe_form=dedupe_form or DedupeForm(),
            dedupe_runs=selectors.dedupe_runs_of(version)[:5],
        )
    if context["can_view_rows"]:
        browse = BrowseForm(request.GET, stats=stats, flag_choices=selectors.flag_choices())
        filters = browse.filters()
        after, before = browse.position()
        rows, has_previous, has_next = selectors.example_page(
            selectors.example_search(version, **filters), after=after, before=before
        )
        query = {key: value for key, value in filters.items() if value}
        base = reverse("curation:version_detail", args=[version.pk])
        context.update(
            browse=browse,
            rows=rows,
            filtered=bool(query),
            previous_url=f"{base}?{urlencode({**query, 'before': rows[0].row_index})}" if rows and has_previous else "",
            next_url=f"{base}?{urlencode({**query, 'after': rows[-1].row_index})}" if rows and has_next else "",
            first_url=f"{base}?{urlencode(query)}" if has_previous else "",
        )
    return render(request, "curation/version_detail.html", context, status=status)


@login_required
@permission_required(VIEW_DATASETS, raise_exception=True)
def version_detail(request, version_id: int):
    return _version_page(request, _version_or_404(version_id))


@login_required
@permission_required(VIEW_EXAMPLES, raise_exception=True)
def example_detail(request, example_id: int):
    example = get_object_or_404(
        Example.objects.select_related("version__dataset"), pk=example_id, version__in=DatasetVersion.objects.ready()
    )
    return render(request, "curation/example_detail.html", {"example": example, "version": example.version})


@login_required
@permission_required(EXPORT, raise_exception=True)
@require_GET
def version_export(request, version_id: int, fmt: str):
    version = _version_or_404(version_id)
    try:
        chunks, filename, content_type = services.version_export(version=version, actor=request.user, fmt=fmt)
    except services.VersionNotApproved as error:
        # The page itself with the reason, never a file: a browser told to save the answer would otherwise
        # store this page as "download.html".
        return _version_page(request, version, export_refused=" ".join(error.messages), status=409)
    return _download(chunks, filename=filename, content_type=content_type)


@login_required
@permission_required(CURATE, raise_exception=True)
@require_POST
def version_split(request, version_id: int):
    version = _version_or_404(version_id)
    form = SplitForm(request.POST)
    if form.is_valid():
        try:
            new = services.version_split(
                version=version, actor=request.user, seed=form.cleaned_data["seed"], ratios=form.ratios()
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Version {new.number} is ready: the same rows with a new split.")
            return redirect("curation:version_detail", new.pk)
    return _version_page(request, version, split_form=form)


@login_required
@permission_required(CURATE, raise_exception=True)
@require_POST
def version_filter(request, version_id: int):
    version = _version_or_404(version_id)
    form = FilterForm(request.POST, classification=version.dataset.task_type == TaskType.CLASSIFICATION)
    if form.is_valid():
        try:
            new = services.version_filter(version=version, actor=request.user, **form.options())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            removed = version.row_count - new.row_count
            messages.success(
                request, f"Version {new.number} is ready: {removed:,} rows removed, {new.row_count:,} kept."
            )
            return redirect("curation:version_detail", new.pk)
    return _version_page(request, version, filter_form=form)


# --- deduplication ---------------------------------------------------------------------------


@login_required
@permission_required(CURATE, raise_exception=True)
@require_POST
def dedupe_start(request, version_id: int):
    version = _version_or_404(version_id)
    form = DedupeForm(request.POST)
    if form.is_valid():
        try:
            run = services.dedupe_run_start(
                version=version,
                actor=request.user,
                mode=form.cleaned_data["mode"],
                threshold=form.cleaned_data["threshold"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.info(
                request,
                f"Looking for duplicates in version {version.number}. Nothing changes until you choose the rows "
                "to keep and apply.",
            )
            return redirect("curation:dedupe_detail", run.pk)
    return _version_page(request, version, dedupe_form=form)


def _dedupe_progress(run: DedupeRun) -> dict:
    finished = run.status not in (DedupeRun.Status.QUEUED, DedupeRun.Status.RUNNING)
    return {
        "status": run.status,
        "label": run.get_status_display(),
        "fraction": run.progress,
        "eta_seconds": None,
        "rows": None,
        "finished": finished,
    }


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _group_differences(members: list[Example]) -> list[tuple[list, list]]:
    """Per row of a duplicate group, its input and target cut into pieces, marked where they differ from the
    group's first row (the first row: from the second), so the curator sees what sets the rows apart."""
    shown = [(_shorten(e.input, DUP_INPUT_CHARS), _shorten(e.target, DUP_TARGET_CHARS)) for e in members]
    differences = []
    for index, (text, target) in enumerate(shown):
        other_text, other_target = shown[1 if index == 0 and len(shown) > 1 else 0]
        differences.append((diff_segments(text, other_text), diff_segments(target, other_target)))
    return differences


def _keep_session_key(run: DedupeRun) -> str:
    return f"dedupe:{run.pk}:keep"


@login_required
@permission_required([CURATE, VIEW_EXAMPLES], raise_exception=True)
def dedupe_detail(request, run_id: int):
    run = get_object_or_404(DedupeRun.objects.select_related("version__dataset", "result_version"), pk=run_id)
    context = {
        "run": run,
        "version": run.version,
        "dataset": run.version.dataset,
        "run_progress": _dedupe_progress(run),
    }
    if run.status == DedupeRun.Status.DONE:
        page = Paginator(run.groups.all(), GROUP_PAGE_SIZE).get_page(request.GET.get("page"))
        chosen = request.session.get(_keep_session_key(run), {})
        context["page"] = page
        context["groups"] = [
            (
                group,
                [
                    (example, example.pk in chosen.get(str(group.pk), group.example_ids[:1]), *differences)
                    for example, differences in zip(members, _group_differences(members), strict=True)
                ],
            )
            for group, members in selectors.duplicate_groups_with_members(list(page.object_list))
        ]
        context["changed_groups"] = len(chosen)
    return render(request, "curation/dedupe_detail.html", context)


@login_required
@permission_required(CURATE, raise_exception=True)
@require_GET
@never_cache
def dedupe_progress(request, run_id: int):
    return JsonResponse(_dedupe_progress(get_object_or_404(DedupeRun, pk=run_id)))


@login_required
@permission_required([CURATE, VIEW_EXAMPLES], raise_exception=True)
@require_POST
def dedupe_apply(request, run_id: int):
    run = get_object_or_404(DedupeRun, pk=run_id)
    key = _keep_session_key(run)
    detail = reverse("curation:dedupe_detail", args=[run.pk])
    try:
        # Choices of every page seen so far live in the session until the curator applies them.
        chosen = {**request.session.get(key, {}), **{str(g): ids for g, ids in parse_keep(request.POST).items()}}
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(detail)
    request.session[key] = chosen
    goto = request.POST.get("goto", "")
    if goto.isdigit():
        return redirect(f"{detail}?page={goto}")
    try:
        new = services.dedupe_run_apply(
            run=run, actor=request.user, keep={int(group): ids for group, ids in chosen.items()}
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(f"{detail}?page={request.POST.get('page', 1)}")
    request.session.pop(key, None)
    removed = run.version.row_count - new.row_count
    messages.success(request, f"Version {new.number} is ready: {removed:,} duplicate rows removed.")
    return redirect("curation:version_detail", new.pk)


# --- uploads ---------------------------------------------------------------------------------


@login_required
@permission_required(UPLOAD, raise_exception=True)
def upload_list(request):
    page = Paginator(selectors.upload_list_for(request.user), LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "curation/upload_list.html", {"page": page})


@login_required
@permission_required(UPLOAD, raise_exception=True)
def upload_create(request):
    if request.method == "POST":
        # Reading the body first lets the upload handler say whether the file was too large.
        data, files = request.POST, request.FILES
        form = UploadForm(data, files, too_large=getattr(request, "upload_too_large", False))
        if form.is_valid():
            file = form.cleaned_data["file"]
            try:
                upload = services.upload_create(
                    actor=request.user,
                    file=file,
                    original_name=file.name,
                    dataset_name=form.cleaned_data["dataset_name"],
                    fmt=form.cleaned_data["format"] or None,
                    task_type=form.cleaned_data["task_type"],
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return redirect("curation:upload_detail", upload.pk)
        status = 413 if form.too_large else 200
        # Browsers never fill a file box again (a page cannot choose files for the person), so the page names
        # the file that was chosen and asks for it once more; the other fields come back as they were.
        chosen = files.get("file")
        chosen_name = Path(chosen.name).name if chosen else ""
    else:
        form = UploadForm()
        status = 200
        chosen_name = ""
    datasets = selectors.dataset_list().values_list("name", flat=True)
    context = {"form": form, "datasets": datasets, "chosen_name": chosen_name}
    return render(request, "curation/upload_create.html", context, status=status)


def _upload_or_404(request, upload_id: int) -> Upload:
    """Only the person who uploaded a file (or an admin) may see or act on it."""
    return get_object_or_404(selectors.upload_list_for(request.user), pk=upload_id)


def _preview(upload: Upload, form: MappingForm) -> dict:
    """The first rows with the form's mapping applied, or what is missing before they can be shown."""
    if form.is_bound and not form.is_valid():
        return {"errors": ["Fix the choices above to see the preview."]}
    mapping = form.mapping()
    task_type = form.cleaned_data["task_type"] if form.is_bound else upload.task_type
    try:
        mapping = services.mapping_clean(mapping=mapping, columns=upload.columns, task_type=task_type)
    except ValidationError as exc:
        return {"errors": exc.messages}
    # A copy carries the task type being tried; nothing is saved until "Check rows".
    trial = copy.copy(upload)
    trial.task_type = task_type
    try:
        rows = selectors.upload_preview(trial, mapping)
    except formats.FileRejected as exc:
        return {"errors": [str(exc)]}
    return {"rows": rows, "mapping": mapping, "classification": task_type == TaskType.CLASSIFICATION}


def _upload_progress(upload: Upload) -> dict:
    live = progress_read(services.upload_progress_key(upload.pk)) or {}
    finished = upload.status != Upload.Status.VALIDATING
    fraction = 1.0 if upload.status == Upload.Status.VALIDATED else live.get("fraction", upload.progress)
    return {
        "status": upload.status,
        "label": upload.get_status_display(),
        "fraction": fraction,
        "eta_seconds": None if finished else live.get("eta_seconds"),
        "rows": live.get("rows"),
        "finished": finished,
    }


def _upload_page(request, upload: Upload, *, form: MappingForm | None = None):
    context: dict = {"upload": upload}
    if upload.status == Upload.Status.UPLOADED:
        form = form or MappingForm(upload=upload)
        context.update(form=form, preview=_preview(upload, form))
    elif upload.status == Upload.Status.VALIDATING:
        context["progress"] = _upload_progress(upload)
    elif upload.status == Upload.Status.VALIDATED:
        context["problems"] = Paginator(upload.problems.all(), PROBLEM_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "curation/upload_detail.html", context)


@login_required
@permission_required(UPLOAD, raise_exception=True)
def upload_detail(request, upload_id: int):
    return _upload_page(request, _upload_or_404(request, upload_id))


@login_required
@permission_required(UPLOAD, raise_exception=True)
@require_GET
def upload_preview(request, upload_id: int):
    """The preview table alone, for the page to refresh while the curator changes the mapping."""
    upload = _upload_or_404(request, upload_id)
    if upload.status != Upload.Status.UPLOADED:
        raise Http404("The mapping of this upload can no longer change.")
    form = MappingForm(request.GET, upload=upload)
    return render(request, "curation/_upload_preview.html", {"preview": _preview(upload, form), "upload": upload})


@login_required
@permission_required(UPLOAD, raise_exception=True)
@require_POST
def upload_map(request, upload_id: int):
    """Save the mapping and start checking the rows; or, with the Preview button, only show the preview."""
    upload = _upload_or_404(request, upload_id)
    if upload.status != Upload.Status.UPLOADED:
        messages.info(request, f"This upload is already “{upload.get_status_display()}”.")
        return redirect("curation:upload_detail", upload.pk)
    form = MappingForm(request.POST, upload=upload)
    if form.is_valid() and request.POST.get("action") != "preview":
        try:
            upload = services.upload_set_mapping(
                upload=upload, actor=request.user, mapping=form.mapping(), task_type=form.cleaned_data["task_type"]
            )
            services.upload_start_validation(upload=upload, actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return redirect("curation:upload_detail", upload.pk)
    upload.refresh_from_db()
    if upload.status != Upload.Status.UPLOADED:
        for error in form.non_field_errors():
            messages.error(request, error)
        return redirect("curation:upload_detail", upload.pk)
    return _upload_page(request, upload, form=form)


@login_required
@permission_required(UPLOAD, raise_exception=True)
@require_GET
@never_cache
def upload_progress(request, upload_id: int):
    return JsonResponse(_upload_progress(_upload_or_404(request, upload_id)))


@login_required
@permission_required(UPLOAD, raise_exception=True)
@require_POST
def upload_cancel(request, upload_id: int):
    upload = _upload_or_404(request, upload_id)
    was_checking = upload.status == Upload.Status.VALIDATING
    try:
        services.upload_cancel(upload=upload, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if was_checking:
            messages.info(request, "Stopping the check. Nothing from this file will be imported.")
        else:
            messages.success(request, "The upload is cancelled. Nothing from this file was imported.")
    return redirect("curation:upload_detail", upload.pk)


@login_required
@permission_required(UPLOAD, raise_exception=True)
@require_POST
def upload_commit(request, upload_id: int):
    upload = _upload_or_404(request, upload_id)
    try:
        version = services.upload_commit(upload=upload, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("curation:upload_detail", upload.pk)
    messages.success(
        request, f"Imported {version.row_count:,} rows into “{version.dataset.name}” as version {version.number}."
    )
    return redirect("curation:version_detail", version.pk)


@login_required
@permission_required(UPLOAD, raise_exception=True)
@require_GET
def upload_report(request, upload_id: int):
    upload = _upload_or_404(request, upload_id)
    stem = slugify(Path(upload.original_name).stem) or "upload"
    return _download(
        selectors.upload_report_csv(upload),
        filename=f"{stem}-rejected-rows.csv",
        content_type="text/csv; charset=utf-8",
    )
