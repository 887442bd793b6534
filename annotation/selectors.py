"""Reads for annotation: progress, agreement, the review queue and what a project produced."""

from __future__ import annotations

from collections import defaultdict
from statistics import median

from django.core.cache import cache
from django.db.models import Count, Exists, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from annotation import agreement
from annotation import schema as schemas
from annotation.models import Annotation, AnnotationProject, Assignment, PublishRun, Task
from curation.models import DatasetVersion

AGREEMENT_CACHE_SECONDS = 24 * 3600


def project_list():
    """Every project, newest first: whoever may view projects sees all of them (answers are guarded elsewhere)."""
    return AnnotationProject.objects.select_related("version__dataset").order_by("-created_at", "-id")


def project_progress(project: AnnotationProject, user=None, *, timing: bool = False) -> dict:
    """Counts for the progress bars: the project's answers and settled examples, and the user's own work
    (with ``timing``, also the user's median seconds per example, which reads all their answers)."""
    k = project.annotations_per_example
    tasks = Task.objects.filter(project=project)
    totals = tasks.aggregate(
        answers=Sum("annotation_count"),
        agreed=Count("id", filter=Q(status=Task.Status.AGREED)),
        adjudicated=Count("id", filter=Q(status=Task.Status.ADJUDICATED)),
        disagreements=Count("id", filter=Q(status=Task.Status.DISAGREEMENT)),
        gold=Count("id", filter=Q(is_gold=True)),
    )
    needed = project.task_count * k
    answers = min(totals["answers"] or 0, needed)  # extra answers (an adjudicated task) do not overfill the bar
    progress = {
        "tasks": project.task_count,
        "annotations_per_example": k,
        "answers": totals["answers"] or 0,
        "answers_needed": needed,
        "percent": round(100 * answers / needed, 1) if needed else 0.0,
        "agreed": totals["agreed"],
        "adjudicated": totals["adjudicated"],
        "disagreements": totals["disagreements"],
        "settled": totals["agreed"] + totals["adjudicated"],
        "gold": totals["gold"],
        "working_now": Assignment.objects.filter(
            task__project=project, status=Assignment.Status.ACTIVE, expires_at__gt=timezone.now()
        ).count(),
    }
    if user is not None and user.is_authenticated:
        mine = Annotation.objects.filter(task__project=project, annotator=user)
        counts = mine.aggregate(done=Count("id"), today=Count("id", filter=Q(created_at__date=timezone.localdate())))
        done = counts["done"]
        progress["mine"] = {
            "answers": done,
            "percent": round(100 * done / project.task_count, 1) if project.task_count else 0.0,
            "today": counts["today"],
        }
        if timing:
            progress["mine"]["median_seconds"] = median(mine.values_list("seconds", flat=True)) if done else None
    return progress


def _tables(project: AnnotationProject) -> tuple[dict, dict, dict, dict, dict]:
    """One pass over the project's answers: per field ``{task: {annotator: comparable value}}`` and the same with
    raw values; the gold answers ``{task: answer}`` and the answers given on those tasks
    ``{task: {annotator: answer}}``; ``{annotator: [seconds]}``."""
    fields = {field["name"]: field for field in project.schema["fields"]}
    tables: dict[str, dict] = {name: defaultdict(dict) for name in fields}
    raw: dict[str, dict] = {name: defaultdict(dict) for name in fields}
    gold = dict(Task.objects.filter(project=project, is_gold=True).values_list("id", "gold_answer"))
    on_gold: dict[int, dict] = defaultdict(dict)
    seconds: dict[str, list[float]] = defaultdict(list)
    rows = Annotation.objects.filter(task__project=project).values_list(
        "task_id", "annotator_name", "answer", "seconds"
    )
    for task_id, name, answer, spent in rows.iterator(chunk_size=5000):
        seconds[name].append(spent)
        if task_id in gold:
            on_gold[task_id][name] = answer
        for field_name, field in fields.items():
            value = answer.get(field_name)
            if value not in (None, "", []):
                tables[field_name][task_id][name] = schemas.comparable(field, value)
                raw[field_name][task_id][name] = value
    return tables, raw, gold, on_gold, seconds


def project_agreement(project: AnnotationProject) -> dict:
    """``agreement_compute``, cached until an answer, a settled answer or a gold answer of the project changes
    (every such change saves its task, so the newest task change and the answer count identify the state).
    ROUGE-L over thousands of free-text pairs takes seconds; the project page should not."""
    stamp = Task.objects.filter(project=project).aggregate(changed=Max("updated_at"), answers=Sum("annotation_count"))
    changed = stamp["changed"].timestamp() if stamp["changed"] else 0
    key = f"annotation:agreement:{project.pk}:{changed}:{stamp['answers'] or 0}"
    return cache.get_or_set(key, lambda: agreement_compute(project), AGREEMENT_CACHE_SECONDS)


def agreement_compute(project: AnnotationProject) -> dict:
    """Agreement per field (Cohen's kappa for two annotators, Fleiss' kappa and Krippendorff's alpha for more,
    ROUGE-L similarity for free text), per option of each choice field (that option against the rest), and per
    annotator: agreement with the others, accuracy on gold examples, answers and median time."""
    fields = project.schema["fields"]
    tables, raw, gold, on_gold, seconds = _tables(project)
    result_fields = []
    per_annotator: dict[str, dict] = {
        name: {
            "name": name,
            "answers": len(times),
            "median_seconds": round(median(times), 1) if times else None,
            "fields": {},
        }
        for name, times in sorted(seconds.items())
    }
    for field in fields:
        summary = agreement.summarize(schemas.agreement_kind(field), tables[field["name"]])
        entry = {
            "name": field["name"],
            "title": field["title"],
            "kind": field["kind"],
            "summary": summary,
            "options": [],
        }
        if field["kind"] == "choice":
            for option in field["options"]:
                binary = {
                    task: {
                        who: option in (value if isinstance(value, list) else [value]) for who, value in answers.items()
                    }
                    for task, answers in raw[field["name"]].items()
                }
                option_summary = agreement.summarize("choice", binary)
                used = sum(1 for answers in binary.values() for chosen in answers.values() if chosen)
                entry["options"].append(
                    {
                        "option": option,
                        "times_chosen": used,
                        "headline": option_summary["headline"],
                        "value": option_summary[option_summary["headline"]],
                        "percent_agreement": option_summary["percent_agreement"],
                    }
                )
        for name, figures in summary.get("per_annotator", {}).items():
            per_annotator[name]["fields"][field["name"]] = figures
        result_fields.append(entry)
    # Gold: the share of gold examples where every answered field matches the gold answer.
    if gold:
        by_field = {field["name"]: field for field in fields}
        scores: dict[str, list[bool]] = defaultdict(list)
        for task_id, answers in on_gold.items():
            expected = gold[task_id]
            for name, answer in answers.items():
                checked = [
                    schemas.matches(by_field[key], answer.get(key), value)
                    for key, value in expected.items()
                    if key in by_field
                ]
                scores[name].append(all(checked) if checked else False)
        for name, results in scores.items():
            per_annotator[name]["gold"] = {
                "n": len(results),
                "correct": sum(results),
                "accuracy": sum(results) / len(results),
            }
    for entry in per_annotator.values():
        entry.setdefault("gold", None)
        shares = [f.get("with_consensus") for f in entry["fields"].values() if f.get("with_consensus") is not None]
        similar = [f.get("text_similarity") for f in entry["fields"].values() if f.get("text_similarity") is not None]
        entry["with_consensus"] = sum(shares) / len(shares) if shares else None
        entry["text_similarity"] = sum(similar) / len(similar) if similar else None
    return {"fields": result_fields, "annotators": list(per_annotator.values()), "gold_examples": len(gold)}


def review_queue(project: AnnotationProject):
    """Examples whose annotators disagree, in project order, with their answers."""
    return (
        Task.objects.filter(project=project, status=Task.Status.DISAGREEMENT)
        .select_related("example")
        .prefetch_related("annotations")
        .order_by("position")
    )


def project_tasks(project: AnnotationProject, *, status: str | None = None):
    tasks = Task.objects.filter(project=project).select_related("example", "adjudicated_by").order_by("position")
    return tasks.filter(status=status) if status else tasks


def published_versions(project: AnnotationProject):
    return DatasetVersion.objects.filter(
        dataset=project.version.dataset,
        operation=DatasetVersion.Operation.ANNOTATE,
        operation_params__annotation_project=project.pk,
    ).order_by("-number")


def publish_run_latest(project: AnnotationProject) -> PublishRun | None:
    return project.publish_runs.select_related("version__dataset").first()


def assignments_of(user):
    """An annotator's own reservations, newest first: nobody sees anyone else's."""
    return Assignment.objects.filter(annotator=user).select_related("task__project", "task__example")


# --- home page queues ----------------------------------------------------------------------------


def annotator_queue(*, user) -> list[AnnotationProject]:
    """Open projects with examples left for ``user``: ``left`` (examples they may still answer) and ``mine`` (their
    answers), in one query. Like the labelling page, an example counts until it has its answers, and never counts
    for someone who answered or skipped it."""
    answered = Annotation.objects.filter(task=OuterRef("pk"), annotator=user)
    skipped = Assignment.objects.filter(task=OuterRef("pk"), annotator=user, status=Assignment.Status.SKIPPED)
    left = (
        Task.objects.filter(
            ~Exists(answered),
            ~Exists(skipped),
            project=OuterRef("pk"),
            status=Task.Status.OPEN,
            annotation_count__lt=OuterRef("annotations_per_example"),
        )
        .order_by()
        .values("project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    mine = (
        Annotation.objects.filter(task__project=OuterRef("pk"), annotator=user)
        .order_by()
        .values("task__project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    projects = (
        AnnotationProject.objects.filter(status=AnnotationProject.Status.OPEN)
        .annotate(left=Coalesce(Subquery(left), 0), mine=Coalesce(Subquery(mine), 0))
        .filter(left__gt=0)
        .order_by("created_at", "id")
    )
    rows = list(projects)
    for project in rows:
        project.mine_percent = round(100 * project.mine / (project.mine + project.left), 1)
    return rows


def disagreements_waiting() -> list[AnnotationProject]:
    """Projects with examples whose annotators disagree, with how many (``disagreements``), in one query."""
    return list(
        AnnotationProject.objects.annotate(
            disagreements=Count("tasks", filter=Q(tasks__status=Task.Status.DISAGREEMENT))
        )
        .filter(disagreements__gt=0)
        .order_by("created_at", "id")
    )


def failed_recent(*, since) -> list[dict]:
    """Publications of a project's answers that failed since ``since``, for the admin's home page."""
    return [
        {
            "what": f"New version from the project {run.project}",
            "when": run.created_at,
            "error": run.error,
            "url": reverse("annotation:project_detail", args=[run.project_id]),
        }
        for run in PublishRun.objects.filter(status=PublishRun.Status.FAILED, created_at__gte=since)
        .select_related("project")
        .order_by("-created_at")[:5]
    ]
