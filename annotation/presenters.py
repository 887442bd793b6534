"""Annotation's pages in words and widgets: the answer form's fields, answers as rows, agreement figures with their
names and help, and the progress and outcome of publishing.

Presenters only shape what views loaded for the templates; they read nothing from the database and change nothing.
"""

from __future__ import annotations

from django.utils import timezone

from annotation.forms import answer_input_name
from annotation.models import PublishRun

FIGURE_NAMES = {
    "cohen_kappa": "Cohen's kappa",
    "weighted_kappa": "Weighted kappa",
    "fleiss_kappa": "Fleiss' kappa",
    "krippendorff_alpha": "Krippendorff's alpha",
    "text_similarity": "Text similarity (ROUGE-L)",
    "percent_agreement": "Exact agreement",
}


FIGURE_HELP = {
    "cohen_kappa": "Agreement of the two annotators beyond what chance gives: 1 is perfect, 0 is no better than "
    "chance.",
    "weighted_kappa": "Like Cohen's kappa, but near-misses (4 against 5) count less than far ones (1 against 5).",
    "fleiss_kappa": "Agreement of three or more annotators beyond chance: 1 is perfect, 0 is no better than chance.",
    "krippendorff_alpha": "Agreement beyond chance that allows missing answers; for ratings, near-misses count less.",
    "text_similarity": "How much of the wording two annotators' texts share, from 0 (nothing) to 1 (the same).",
    "percent_agreement": "Share of pairs of answers to the same example that are exactly the same.",
}


def answer_widgets(schema: dict, values: dict, errors: dict, *, keys: dict | None = None) -> list[dict]:
    """What the template needs to draw each field of the schema: its options, their keys, what is chosen."""
    keys = keys or {}
    widgets = []
    for field in schema["fields"]:
        name, kind = field["name"], field["kind"]
        value = values.get(name)
        widget = {
            "name": name,
            "input_name": answer_input_name(name),
            "kind": kind,
            "title": field["title"],
            "required": field["required"],
            "writes": field["writes"],
            "multiple": bool(field.get("multiple")),
            "error": errors.get(name, ""),
            "value": "",
            "options": [],
        }
        if kind == "text":
            widget["value"] = value if isinstance(value, str) else ""
        elif kind == "choice":
            chosen = {str(v) for v in (value if isinstance(value, list) else [value]) if v is not None}
            widget["options"] = [
                {
                    "value": option,
                    "label": option,
                    "key": keys.get(name, {}).get(option, ""),
                    "checked": option in chosen,
                    "help": "",
                }
                for option in field["options"]
            ]
        else:
            rubric = field.get("rubric") or {}
            widget["options"] = [
                {
                    "value": str(score),
                    "label": str(score),
                    "key": keys.get(name, {}).get(str(score), ""),
                    "checked": str(value) == str(score),
                    "help": rubric.get(str(score), ""),
                }
                for score in range(1, field["scale"] + 1)
            ]
        widgets.append(widget)
    return widgets


def answer_rows(schema: dict, answer: dict | None) -> list[tuple[str, str]]:
    """(field title, value in words) of an answer, in schema order."""
    answer = answer or {}
    rows = []
    for field in schema["fields"]:
        value = answer.get(field["name"])
        if isinstance(value, list):
            value = ", ".join(value)
        rows.append((field["title"], "" if value is None else str(value)))
    return rows


def _figure(summary: dict, name: str) -> dict:
    value = summary.get(name)
    return {"key": name, "name": FIGURE_NAMES[name], "value": value, "help": FIGURE_HELP[name]}


def agreement_fields(agreement: dict, *, with_counts: bool) -> list[dict]:
    """Per field: the headline figure with its name and band, the other figures that apply, and why one is missing.

    ``with_counts``: how often each option was chosen, only for people who may read everyone's answers (with two
    annotators, the counts and one's own answers tell the other's).
    """
    fields = []
    for entry in agreement["fields"]:
        summary = entry["summary"]
        headline = summary["headline"]
        others = [
            name
            for name in ("percent_agreement", "cohen_kappa", "weighted_kappa", "fleiss_kappa", "krippendorff_alpha")
            if name != headline and summary.get(name) is not None
        ]
        if summary["pairs"] == 0 or (headline == "text_similarity" and summary["text_similarity"] is None):
            missing = "Not measured yet: it needs examples answered by at least two people."
        elif summary[headline] is None:
            missing = (
                "Not defined: everyone gave the same answer, so agreement cannot be told apart from chance. "
                "Exact agreement still tells how often they matched."
            )
        else:
            missing = ""
        fields.append(
            {
                "title": entry["title"],
                "kind": entry["kind"],
                "headline": _figure(summary, headline),
                "interpretation": summary.get("interpretation"),
                "missing": missing,
                "others": [_figure(summary, name) for name in others],
                "items": summary["items"],
                "annotators": summary["annotators"],
                "pairs": summary["pairs"],
                "options": [
                    option if with_counts else {k: v for k, v in option.items() if k != "times_chosen"}
                    for option in entry["options"]
                ],
                "option_figure": FIGURE_NAMES.get(entry["options"][0]["headline"], "") if entry["options"] else "",
            }
        )
    return fields


def publish_run_progress(run: PublishRun) -> dict:
    """The shape the progress bar's script reads (curation/_progress.html, curation/live.js)."""
    label = run.get_status_display()
    if run.status == PublishRun.Status.CHECKING and run.texts_total:
        label = f"{label}: {run.texts_checked:,} of {run.texts_total:,} texts"
    return {
        "status": run.status,
        "label": label,
        "fraction": run.fraction,
        "eta_seconds": None,
        "rows": None,
        "finished": run.is_finished,
    }


def publish_summary(run: PublishRun | None) -> dict:
    """A project's latest publish run: its progress while it goes, then what came of it in one sentence."""
    if run is None:
        return {}
    if not run.is_finished:
        return {"run": run, "running": True, "progress": publish_run_progress(run)}
    when = timezone.localtime(run.finished_at or run.heartbeat_at or run.created_at)
    block = {"run": run, "when": when}
    if run.status != PublishRun.Status.DONE:  # failed, or lost
        block.update(level="error", text=run.error_text)
        return block
    version = run.version
    if version is None:  # deleted since
        return {}
    params = version.operation_params or {}
    finished = " The project was finished: annotators can no longer add answers." if run.finish else ""
    written = f"{params.get('settled', 0):,} settled answers written into {version.row_count:,} rows."
    if version.is_approved:
        block.update(level="success", text=f"Version {version.number} of {version.dataset.name} is ready: {written}")
    else:
        found = ", ".join(sorted(params.get("privacy_check", {}).get("entities", {})))
        block.update(
            level="warning",
            text=f"Version {version.number} of {version.dataset.name} was made ({written}) but text written by "
            f"annotators seems to hold personal data ({found}). A privacy reviewer must review that version "
            f"before it can be trained on or exported.",
        )
    block["text"] += finished
    block["version"] = version
    return block
