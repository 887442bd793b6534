"""Writes for datasets: uploads, imports, versions and curation steps.

Every service that changes data writes the audit log in the same transaction. Heavy work
(staging an import, finding duplicates) is plain Python fed row by row, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Length
from django.utils.text import get_valid_filename

from accounts.services import audit_record
from curation import formats
from curation.dedupe import near_duplicate_groups
from curation.models import (
    Dataset,
    DatasetVersion,
    DedupeRun,
    DuplicateGroup,
    Example,
    Flag,
    TaskType,
    Upload,
    UploadProblem,
)
from curation.text import DEFAULT_RATIOS, SplitAssigner, quality_flags, row_hash, text_hash, validate_ratios
from projectsite.progress import ProgressReporter, flag_clear, flag_is_set, flag_set

BATCH = 5000
ROLE_FIELDS = ("input", "target", "label", "group")
EXAMPLE_COLUMNS = (
    "row_index",
    "source_line",
    "input",
    "target",
    "label",
    "group",
    "metadata",
    "split",
    "row_hash",
    "text_hash",
    "flags",
)


class ImportCancelled(Exception):
    pass


class VersionNotApproved(ValidationError):
    """The version has not passed privacy review: its rows may not leave (HTTP 409, never a file)."""


def upload_progress_key(upload_id: int) -> str:
    return f"upload:{upload_id}:progress"


def _upload_cancel_key(upload_id: int) -> str:
    return f"upload:{upload_id}:cancel"


def _safe_name(name: str) -> str:
    """The bare file name, without any folders a browser or client may have sent (``../``)."""
    base = os.path.basename(name.replace("\\", "/")).strip() or "upload"
    return get_valid_filename(base)[:200] or "upload"


# --- uploads ---------------------------------------------------------------------------------


@transaction.atomic
def upload_create(
    *, actor, file: File, original_name: str, dataset_name: str, fmt: str | None = None, task_type: str = TaskType.SFT
) -> Upload:
    """Store an uploaded file, check that it is readable text, and read its column names.

    Raises ValidationError with a plain message when the file cannot be imported at all; nothing is kept then.
    """
    name = _safe_name(original_name)
    fmt = fmt or formats.detect_format(name)
    if fmt not in formats.FORMATS:
        raise ValidationError({"format": f"Cannot tell the format of “{name}”. Choose JSON Lines, JSON, CSV or TSV."})
    if task_type not in TaskType.values:
        raise ValidationError({"task_type": f"Unknown task type {task_type!r}."})
    dataset_name = (dataset_name or "").strip()
    if not dataset_name:
        raise ValidationError({"dataset_name": "Give the dataset a name."})
    size = file.size
    if size > settings.TUNINGDESK_MAX_UPLOAD_BYTES:
        raise ValidationError(
            {"file": f"The file is {size:,} bytes; the limit is {settings.TUNINGDESK_MAX_UPLOAD_BYTES:,} bytes."}
        )
    upload = Upload(
        original_name=name, size=size, format=fmt, dataset_name=dataset_name, task_type=task_type, created_by=actor
    )
    upload.file.save(name, file, save=False)
    try:
        upload.columns = formats.sniff_columns(upload.file.path, fmt, max_row_bytes=settings.TUNINGDESK_MAX_ROW_BYTES)
    except formats.FileRejected as exc:
        upload.file.delete(save=False)
        raise ValidationError({"file": str(exc)}) from None
    except BaseException:
        upload.file.delete(save=False)
        raise
    upload.mapping = suggest_mapping(upload.columns, task_type)
    upload.full_clean()
    upload.save()
    audit_record(
        actor=actor,
        action="upload.create",
        obj=upload,
        after={"file": name, "size": size, "format": fmt, "dataset": dataset_name},
    )
    return upload


_GUESSES = {
    "input": ("input", "prompt", "instruction", "question", "text", "ticket", "message", "body", "code"),
    "target": ("target", "response", "output", "answer", "reply", "completion", "summary"),
    "label": ("label", "category", "class", "intent", "topic"),
    "group": ("group", "segment", "region", "language", "customer_type"),
}


def suggest_mapping(columns: list[str], task_type: str) -> dict:
    lowered = {column.lower(): column for column in columns}
    mapping: dict = {}
    for role, names in _GUESSES.items():
        if role == "target" and task_type != TaskType.SFT or role == "label" and task_type == TaskType.SFT:
            continue
        for name in names:
            if name in lowered and lowered[name] not in mapping.values():
                mapping[role] = lowered[name]
                break
    return mapping


def mapping_clean(*, mapping: dict, columns: list[str], task_type: str) -> dict:
    """Check a column mapping against the file's columns and the task; return it normalised."""
    errors: dict[str, str] = {}
    cleaned: dict = {}
    for role in ROLE_FIELDS:
        column = (mapping.get(role) or "").strip()
        if column and column not in columns:
            errors[role] = f"The file has no column “{column}”."
        elif column:
            cleaned[role] = column
    if "input" not in cleaned and "input" not in errors:
        errors["input"] = "Choose the column that holds the input (prompt or text)."
    if task_type == TaskType.SFT and "target" not in cleaned and "target" not in errors:
        errors["target"] = "Instruction/response data needs a target (response) column."
    if task_type == TaskType.CLASSIFICATION and "label" not in cleaned and "label" not in errors:
        errors["label"] = "Classification data needs a label column."
    used = [cleaned[role] for role in cleaned]
    if len(used) != len(set(used)):
        errors["__all__"] = "Each column can fill only one role."
    metadata = mapping.get("metadata")
    if metadata is not None:
        unknown = [column for column in metadata if column not in columns]
        if unknown:
            errors["metadata"] = f"The file has no column(s): {', '.join(unknown)}."
        cleaned["metadata"] = [column for column in metadata if column not in used]
    if errors:
        raise ValidationError(errors)
    return cleaned


@transaction.atomic
def upload_set_mapping(*, upload: Upload, actor, mapping: dict, task_type: str | None = None) -> Upload:
    upload = Upload.objects.select_for_update().get(pk=upload.pk)
    if upload.status != Upload.Status.UPLOADED:
        raise ValidationError(f"The mapping cannot change now: this upload is “{upload.get_status_display()}”.")
    task_type = task_type or upload.task_type
    if task_type not in TaskType.values:
        raise ValidationError({"task_type": f"Unknown task type {task_type!r}."})
    before = {"mapping": upload.mapping, "task_type": upload.task_type}
    upload.mapping = mapping_clean(mapping=mapping, columns=upload.columns, task_type=task_type)
    upload.task_type = task_type
    upload.save(update_fields=["mapping", "task_type", "updated_at"])
    audit_record(
        actor=actor,
        action="upload.map",
        obj=upload,
        before=before,
        after={"mapping": upload.mapping, "task_type": task_type},
    )
    return upload


def upload_start_validation(*, upload: Upload, actor) -> Upload:
    """Queue the row check and staging of an upload; refuse a second active import into the same dataset."""
    from curation.tasks import upload_stage_task

    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.status != Upload.Status.UPLOADED:
            raise ValidationError(f"This upload is already “{upload.get_status_display()}”.")
        upload.mapping = mapping_clean(mapping=upload.mapping, columns=upload.columns, task_type=upload.task_type)
        _refuse_if_busy(upload)
        upload.status = Upload.Status.VALIDATING
        upload.progress = 0.0
        try:
            with transaction.atomic():
                upload.save(update_fields=["status", "progress", "mapping", "updated_at"])
        except IntegrityError:
            _refuse_if_busy(upload)
            raise
        audit_record(actor=actor, action="upload.validate", obj=upload, after={"mapping": upload.mapping})
        transaction.on_commit(lambda: upload_stage_task.delay(upload.pk))
    return upload


def _refuse_if_busy(upload: Upload) -> None:
    other = Upload.objects.active().filter(dataset_name=upload.dataset_name).exclude(pk=upload.pk).first()
    if other:
        raise ValidationError(
            f"Another file (upload #{other.pk}, “{other.original_name}”) is being imported into "
            f"“{upload.dataset_name}”. Wait until it is imported or cancelled, then try again."
        )


def upload_stage(*, upload_id: int) -> Upload:
    """Check every row and stage the good ones as a new version, in one transaction.

    On any error nothing of the import remains (the transaction rolls back) and the upload is
    marked failed with the reason. Safe to run twice: only an upload in “validating” is processed.
    """
    progress = ProgressReporter(upload_progress_key(upload_id))
    try:
        with transaction.atomic():
            # The row lock makes a second delivery of the same task skip instead of importing twice.
            upload = (
                Upload.objects.select_for_update(skip_locked=True)
                .filter(pk=upload_id, status=Upload.Status.VALIDATING)
                .first()
            )
            if upload is None:
                return Upload.objects.get(pk=upload_id)
            summary = _stage_rows(upload, progress)
            Upload.objects.filter(pk=upload_id).update(status=Upload.Status.VALIDATED, progress=1.0, **summary)
        flag_clear(_upload_cancel_key(upload_id))
    except ImportCancelled:
        flag_clear(_upload_cancel_key(upload_id))
        Upload.objects.filter(pk=upload_id).update(status=Upload.Status.CANCELLED, progress=0.0)
        progress(0.0, force=True, status=Upload.Status.CANCELLED)
        return Upload.objects.get(pk=upload_id)
    except formats.FileRejected as exc:
        return _upload_fail(upload_id, str(exc), progress)
    except Exception as exc:
        _upload_fail(
            upload_id, f"The import stopped because of an unexpected error: {exc}. Nothing was imported.", progress
        )
        raise
    progress(1.0, force=True, status=Upload.Status.VALIDATED)
    return Upload.objects.get(pk=upload_id)


def _upload_fail(upload_id: int, message: str, progress: ProgressReporter) -> Upload:
    Upload.objects.filter(pk=upload_id).update(status=Upload.Status.FAILED, error=message, progress=0.0)
    progress(0.0, force=True, status=Upload.Status.FAILED)
    return Upload.objects.get(pk=upload_id)


def _stage_rows(upload: Upload, progress: ProgressReporter) -> dict:
    dataset, created = Dataset.objects.select_for_update().get_or_create(
        name=upload.dataset_name, defaults={"task_type": upload.task_type, "created_by": upload.created_by}
    )
    if not created and dataset.task_type != upload.task_type:
        raise formats.FileRejected(
            f"The dataset “{dataset.name}” holds {dataset.get_task_type_display()} data; "
            f"this upload is {TaskType(upload.task_type).label}. Choose another dataset name."
        )
    version = _version_new(
        dataset=dataset,
        parent=None,
        operation=DatasetVersion.Operation.IMPORT,
        params={"upload_id": upload.pk, "file": upload.original_name, "mapping": upload.mapping},
        actor=upload.created_by,
        seed=13,
        ratios=DEFAULT_RATIOS,
    )
    assigner = SplitAssigner(version.split_seed, version.split_ratios)
    path = Path(upload.file.path)
    file_size = max(path.stat().st_size, 1)
    # Problems and the lines they reject are written every BATCH rows (or 1000 problems), so memory stays
    # flat even when every row is bad. A line's problems are collected together, never split by a flush.
    problems: list[UploadProblem] = []
    rejected_lines: set[int] = set()
    rejected = 0
    total = 0
    cancel_key = _upload_cancel_key(upload.pk)

    def flush() -> None:
        nonlocal rejected
        rejected += len(rejected_lines)
        rejected_lines.clear()
        _flush_problems(problems)

    def rows() -> Iterator[tuple | None]:
        nonlocal total
        max_chars = settings.TUNINGDESK_MAX_TEXT_CHARS
        mapping, task_type = upload.mapping, upload.task_type
        index = 0
        formats.check_encoding(path)
        with open(path, "rb") as handle:
            for item in formats.read_rows(handle, upload.format, max_row_bytes=settings.TUNINGDESK_MAX_ROW_BYTES):
                total += 1
                if type(item) is formats.Problem:
                    _collect_problem(upload, item, problems, rejected_lines)
                else:
                    mapped = formats.map_row(item, mapping, task_type=task_type, max_text_chars=max_chars)
                    if type(mapped) is list:
                        for problem in mapped:
                            _collect_problem(upload, problem, problems, rejected_lines)
                    else:
                        index += 1
                        yield _example_tuple(mapped, index, assigner.assign(mapped.label))
                if total % BATCH == 0 or len(problems) >= 1000:
                    if flag_is_set(cancel_key):
                        raise ImportCancelled()
                    if problems:
                        yield None  # hands the connection back (ends the COPY) so the problems can be written
                        flush()
                    progress(0.95 * handle.tell() / file_size, status=Upload.Status.VALIDATING, rows=index)

    inserted = _insert_examples(version.pk, rows(), streaming=True)  # rows() touches the database after None only
    if flag_is_set(cancel_key):
        raise ImportCancelled()
    flush()
    duplicates = _drop_duplicate_rows(upload, version)
    _version_finalize(version)
    summary = {
        "version": version,
        "total_rows": total,
        "good_rows": inserted - duplicates,
        "rejected_rows": rejected + duplicates,
    }
    return summary


def _collect_problem(upload: Upload, problem: formats.Problem, problems: list, rejected_lines: set[int]) -> None:
    rejected_lines.add(problem.line)
    problems.append(
        UploadProblem(
            upload=upload,
            line=problem.line,
            field=problem.field[:200],
            reason=problem.reason,
            message=problem.message[:500],
            excerpt=problem.excerpt[:200],
        )
    )


def _flush_problems(problems: list[UploadProblem]) -> None:
    if problems:
        UploadProblem.objects.bulk_create(problems, batch_size=1000)
        problems.clear()


def _example_tuple(row: formats.MappedRow, index: int, split: str) -> tuple:
    return (
        index,
        row.line,
        row.input,
        row.target,
        row.label,
        row.group,
        row.metadata,
        split,
        row_hash(row.input, row.target, row.label, row.group),
        text_hash(row.input, row.target),
        quality_flags(row.input, row.target),
    )


def _insert_examples(version_id: int, rows: Iterable[tuple | None], *, streaming: bool = False) -> int:
    """Insert example tuples (in EXAMPLE_COLUMNS order); COPY on PostgreSQL, batched INSERTs elsewhere.

    A connection can run no other statement while it copies. So by default the rows are gathered BATCH at a
    time and each batch is copied on its own: ``rows`` may read or write the database as it goes (a queryset
    ``.iterator()``, for one). With ``streaming=True`` one COPY takes the rows as they come, and the database
    stores them while Python prepares the next ones (faster); ``rows`` must then leave the database alone,
    except right after it yields ``None``, where the COPY ends until the next row.
    """
    count = 0
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        columns = ", ".join(f'"{name}"' for name in ("version_id", *EXAMPLE_COLUMNS))
        sql = f"COPY curation_example ({columns}) FROM STDIN"
        rows = iter(rows)
        with connection.cursor() as cursor:
            if not streaming:
                gathered: list[tuple] = []
                for row in rows:  # the next row is asked for only once the COPY of the last batch has ended
                    if row is not None:
                        gathered.append(row)
                    if len(gathered) >= BATCH:
                        count += _copy_rows(cursor, sql, version_id, gathered)
                if gathered:
                    count += _copy_rows(cursor, sql, version_id, gathered)
                return count
            # Check the foreign key of each row as it is copied, on the database's core while Python reads the
            # next rows, rather than queue one deferred check per row for the commit (time and server memory).
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for first in rows:
                if first is None:
                    continue
                with cursor.cursor.copy(sql) as copy:
                    row = first
                    while row is not None:
                        copy.write_row((version_id, *row[:6], Jsonb(row[6]), *row[7:]))
                        count += 1
                        row = next(rows, None)
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # as Django creates its foreign keys: initially deferred
        return count
    batch: list[Example] = []
    for row in rows:
        if row is None:
            continue
        batch.append(Example(version_id=version_id, **dict(zip(EXAMPLE_COLUMNS, row, strict=True))))
        if len(batch) >= 1000:
            Example.objects.bulk_create(batch)
            count += len(batch)
            batch.clear()
    Example.objects.bulk_create(batch)
    return count + len(batch)


def _copy_rows(cursor, sql: str, version_id: int, batch: list[tuple]) -> int:
    from psycopg.types.json import Jsonb

    with cursor.cursor.copy(sql) as copy:
        for row in batch:
            copy.write_row((version_id, *row[:6], Jsonb(row[6]), *row[7:]))
    count = len(batch)
    batch.clear()
    return count


_DUPLICATES_SQL = """
SELECT id, source_line, first_line FROM (
    SELECT id, source_line,
           ROW_NUMBER() OVER (PARTITION BY row_hash ORDER BY row_index) AS position,
           FIRST_VALUE(source_line) OVER (PARTITION BY row_hash ORDER BY row_index) AS first_line
    FROM curation_example WHERE version_id = %s
) ranked WHERE position > 1
"""

# PostgreSQL: the same rows, removed and reported in one statement, so none travel to Python however many
# there are. COLLATE "C" compares the hex hashes byte by byte: the same groups, a much cheaper sort than the
# database's language collation.
_DUPLICATES_DROP_SQL_POSTGRESQL = """
WITH duplicate AS (
    SELECT id, source_line, first_line FROM (
        SELECT id, source_line,
               ROW_NUMBER() OVER (PARTITION BY row_hash COLLATE "C" ORDER BY row_index) AS position,
               FIRST_VALUE(source_line) OVER (PARTITION BY row_hash COLLATE "C" ORDER BY row_index) AS first_line
        FROM curation_example WHERE version_id = %(version)s
    ) ranked WHERE position > 1
), dropped AS (
    DELETE FROM curation_example WHERE id IN (SELECT id FROM duplicate)
)
INSERT INTO curation_uploadproblem (upload_id, line, field, reason, message, excerpt)
SELECT %(upload)s, source_line, '', %(reason)s, 'Same content as line ' || first_line || '.', '' FROM duplicate
"""


def _drop_duplicate_rows(upload: Upload, version: DatasetVersion) -> int:
    """Exact repeats of an earlier row are rejected as duplicates (found in SQL, so memory stays flat)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _DUPLICATES_DROP_SQL_POSTGRESQL,
                {"version": version.pk, "upload": upload.pk, "reason": UploadProblem.Reason.DUPLICATE.value},
            )
            return cursor.rowcount
    dropped = 0
    with connection.cursor() as cursor:
        cursor.execute(_DUPLICATES_SQL, [version.pk])
        while chunk := cursor.fetchmany(BATCH):
            UploadProblem.objects.bulk_create(
                [
                    UploadProblem(
                        upload=upload,
                        line=line,
                        reason=UploadProblem.Reason.DUPLICATE,
                        message=f"Same content as line {first}.",
                    )
                    for _, line, first in chunk
                ],
                batch_size=1000,
            )
            ids = [row[0] for row in chunk]
            for start in range(0, len(ids), 900):
                Example.objects.filter(pk__in=ids[start : start + 900]).delete()
            dropped += len(chunk)
    return dropped


@transaction.atomic
def upload_commit(*, upload: Upload, actor) -> DatasetVersion:
    """Keep the good rows of a checked upload: its staged version becomes a ready version."""
    upload = Upload.objects.select_for_update().get(pk=upload.pk)
    if upload.status != Upload.Status.VALIDATED:
        raise ValidationError(f"Only a checked upload can be imported; this one is “{upload.get_status_display()}”.")
    if upload.good_rows == 0:
        raise ValidationError(
            "No row of this file can be imported. Download the report, fix the file and upload it again."
        )
    version = _version_ready(upload.version, actor=actor)
    upload.status = Upload.Status.IMPORTED
    upload.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor,
        action="upload.import",
        obj=upload,
        after={"version_id": version.pk, "rows": upload.good_rows, "rejected": upload.rejected_rows},
    )
    return version


def upload_cancel(*, upload: Upload, actor) -> Upload:
    """Cancel an upload at any stage before import; a staged version and its rows are removed."""
    if upload.status == Upload.Status.VALIDATING:
        # The worker holds the rows in an open transaction; it sees this flag and rolls back.
        flag_set(_upload_cancel_key(upload.pk))
        audit_record(actor=actor, action="upload.cancel_request", obj=upload)
        return upload
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.status not in (Upload.Status.UPLOADED, Upload.Status.VALIDATED, Upload.Status.FAILED):
            raise ValidationError(f"This upload is “{upload.get_status_display()}” and cannot be cancelled.")
        version = upload.version
        before = {"status": upload.status}
        upload.status = Upload.Status.CANCELLED
        upload.version = None
        upload.save(update_fields=["status", "version", "updated_at"])
        if version is not None and version.status == DatasetVersion.Status.STAGED:
            dataset = version.dataset
            version.delete()
            if not dataset.versions.exists():
                dataset.delete()
        upload.problems.all().delete()
        audit_record(actor=actor, action="upload.cancel", obj=upload, before=before, after={"status": upload.status})
    upload.file.delete(save=False)
    return upload


# --- versions --------------------------------------------------------------------------------


@transaction.atomic
def version_create(
    *,
    dataset: Dataset,
    operation: str,
    params: dict,
    actor,
    rows: Iterable[tuple | None],
    parent: DatasetVersion | None = None,
    seed: int = 13,
    ratios: dict | None = None,
    privacy: str = DatasetVersion.Privacy.RAW,
) -> DatasetVersion:
    """A new ready version of ``dataset`` holding ``rows`` (example tuples in EXAMPLE_COLUMNS order), audited.

    ``rows`` may read the database as it goes (see ``_insert_examples``). ``privacy`` is stored from the start, so
    the audit event tells it too.
    """
    version = _version_new(
        dataset=dataset,
        parent=parent,
        operation=operation,
        params=params,
        actor=actor,
        seed=seed,
        ratios=DEFAULT_RATIOS if ratios is None else ratios,
        privacy=privacy,
    )
    _insert_examples(version.pk, rows)
    _version_finalize(version)
    return _version_ready(version, actor=actor)


def _version_new(
    *,
    dataset: Dataset,
    parent,
    operation: str,
    params: dict,
    actor,
    seed: int,
    ratios: dict,
    privacy: str = DatasetVersion.Privacy.RAW,
) -> DatasetVersion:
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    number = (dataset.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    version = DatasetVersion(
        dataset=dataset,
        number=number,
        parent=parent,
        operation=operation,
        operation_params=params,
        created_by=actor,
        split_seed=seed,
        split_ratios=validate_ratios(ratios),
        privacy=privacy,
    )
    version.full_clean()
    version.save()
    return version


# The "row_hash:split" lines of a version joined in the database, a slice of rows per result row, fetched one
# slice at a time (memory stays flat on both sides). One pass over the version whatever plan is chosen: the
# planner does not know a fresh import's rows until autovacuum analyzes them, and then it picks plans for
# one row (a query per slice of rows would then read the whole version for each slice).
_CONTENT_HASH_SLICE = 50_000
# (The slice size is written into the SQL: GROUP BY and ORDER BY must hold the same expression, which two
# parameters would not be under server-side binding.)
_CONTENT_HASH_SQL_POSTGRESQL = f"""
SELECT count(*), string_agg(row_hash || ':' || split || E'\\n', '' ORDER BY row_index)
FROM curation_example WHERE version_id = %s
GROUP BY row_index / {_CONTENT_HASH_SLICE:d} ORDER BY row_index / {_CONTENT_HASH_SLICE:d}
"""  # noqa: S608 (an int constant, not input)


def _content_digest(version_id: int) -> tuple[int, str]:
    """Row count and SHA-256 of "row_hash:split" lines (newline-ended) for every row, in row order."""
    digest = hashlib.sha256()
    count = 0
    examples = Example.objects.filter(version_id=version_id)
    if connection.vendor == "postgresql":
        with connection.chunked_cursor() as cursor:
            cursor.execute(_CONTENT_HASH_SQL_POSTGRESQL, [version_id])
            while slice_ := cursor.fetchone():  # one slice (a few MB) at a time
                count += slice_[0]
                digest.update(slice_[1].encode())
        return count, digest.hexdigest()
    for hash_value, split in examples.order_by("row_index").values_list("row_hash", "split").iterator(chunk_size=20000):
        digest.update(f"{hash_value}:{split}\n".encode())
        count += 1
    return count, digest.hexdigest()


def _version_finalize(version: DatasetVersion) -> None:
    """Row count, content hash (rows in order, with their split) and summary statistics."""
    examples = Example.objects.filter(version=version)
    count, content_hash = _content_digest(version.pk)

    def counts(field: str) -> dict[str, int]:
        return {value or "": total for value, total in examples.values_list(field).annotate(n=Count("id")).order_by()}

    # All flags in one pass over the rows rather than one query per flag.
    bits = {f"_bit_{flag.value}": F("flags").bitand(flag.value) for flag in Flag}
    totals = examples.alias(**bits).aggregate(
        **{f"flag_{flag.value}": Count("id", filter=Q(**{f"_bit_{flag.value}__gt": 0})) for flag in Flag}
    )
    flag_counts = {flag.label: totals[f"flag_{flag.value}"] for flag in Flag}
    # Labels of instruction/response data too, when a label column was mapped (a ticket's category).
    labels = counts("label")
    version.row_count = count
    version.content_hash = content_hash
    version.stats = {
        "splits": counts("split"),
        "labels": labels if any(labels) else {},
        "groups": counts("group"),
        "flags": {label: n for label, n in flag_counts.items() if n},
    }
    version.save(update_fields=["row_count", "content_hash", "stats"])


def _version_ready(version: DatasetVersion, *, actor) -> DatasetVersion:
    """The end of every new version: mark it ready and audit what it holds."""
    DatasetVersion.objects.filter(pk=version.pk).update(status=DatasetVersion.Status.READY)
    version.refresh_from_db()
    audit_record(
        actor=actor,
        action="version.create",
        obj=version,
        after={
            "operation": version.operation,
            "parent": version.parent_id,
            "params": version.operation_params,
            "rows": version.row_count,
            "content_hash": version.content_hash,
            "privacy": version.privacy,
        },
    )
    return version


@transaction.atomic
def version_derive(
    *,
    parent: DatasetVersion,
    operation: str,
    params: dict,
    actor,
    keep=None,
    drop_row_indexes: Iterable[int] = (),
    seed: int | None = None,
    ratios: dict | None = None,
    transform=None,
    privacy: str | None = None,
) -> DatasetVersion:
    """A new ready version holding the parent's rows (or ``keep``, a queryset of them) minus dropped rows, audited.

    ``transform(version)``, when given, edits the copied rows before the version is hashed and marked ready.
    ``privacy`` defaults to the parent's: dropping rows or re-splitting adds no text, so an approved parent's child
    stays approved. A step that may add text (annotators' answers) passes ``Privacy.RAW`` when it does.
    """
    if not parent.is_ready:
        raise ValidationError("This version is not ready yet.")
    resplit = seed is not None
    version = _version_new(
        dataset=parent.dataset,
        parent=parent,
        operation=operation,
        params=params,
        actor=actor,
        seed=parent.split_seed if seed is None else seed,
        ratios=ratios or parent.split_ratios,
        privacy=parent.privacy if privacy is None else privacy,
    )
    source = keep if keep is not None else parent.examples.all()
    column_sql = ", ".join(f'"{name}"' for name in EXAMPLE_COLUMNS)
    select_sql, select_params = source.order_by().values_list(*EXAMPLE_COLUMNS).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            # Column names are constants and the subquery is compiled by the ORM with its parameters separate.
            f"INSERT INTO curation_example (version_id, {column_sql}) SELECT %s, {column_sql} FROM ({select_sql}) src",  # noqa: S608, E501
            [version.pk, *select_params],
        )
    drop = list(drop_row_indexes)
    for start in range(0, len(drop), 900):
        version.examples.filter(row_index__in=drop[start : start + 900]).delete()
    if resplit:
        _assign_splits(version)
    if transform is not None:
        transform(version)
    _version_finalize(version)
    return _version_ready(version, actor=actor)


def _assign_splits(version: DatasetVersion) -> None:
    assigner = SplitAssigner(version.split_seed, version.split_ratios)
    pending: dict[str, list[int]] = {name: [] for name in DEFAULT_RATIOS}

    def flush(name: str) -> None:
        Example.objects.filter(pk__in=pending[name]).update(split=name)
        pending[name].clear()

    rows = version.examples.order_by("row_index").values_list("id", "label")
    for example_id, label in rows.iterator(chunk_size=BATCH):
        name = assigner.assign(label)
        pending[name].append(example_id)
        if len(pending[name]) >= 900:
            flush(name)
    for name in pending:
        flush(name)


@transaction.atomic
def version_split(*, version: DatasetVersion, actor, seed: int, ratios: dict[str, float]) -> DatasetVersion:
    """A new version with the same rows and a fresh seeded, label-stratified train/validation/test split."""
    try:
        ratios = validate_ratios(ratios)
    except ValueError as exc:
        raise ValidationError({"ratios": str(exc)}) from None
    return version_derive(
        parent=version,
        operation=DatasetVersion.Operation.SPLIT,
        params={"seed": seed, "ratios": ratios},
        actor=actor,
        seed=seed,
        ratios=ratios,
    )


@transaction.atomic
def version_filter(
    *,
    version: DatasetVersion,
    actor,
    min_chars: int | None = None,
    max_chars: int | None = None,
    drop_empty_target: bool = False,
    drop_not_english: bool = False,
    label_set: list[str] | None = None,
) -> DatasetVersion:
    """A new version without the rows that fail the chosen quality filters."""
    if min_chars is not None and max_chars is not None and min_chars > max_chars:
        raise ValidationError({"max_chars": "The maximum length must be at least the minimum length."})
    if (min_chars is not None and min_chars < 0) or (max_chars is not None and max_chars < 0):
        raise ValidationError({"min_chars": "Lengths cannot be negative."})
    keep = version.examples.annotate(_chars=Length("input") + Length("target"))
    if min_chars is not None:
        keep = keep.filter(_chars__gte=min_chars)
    if max_chars is not None:
        keep = keep.filter(_chars__lte=max_chars)
    if drop_empty_target:
        keep = keep.exclude(target="")
    if drop_not_english:
        keep = keep.exclude(pk__in=version.examples.flagged(Flag.NOT_ENGLISH).values("pk"))
    if label_set:
        keep = keep.filter(label__in=label_set)
    params = {
        "min_chars": min_chars,
        "max_chars": max_chars,
        "drop_empty_target": drop_empty_target,
        "drop_not_english": drop_not_english,
        "label_set": label_set or [],
    }
    if not any(value for value in params.values()):
        raise ValidationError("Choose at least one filter.")
    return version_derive(
        parent=version, operation=DatasetVersion.Operation.FILTER, params=params, actor=actor, keep=keep
    )


# --- deduplication ---------------------------------------------------------------------------


def dedupe_run_start(*, version: DatasetVersion, actor, mode: str, threshold: float = 0.8) -> DedupeRun:
    from curation.tasks import dedupe_run_task

    if not version.is_ready:
        raise ValidationError("This version is not ready yet.")
    if mode not in DedupeRun.Mode.values:
        raise ValidationError({"mode": "Choose exact or near duplicates."})
    with transaction.atomic():
        run = DedupeRun(version=version, mode=mode, threshold=threshold, created_by=actor)
        run.full_clean()
        run.save()
        audit_record(actor=actor, action="dedupe.start", obj=run, after={"mode": mode, "threshold": threshold})
        transaction.on_commit(lambda: dedupe_run_task.delay(run.pk))
    return run


def dedupe_run_execute(*, run_id: int) -> DedupeRun | None:
    """Find duplicate groups. Claims the run atomically, so a redelivered task does nothing."""
    if not DedupeRun.objects.filter(pk=run_id, status=DedupeRun.Status.QUEUED).update(status=DedupeRun.Status.RUNNING):
        return None
    run = DedupeRun.objects.select_related("version").get(pk=run_id)
    try:
        groups = _exact_groups(run.version) if run.mode == DedupeRun.Mode.EXACT else _near_groups(run)
        with transaction.atomic():
            DuplicateGroup.objects.bulk_create(
                [DuplicateGroup(run=run, example_ids=ids, similarity=similarity) for ids, similarity in groups],
                batch_size=1000,
            )
            run.group_count = len(groups)
            run.duplicate_count = sum(len(ids) - 1 for ids, _ in groups)
            run.status = DedupeRun.Status.DONE
            run.progress = 1.0
            run.save(update_fields=["group_count", "duplicate_count", "status", "progress"])
    except Exception as exc:
        DedupeRun.objects.filter(pk=run_id).update(status=DedupeRun.Status.FAILED, error=str(exc)[:2000])
        raise
    return run


def _exact_groups(version: DatasetVersion) -> list[tuple[list[int], float]]:
    hashes = (
        version.examples.values("text_hash").annotate(n=Count("id")).filter(n__gt=1).values_list("text_hash", flat=True)
    )
    groups: dict[str, list[int]] = {}
    rows = version.examples.filter(text_hash__in=hashes).order_by("row_index").values_list("text_hash", "id")
    for value, example_id in rows.iterator(chunk_size=BATCH):
        groups.setdefault(value, []).append(example_id)
    return sorted(((ids, 1.0) for ids in groups.values()), key=lambda group: group[0][0])


def _near_groups(run: DedupeRun) -> list[tuple[list[int], float]]:
    examples = run.version.examples.order_by("row_index").values_list("id", "input", "target")
    total = run.version.row_count

    def report(fraction: float) -> None:
        DedupeRun.objects.filter(pk=run.pk).update(progress=min(fraction, 0.99))

    items = ((example_id, f"{text} {target}") for example_id, text, target in examples.iterator(chunk_size=2000))
    return near_duplicate_groups(items, threshold=run.threshold, progress=report, total=total)


@transaction.atomic
def dedupe_run_apply(*, run: DedupeRun, actor, keep: dict[int, list[int]] | None = None) -> DatasetVersion:
    """A new version keeping, in each duplicate group, the rows the curator chose (the first by default)."""
    run = DedupeRun.objects.select_for_update().select_related("version").get(pk=run.pk)
    if run.status != DedupeRun.Status.DONE:
        raise ValidationError(f"This deduplication is “{run.get_status_display()}”, not ready to apply.")
    keep = keep or {}
    groups = {group.pk: group.example_ids for group in run.groups.all()}
    unknown = set(keep) - set(groups)
    if unknown:
        raise ValidationError(f"Unknown duplicate group(s): {', '.join(map(str, sorted(unknown)))}.")
    drop_ids: list[int] = []
    for group_id, members in groups.items():
        chosen = set(keep.get(group_id, members[:1]))
        if not chosen:
            raise ValidationError(f"Keep at least one row of group {group_id}.")
        if not chosen <= set(members):
            raise ValidationError(f"Group {group_id} does not contain row(s) {sorted(chosen - set(members))}.")
        drop_ids.extend(member for member in members if member not in chosen)
    drop_indexes: list[int] = []
    for start in range(0, len(drop_ids), 900):
        drop_indexes.extend(
            Example.objects.filter(pk__in=drop_ids[start : start + 900]).values_list("row_index", flat=True)
        )
    version = version_derive(
        parent=run.version,
        operation=DatasetVersion.Operation.DEDUPE,
        params={"dedupe_run": run.pk, "mode": run.mode, "threshold": run.threshold, "dropped": len(drop_ids)},
        actor=actor,
        drop_row_indexes=drop_indexes,
    )
    run.status = DedupeRun.Status.APPLIED
    run.result_version = version
    run.save(update_fields=["status", "result_version"])
    audit_record(
        actor=actor, action="dedupe.apply", obj=run, after={"version_id": version.pk, "dropped": len(drop_ids)}
    )
    return version


# --- one-shot import (management command, scripts) ----------------------------------------------


def dataset_import(
    *,
    path: str | Path,
    dataset_name: str,
    actor=None,
    fmt: str | None = None,
    mapping: dict | None = None,
    task_type: str = TaskType.SFT,
) -> Upload:
    """Import a file on disk in one go (upload, map, check, keep the good rows), synchronously."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError({"file": f"No file at {path}."})
    with open(path, "rb") as handle:
        upload = upload_create(
            actor=actor,
            file=File(handle, name=path.name),
            original_name=path.name,
            dataset_name=dataset_name,
            fmt=fmt,
            task_type=task_type,
        )
    if mapping:
        upload = upload_set_mapping(upload=upload, actor=actor, mapping=mapping)
    with transaction.atomic():
        upload.mapping = mapping_clean(mapping=upload.mapping, columns=upload.columns, task_type=upload.task_type)
        _refuse_if_busy(upload)
        Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.VALIDATING, mapping=upload.mapping)
    upload = upload_stage(upload_id=upload.pk)
    if upload.status == Upload.Status.FAILED:
        raise ValidationError({"file": upload.error})
    if upload.good_rows:
        upload_commit(upload=upload, actor=actor)
        upload.refresh_from_db()
    return upload


# --- the privacy gate and exports -------------------------------------------------------------------


def version_require_approved(version: DatasetVersion) -> DatasetVersion:
    """The privacy gate: every consumer of rows (export, annotation, training, evaluation) calls this first.

    Only a ready version whose personal data was redacted and approved by a privacy reviewer passes.
    """
    if not version.is_ready:
        raise ValidationError("This version is not ready yet.")
    if version.privacy != DatasetVersion.Privacy.APPROVED:
        raise VersionNotApproved(
            f"“{version}” has not passed privacy review, so it may still hold personal data. "
            "Run personal-data detection on it, review the findings and approve; then use the approved version."
        )
    return version


def version_export(*, version: DatasetVersion, actor, fmt: str, via: str = "web") -> tuple[Iterator[str], str, str]:
    """Rows of an approved version as JSONL or CSV: (chunks, file name, content type). Audited."""
    from django.utils.text import slugify

    from curation import selectors

    version_require_approved(version)
    if fmt not in ("jsonl", "csv"):
        raise ValidationError({"format": "Choose jsonl or csv."})
    audit_record(actor=actor, action="version.export", obj=version, after={"format": fmt, "via": via})
    name = f"{slugify(version.dataset.name) or 'dataset'}-v{version.number}"
    if fmt == "csv":
        return selectors.version_export_csv(version), f"{name}.csv", "text/csv; charset=utf-8"
    return selectors.version_export_jsonl(version), f"{name}.jsonl", "application/x-ndjson; charset=utf-8"
