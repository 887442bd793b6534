"""Reads for evaluation: runs, the KPI dashboard (series, intervals, deltas against production), comparisons."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING

from django.db.models import F, Q, QuerySet, Sum
from django.urls import reverse

from evaluation import metrics as metric_lib
from evaluation.models import EvalRun, Kpi, KpiImportRun, KpiObservation, Prediction, StageChange, UseCase
from projectsite.progress import progress_read

if TYPE_CHECKING:
    from training.models import TrainedModel


def run_list(*, status: str = "", subject: str = "") -> QuerySet[EvalRun]:
    runs = EvalRun.objects.select_related(
        "trained_model", "base_model", "endpoint", "dataset_version__dataset", "created_by"
    )
    if status:
        runs = runs.filter(status=status)
    if subject:
        runs = runs.filter(
            Q(trained_model__name=subject) | Q(endpoint__name=subject) | Q(kind="base", base_model__name=subject)
        )
    return runs


def run_get(run_id: int) -> EvalRun:
    return run_list().get(pk=run_id)


def _subject_filter(subject_name: str) -> Q:
    return (
        Q(kind=EvalRun.Kind.ADAPTER, trained_model__name=subject_name)
        | Q(kind=EvalRun.Kind.BASE, base_model__name=subject_name)
        | Q(kind=EvalRun.Kind.ENDPOINT, endpoint__name=subject_name)
    )


def latest_run(*, subject_name: str, version=None) -> EvalRun | None:
    runs = EvalRun.objects.filter(_subject_filter(subject_name), status=EvalRun.Status.SUCCEEDED)
    if version is not None:
        runs = runs.filter(dataset_version=version)
    return runs.order_by("-finished_at", "-pk").first()


def latest_metric(*, subject_name: str, metric: str, version=None) -> float | None:
    run = latest_run(subject_name=subject_name, version=version)
    value = (run.metrics or {}).get(metric) if run else None
    return value if isinstance(value, int | float) else None


# --- KPIs --------------------------------------------------------------------------------------------------


def _observations(kpi: Kpi, *, start: dt.date | None = None, end: dt.date | None = None, segment: str = "") -> QuerySet:
    rows = KpiObservation.objects.filter(kpi=kpi)
    if start:
        rows = rows.filter(period_start__gte=start)
    if end:
        rows = rows.filter(period_start__lte=end)
    if segment:
        rows = rows.filter(segment=segment)
    return rows


def kpi_summary(kpi: Kpi, model_name: str, **filters) -> dict | None:
    rows = list(_observations(kpi, **filters).filter(model_name=model_name).values_list("value", "sample_size", "std"))
    if not rows:
        return None
    stds = [row[2] for row in rows]
    return metric_lib.pooled_ci(
        [row[0] for row in rows],
        [row[1] for row in rows],
        stds if all(s is not None for s in stds) else None,
        proportion=kpi.kind == Kpi.Kind.PROPORTION,
    )


def kpi_comparison_pair(*, kpi_slug: str, baseline: str, candidate: str, **filters) -> dict | None:
    kpi = Kpi.objects.filter(slug=kpi_slug).first()
    if kpi is None:
        return None
    a, b = kpi_summary(kpi, baseline, **filters), kpi_summary(kpi, candidate, **filters)
    if a is None or b is None:
        return None
    return {
        "baseline": a,
        "candidate": b,
        "higher_is_better": kpi.higher_is_better,
        "comparison": metric_lib.compare(a, b, higher_is_better=kpi.higher_is_better),
    }


def production_model_names() -> list[str]:
    return list(UseCase.objects.filter(production__isnull=False).values_list("production__name", flat=True))


def _default_reference(models: list[str], productions: list[str]) -> str:
    """What a candidate is compared with: the production model, else a base model or endpoint (today's service)."""
    from evaluation.models import ExternalEndpoint
    from training.models import BaseModel

    for name in productions:
        if name in models:
            return name
    plain = set(BaseModel.objects.filter(name__in=models).values_list("name", flat=True))
    plain |= set(ExternalEndpoint.objects.filter(name__in=models).values_list("name", flat=True))
    return next((name for name in models if name in plain), models[0])


def kpi_dashboard(
    *, start: dt.date | None = None, end: dt.date | None = None, segment: str = "", reference: str = ""
) -> list[dict]:
    """Per KPI: a time series per model, each model's mean with its 95% interval, and its delta against the
    reference model (the production model by default) with whether the difference is significant."""
    filters = {"start": start, "end": end, "segment": segment}
    productions = production_model_names()
    dashboard = []
    for kpi in Kpi.objects.all():
        rows = list(
            _observations(kpi, **filters)
            .order_by("period_start")
            .values_list("model_name", "period_start", "value", "sample_size")
        )
        if not rows:
            continue
        series: dict[str, dict[dt.date, list]] = defaultdict(lambda: defaultdict(list))
        for model, period, value, size in rows:
            series[model][period].append((value, size))
        models = sorted(series)
        ref = reference if reference in models else _default_reference(models, productions)
        summaries = {model: kpi_summary(kpi, model, **filters) for model in models}
        bars = []
        for model in models:
            summary = summaries[model]
            comparison = None
            if model != ref and summaries.get(ref):
                comparison = metric_lib.compare(summaries[ref], summary, higher_is_better=kpi.higher_is_better)
            bars.append({"model": model, **summary, "comparison": comparison, "is_reference": model == ref})
        dashboard.append(
            {
                "kpi": {
                    "slug": kpi.slug,
                    "name": kpi.name,
                    "unit": kpi.unit,
                    "higher_is_better": kpi.higher_is_better,
                    "kind": kpi.kind,
                },
                "reference": ref,
                "series": [
                    {
                        "model": model,
                        "points": [
                            {
                                "period": period.isoformat(),
                                "value": sum(v * n for v, n in values) / sum(n for _, n in values),
                                "n": sum(n for _, n in values),
                            }
                            for period, values in sorted(series[model].items())
                        ],
                    }
                    for model in models
                ],
                "bars": bars,
            }
        )
    return dashboard


def kpi_segments() -> list[str]:
    return sorted(s for s in KpiObservation.objects.order_by().values_list("segment", flat=True).distinct() if s)


def kpi_import_run_progress(run: KpiImportRun) -> dict:
    """Where a KPI file import stands, in the shape the progress bar reads (curation/_progress.html, live.js)."""
    fraction, label = run.fraction, run.get_status_display()
    if run.status == KpiImportRun.Status.CHECKING and run.rows_total:
        label = f"{label}: {min(run.rows_checked, run.rows_total):,} of about {run.rows_total:,}"
    elif run.status == KpiImportRun.Status.WRITING:
        saved = (progress_read(run.progress_key) or {}).get("rows") or 0
        fraction = run.fraction + (1 - run.fraction) * (saved / run.rows_total if run.rows_total else 0)
        label = f"{label}: {saved:,} of {run.rows_total:,}"
    return {
        "status": run.status,
        "label": label,
        "fraction": min(fraction, 1.0),
        "eta_seconds": None,
        "rows": None,
        "finished": run.is_finished,
    }


# --- side-by-side comparison ---------------------------------------------------------------------------------


def comparison(subject_names: list[str], *, version=None, limit: int = 50) -> dict:
    """2–4 models: their latest finished evaluation (on one version when given), metrics, fairness, KPIs, and the
    outputs for the same inputs next to each other."""
    runs = {name: latest_run(subject_name=name, version=version) for name in subject_names}
    found = [run for run in runs.values() if run]
    if version is None and found:
        # Side by side needs the same inputs: use the version most of them were evaluated on.
        versions = [run.dataset_version_id for run in found]
        common = max(set(versions), key=versions.count)
        version = found[versions.index(common)].dataset_version
        runs = {name: latest_run(subject_name=name, version=version) for name in subject_names}
    # A model evaluated only on other data still shows its latest evaluation (the page says which version it used)
    # rather than "not evaluated yet".
    runs = {name: run or latest_run(subject_name=name) for name, run in runs.items()}
    metric_names = sorted(
        {key for run in runs.values() if run for key, value in run.metrics.items() if isinstance(value, int | float)}
    )
    table = [
        {
            "metric": name,
            "label": metric_lib.METRICS[name].label if name in metric_lib.METRICS else name,
            "higher_is_better": metric_lib.METRICS[name].higher_is_better if name in metric_lib.METRICS else True,
            "values": [runs[s].metrics.get(name) if runs[s] else None for s in subject_names],
        }
        for name in metric_names
    ]
    kpis = []
    for kpi in Kpi.objects.all():
        values = [kpi_summary(kpi, s) for s in subject_names]
        if any(values):
            kpis.append({"kpi": kpi, "values": values})
    outputs = []
    # Answers side by side only for the runs on the same rows as the first one (other versions have other rows).
    on_version = [run for run in runs.values() if run and version and run.dataset_version_id == version.pk]
    first_run = on_version[0] if on_version else next((run for run in runs.values() if run), None)
    run_ids = {
        s: runs[s].pk for s in subject_names if runs[s] and runs[s].dataset_version_id == first_run.dataset_version_id
    }
    if run_ids:
        first = first_run.pk
        examples = list(
            Prediction.objects.filter(run_id=first).select_related("example").order_by("example__row_index")[:limit]
        )
        by_run = defaultdict(dict)
        for p in Prediction.objects.filter(
            run_id__in=run_ids.values(), example_id__in=[e.example_id for e in examples]
        ):
            by_run[p.run_id][p.example_id] = p.output
        for prediction in examples:
            example = prediction.example
            outputs.append(
                {
                    "example_id": example.pk,
                    "input": example.input,
                    "reference": first_run.reference_of(example),
                    "group": example.group,
                    "outputs": [by_run[run_ids[s]].get(example.pk) if s in run_ids else None for s in subject_names],
                }
            )
    return {
        "subjects": subject_names,
        "version": first_run.dataset_version if first_run else None,
        "runs": [runs[s] for s in subject_names],
        "metrics": table,
        "fairness": [runs[s].fairness if runs[s] else {} for s in subject_names],
        "kpis": kpis,
        "outputs": outputs,
    }


def use_case_list() -> QuerySet[UseCase]:
    return UseCase.objects.select_related("production", "staging", "dataset")


def version_balance(version) -> dict | None:
    """How labels spread over the groups of a version (None when it has no labels or no groups)."""
    rows = list(version.examples.order_by().values_list("label", "group"))
    if not rows or not any(label for label, _ in rows) or not any(group for _, group in rows):
        return None
    return metric_lib.balance_report([label or "(none)" for label, _ in rows], [group for _, group in rows])


def pilot_results(pilot) -> list[dict]:
    """Per KPI measured for both models in the pilot's period (and segment): both means with intervals and the
    difference, with whether it is significant."""
    results = []
    for kpi in Kpi.objects.all():
        pair = kpi_comparison_pair(
            kpi_slug=kpi.slug,
            baseline=pilot.baseline,
            candidate=pilot.candidate,
            start=pilot.period_start,
            end=pilot.period_end,
            segment=pilot.segment,
        )
        if pair:
            results.append({"kpi": kpi, **pair})
    return results


# --- promotion gate ----------------------------------------------------------------------------------------


def gate_check(*, use_case: UseCase, candidate: TrainedModel) -> dict:
    """Compare the candidate with the production model (or the base model when none) under the use case's rules.

    Every check has a `label` and a `reason` in plain words. A candidate whose latest evaluation on the gate's data
    produced no text for most rows (EvalRun.is_mostly_empty) fails, whatever the rules' margins.
    """
    baseline_name = use_case.production.name if use_case.production_id else candidate.base_model.name
    version = use_case.eval_version or candidate.dataset_version
    where = f"{version.dataset.name}, version {version.number}"
    kpis = {kpi.slug: kpi for kpi in Kpi.objects.all()}
    checks = []
    latest = latest_run(subject_name=candidate.name, version=version)
    if latest is not None and latest.is_mostly_empty:
        checks.append(
            {
                "name": "answers",
                "kind": "answers",
                "rule": "not_empty",
                "label": "Answers with text",
                "passed": False,
                "reason": f"{latest.empty_outputs_text.rstrip('.')} in evaluation #{latest.pk}, so it cannot be "
                "promoted, whatever its scores.",
            }
        )
    for rule in use_case.gate or []:
        name, kind, mode, margin = (
            rule.get("name"),
            rule.get("kind", "metric"),
            rule.get("rule", "no_regress"),
            float(rule.get("margin", 0)),
        )
        if kind == "kpi":
            label = kpis[name].name if name in kpis else str(name)
            result = kpi_comparison_pair(kpi_slug=name, baseline=baseline_name, candidate=candidate.name)
            if result is None:
                checks.append(
                    {
                        "name": name,
                        "kind": kind,
                        "rule": mode,
                        "label": label,
                        "passed": False,
                        "reason": f"{label} has no figures for both {candidate.name} and {baseline_name} yet: "
                        "import them.",
                    }
                )
                continue
            candidate_value, baseline_value, higher = (
                result["candidate"]["mean"],
                result["baseline"]["mean"],
                result["higher_is_better"],
            )
            significant = result["comparison"]["significant"]
        else:
            spec = metric_lib.METRICS.get(name)
            label = spec.label if spec else str(name)
            candidate_value = latest_metric(subject_name=candidate.name, metric=name, version=version)
            baseline_value = latest_metric(subject_name=baseline_name, metric=name, version=version)
            if spec is None or candidate_value is None or baseline_value is None:
                if spec is None:
                    reason = f"“{name}” is not a score Tuning Desk measures: change this rule of the gate."
                elif candidate_value is None and baseline_value is None:
                    reason = f"{label} is not measured for this model or for {baseline_name} on {where} yet: "
                    reason += "evaluate both."
                elif candidate_value is None:
                    reason = f"{label} is not measured for this model on {where} yet: evaluate it."
                else:
                    reason = f"{label} is not measured for {baseline_name} on {where} yet: evaluate it too."
                checks.append(
                    {"name": name, "kind": kind, "rule": mode, "label": label, "passed": False, "reason": reason}
                )
                continue
            higher, significant = spec.higher_is_better, True
        delta = candidate_value - baseline_value
        gain = delta if higher else -delta
        if mode == "improve":
            passed = gain >= margin and gain > 0 and significant
            reason = f"must improve by at least {margin:g}" + (
                "" if significant else " (the difference is not significant)"
            )
        else:
            passed = gain >= -margin
            reason = f"must not get worse by more than {margin:g}"
        checks.append(
            {
                "name": name,
                "kind": kind,
                "rule": mode,
                "label": label,
                "candidate": candidate_value,
                "baseline": baseline_value,
                "delta": delta,
                "passed": passed,
                "reason": ("passes: " if passed else "fails: ") + reason,
            }
        )
    if not checks:
        checks.append(
            {
                "name": "gate",
                "kind": "gate",
                "rule": "defined",
                "label": "Gate rules",
                "passed": False,
                "reason": "This use case has no gate rules yet; add at least one.",
            }
        )
    return {
        "passed": all(check["passed"] for check in checks),
        "baseline": baseline_name,
        "candidate": candidate.name,
        "checks": checks,
    }


# --- home page queues ----------------------------------------------------------------------------

GATE_CHECKS_ON_HOME = 5  # the newest candidates checked against their use case's gate (each check reads their runs)


def candidates_passing_gate() -> list[dict]:
    """Candidates (and staging models) that pass their use case's promotion gate today: ``{"use_case", "model"}``.

    Only the newest few candidates are checked, so the home page's cost does not grow with the registry.
    """
    from training.models import TrainedModel

    use_cases = list(UseCase.objects.select_related("production"))
    tasks = {use_case.task for use_case in use_cases}
    candidates = list(
        TrainedModel.objects.filter(
            task__in=tasks, stage__in=[TrainedModel.Stage.CANDIDATE, TrainedModel.Stage.STAGING]
        )
        .select_related("base_model", "dataset_version__dataset")
        .order_by("-created_at", "-pk")[:GATE_CHECKS_ON_HOME]
    )
    passing = []
    for trained in candidates:
        for use_case in use_cases:
            eligible = use_case.task == trained.task and use_case.production_id != trained.pk and use_case.gate
            if eligible and gate_check(use_case=use_case, candidate=trained)["passed"]:
                passing.append({"use_case": use_case, "model": trained})
    return passing


def kpi_headline() -> list[dict]:
    """The dashboard's headline in two queries: per KPI, the production model's average over all periods and the
    best other model's, weighted by sample size (the dashboard adds intervals and significance)."""
    rows = (
        KpiObservation.objects.values("kpi__slug", "kpi__name", "kpi__unit", "kpi__kind", "kpi__higher_is_better")
        .annotate(model=F("model_name"), total=Sum(F("value") * F("sample_size")), n=Sum("sample_size"))
        .order_by("kpi__name", "model_name")
    )
    productions = set(production_model_names())
    by_kpi: dict[str, dict] = {}
    for row in rows:
        entry = by_kpi.setdefault(
            row["kpi__slug"],
            {
                "name": row["kpi__name"],
                "unit": row["kpi__unit"],
                "proportion": row["kpi__kind"] == Kpi.Kind.PROPORTION,
                "higher_is_better": row["kpi__higher_is_better"],
                "models": [],
            },
        )
        entry["models"].append({"model": row["model"], "mean": row["total"] / row["n"], "n": row["n"]})
    headline = []
    for entry in by_kpi.values():
        sign = 1 if entry["higher_is_better"] else -1
        production = next((m for m in entry["models"] if m["model"] in productions), None)
        others = [m for m in entry["models"] if m is not production]
        best = max(others, key=lambda m: sign * m["mean"], default=None)
        headline.append({**entry, "production": production, "best_other": best})
    return headline


def promotions_recent(*, limit: int = 5) -> QuerySet[StageChange]:
    """The last models put into production (promotions and rollbacks), newest first."""
    return StageChange.objects.filter(to_stage="production").select_related("use_case", "trained_model", "actor")[
        :limit
    ]


def failed_recent(*, since) -> list[dict]:
    """Evaluations and KPI imports that failed since ``since``, for the admin's home page."""
    failed = [
        {
            "what": f"Evaluation #{run.pk} on {run.dataset_version}",
            "when": run.finished_at or run.created_at,
            "error": run.error,
            "url": reverse("evaluation:run_detail", args=[run.pk]),
        }
        for run in EvalRun.objects.filter(status=EvalRun.Status.FAILED, created_at__gte=since)
        .select_related("dataset_version__dataset")
        .order_by("-created_at")[:5]
    ]
    failed += [
        {
            "what": f"Import of business results from {run.original_name}",
            "when": run.created_at,
            "error": run.error,
            "url": reverse("evaluation:kpi_import_run", args=[run.pk]),
        }
        for run in KpiImportRun.objects.filter(status=KpiImportRun.Status.FAILED, created_at__gte=since).order_by(
            "-created_at"
        )[:5]
    ]
    return failed
