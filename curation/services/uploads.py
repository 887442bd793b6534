"""Writes for uploads: store a file, map its columns, check and stage its rows in the worker, import or cancel.

Staging is plain Python fed row by row (curation.formats), so memory stays flat; the good rows go into a staged
version that ``upload_commit`` makes ready.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.utils.text import get_valid_filename

from accounts.services import audit_record
from curation import formats
from curation.models import Dataset, DatasetVersion, Example, TaskType, Upload, UploadProblem
from curation.services.versions import BATCH, _insert_examples, _version_finalize, _version_new, _version_ready
from curation.text import DEFAULT_RATIOS, SplitAssigner, quality_flags, row_hash, text_hash
from projectsite.progress import ProgressReporter, flag_clear, flag_is_set, flag_set

ROLE_FIELDS = ("input", "target", "label", "group")


class ImportCancelled(Exception):
    pass


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
