"""Writes for dataset versions: make a version (new, insert rows, finalize, ready, audit), re-split, filter.

A version is immutable once ready. ``version_create`` stores rows a caller prepared (the redaction of a
review); ``version_derive`` copies a parent's rows inside the database, for the curation steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Length

from accounts.services import audit_record
from curation.models import Dataset, DatasetVersion, Example, Flag
from curation.text import DEFAULT_RATIOS, SplitAssigner, validate_ratios

BATCH = 5000
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
