"""Evaluation's figures in words for the pages: scores, gaps, KPI intervals, verdicts, gate rules and tables.

Presenters only turn stored figures (runs, selectors' results, gate checks) into text and rows a manager reads at a
glance; they compute nothing new, read nothing from the database and change nothing. Views pass them what they loaded.
"""

from __future__ import annotations

import math

from curation.models import TaskType
from evaluation import metrics as metric_lib
from evaluation.models import EvalRun, Kpi

MINUS = "\u2212"


# Scores stored next to the metrics that are not in metric_lib.METRICS.
EXTRA_LABELS = {
    "pred_length_median": "Answer length, median (words)",
    "pred_length_p95": "Answer length, longest 5 % (words)",
    "ref_length_mean": "Reference length (words)",
}


# A direction a metric has in metric_lib but that says nothing about quality (see its MetricSpec comment).
NO_BEST = {"pred_length_mean"}


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


def measured_metrics(metrics: dict | None) -> set[str]:
    """The names of the scores a run holds as numbers (what can be scored again)."""
    return {name for name, value in (metrics or {}).items() if _finite(value)}


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


def dashboard_cards(dashboard: list[dict], productions: set[str]) -> list[dict]:
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


def run_headline(run: EvalRun) -> list[tuple[str, str]]:
    names = ("accuracy", "macro_f1") if run.task == TaskType.CLASSIFICATION else ("rougeL", "bleu")
    return [(metric_label(n), metric_text(n, run.metrics.get(n))) for n in names if n in (run.metrics or {})]


def flagged_count(run: EvalRun) -> int:
    return sum(1 for gap in (run.fairness or {}).values() if gap.get("flagged"))


def run_live(run: EvalRun) -> dict:
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


def run_metric_rows(run: EvalRun) -> list[dict]:
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


def group_table(run: EvalRun) -> dict:
    groups = run.per_group or {}
    names = [
        row["name"] for row in run_metric_rows(run) if any(name == row["name"] for g in groups.values() for name in g)
    ]
    return {
        "metrics": [(name, metric_label(name)) for name in names],
        "rows": [
            {"group": group, "n": scores.get("n"), "values": [metric_text(name, scores.get(name)) for name in names]}
            for group, scores in groups.items()
        ],
    }


def confusion_table(run: EvalRun) -> dict | None:
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


def balance_table(report: dict | None) -> dict | None:
    """selectors.version_balance's report as table rows (None when the version has no groups to balance)."""
    if report is None:
        return None
    rows = [
        {"group": group, "n": entry["n"], "shares": [entry["shares"][label] for label in report["labels"]]}
        for group, entry in report["groups"].items()
    ]
    return {"labels": report["labels"], "rows": rows, "max_share_gap": report["max_share_gap"]}


def _best_flags(values: list, higher_is_better: bool, name: str) -> list[bool]:
    numbers = [v for v in values if _finite(v)]
    if name in NO_BEST or len(numbers) < 2 or len(set(numbers)) == 1:
        return [False] * len(values)
    best = max(numbers) if higher_is_better else min(numbers)
    return [_finite(v) and v == best for v in values]


def comparison_view(data: dict, *, can_view_rows: bool) -> dict:
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


_CSV_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """Text a spreadsheet will not run as a formula; numbers as they are stored."""
    if value is None:
        return ""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_CSV_DANGEROUS) else text


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


def gate_rows(gate: dict, kpis: dict[str, Kpi]) -> list[dict]:
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
