"""HTML pages for evaluation: the KPI dashboard and its import, evaluation runs, side-by-side comparison, and the
promotion of models through each use case's gate.

Views are thin: they load the object (404/403), check a form, call a service and redirect. Stored figures
become words and numbers a manager reads at a glance in evaluation.presenters.
Row text (inputs, references, outputs) is shown only to people who may read examples (VIEW_EXAMPLES).
"""

from __future__ import annotations

import csv
import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header, urlencode
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import (
    IMPORT_KPIS,
    PROMOTE,
    RUN_EVALUATIONS,
    VIEW_EVALUATIONS,
    VIEW_EXAMPLES,
    VIEW_KPIS,
    VIEW_MODELS,
    VIEW_USE_CASES,
)
from curation.forms import add_service_errors
from curation.models import TaskType
from evaluation import presenters, selectors, services
from evaluation.forms import (
    CompareChoice,
    DashboardFilterForm,
    KpiImportForm,
    PromoteForm,
    RescoreForm,
    RunForm,
    kpi_model_names,
)
from evaluation.models import EvalRun, Kpi, KpiImportRun, Pilot, RetrainRun, UseCase
from training.models import TrainedModel

LIST_PAGE_SIZE = 50
PREDICTION_PAGE_SIZE = 50
CANDIDATES_SHOWN = 10
CANDIDATE_TABLES_OPEN = 3


# --- KPI dashboard -------------------------------------------------------------------------------


def _dashboard_filters(request) -> tuple[DashboardFilterForm, dict]:
    form = DashboardFilterForm(request.GET or None, segments=selectors.kpi_segments(), models=kpi_model_names())
    return form, form.filters()


@login_required
@permission_required(VIEW_KPIS, raise_exception=True)
def dashboard(request):
    form, filters = _dashboard_filters(request)
    productions = set(selectors.production_model_names())
    query = {key: value for key, value in filters.items() if value}
    context = {
        "form": form,
        "cards": presenters.dashboard_cards(selectors.kpi_dashboard(**filters), productions),
        "filtered": bool(query),
        "json_url_query": urlencode({k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in query.items()}),
        "has_kpis": Kpi.objects.exists(),
        "can_import": request.user.has_perm(IMPORT_KPIS),
        "pilots": [
            {
                "name": pilot.name,
                "baseline": pilot.baseline,
                "candidate": pilot.candidate,
                "period_start": pilot.period_start,
                "period_end": pilot.period_end,
                "segment": pilot.segment,
                "rows": selectors.pilot_results(pilot),
            }
            for pilot in Pilot.objects.all()[:10]
        ],
    }
    return render(request, "evaluation/dashboard.html", context)


@login_required
@permission_required(VIEW_KPIS, raise_exception=True)
@require_GET
@never_cache
def dashboard_json(request):
    """The charts' data: selectors.kpi_dashboard for the filters in the address, as it returns it."""
    _, filters = _dashboard_filters(request)
    return JsonResponse(
        {
            "filters": {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in filters.items()},
            "kpis": selectors.kpi_dashboard(**filters),
        }
    )


@login_required
@permission_required(IMPORT_KPIS, raise_exception=True)
def kpi_import(request):
    """A file goes to the worker and the page follows it; pasted rows (a few thousand at most) are imported at once."""
    problems: list[dict] = []
    status = 200
    if request.method == "POST":
        form = KpiImportForm(request.POST, request.FILES, too_large=getattr(request, "upload_too_large", False))
        if form.is_valid() and form.cleaned_data.get("file"):
            try:
                run = services.kpi_import_run_start(file=form.cleaned_data["file"], actor=request.user)
            except ValidationError as exc:
                add_service_errors(form, exc)
                status = 400
            else:
                return redirect("evaluation:kpi_import_run", run.pk)
        elif form.is_valid():
            try:
                result = services.kpi_import_csv(text=form.cleaned_data["csv_text"], actor=request.user)
            except ValidationError as exc:
                add_service_errors(form, exc)
                status = 400
            else:
                if not result["problems"]:
                    count = result["imported"]
                    messages.success(request, f"Imported {count:,} KPI figure{'s' if count != 1 else ''}.")
                    return redirect("evaluation:dashboard")
                problems = result["problems"]
                status = 400
        else:
            status = 400
    else:
        form = KpiImportForm()
    context = {
        "form": form,
        "problems": problems,
        "kpis": Kpi.objects.all(),
        "columns": services.KPI_COLUMNS,
    }
    return render(request, "evaluation/kpi_import.html", context, status=status)


def _kpi_import_run_or_404(run_id: int) -> KpiImportRun:
    run = KpiImportRun.objects.select_related("created_by").filter(pk=run_id).first()
    if run is None:
        raise Http404("There is no such KPI import.")
    return run


@login_required
@permission_required(IMPORT_KPIS, raise_exception=True)
@never_cache
def kpi_import_run(request, run_id: int):
    """A KPI file being imported: a progress bar while the worker goes, then what was imported or what to fix."""
    run = _kpi_import_run_or_404(run_id)
    context = {"run": run, "progress": selectors.kpi_import_run_progress(run), "problems": run.problems}
    return render(request, "evaluation/kpi_import_run.html", context)


@login_required
@permission_required(IMPORT_KPIS, raise_exception=True)
@require_GET
@never_cache
def kpi_import_run_progress_json(request, run_id: int):
    return JsonResponse(selectors.kpi_import_run_progress(_kpi_import_run_or_404(run_id)))


# --- evaluation runs -----------------------------------------------------------------------------


def _run_or_404(run_id: int) -> EvalRun:
    try:
        return selectors.run_get(run_id)
    except EvalRun.DoesNotExist:
        raise Http404("No such evaluation.") from None


def _evaluated_names() -> list[str]:
    """Names of the models with at least one finished evaluation, for the comparison's lists."""
    rows = (
        EvalRun.objects.filter(status=EvalRun.Status.SUCCEEDED)
        .values_list("kind", "trained_model__name", "base_model__name", "endpoint__name")
        .order_by()
        .distinct()
    )
    names = set()
    for kind, trained, base, endpoint in rows:
        names.add({EvalRun.Kind.ADAPTER: trained, EvalRun.Kind.ENDPOINT: endpoint}.get(kind, base))
    return sorted(name for name in names if name)


@login_required
@permission_required(VIEW_EVALUATIONS, raise_exception=True)
def run_list(request):
    status = request.GET.get("status", "")
    status = status if status in EvalRun.Status.values else ""
    subject = request.GET.get("model", "").strip()
    page = Paginator(selectors.run_list(status=status, subject=subject), LIST_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = {key: value for key, value in {"status": status, "model": subject}.items() if value}
    return render(
        request,
        "evaluation/run_list.html",
        {
            "page": page,
            "rows": [(run, presenters.run_headline(run), presenters.flagged_count(run)) for run in page.object_list],
            "statuses": EvalRun.Status.choices,
            "status": status,
            "subject": subject,
            "names": _evaluated_names(),
            "filtered": bool(query),
            "extra": urlencode(query),
        },
    )


@login_required
@permission_required(RUN_EVALUATIONS, raise_exception=True)
def run_create(request):
    if request.method == "POST":
        form = RunForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                run = services.eval_run_create(
                    subject=services.subject_resolve(data["model"]),
                    version=data["dataset_version"],
                    actor=request.user,
                    split=data["split"],
                    judge=data["judge"],
                    rubric=data["rubric"],
                    fairness_threshold=data["fairness_threshold"],
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Evaluation #{run.pk} of {run.subject_name} is queued.")
                return redirect("evaluation:run_detail", run.pk)
    else:
        form = RunForm(initial={"model": request.GET.get("model", ""), "dataset_version": request.GET.get("version")})
    return render(request, "evaluation/run_form.html", {"form": form})


def _run_page(request, run: EvalRun, *, rescore_form: RescoreForm | None = None, status: int = 200):
    user = request.user
    can_view_rows = user.has_perm(VIEW_EXAMPLES)
    measured = presenters.measured_metrics(run.metrics)
    context = {
        "run": run,
        "live": presenters.run_live(run),
        "metric_rows": presenters.run_metric_rows(run),
        "groups": presenters.group_table(run),
        "fairness": presenters.fairness_sentences(run.fairness, run.fairness_threshold),
        "flagged": presenters.flagged_count(run),
        "confusion": presenters.confusion_table(run) if run.task == TaskType.CLASSIFICATION else None,
        "can_view_rows": can_view_rows,
        "can_run": user.has_perm(RUN_EVALUATIONS),
        "can_view_models": user.has_perm(VIEW_MODELS),
        "balance": presenters.balance_table(selectors.version_balance(run.dataset_version)),
    }
    if context["can_run"] and run.status == EvalRun.Status.SUCCEEDED:
        context["rescore_form"] = rescore_form or RescoreForm(task=run.task, measured=measured)
    if can_view_rows and run.status == EvalRun.Status.SUCCEEDED:
        predictions = run.predictions.select_related("example").order_by("example__row_index")
        context["predictions"] = Paginator(predictions, PREDICTION_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "evaluation/run_detail.html", context, status=status)


@login_required
@permission_required(VIEW_EVALUATIONS, raise_exception=True)
def run_detail(request, run_id: int):
    return _run_page(request, _run_or_404(run_id))


@login_required
@permission_required(VIEW_EVALUATIONS, raise_exception=True)
@require_GET
@never_cache
def run_progress_json(request, run_id: int):
    return JsonResponse(presenters.run_live(_run_or_404(run_id)))


@login_required
@permission_required(RUN_EVALUATIONS, raise_exception=True)
@require_POST
def run_rescore(request, run_id: int):
    run = _run_or_404(run_id)
    measured = presenters.measured_metrics(run.metrics)
    form = RescoreForm(request.POST, task=run.task, measured=measured)
    if form.is_valid():
        try:
            run = services.eval_run_rescore(run=run, metric_names=form.cleaned_data["metrics"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            labels = ", ".join(presenters.metric_label(name) for name in form.cleaned_data["metrics"])
            messages.success(request, f"Scored again from the saved answers: {labels}.")
            return redirect("evaluation:run_detail", run.pk)
    return _run_page(request, run, rescore_form=form, status=400)


# --- comparison ----------------------------------------------------------------------------------


def _comparison(request) -> tuple[CompareChoice, str, dict | None]:
    choice = CompareChoice(request.GET, names=_evaluated_names())
    if not choice.ready:
        return choice, choice.error, None
    try:
        for name in choice.chosen:
            services.subject_resolve(name)
    except ValidationError as exc:
        return choice, " ".join(exc.messages), None
    return choice, "", selectors.comparison(choice.chosen)


@login_required
@permission_required(VIEW_EVALUATIONS, raise_exception=True)
def compare(request):
    choice, error, data = _comparison(request)
    can_view_rows = request.user.has_perm(VIEW_EXAMPLES)
    context = {"choice": choice, "error": error, "can_view_rows": can_view_rows}
    if data is not None:
        context.update(presenters.comparison_view(data, can_view_rows=can_view_rows))
        context["csv_query"] = urlencode({"models": ",".join(choice.chosen)})
    return render(request, "evaluation/compare.html", context, status=400 if error else 200)


@login_required
@permission_required(VIEW_EVALUATIONS, raise_exception=True)
@require_GET
def compare_csv(request):
    """The comparison as one table: metrics, fairness gaps, KPI means with their interval and (for people who may
    read rows) the outputs, one column per model. Numbers are the stored values, not rounded."""
    choice, error, data = _comparison(request)
    if data is None:
        messages.error(request, error or "Choose 2 to 4 models to compare.")
        return redirect("evaluation:compare")
    names = data["subjects"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "item", "reference", "group", *names])
    writer.writerow(["evaluation", "evaluation id", "", "", *[run.pk if run else "" for run in data["runs"]]])
    for row in data["metrics"]:
        writer.writerow(["metric", row["label"], "", "", *[presenters.csv_cell(v) for v in row["values"]]])
    for name in sorted({n for gaps in data["fairness"] for n in (gaps or {})}):
        gaps = [(g or {}).get(name) for g in data["fairness"]]
        writer.writerow(
            [
                "fairness gap",
                presenters.metric_label(name),
                "",
                "",
                *[presenters.csv_cell(g["gap"] if g else None) for g in gaps],
            ]
        )
    for row in data["kpis"]:
        label = f"{row['kpi'].name} ({row['kpi'].unit})"
        for key, words in (
            ("mean", "average"),
            ("low", "95% interval, low"),
            ("high", "95% interval, high"),
            ("n", "n"),
        ):
            writer.writerow(
                [
                    "kpi",
                    f"{label}: {words}",
                    "",
                    "",
                    *[presenters.csv_cell(v.get(key) if v else None) for v in row["values"]],
                ]
            )
    if request.user.has_perm(VIEW_EXAMPLES):
        for row in data["outputs"]:
            writer.writerow(
                [
                    "output",
                    presenters.csv_cell(row["input"]),
                    presenters.csv_cell(row["reference"]),
                    presenters.csv_cell(row["group"]),
                    *map(presenters.csv_cell, row["outputs"]),
                ]
            )
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    filename = "comparison-" + "-vs-".join(slugify(name) or "model" for name in names) + ".csv"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


# --- promotion -----------------------------------------------------------------------------------


def _use_case_or_404(slug: str) -> UseCase:
    use_case = selectors.use_case_list().filter(slug=slug).first()
    if use_case is None:
        raise Http404("No such use case.")
    return use_case


def _gate_view(use_case: UseCase, trained: TrainedModel, kpis: dict[str, Kpi]) -> dict:
    gate = selectors.gate_check(use_case=use_case, candidate=trained)
    return {
        "passed": gate["passed"],
        "baseline": gate["baseline"],
        "rows": presenters.gate_rows(gate, kpis),
        "failures": services.gate_failures(gate),
    }


def _rollback_target(use_case: UseCase) -> TrainedModel | None:
    """The production model the current one replaced (what services.model_rollback would put back)."""
    if not use_case.production_id:
        return None
    last = (
        use_case.stage_changes.filter(to_stage=TrainedModel.Stage.PRODUCTION, trained_model=use_case.production)
        .select_related("replaced")
        .first()
    )
    return last.replaced if last else None


def _candidates(use_case: UseCase):
    return (
        TrainedModel.objects.filter(
            task=use_case.task, stage__in=[TrainedModel.Stage.CANDIDATE, TrainedModel.Stage.STAGING]
        )
        .exclude(pk=use_case.production_id)
        .select_related("base_model", "dataset_version__dataset")
        .order_by("-created_at", "-pk")
    )


def _use_case_page(request, use_case: UseCase, *, refusal: dict | None = None, status: int = 200):
    kpis = {kpi.slug: kpi for kpi in Kpi.objects.all()}
    stages = dict(TrainedModel.Stage.choices)
    all_candidates = _candidates(use_case)
    shown = list(all_candidates[:CANDIDATES_SHOWN])
    if refusal and refusal["gate"] is not None and refusal["model"].pk not in {m.pk for m in shown}:
        shown.insert(0, refusal["model"])
    candidates = []
    for index, trained in enumerate(shown):
        version = use_case.eval_version or trained.dataset_version
        candidates.append(
            {
                "model": trained,
                "gate": refusal["gate"] if refusal and refusal["model"].pk == trained.pk else None,
                "run": selectors.latest_run(subject_name=trained.name, version=version),
                "version": version,
                "open": index < CANDIDATE_TABLES_OPEN or bool(refusal and refusal["model"].pk == trained.pk),
                "refused": bool(refusal and refusal["model"].pk == trained.pk),
            }
        )
    for candidate in candidates:
        if candidate["gate"] is None:
            candidate["gate"] = _gate_view(use_case, candidate["model"], kpis)
    history = [
        {
            "change": change,
            "from": stages.get(change.from_stage, change.from_stage),
            "to": stages.get(change.to_stage, change.to_stage),
            "gate": (change.gate_result or {}).get("passed"),
        }
        for change in use_case.stage_changes.select_related("trained_model", "replaced", "actor")[:50]
    ]
    context = {
        "use_case": use_case,
        "rules": [presenters.gate_rule_words(rule, kpis) for rule in use_case.gate or []],
        "candidates": candidates,
        "more_candidates": max(all_candidates.count() - len(shown), 0),
        "rollback_to": _rollback_target(use_case),
        "history": history,
        "retrain_every": presenters.hours_text(use_case.retrain_every_hours),
        "retrain_runs": use_case.retrain_runs.select_related("dataset_version__dataset", "job", "eval_run")[:20],
        "retrain_statuses": RetrainRun.Status,
        "refusal": refusal,
        "can_promote": request.user.has_perm(PROMOTE),
        "can_run": request.user.has_perm(RUN_EVALUATIONS),
        "can_view_models": request.user.has_perm(VIEW_MODELS),
    }
    return render(request, "evaluation/use_case_detail.html", context, status=status)


@login_required
@permission_required(VIEW_USE_CASES, raise_exception=True)
def use_case_list(request):
    kpis = {kpi.slug: kpi for kpi in Kpi.objects.all()}
    rows = [
        (use_case, [presenters.gate_rule_words(rule, kpis) for rule in use_case.gate or []])
        for use_case in selectors.use_case_list()
    ]
    return render(request, "evaluation/use_case_list.html", {"rows": rows})


@login_required
@permission_required(VIEW_USE_CASES, raise_exception=True)
def use_case_detail(request, slug: str):
    return _use_case_page(request, _use_case_or_404(slug))


@login_required
@permission_required([VIEW_USE_CASES, PROMOTE], raise_exception=True)
@require_POST
def promote(request, slug: str):
    use_case = _use_case_or_404(slug)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a model and the stage to promote it to.")
        return redirect("evaluation:use_case_detail", use_case.slug)
    trained, stage = form.cleaned_data["model"], form.cleaned_data["stage"]
    try:
        services.model_promote(use_case=use_case, trained=trained, to_stage=stage, actor=request.user)
    except ValidationError as exc:
        kpis = {kpi.slug: kpi for kpi in Kpi.objects.all()}
        refusal = {
            "model": trained,
            "stage": dict(TrainedModel.Stage.choices).get(stage, stage).lower(),
            "messages": exc.messages,
            "gate": _gate_view(use_case, trained, kpis) if trained.task == use_case.task else None,
        }
        return _use_case_page(request, use_case, refusal=refusal, status=400)
    if stage == TrainedModel.Stage.PRODUCTION:
        text = f"{trained.name} is now the production model for {use_case.name}."
        if use_case.production_id and use_case.production_id != trained.pk:
            text += f" {use_case.production.name} is archived; “Roll back” puts it back."
    else:
        text = f"{trained.name} is now in staging for {use_case.name}."
    messages.success(request, text)
    return redirect("evaluation:use_case_detail", use_case.slug)


@login_required
@permission_required([VIEW_USE_CASES, PROMOTE], raise_exception=True)
@require_POST
def rollback(request, slug: str):
    use_case = _use_case_or_404(slug)
    try:
        change = services.model_rollback(use_case=use_case, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"Rolled back: {change.trained_model.name} is the production model again; "
            f"{change.replaced.name} is a candidate.",
        )
    return redirect("evaluation:use_case_detail", use_case.slug)
