"""Writes for deduplication: find exact or near-duplicate groups in the worker, then keep the rows chosen."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count

from accounts.services import audit_record
from curation.dedupe import near_duplicate_groups
from curation.models import DatasetVersion, DedupeRun, DuplicateGroup, Example
from curation.services.versions import BATCH, version_derive


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
