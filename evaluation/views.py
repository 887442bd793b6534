"""HTML pages for evaluation: the KPI dashboard and its import, evaluation runs, side-by-side comparison, and the
promotion of models through each use case's gate.

Views are thin: they load the object (404/403), check a form, call a service and redirect. The helpers below only
turn stored figures into words and numbers a manager reads at a glance; they compute nothing new.
Row text (inputs, references, outputs) is shown only to people who may read examples (VIEW_EXAMPLES).
"""

from __future__ import annotations

import csv
import io
import math

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
from evaluation import metrics as metric_lib
from evaluation import selectors, services
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
MINUS = "\u2212"

# Scores stored next to the metrics that are not in metric_lib.METRICS.
EXTRA_LABELS = {
    "pred_length_median": "Answer length, median (words)",
    "pred_length_p95": "Answer length, longest 5 % (words)",
    "ref_length_mean": "Reference length (words)",
}
# A direction a metric has in metric_lib but that says nothing about quality (see its MetricSpec comment).
NO_BEST = {"pred_length_mean"}


# --- numbers in words ------------------------------------------------------------------------


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: float) -> str:
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _signed(text: str, value: float) -> str:
    if value > 0:
        return "+" + text
    return text.replace("-", MINUS) if value < 0 else text


def metric_label(name: str) -> str:
    spec = metric_lib.METRICS.get(name)
    return spec.label if spec else EXTRA_LABELS.get(name, name.replace("_", " ").capitalize())


def metric_text(name: str, value) -> str:
    return metric_lib.format_value(name, value) if _finite(value) else "–"


def _is_share(name: str) -> bool:
    spec = metric_lib.METRICS.get(name)
    return spec is not None and spec.unit == "%"


def metric_delta_text(name: str, delta) -> str:
    """A difference in a metric: shares in percentage points, the rest on the metric's own scale."""
    if not _finite(delta):
        return "–"
    if _is_share(name):
        return _signed(f"{delta * 100:.1f} percentage points", delta)
    return _signed(f"{delta:.2f}", delta)


def metric_amount_text(name: str, amount: float) -> str:
    """An unsigned size of a gap, limit or margin in a metric, on the metric's own scale."""
    spec = metric_lib.METRICS.get(name)
    if _is_share(name):
        return f"{amount * 100:.1f} percentage points"
    if spec is not None and spec.unit:
        return f"{amount:.1f}{spec.unit}"
    return f"{amount:.2f}"


def kpi_text(kind: str, value) -> str:
    if not _finite(value):
        return "–"
    return f"{value * 100:.1f} %" if kind == Kpi.Kind.PROPORTION else _plain(value)


def kpi_delta_text(kind: str, delta) -> str:
    if not _finite(delta):
        return "–"
    if kind == Kpi.Kind.PROPORTION:
        return _signed(f"{delta * 100:.1f} percentage points", delta)
    return _signed(_plain(delta), delta)


def kpi_delta_range_text(kind: str, low, high) -> str:
    """The interval of a difference, with its unit once: "−7.1 to −2.4 percentage points"."""
    if not _finite(low) or not _finite(high):
        return ""
    if kind == Kpi.Kind.PROPORTION:
        ends = [_signed(f"{v * 100:.1f}", v) for v in (low, high)]
        return f"{ends[0]} to {ends[1]} percentage points"
    return f"{_signed(_plain(low), low)} to {_signed(_plain(high), high)}"


def kpi_interval_text(kind: str, summary: dict | None) -> str:
    if not summary or not _finite(summary.get("low")) or not _finite(summary.get("high")):
        return ""
    return f"{kpi_text(kind, summary['low'])} to {kpi_text(kind, summary['high'])}"


def verdict(comparison: dict | None) -> tuple[str, str]:
    """(words, css class) for a difference tested by metric_lib.compare; its "better" respects the direction."""
    if comparison is None:
        return "", ""
    if comparison.get("p_value") is None:
        return "not enough data to tell", "verdict-unknown"
    if comparison["better"]:
        return "significantly better", "verdict-better"
    if comparison["significant"]:
        return "significantly worse", "verdict-worse"
    return "no significant difference", "verdict-same"


def hours_text(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return "every day" if days == 1 else ("every week" if days == 7 else f"every {days} days")
    return "every hour" if hours == 1 else f"every {hours} hours"


# --- KPI dashboard -------------------------------------------------------------------------------


def _dashboard_cards(dashboard: list[dict], productions: set[str]) -> list[dict]:
    """The dashboard selector's figures as table rows in words."""
    cards = []
    for item in dashboard:
        kpi, kind = item["kpi"], item["kpi"]["kind"]
        rows = []
        for bar in item["bars"]:
            words, css = verdict(bar["comparison"])
            comparison = bar["comparison"] or {}
            rows.append(
                {
                    "model": bar["model"],
                    "is_reference": bar["is_reference"],
                    "is_production": bar["model"] in productions,
                    "mean": kpi_text(kind, bar["mean"]),
                    "interval": kpi_interval_text(kind, bar),
                    "n": bar["n"],
                    "periods": bar.get("periods"),
                    "delta": kpi_delta_text(kind, comparison.get("delta")) if bar["comparison"] else "",
                    "delta_interval": kpi_delta_range_text(kind, comparison.get("low"), comparison.get("high")),
                    "verdict": words,
                    "verdict_class": css,
                }
            )
        cards.append(
            {
                "kpi": kpi,
                "direction": "higher is better" if kpi["higher_is_better"] else "lower is better",
                "reference": item["reference"],
                "reference_is_production": item["reference"] in productions,
                "rows": rows,
                "periods": len({p["period"] for s in item["series"] for p in s["points"]}),
            }
        )
    return cards


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
        "cards": _dashboard_cards(selectors.kpi_dashboard(**filters), productions),
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


def _headline(run: EvalRun) -> list[tuple[str, str]]:
    names = ("accuracy", "macro_f1") if run.task == TaskType.CLASSIFICATION else ("rougeL", "bleu")
    return [(metric_label(n), metric_text(n, run.metrics.get(n))) for n in names if n in (run.metrics or {})]


def _flagged(run: EvalRun) -> int:
    return sum(1 for gap in (run.fairness or {}).values() if gap.get("flagged"))


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
            "rows": [(run, _headline(run), _flagged(run)) for run in page.object_list],
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


def _live(run: EvalRun) -> dict:
    done = round(run.progress * run.total) if run.total else 0
    return {
        "status": run.status,
        "status_display": run.get_status_display(),
        "progress": run.progress,
        "percent": round(run.progress * 100),
        "done": done,
        "total": run.total,
        "is_active": run.is_active,
    }


def _metric_rows(run: EvalRun) -> list[dict]:
    rows = []
    order = {name: index for index, name in enumerate(metric_lib.METRICS)}
    numeric = [(k, v) for k, v in (run.metrics or {}).items() if _finite(v)]
    for name, value in sorted(numeric, key=lambda item: (order.get(item[0], len(order)), item[0])):
        spec = metric_lib.METRICS.get(name)
        if spec is None or name in NO_BEST:
            direction = ""
        else:
            direction = "higher is better" if spec.higher_is_better else "lower is better"
        rows.append(
            {"name": name, "label": metric_label(name), "value": metric_text(name, value), "direction": direction}
        )
    return rows


def fairness_sentences(fairness: dict, threshold: float) -> list[dict]:
    """One sentence per metric: the gap between the best and the worst group, against that metric's limit.

    The limit is stored with each gap (the run's threshold on the metric's own scale: ten points of BLEU for 0.1);
    runs scored before limits were stored fall back to the threshold itself.
    """
    rows = []
    for name, gap in (fairness or {}).items():
        label = metric_label(name)
        limit = gap.get("limit", threshold)
        if limit is None:
            verdict_words = "not checked against a threshold"
        else:
            where = "above" if gap.get("flagged") else "within"
            plain = not _is_share(name) and not getattr(metric_lib.METRICS.get(name), "unit", "")
            amount = metric_amount_text(name, limit)
            verdict_words = f"{where} the {amount} threshold" if plain else f"{where} the threshold of {amount}"
        sentence = (
            f"The gap in {label} between {gap['best_group']} and {gap['worst_group']} is "
            f"{metric_amount_text(name, gap['gap'])}, {verdict_words}."
        )
        if gap["best_group"] == gap["worst_group"]:
            sentence = f"Only one group ({gap['best_group']}) has {label}: there is no gap to measure."
        rows.append(
            {
                "name": name,
                "label": label,
                "best_group": gap["best_group"],
                "best": metric_text(name, gap.get("best")),
                "worst_group": gap["worst_group"],
                "worst": metric_text(name, gap.get("worst")),
                "gap": metric_amount_text(name, gap["gap"]),
                "limit": metric_amount_text(name, limit) if limit is not None else "–",
                "flagged": bool(gap.get("flagged")),
                "sentence": sentence,
            }
        )
    return rows


def _group_table(run: EvalRun) -> dict:
    groups = run.per_group or {}
    names = [
        row["name"] for row in _metric_rows(run) if any(name == row["name"] for g in groups.values() for name in g)
    ]
    return {
        "metrics": [(name, metric_label(name)) for name in names],
        "rows": [
            {"group": group, "n": scores.get("n"), "values": [metric_text(name, scores.get(name)) for name in names]}
            for group, scores in groups.items()
        ],
    }


def _confusion(run: EvalRun) -> dict | None:
    confusion = (run.metrics or {}).get("confusion")
    if not isinstance(confusion, dict) or not confusion.get("labels"):
        return None
    labels, matrix = confusion["labels"], confusion.get("matrix") or []
    other = confusion.get("other") or [0] * len(labels)
    rows = []
    for index, label in enumerate(labels):
        cells = matrix[index] if index < len(matrix) else [0] * len(labels)
        total = sum(cells) + (other[index] if index < len(other) else 0)
        rows.append(
            {
                "label": label,
                "cells": [{"count": count, "diagonal": column == index} for column, count in enumerate(cells)],
                "other": other[index] if index < len(other) else 0,
                "total": total,
                "right": cells[index] if index < len(cells) else 0,
            }
        )
    return {"labels": labels, "rows": rows, "has_other": any(other)}


def _balance(run: EvalRun) -> dict | None:
    report = selectors.version_balance(run.dataset_version)
    if report is None:
        return None
    rows = [
        {"group": group, "n": entry["n"], "shares": [entry["shares"][label] for label in report["labels"]]}
        for group, entry in report["groups"].items()
    ]
    return {"labels": report["labels"], "rows": rows, "max_share_gap": report["max_share_gap"]}


def _run_page(request, run: EvalRun, *, rescore_form: RescoreForm | None = None, status: int = 200):
    user = request.user
    can_view_rows = user.has_perm(VIEW_EXAMPLES)
    measured = {name for name, value in (run.metrics or {}).items() if _finite(value)}
    context = {
        "run": run,
        "live": _live(run),
        "metric_rows": _metric_rows(run),
        "groups": _group_table(run),
        "fairness": fairness_sentences(run.fairness, run.fairness_threshold),
        "flagged": _flagged(run),
        "confusion": _confusion(run) if run.task == TaskType.CLASSIFICATION else None,
        "can_view_rows": can_view_rows,
        "can_run": user.has_perm(RUN_EVALUATIONS),
        "can_view_models": user.has_perm(VIEW_MODELS),
        "balance": _balance(run),
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
    return JsonResponse(_live(_run_or_404(run_id)))


@login_required
@permission_required(RUN_EVALUATIONS, raise_exception=True)
@require_POST
def run_rescore(request, run_id: int):
    run = _run_or_404(run_id)
    measured = {name for name, value in (run.metrics or {}).items() if _finite(value)}
    form = RescoreForm(request.POST, task=run.task, measured=measured)
    if form.is_valid():
        try:
            run = services.eval_run_rescore(run=run, metric_names=form.cleaned_data["metrics"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            labels = ", ".join(metric_label(name) for name in form.cleaned_data["metrics"])
            messages.success(request, f"Scored again from the saved answers: {labels}.")
            return redirect("evaluation:run_detail", run.pk)
    return _run_page(request, run, rescore_form=form, status=400)


# --- comparison ----------------------------------------------------------------------------------


def _best_flags(values: list, higher_is_better: bool, name: str) -> list[bool]:
    numbers = [v for v in values if _finite(v)]
    if name in NO_BEST or len(numbers) < 2 or len(set(numbers)) == 1:
        return [False] * len(values)
    best = max(numbers) if higher_is_better else min(numbers)
    return [_finite(v) and v == best for v in values]


def _comparison_view(data: dict, *, can_view_rows: bool) -> dict:
    runs = data["runs"]
    version = data["version"]
    mixed = len({run.dataset_version_id for run in runs if run}) > 1
    columns = [
        {
            "name": name,
            "run": run,
            "other_version": bool(run and version and run.dataset_version_id != version.pk),
            "empty": run.is_mostly_empty if run else False,
        }
        for name, run in zip(data["subjects"], runs, strict=True)
    ]
    metric_rows = []
    for row in data["metrics"]:
        # Scores on different data are not ranked; neither is a model that mostly answered nothing.
        values = [
            None if mixed or (run and run.is_mostly_empty) else value
            for value, run in zip(row["values"], runs, strict=True)
        ]
        flags = _best_flags(values, row["higher_is_better"], row["metric"])
        metric_rows.append(
            {
                "label": row["label"],
                "direction": ""
                if row["metric"] in NO_BEST
                else ("higher is better" if row["higher_is_better"] else "lower is better"),
                "cells": [
                    {"text": metric_text(row["metric"], value), "best": best}
                    for value, best in zip(row["values"], flags, strict=True)
                ],
            }
        )
    fairness_names = sorted({name for gaps in data["fairness"] for name in (gaps or {})})
    fairness_rows = [
        {
            "label": metric_label(name),
            "cells": [
                {
                    "gap": metric_amount_text(name, gaps[name]["gap"]),
                    "groups": f"{gaps[name]['best_group']} vs {gaps[name]['worst_group']}",
                    "flagged": gaps[name].get("flagged"),
                    "empty": bool(run and run.is_mostly_empty),
                }
                if gaps and name in gaps
                else None
                for gaps, run in zip(data["fairness"], runs, strict=True)
            ],
        }
        for name in fairness_names
    ]
    kpi_rows = [
        {
            "kpi": row["kpi"],
            "direction": "higher is better" if row["kpi"].higher_is_better else "lower is better",
            "cells": [
                {
                    "mean": kpi_text(row["kpi"].kind, value["mean"]),
                    "interval": kpi_interval_text(row["kpi"].kind, value),
                    "n": value["n"],
                }
                if value
                else None
                for value in row["values"]
            ],
        }
        for row in data["kpis"]
    ]
    return {
        "columns": columns,
        "metric_rows": metric_rows,
        "fairness_rows": fairness_rows,
        "kpi_rows": kpi_rows,
        "outputs": data["outputs"] if can_view_rows else [],
        "mixed_versions": mixed,
        "version": version,
        "empty_columns": [column for column in columns if column["empty"]],
    }


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
        context.update(_comparison_view(data, can_view_rows=can_view_rows))
        context["csv_query"] = urlencode({"models": ",".join(choice.chosen)})
    return render(request, "evaluation/compare.html", context, status=400 if error else 200)


_CSV_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    """Text a spreadsheet will not run as a formula; numbers as they are stored."""
    if value is None:
        return ""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_CSV_DANGEROUS) else text


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
        writer.writerow(["metric", row["label"], "", "", *[_cell(v) for v in row["values"]]])
    for name in sorted({n for gaps in data["fairness"] for n in (gaps or {})}):
        gaps = [(g or {}).get(name) for g in data["fairness"]]
        writer.writerow(["fairness gap", metric_label(name), "", "", *[_cell(g["gap"] if g else None) for g in gaps]])
    for row in data["kpis"]:
        label = f"{row['kpi'].name} ({row['kpi'].unit})"
        for key, words in (
            ("mean", "average"),
            ("low", "95% interval, low"),
            ("high", "95% interval, high"),
            ("n", "n"),
        ):
            writer.writerow(
                ["kpi", f"{label}: {words}", "", "", *[_cell(v.get(key) if v else None) for v in row["values"]]]
            )
    if request.user.has_perm(VIEW_EXAMPLES):
        for row in data["outputs"]:
            writer.writerow(
                [
                    "output",
                    _cell(row["input"]),
                    _cell(row["reference"]),
                    _cell(row["group"]),
                    *map(_cell, row["outputs"]),
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


def gate_rule_words(rule: dict, kpis: dict[str, Kpi]) -> str:
    """A gate rule as a sentence: "ROUGE-L must be better by at least 0.02"."""
    kind, name = rule.get("kind", "metric"), rule.get("name", "")
    mode, margin = rule.get("rule", "no_regress"), float(rule.get("margin", 0) or 0)
    if kind == "kpi":
        kpi = kpis.get(name)
        label = kpi.name if kpi else name
        amount = kpi_delta_text(kpi.kind, margin).lstrip("+") if kpi else f"{margin:g}"
        if kpi and kpi.kind != Kpi.Kind.PROPORTION and kpi.unit:
            amount = f"{amount} {kpi.unit}"
        source = "in the business results"
    else:
        label = metric_label(name)
        amount = metric_amount_text(name, margin)
        source = "on the evaluation rows"
    if mode == "improve":
        sentence = f"{label} {source} must be better" + (f" by at least {amount}" if margin else "")
        if kind == "kpi":
            sentence += ", and the difference must be statistically significant"
    else:
        sentence = f"{label} {source} must not get worse" + (f" by more than {amount}" if margin else " at all")
    return sentence + "."


def _gate_rows(gate: dict, kpis: dict[str, Kpi]) -> list[dict]:
    rows = []
    for check in gate["checks"]:
        name, kind = check["name"], check["kind"]
        if kind == "kpi":
            kpi = kpis.get(name)
            kpi_kind = kpi.kind if kpi else Kpi.Kind.MEAN
            label = kpi.name if kpi else name
            show, delta = (lambda v, k=kpi_kind: kpi_text(k, v)), (lambda v, k=kpi_kind: kpi_delta_text(k, v))
        elif kind == "metric":
            label = metric_label(name)
            show, delta = (lambda v, n=name: metric_text(n, v)), (lambda v, n=name: metric_delta_text(n, v))
        else:
            label, show, delta = check.get("label") or "Gate rules", (lambda v: "–"), (lambda v: "–")
        reason = check.get("reason", "")
        rows.append(
            {
                "label": label,
                "rule": {
                    "improve": "Must improve",
                    "no_regress": "Must not get worse",
                    "not_empty": "Must answer with text",
                }.get(check["rule"], "—"),
                "candidate": show(check.get("candidate")),
                "baseline": show(check.get("baseline")),
                "delta": delta(check.get("delta")),
                "passed": check["passed"],
                "reason": reason[:1].upper() + reason[1:],
            }
        )
    return rows


def _gate_view(use_case: UseCase, trained: TrainedModel, kpis: dict[str, Kpi]) -> dict:
    gate = services.gate_check(use_case=use_case, candidate=trained)
    return {
        "passed": gate["passed"],
        "baseline": gate["baseline"],
        "rows": _gate_rows(gate, kpis),
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
        "rules": [gate_rule_words(rule, kpis) for rule in use_case.gate or []],
        "candidates": candidates,
        "more_candidates": max(all_candidates.count() - len(shown), 0),
        "rollback_to": _rollback_target(use_case),
        "history": history,
        "retrain_every": hours_text(use_case.retrain_every_hours),
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
        (use_case, [gate_rule_words(rule, kpis) for rule in use_case.gate or []])
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
