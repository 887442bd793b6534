"""Writes for privacy review: detection runs, reviewer decisions, approval into a redacted version.

Detection itself is plain Python (curation/pii.py); this module feeds it rows and stores what it returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import lru_cache

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.services import audit_record
from curation import pii
from curation.models import DatasetVersion, Example, Finding, RedactionRun
from curation.services.versions import version_create
from curation.text import quality_flags, row_hash, text_hash
from projectsite.crypto import fernet_for

CHUNK = 200


class FindingConflict(ValidationError):
    """Another reviewer decided the same finding since this reviewer loaded it."""


DEFAULT_ENTITIES = list(pii.DEFAULT_ENTITIES)


# --- configuration -----------------------------------------------------------------------------


def redaction_config_clean(config: dict | None) -> dict:
    """Check a detection configuration; return it complete with defaults."""
    config = dict(config or {})
    errors: dict[str, str] = {}
    profile = config.get("profile")
    if profile is not None and profile not in pii.PROFILES:
        errors["profile"] = f"Unknown profile {profile!r}. Use one of: {', '.join(pii.PROFILES)}."
    # A profile names its kinds; entities given with it are a custom choice and win.
    entities = config.get("entities") or list(pii.PROFILES.get(profile) or DEFAULT_ENTITIES)
    unknown = sorted(set(entities) - set(pii.ENTITY_TYPES))
    if unknown:
        errors["entities"] = f"Unknown entity type(s): {', '.join(unknown)}."
    thresholds = config.get("thresholds") or {}
    for entity, value in thresholds.items():
        if entity not in pii.ENTITY_TYPES:
            errors["thresholds"] = f"A threshold is set for {entity}, which is not an entity type we detect."
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            errors["thresholds"] = f"The threshold for {entity} must be a number between 0 and 1."
    operators = config.get("operators") or {}
    bad = sorted(op for op in operators.values() if op not in pii.OPERATORS)
    if bad:
        errors["operators"] = f"Unknown operator(s): {', '.join(bad)}. Use one of: {', '.join(pii.OPERATORS)}."
    bad_types = sorted(entity for entity in operators if entity not in pii.ENTITY_TYPES)
    if bad_types:
        errors["operators"] = f"An operator is set for {', '.join(bad_types)}, which is not an entity type we detect."
    default_operator = config.get("default_operator", "pseudonym")
    if default_operator not in pii.OPERATORS:
        errors["default_operator"] = f"Unknown operator {default_operator!r}. Use one of: {', '.join(pii.OPERATORS)}."
    allow_list = [str(term) for term in config.get("allow_list") or [] if str(term).strip()]
    deny_list = {str(term): str(kind) for term, kind in (config.get("deny_list") or {}).items() if str(term).strip()}
    if errors:
        raise ValidationError(errors)
    return {
        "profile": pii.profile_of(entities),
        "entities": sorted(entities),
        "thresholds": {key: float(value) for key, value in thresholds.items()},
        "operators": operators,
        "default_operator": default_operator,
        "allow_list": allow_list,
        "deny_list": deny_list,
        "model": config.get("model") or settings.TUNINGDESK_SPACY_MODEL,
    }


def _pii_config(config: dict, *, dataset_id: int) -> pii.PiiConfig:
    return pii.PiiConfig(
        entities=tuple(config["entities"]),
        thresholds=config["thresholds"],
        operators=config["operators"],
        default_operator=config["default_operator"],
        allow_list=tuple(config["allow_list"]),
        deny_list=config["deny_list"],
        spacy_model=config["model"],
        key=_dataset_key(dataset_id),
    )


@lru_cache(maxsize=4)
def _engine(config_json: str, dataset_id: int) -> pii.PiiEngine:
    """One engine per configuration and process: building the analyzer takes seconds."""
    return pii.PiiEngine(_pii_config(json.loads(config_json), dataset_id=dataset_id))


def engine_for(run: RedactionRun) -> pii.PiiEngine:
    return _engine(json.dumps(run.config, sort_keys=True), run.version.dataset_id)


def engine_for_dataset(dataset_id: int) -> pii.PiiEngine:
    """The detector of the dataset's last approved review (its entity types, thresholds, allow and deny lists), or
    the default one: for checking new text written into a reviewed dataset."""
    run = (
        RedactionRun.objects.filter(version__dataset_id=dataset_id, status=RedactionRun.Status.APPROVED)
        .order_by("-created_at", "-id")
        .first()
    )
    config = redaction_config_clean(run.config if run else None)
    return _engine(json.dumps(config, sort_keys=True), dataset_id)


def _dataset_key(dataset_id: int) -> bytes:
    """A per-dataset secret: pseudonyms are consistent inside a dataset and unrelated across datasets."""
    return hashlib.sha256(f"{settings.TUNINGDESK_PII_KEY}:dataset:{dataset_id}".encode()).digest()


def _fernet() -> Fernet:
    return fernet_for(settings.TUNINGDESK_PII_KEY, "pseudonym-map")


# --- detection ---------------------------------------------------------------------------------


def redaction_run_start(*, version: DatasetVersion, actor, config: dict | None = None) -> RedactionRun:
    from curation.tasks import redaction_run_task

    if not version.is_ready:
        raise ValidationError("This version is not ready yet.")
    if version.privacy == DatasetVersion.Privacy.APPROVED:
        raise ValidationError("This version is already redacted and approved.")
    config = redaction_config_clean(config)
    with transaction.atomic():
        open_run = RedactionRun.objects.filter(version=version, status__in=RedactionRun.ACTIVE_STATUSES).first()
        if open_run:
            raise ValidationError(
                f"Redaction #{open_run.pk} of this version is already {open_run.get_status_display().lower()}. "
                "Finish or approve it first."
            )
        run = RedactionRun(version=version, config=config, created_by=actor)
        try:
            with transaction.atomic():
                run.save()
        except IntegrityError:
            raise ValidationError("A redaction of this version was started a moment ago.") from None
        audit_record(actor=actor, action="redaction.start", obj=run, after={"config": config})
        transaction.on_commit(lambda: redaction_run_task.delay(run.pk))
    return run


def redaction_run_execute(
    *, run_id: int, stale_after_seconds: int = 600, rows_per_task: int | None = None, queue: str | None = None
) -> RedactionRun | None:
    """Detect personal data in every text field of every row, in chunks committed one by one.

    Safe to run twice and after a crash: the run is claimed atomically (queued → running, or a running
    run whose heartbeat is stale), and detection resumes after the last committed row. After
    ``rows_per_task`` rows (setting TUNINGDESK_REDACTION_ROWS_PER_TASK) the run goes back to the queue and a
    fresh task on ``queue`` (the one this task came from) takes it on, so a worker's ``--max-memory-per-child``
    can replace the process inside a long run.
    """
    from curation.tasks import redaction_run_task

    if rows_per_task is None:
        rows_per_task = settings.TUNINGDESK_REDACTION_ROWS_PER_TASK
    now = timezone.now()
    stale = now - timezone.timedelta(seconds=stale_after_seconds)
    claimed = RedactionRun.objects.filter(
        Q(status=RedactionRun.Status.QUEUED) | Q(status=RedactionRun.Status.RUNNING, heartbeat_at__lt=stale),
        pk=run_id,
    ).update(status=RedactionRun.Status.RUNNING, heartbeat_at=now, started_at=Coalesce(F("started_at"), Value(now)))
    if not claimed:
        return None
    run = RedactionRun.objects.select_related("version").get(pk=run_id)
    done_here = 0
    try:
        engine = engine_for(run)
        total = max(run.version.row_count, 1)
        while True:
            if done_here >= rows_per_task and run.version.examples.filter(row_index__gt=run.last_row_index).exists():
                with transaction.atomic():
                    handed = RedactionRun.objects.filter(pk=run_id, status=RedactionRun.Status.RUNNING).update(
                        status=RedactionRun.Status.QUEUED, heartbeat_at=timezone.now()
                    )
                    if handed:
                        transaction.on_commit(lambda: redaction_run_task.apply_async(args=[run_id], queue=queue))
                run.refresh_from_db()
                return run
            chunk = min(CHUNK, max(rows_per_task - done_here, 1))
            examples = list(run.version.examples.filter(row_index__gt=run.last_row_index).order_by("row_index")[:chunk])
            if not examples:
                break
            fields = [(example, name, text) for example in examples for name, text in _text_fields(example)]
            found: list[Finding] = []
            for (example, name, _), spans in zip(fields, engine.detect(text for _, _, text in fields), strict=True):
                found.extend(
                    Finding(
                        run=run,
                        example=example,
                        field=name,
                        start=span.start,
                        end=span.end,
                        entity_type=span.entity_type,
                        score=round(min(max(span.score, 0.0), 1.0), 4),
                        recognizer=span.recognizer[:80],
                    )
                    for span in spans
                )
            with transaction.atomic():
                Finding.objects.bulk_create(found, batch_size=1000, ignore_conflicts=True)
                run.processed += len(examples)
                run.last_row_index = examples[-1].row_index
                run.finding_count += len(found)
                run.progress = min(run.processed / total, 1.0)
                run.heartbeat_at = timezone.now()
                run.save(update_fields=["processed", "last_row_index", "finding_count", "progress", "heartbeat_at"])
            done_here += len(examples)
        run.status = RedactionRun.Status.REVIEW
        run.progress = 1.0
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "progress", "finished_at"])
    except Exception as exc:
        RedactionRun.objects.filter(pk=run_id).update(
            status=RedactionRun.Status.FAILED, error=f"Detection stopped: {exc}"[:2000], finished_at=timezone.now()
        )
        raise
    return run


def _text_fields(example: Example) -> Iterator[tuple[str, str]]:
    yield "input", example.input
    if example.target:
        yield "target", example.target
    for key, value in (example.metadata or {}).items():
        if isinstance(value, str) and value.strip():
            yield f"metadata.{key}", value


def field_text(example: Example, field: str) -> str | None:
    if field in ("input", "target"):
        return getattr(example, field)
    if field.startswith("metadata."):
        value = (example.metadata or {}).get(field.removeprefix("metadata."))
        return value if isinstance(value, str) else None
    return None


# --- review ------------------------------------------------------------------------------------


def _require_review_open(run: RedactionRun) -> None:
    if run.is_detecting:
        raise ValidationError("Detection is still running; decisions open when it has finished.")
    if run.status != RedactionRun.Status.REVIEW:
        raise ValidationError(f"This redaction is “{run.get_status_display()}”; its findings cannot change.")


def finding_decide(*, finding: Finding, actor, status: str, revision: int, entity_type: str | None = None) -> Finding:
    """Accept or reject one finding (optionally changing its type). ``revision`` is what the reviewer saw:
    if someone else decided in the meantime, nothing changes and the message says so."""
    if status not in Finding.Status.values:
        raise ValidationError({"status": "Choose accepted, rejected or pending."})
    if entity_type is not None and entity_type not in pii.ENTITY_TYPES:
        raise ValidationError({"entity_type": f"Unknown entity type {entity_type!r}."})
    _require_review_open(finding.run)
    changes = {"status": status, "revision": revision + 1, "decided_by": actor, "decided_at": timezone.now()}
    if entity_type:
        changes["entity_type"] = entity_type
    with transaction.atomic():
        before = Finding.objects.filter(pk=finding.pk).values("status", "entity_type").first()
        if entity_type and entity_type != finding.entity_type:
            twin = Finding.objects.filter(
                run_id=finding.run_id,
                example_id=finding.example_id,
                field=finding.field,
                start=finding.start,
                end=finding.end,
                entity_type=entity_type,
            ).exists()
            if twin:
                raise ValidationError(
                    {"entity_type": f"This text is already marked as {entity_type}; decide that finding instead."}
                )
        updated = Finding.objects.filter(pk=finding.pk, revision=revision).update(**changes)
        if not updated:
            current = Finding.objects.select_related("decided_by").get(pk=finding.pk)
            who = current.decided_by.username if current.decided_by else "someone"
            raise FindingConflict(
                f"{who} changed this finding a moment ago (it is now “{current.get_status_display()}”). "
                "Reload to see the latest decision."
            )
        finding.refresh_from_db()
        audit_record(
            actor=actor,
            action="finding.decide",
            obj=finding,
            before=before,
            after={"status": status, "entity_type": finding.entity_type},
        )
    return finding


def finding_add(
    *, run: RedactionRun, example: Example, field: str, start: int, end: int, entity_type: str, actor
) -> Finding:
    """A reviewer marks a span the detector missed; it is accepted at once."""
    _require_review_open(run)
    if example.version_id != run.version_id:
        raise ValidationError("This row belongs to another version.")
    text = field_text(example, field)
    if text is None:
        raise ValidationError({"field": f"This row has no text field “{field}”."})
    if entity_type not in pii.ENTITY_TYPES:
        raise ValidationError({"entity_type": f"Unknown entity type {entity_type!r}."})
    if not 0 <= start < end <= len(text):
        raise ValidationError({"end": f"The span {start}–{end} is outside the text, which has {len(text)} characters."})
    if not text[start:end].strip():
        raise ValidationError({"start": "The selected span holds only spaces."})
    with transaction.atomic():
        finding, created = Finding.objects.get_or_create(
            run=run,
            example=example,
            field=field,
            start=start,
            end=end,
            entity_type=entity_type,
            defaults={
                "score": 1.0,
                "recognizer": "reviewer",
                "status": Finding.Status.ACCEPTED,
                "decided_by": actor,
                "decided_at": timezone.now(),
            },
        )
        if created:
            RedactionRun.objects.filter(pk=run.pk).update(finding_count=F("finding_count") + 1)
        elif finding.status != Finding.Status.ACCEPTED:
            # The detector had proposed exactly this span: marking it is accepting it.
            Finding.objects.filter(pk=finding.pk).update(
                status=Finding.Status.ACCEPTED, revision=F("revision") + 1, decided_by=actor, decided_at=timezone.now()
            )
            finding.refresh_from_db()
        audit_record(
            actor=actor,
            action="finding.add",
            obj=finding,
            after={"entity_type": entity_type, "field": field, "start": start, "end": end},
        )
    return finding


def findings_bulk_decide(
    *,
    run: RedactionRun,
    actor,
    status: str,
    entity_type: str = "",
    min_score: float | None = None,
    max_score: float | None = None,
    only_pending: bool = True,
) -> int:
    """Accept or reject every finding of one type and score range at once; returns how many changed."""
    if status not in (Finding.Status.ACCEPTED, Finding.Status.REJECTED):
        raise ValidationError({"status": "Choose accepted or rejected."})
    if min_score is not None and max_score is not None and min_score > max_score:
        raise ValidationError({"max_score": "The highest score must be at least the lowest score."})
    _require_review_open(run)
    findings = run.findings.all()
    if only_pending:
        findings = findings.pending()
    if entity_type:
        findings = findings.filter(entity_type=entity_type)
    if min_score is not None:
        findings = findings.filter(score__gte=min_score)
    if max_score is not None:
        findings = findings.filter(score__lte=max_score)
    with transaction.atomic():
        count = findings.update(status=status, revision=F("revision") + 1, decided_by=actor, decided_at=timezone.now())
        audit_record(
            actor=actor,
            action="finding.bulk_decide",
            obj=run,
            after={
                "status": status,
                "entity_type": entity_type,
                "min_score": min_score,
                "max_score": max_score,
                "count": count,
            },
        )
    return count


# --- approval ----------------------------------------------------------------------------------


def redaction_run_approve(*, run: RedactionRun, actor) -> DatasetVersion:
    """Every finding decided → a new version with accepted spans replaced, marked approved."""
    with transaction.atomic():
        run = RedactionRun.objects.select_for_update().select_related("version__dataset").get(pk=run.pk)
        if run.is_detecting:
            raise ValidationError(
                "Detection is still running. Approve when it has finished and every finding is decided."
            )
        if run.status != RedactionRun.Status.REVIEW:
            raise ValidationError(f"This redaction is “{run.get_status_display()}” and cannot be approved.")
        pending = run.findings.pending().count()
        if pending:
            raise ValidationError(f"{pending} finding(s) are not decided yet. Accept or reject each one first.")
        engine = engine_for(run)
        pseudonymizer = engine.pseudonymizer()
        source = run.version
        version = version_create(
            dataset=source.dataset,
            parent=source,
            operation=DatasetVersion.Operation.REDACT,
            params={"redaction_run": run.pk},
            actor=actor,
            rows=_redacted_rows(run, engine, pseudonymizer),
            seed=source.split_seed,
            ratios=source.split_ratios,
            privacy=DatasetVersion.Privacy.APPROVED,
        )
        run.status = RedactionRun.Status.APPROVED
        run.result_version = version
        run.approved_by = actor
        run.pseudonym_map = _fernet().encrypt(json.dumps(pseudonymizer.mapping, ensure_ascii=False).encode())
        run.save(update_fields=["status", "result_version", "approved_by", "pseudonym_map"])
        audit_record(
            actor=actor,
            action="redaction.approve",
            obj=run,
            after={"version_id": version.pk, "accepted": run.findings.accepted().count()},
        )
    return version


def _redacted_rows(run: RedactionRun, engine: pii.PiiEngine, pseudonymizer) -> Iterator[tuple]:
    accepted: dict[int, dict[str, list[pii.Finding]]] = {}
    for example_id, field, start, end, entity_type in (
        run.findings.accepted()
        .values_list("example_id", "field", "start", "end", "entity_type")
        .iterator(chunk_size=5000)
    ):
        accepted.setdefault(example_id, {}).setdefault(field, []).append(
            pii.Finding(entity_type=entity_type, start=start, end=end, score=1.0, recognizer="review", text="")
        )
    rejected: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for example_id, field, start, end in (
        run.findings.filter(status=Finding.Status.REJECTED).values_list("example_id", "field", "start", "end")
    ).iterator(chunk_size=5000):
        rejected.setdefault((example_id, field), []).append((start, end))
    values = _accepted_values(run, accepted)
    matcher = _value_matcher(values)
    for example in run.version.examples.order_by("row_index").iterator(chunk_size=2000):
        spans = accepted.get(example.pk, {})

        def redact(field: str, text: str, example=example, spans=spans) -> str:
            found = list(spans.get(field, ()))
            if matcher is not None:
                kept = rejected.get((example.pk, field), ())
                found += [
                    mention
                    for mention in _other_mentions(text, found, matcher, values)
                    # A reviewer who explicitly kept this very mention is not overruled.
                    if not any(start <= mention.start and mention.end <= end for start, end in kept)
                ]
            return engine.anonymize(text, found, pseudonymizer) if found else text

        text = redact("input", example.input)
        target = redact("target", example.target)
        metadata = {
            key: redact(f"metadata.{key}", value) if isinstance(value, str) else value
            for key, value in (example.metadata or {}).items()
        }
        yield (
            example.row_index,
            example.source_line,
            text,
            target,
            example.label,
            example.group,
            metadata,
            example.split,
            row_hash(text, target, example.label, example.group),
            text_hash(text, target),
            quality_flags(text, target),
        )


# Values shorter than this are not searched for elsewhere ("Al", "Jo" would hit ordinary words).
_PROPAGATE_MIN_CHARS = 3


def _accepted_values(run: RedactionRun, accepted: dict[int, dict[str, list[pii.Finding]]]) -> dict[str, str]:
    """Every accepted original value (→ its entity type), to redact it wherever else it occurs in the dataset."""
    values: dict[str, str] = {}
    examples = run.version.examples.filter(pk__in=list(accepted)).only("pk", "input", "target", "metadata")
    for example in examples.iterator(chunk_size=2000):
        for field, spans in accepted[example.pk].items():
            text = field_text(example, field) or ""
            for span in spans:
                value = text[span.start : span.end].strip()
                if len(value) >= _PROPAGATE_MIN_CHARS:
                    values.setdefault(value, span.entity_type)
    return values


def _value_matcher(values: dict[str, str]):
    import regex

    if not values:
        return None
    alternatives = "|".join(regex.escape(value) for value in sorted(values, key=len, reverse=True))
    return regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _other_mentions(text: str, found: list[pii.Finding], matcher, values: dict[str, str]) -> list[pii.Finding]:
    """Mentions of an accepted value that no finding covers in this text: a reviewer's decision applies everywhere."""
    extra = []
    for match in matcher.finditer(text):
        if any(span.start <= match.start() and match.end() <= span.end for span in found):
            continue
        extra.append(
            pii.Finding(
                entity_type=values[match.group()],
                start=match.start(),
                end=match.end(),
                score=1.0,
                recognizer="propagated",
                text="",
            )
        )
    return extra


def _redact(engine: pii.PiiEngine, pseudonymizer, spans: list | None, text: str) -> str:
    return engine.anonymize(text, spans, pseudonymizer) if spans else text


def pseudonyms_read(*, run: RedactionRun, actor) -> dict[str, str]:
    """The original → surrogate map of an approved run. Every read is written to the audit log."""
    if not run.pseudonym_map:
        return {}
    mapping = json.loads(_fernet().decrypt(bytes(run.pseudonym_map)))
    audit_record(actor=actor, action="pseudonyms.read", obj=run, after={"entries": len(mapping)})
    return mapping


def redaction_runs_stale(*, stale_after_seconds: int = 600) -> list[int]:
    """Runs that claim to be running but whose heartbeat stopped: their worker died."""
    stale = timezone.now() - timezone.timedelta(seconds=stale_after_seconds)
    # A run handed over to the queue mid-way has a heartbeat too; if its message was lost, it is stale as well.
    return list(
        RedactionRun.objects.filter(
            status__in=[RedactionRun.Status.RUNNING, RedactionRun.Status.QUEUED], heartbeat_at__lt=stale
        ).values_list("pk", flat=True)
    )
