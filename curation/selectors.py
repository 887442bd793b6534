"""Reads for datasets: listing, browsing with keyset pagination, previews, exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Window
from django.urls import reverse

from curation import formats
from curation.models import (
    Dataset,
    DatasetVersion,
    DedupeRun,
    DuplicateGroup,
    Example,
    Finding,
    Flag,
    RedactionRun,
    Upload,
)

PAGE_SIZE = 50
_CSV_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.visible().order_by("name")


def with_privacy_review(versions: QuerySet[DatasetVersion]) -> QuerySet[DatasetVersion]:
    """Each version's open privacy review (``open_review_id``), read by ``DatasetVersion.privacy_state``."""
    open_reviews = RedactionRun.objects.filter(version=OuterRef("pk"), status__in=RedactionRun.ACTIVE_STATUSES)
    return versions.annotate(open_review_id=Subquery(open_reviews.values("pk")[:1]))


def version_list(dataset: Dataset) -> QuerySet[DatasetVersion]:
    return with_privacy_review(dataset.versions.ready().order_by("-number"))


def version_ready_get(version_id: int) -> DatasetVersion:
    return with_privacy_review(DatasetVersion.objects.ready().select_related("dataset", "parent")).get(pk=version_id)


def version_labels(version: DatasetVersion) -> list[str]:
    """The distinct non-empty labels of a version's rows, sorted (the classes a classifier learns)."""
    # order_by(): the model's default ordering would otherwise make DISTINCT see one row per example.
    return sorted(set(version.examples.exclude(label="").order_by().values_list("label", flat=True).distinct()))


def example_search(
    version: DatasetVersion, *, q: str = "", split: str = "", label: str = "", group: str = "", flag: int | None = None
) -> QuerySet[Example]:
    """Examples of a version with the browse filters applied, ordered by row (the keyset)."""
    examples = Example.objects.filter(version=version)
    if split:
        examples = examples.filter(split=split)
    if label:
        examples = examples.filter(label=label)
    if group:
        examples = examples.filter(group=group)
    if flag:
        examples = examples.flagged(flag)
    q = q.strip()
    if q:
        if connection.vendor == "postgresql":
            examples = examples.annotate(search=SearchVector("input", "target", config="english")).filter(
                search=SearchQuery(q, config="english", search_type="websearch")
            )
        else:
            examples = examples.filter(input__icontains=q) | examples.filter(target__icontains=q)
    return examples.order_by("row_index")


def example_page(
    examples: QuerySet[Example], *, after: int | None = None, before: int | None = None, size: int = PAGE_SIZE
) -> tuple[list[Example], bool, bool]:
    """One page by keyset (row_index), fast at any depth: (rows, has_previous, has_next)."""
    if before is not None:
        rows = list(examples.filter(row_index__lt=before).order_by("-row_index")[: size + 1])
        has_previous = len(rows) > size
        rows = list(reversed(rows[:size]))
        return rows, has_previous, True
    if after is not None:
        examples = examples.filter(row_index__gt=after)
    rows = list(examples[: size + 1])
    return rows[:size], after is not None, len(rows) > size


def upload_preview(upload: Upload, mapping: dict, rows: int = 10) -> list[dict]:
    """The first rows of an upload with a mapping applied, and the problem of each row, if any."""
    preview = []
    for item in formats.read_rows(upload.file.path, upload.format, max_row_bytes=settings.TUNINGDESK_MAX_ROW_BYTES):
        if isinstance(item, formats.Problem):
            preview.append({"line": item.line, "problem": item.message})
        else:
            mapped = formats.map_row(
                item, mapping, task_type=upload.task_type, max_text_chars=settings.TUNINGDESK_MAX_TEXT_CHARS
            )
            if isinstance(mapped, list):
                preview.append({"line": item.line, "problem": "; ".join(p.message for p in mapped)})
            else:
                preview.append(
                    {
                        "line": item.line,
                        "input": mapped.input,
                        "target": mapped.target,
                        "label": mapped.label,
                        "group": mapped.group,
                        "metadata": mapped.metadata,
                    }
                )
        if len(preview) >= rows:
            break
    return preview


def flag_choices() -> list[tuple[int, str]]:
    return [(flag.value, flag.label) for flag in Flag]


def _neutralise(value: str) -> str:
    """Spreadsheet programs run cells that start with = + - @ (or tab/CR) as formulas: prefix a quote."""
    return "'" + value if value.startswith(_CSV_DANGEROUS) else value


EXPORT_FIELDS = ("id", "row", "split", "input", "target", "label", "group", "metadata")


def _export_rows(version: DatasetVersion) -> Iterator[dict]:
    rows = version.examples.order_by("row_index").values_list(
        "row_index", "split", "input", "target", "label", "group", "metadata"
    )
    for row_index, split, text, target, label, group, metadata in rows.iterator(chunk_size=5000):
        yield {
            "id": f"{version.pk}-{row_index}",
            "row": row_index,
            "split": split,
            "input": text,
            "target": target,
            "label": label,
            "group": group,
            "metadata": metadata,
        }


def version_export_jsonl(version: DatasetVersion) -> Iterator[str]:
    for row in _export_rows(version):
        yield json.dumps(row, ensure_ascii=False) + "\n"


def version_export_csv(version: DatasetVersion) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for count, row in enumerate(_export_rows(version), start=1):
        row["metadata"] = json.dumps(row["metadata"], ensure_ascii=False) if row["metadata"] else ""
        writer.writerow([_neutralise(str(row[name])) for name in EXPORT_FIELDS])
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def upload_report_csv(upload: Upload) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "field", "reason", "message", "excerpt"])
    for count, problem in enumerate(upload.problems.order_by("line", "id").iterator(chunk_size=5000), start=1):
        writer.writerow(
            [
                problem.line,
                _neutralise(problem.field),
                problem.reason,
                _neutralise(problem.message),
                _neutralise(problem.excerpt),
            ]
        )
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- pages ---------------------------------------------------------------------------------------


def dataset_list_summary() -> QuerySet[Dataset]:
    """Visible datasets with their latest ready version's id, number, row count and date, in one query."""
    latest = DatasetVersion.objects.ready().filter(dataset=OuterRef("pk")).order_by("-number")
    # Privacy of the latest version, and the newest approved one (the one people can use) when it is older.
    approved = latest.filter(privacy=DatasetVersion.Privacy.APPROVED)
    return dataset_list().annotate(
        latest_version_id=Subquery(latest.values("pk")[:1]),
        latest_number=Subquery(latest.values("number")[:1]),
        latest_rows=Subquery(latest.values("row_count")[:1]),
        latest_created_at=Subquery(latest.values("created_at")[:1]),
        latest_privacy=Subquery(latest.values("privacy")[:1]),
        latest_open_review_id=Subquery(with_privacy_review(latest).values("open_review_id")[:1]),
        approved_version_id=Subquery(approved.values("pk")[:1]),
        approved_number=Subquery(approved.values("number")[:1]),
    )


def version_lineage(version: DatasetVersion) -> list[DatasetVersion]:
    """The chain of versions this one was made from, oldest first, ending with the version itself."""
    chain = [version]
    seen = {version.pk}
    while chain[-1].parent_id and chain[-1].parent_id not in seen:
        parent = DatasetVersion.objects.select_related("created_by").get(pk=chain[-1].parent_id)
        seen.add(parent.pk)
        chain.append(parent)
    return list(reversed(chain))


def upload_list() -> QuerySet[Upload]:
    return Upload.objects.select_related("created_by", "version")


def dedupe_runs_of(version: DatasetVersion) -> QuerySet[DedupeRun]:
    return version.dedupe_runs.select_related("created_by", "result_version")


def duplicate_groups_with_members(groups: list[DuplicateGroup]) -> list[tuple[DuplicateGroup, list[Example]]]:
    """Each duplicate group with its member rows in the group's order, loaded in one query."""
    ids = [example_id for group in groups for example_id in group.example_ids]
    examples = Example.objects.in_bulk(ids)
    return [(group, [examples[i] for i in group.example_ids if i in examples]) for group in groups]


# --- REST API ------------------------------------------------------------------------------------


def example_ready_get(example_id: int) -> Example:
    """One example, only if its version is ready (staged imports are invisible)."""
    return Example.objects.get(pk=example_id, version__in=DatasetVersion.objects.ready())


def upload_list_for(user) -> QuerySet[Upload]:
    """The uploads a user may see and act on: their own, or all of them with ``curation.view_upload``.

    No role grants ``curation.view_upload``; superusers (the admin role) hold every permission.
    """
    uploads = upload_list()
    if user.has_perm("curation.view_upload"):
        return uploads
    return uploads.filter(created_by=user)


def dedupe_run_get(run_id: int) -> DedupeRun:
    return DedupeRun.objects.select_related("version", "result_version", "created_by").get(
        pk=run_id, version__in=DatasetVersion.objects.ready()
    )


# --- privacy review ------------------------------------------------------------------------------


def redaction_run_get(run_id: int) -> RedactionRun:
    """One detection run of a ready version, with what its pages show next to it."""
    return RedactionRun.objects.select_related("version__dataset", "result_version", "created_by", "approved_by").get(
        pk=run_id, version__in=DatasetVersion.objects.ready()
    )


def redaction_runs_of(version: DatasetVersion) -> QuerySet[RedactionRun]:
    return version.redaction_runs.select_related("created_by", "result_version")


def redaction_run_that_made(version: DatasetVersion) -> RedactionRun | None:
    """The approved run whose redacted rows are this version, if it is one."""
    return RedactionRun.objects.filter(result_version=version).first()


def findings_filter(
    run: RedactionRun,
    *,
    entity_type: str = "",
    status: str = "",
    min_score: float | None = None,
    max_score: float | None = None,
    example: int | None = None,
) -> QuerySet[Finding]:
    """Findings of a run with the review filters applied (every filter optional)."""
    findings = run.findings.all()
    if entity_type:
        findings = findings.filter(entity_type=entity_type)
    if status:
        findings = findings.filter(status=status)
    if min_score is not None:
        findings = findings.filter(score__gte=min_score)
    if max_score is not None:
        findings = findings.filter(score__lte=max_score)
    if example is not None:
        findings = findings.filter(example_id=example)
    return findings


def review_queue(run: RedactionRun, *, unreviewed: bool = False, **filters) -> QuerySet[Example]:
    """Rows with at least one finding that matches the filters, by row.

    ``unreviewed``: only rows with something left to review: a matching finding not yet reviewed or, when
    a decision is asked for in the filters, any finding not yet reviewed.
    """
    if unreviewed and not filters.get("status"):
        filters = {**filters, "status": Finding.Status.PENDING}
        unreviewed = False
    examples = Example.objects.filter(pk__in=findings_filter(run, **filters).values("example_id"))
    if unreviewed:
        examples = examples.filter(pk__in=run.findings.pending().values("example_id"))
    return examples.order_by("row_index")


def findings_of_examples(run: RedactionRun, example_ids: list[int]) -> dict[int, list[Finding]]:
    """Every finding of the run in these rows, grouped by row, in text order."""
    grouped: dict[int, list] = {example_id: [] for example_id in example_ids}
    for finding in run.findings.filter(example_id__in=example_ids).select_related("decided_by"):
        grouped[finding.example_id].append(finding)
    return grouped


def findings_pending_by_type(run: RedactionRun) -> dict[str, int]:
    rows = run.findings.pending().values("entity_type").annotate(count=Count("id")).order_by("entity_type")
    return {row["entity_type"]: row["count"] for row in rows}


def redaction_summary(run: RedactionRun) -> dict:
    """Counts by entity type and by reviewer, for the summary page and API."""
    accepted = Q(status=Finding.Status.ACCEPTED)
    rejected = Q(status=Finding.Status.REJECTED)
    added = Q(recognizer="reviewer")
    by_type = []
    for row in (
        run.findings.values("entity_type")
        .annotate(
            total=Count("id"),
            accepted=Count("id", filter=accepted),
            rejected=Count("id", filter=rejected),
            pending=Count("id", filter=Q(status=Finding.Status.PENDING)),
            added=Count("id", filter=added),
        )
        .order_by("-total", "entity_type")
    ):
        decided = row["accepted"] + row["rejected"]
        by_type.append({**row, "acceptance_rate": row["accepted"] / decided if decided else None})
    reviewers = list(
        run.findings.filter(accepted | rejected)
        .exclude(decided_by=None)
        .values("decided_by__username")
        .annotate(
            accepted=Count("id", filter=accepted),
            rejected=Count("id", filter=rejected),
            added=Count("id", filter=added),
        )
        .order_by("decided_by__username")
    )
    totals = {key: sum(row[key] for row in by_type) for key in ("total", "accepted", "rejected", "pending", "added")}
    return {
        "by_type": by_type,
        "reviewers": [{**row, "username": row.pop("decided_by__username")} for row in reviewers],
        "totals": totals,
    }


def example_text_fields(example: Example) -> list[tuple[str, str]]:
    """The text fields that detection reads, in the same order: input, target, then metadata strings."""
    fields = [("input", example.input)]
    if example.target:
        fields.append(("target", example.target))
    for key, value in (example.metadata or {}).items():
        if isinstance(value, str) and value.strip():
            fields.append((f"metadata.{key}", value))
    return fields


# --- home page queues ----------------------------------------------------------------------------

QUEUE_ROWS = 5  # rows a home-page section lists; its count says how many there are in all


def _unreviewed_versions() -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.ready().filter(privacy=DatasetVersion.Privacy.RAW, dataset__in=dataset_list())


def privacy_queue(*, user) -> dict:
    """A privacy reviewer's work: ready versions nobody has started a review of, and reviews with undecided findings.

    Three queries whatever the number of versions and runs.
    """
    open_runs = RedactionRun.objects.filter(version=OuterRef("pk"), status__in=RedactionRun.ACTIVE_STATUSES)
    waiting = (
        _unreviewed_versions()
        .exclude(Exists(open_runs))
        .select_related("dataset")
        .annotate(total=Window(Count("pk")))
        .order_by("created_at", "pk")
    )
    waiting_rows = list(waiting[:QUEUE_ROWS])
    runs = (
        RedactionRun.objects.filter(status__in=RedactionRun.ACTIVE_STATUSES, version__in=DatasetVersion.objects.ready())
        .select_related("version__dataset")
        .annotate(pending=Count("findings", filter=Q(findings__status=Finding.Status.PENDING)))
        .order_by("created_at", "pk")
    )
    run_rows = list(runs)
    undecided = [run for run in run_rows if run.status == RedactionRun.Status.REVIEW and run.pending]
    detecting = [run for run in run_rows if run.is_detecting]
    return {
        "waiting": waiting_rows,
        "waiting_count": waiting_rows[0].total if waiting_rows else 0,
        "undecided": undecided[:QUEUE_ROWS],
        "undecided_count": len(undecided),
        "undecided_findings": sum(run.pending for run in undecided),
        "detecting": detecting[:QUEUE_ROWS],
        "detecting_count": len(detecting),
    }


def curator_queue(*, user) -> dict:
    """A curator's work: imports checked and waiting for their decision, and versions no privacy reviewer approved."""
    uploads = upload_list_for(user).filter(status=Upload.Status.VALIDATED).annotate(total=Window(Count("pk")))
    upload_rows = list(uploads.order_by("created_at", "pk")[:QUEUE_ROWS])
    versions = with_privacy_review(
        _unreviewed_versions().select_related("dataset").annotate(total=Window(Count("pk")))
    ).order_by("-created_at", "-pk")
    version_rows = list(versions[:QUEUE_ROWS])
    return {
        "uploads": upload_rows,
        "uploads_count": upload_rows[0].total if upload_rows else 0,
        "versions": version_rows,
        "versions_count": version_rows[0].total if version_rows else 0,
    }


def failed_recent(*, since) -> list[dict]:
    """Imports and personal-data detections that failed since ``since``, for the admin's home page."""
    failed = [
        {
            "what": f"Import of {upload.original_name}",
            "when": upload.updated_at,
            "error": upload.error,
            "url": reverse("curation:upload_detail", args=[upload.pk]),
        }
        for upload in Upload.objects.filter(status=Upload.Status.FAILED, updated_at__gte=since)[:QUEUE_ROWS]
    ]
    failed += [
        {
            "what": f"Personal-data detection on {run.version}",
            "when": run.finished_at or run.created_at,
            "error": run.error,
            "url": reverse("curation:redaction_detail", args=[run.pk]),
        }
        for run in RedactionRun.objects.filter(status=RedactionRun.Status.FAILED, created_at__gte=since).select_related(
            "version__dataset"
        )[:QUEUE_ROWS]
    ]
    return failed
