"""Writes for annotation: schemas, projects, reservations, answers, review and the resulting dataset version.

Reservations: an annotator asks for the next example; they get one nobody else holds, that still needs answers and
that they have not answered or skipped. It stays theirs until ``expires_at``; the database allows one active
reservation per task, so two annotators can never hold the same example at once. Answers are never shown to other
annotators; a task's consensus is computed when it has ``annotations_per_example`` answers.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.services import audit_record
from annotation import schema as schemas
from annotation.models import Annotation, AnnotationProject, Assignment, LabelSchema, PublishRun, Task
from curation.models import Dataset, DatasetVersion, Example, TaskType
from curation.services import engine_for_dataset, version_derive, version_require_approved
from curation.text import quality_flags, row_hash, text_hash

TASK_BATCH = 2000

log = logging.getLogger(__name__)


class AnnotationConflict(ValidationError):
    """The request was valid but the example's state moved on (another tab, an expired reservation): HTTP 409."""


def _schema_or_error(raw: object) -> dict:
    try:
        return schemas.schema_clean(raw)
    except schemas.SchemaError as exc:
        raise ValidationError({"schema": list(exc.errors.values())}) from None


def _answer_or_error(schema: dict, raw: object, *, partial: bool = False) -> dict:
    try:
        return schemas.answer_clean(schema, raw, partial=partial)
    except schemas.SchemaError as exc:
        raise ValidationError(exc.errors) from None


def default_schema(dataset: Dataset) -> dict:
    """A starting schema that fits the dataset's task: correct the response, or pick the label."""
    if dataset.task_type == TaskType.CLASSIFICATION and dataset.label_set:
        return {
            "instructions": "Read the text and choose the label that fits best.",
            "fields": [
                {
                    "name": "label",
                    "kind": "choice",
                    "title": "Label",
                    "options": list(dataset.label_set),
                    "writes": "label",
                }
            ],
        }
    return {
        "instructions": "Read the request. Correct the response so it is the answer you would want the model to give.",
        "fields": [
            {"name": "response", "kind": "text", "title": "Response", "writes": "target"},
            {
                "name": "quality",
                "kind": "rating",
                "title": "Quality of the original response",
                "scale": 5,
                "required": False,
                "rubric": {"1": "Wrong or harmful", "3": "Usable after edits", "5": "Could be sent as it is"},
            },
        ],
    }


@transaction.atomic
def label_schema_save(*, dataset: Dataset, schema: dict, actor) -> LabelSchema:
    """Create or replace the dataset's label schema. Projects keep the copy they were created with."""
    cleaned = _schema_or_error(schema)
    existing = LabelSchema.objects.select_for_update().filter(dataset=dataset).first()
    before = {"schema": existing.schema} if existing else {}
    label_schema, _ = LabelSchema.objects.update_or_create(
        dataset=dataset, defaults={"schema": cleaned, "updated_by": actor}
    )
    audit_record(actor=actor, action="label_schema.save", obj=label_schema, before=before, after={"schema": cleaned})
    return label_schema


@transaction.atomic
def annotation_project_create(
    *,
    name: str,
    version: DatasetVersion,
    actor,
    annotations_per_example: int = 2,
    reservation_minutes: int = 30,
    limit: int | None = None,
    schema: dict | None = None,
    gold_count: int = 0,
) -> AnnotationProject:
    """A project over an approved version: one task per example (the first ``limit`` in row order).

    ``gold_count`` examples whose label is already known (the schema's field that writes the label) become gold
    examples with that answer, spread evenly over the project, to check annotators from the first day. (A known
    target is no gold answer: the page shows it to correct, so keeping it would always match.)
    """
    version_require_approved(version)
    if schema is None:
        saved = LabelSchema.objects.filter(dataset=version.dataset).first()
        if saved is None:
            raise ValidationError({"schema": "Set up the label schema of this dataset first: what annotators fill in."})
        schema = saved.schema
    cleaned = _schema_or_error(schema)
    project = AnnotationProject(
        name=(name or "").strip(),
        version=version,
        schema=cleaned,
        annotations_per_example=annotations_per_example,
        reservation_minutes=reservation_minutes,
        created_by=actor,
    )
    if not 1 <= annotations_per_example <= 10:
        raise ValidationError({"annotations_per_example": "Ask for 1 to 10 annotations per example."})
    if not 1 <= reservation_minutes <= 24 * 60:
        raise ValidationError({"reservation_minutes": "A reservation lasts 1 minute to 24 hours."})
    if limit is not None and limit < 1:
        raise ValidationError({"limit": "Take at least one example."})
    if gold_count < 0:
        raise ValidationError({"gold_count": "The number of gold examples cannot be negative."})
    project.full_clean()
    project.save()
    count = _tasks_create(project, version, limit)
    if not count:
        raise ValidationError("This version has no examples to annotate.")
    project.task_count = count
    project.save(update_fields=["task_count"])
    gold = _gold_seed(project, gold_count) if gold_count else 0
    audit_record(
        actor=actor,
        action="annotation_project.create",
        obj=project,
        after={"version": version.pk, "tasks": count, "annotations_per_example": annotations_per_example, "gold": gold},
    )
    return project


def _gold_seed(project: AnnotationProject, wanted: int) -> int:
    """Mark ``wanted`` tasks as gold, their answer taken from the example's known label."""
    writes = {field["writes"]: field for field in project.schema["fields"] if field["writes"] == "label"}
    if not writes:
        raise ValidationError(
            {
                "gold_count": "Gold examples are taken from known labels: the schema needs a single "
                "choice that writes the label. Reviewers can still mark gold examples "
                "with an answer they write."
            }
        )
    known = Task.objects.filter(project=project)
    for column in writes:
        known = known.exclude(**{f"example__{column}": ""})
    candidates = list(known.order_by("position").values_list("pk", "example__label", "example__target"))
    if len(candidates) < wanted:
        raise ValidationError(
            {
                "gold_count": f"Only {len(candidates)} examples have a known "
                f"{' and '.join(writes)}; ask for at most that many gold examples."
            }
        )
    step = len(candidates) / wanted
    chosen = [candidates[int(i * step)] for i in range(wanted)]
    tasks = []
    for pk, label, target in chosen:
        answer = {field["name"]: label if column == "label" else target for column, field in writes.items()}
        try:
            answer = schemas.answer_clean(project.schema, answer, partial=True)
        except schemas.SchemaError as exc:
            raise ValidationError({"gold_count": f"An example's known answer does not fit the schema: {exc}"}) from None
        tasks.append(Task(pk=pk, is_gold=True, gold_answer=answer, updated_at=timezone.now()))
    Task.objects.bulk_update(tasks, ["is_gold", "gold_answer", "updated_at"], batch_size=1000)
    return len(tasks)


def _tasks_create(project: AnnotationProject, version: DatasetVersion, limit: int | None) -> int:
    """One task per example in row order, written by the database in one statement (100k tasks: 1.5 s on two cores,
    where building model instances took 9 s; bench/annotation.py)."""
    table = Task._meta.db_table
    example_table = Example._meta.db_table
    empty_list = "'[]'::jsonb" if connection.vendor == "postgresql" else "'[]'"
    limit_sql = " LIMIT %s" if limit is not None else ""
    with connection.cursor() as cursor:
        cursor.execute(
            # Table names and the JSON literal are constants; the values are parameters.
            f"""INSERT INTO {table} (project_id, example_id, position, status, annotation_count, disagreements,
                                     is_gold, updated_at)
                SELECT %s, id, ROW_NUMBER() OVER (ORDER BY row_index) - 1, %s, 0, {empty_list}, %s, %s
                FROM (SELECT id, row_index FROM {example_table} WHERE version_id = %s ORDER BY row_index{limit_sql})
                     chosen""",  # noqa: S608
            [project.pk, Task.Status.OPEN, False, timezone.now(), version.pk, *([limit] if limit is not None else [])],
        )
        return cursor.rowcount


# --- reservations ------------------------------------------------------------------------------------------------


def _require_open(project: AnnotationProject) -> None:
    if not project.is_open:
        raise ValidationError("This project is finished; nothing is left to annotate.")


def _expire_reservations(project: AnnotationProject, now) -> None:
    Assignment.objects.filter(task__project=project, status=Assignment.Status.ACTIVE, expires_at__lte=now).update(
        status=Assignment.Status.EXPIRED, finished_at=now
    )


def _available_tasks(project: AnnotationProject, annotator):
    """Open tasks the annotator has not answered or skipped and nobody holds. Each test is a probe on the task's own
    rows (NOT EXISTS), so the scan in ``task_next_idx`` order stops at the first free task, however many answers the
    annotator has given in other projects."""
    mine = {"task": OuterRef("pk"), "annotator": annotator}
    return Task.objects.filter(
        ~Exists(Annotation.objects.filter(**mine)),
        ~Exists(Assignment.objects.filter(**mine, status=Assignment.Status.SKIPPED)),
        ~Exists(Assignment.objects.filter(task=OuterRef("pk"), status=Assignment.Status.ACTIVE)),
        project=project,
        status=Task.Status.OPEN,
        annotation_count__lt=project.annotations_per_example,
    )


def assignment_current(*, project: AnnotationProject, annotator) -> Assignment | None:
    """The annotator's unexpired reservation in the project, newest first (two tabs see the same one)."""
    return (
        Assignment.objects.select_related("task__example")
        .filter(
            task__project=project, annotator=annotator, status=Assignment.Status.ACTIVE, expires_at__gt=timezone.now()
        )
        .order_by("-reserved_at", "-id")
        .first()
    )


def assignment_next(*, project: AnnotationProject, annotator) -> Assignment | None:
    """The annotator's current reservation, or a new one on the next example; None when nothing is left for them.

    Examples that already have answers come first, so each example reaches its k answers (and agreement can be
    measured) before new ones are started.
    """
    _require_open(project)
    current = assignment_current(project=project, annotator=annotator)
    if current is not None:
        return current
    now = timezone.now()
    _expire_reservations(project, now)
    for _attempt in range(5):
        with transaction.atomic():
            task = (
                _available_tasks(project, annotator)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("-annotation_count", "position")
                .first()
            )
            if task is None:
                return None
            # An example coming back to someone (their reservation ran out) brings back what they had typed.
            earlier = (
                Assignment.objects.filter(task=task, annotator=annotator, status=Assignment.Status.EXPIRED)
                .exclude(draft={})
                .order_by("-reserved_at", "-id")
                .first()
            )
            try:
                with transaction.atomic():
                    assignment = Assignment.objects.create(
                        task=task,
                        annotator=annotator,
                        reserved_at=now,
                        expires_at=now + timedelta(minutes=project.reservation_minutes),
                        draft=earlier.draft if earlier else {},
                        draft_saved_at=earlier.draft_saved_at if earlier else None,
                    )
            except IntegrityError:
                continue  # someone reserved it between our read and our write: take the next one
        return Assignment.objects.select_related("task__example").get(pk=assignment.pk)
    return None


def _own(assignment: Assignment, annotator) -> Assignment:
    if assignment.annotator_id != annotator.pk:
        raise PermissionDenied("This example is reserved for someone else.")
    return assignment


@transaction.atomic
def assignment_draft_save(
    *, assignment: Assignment, annotator, draft: dict, revision: int | None = None, active_seconds: float | None = None
) -> Assignment:
    """Autosave: keep the half-written answer. A save from a tab that missed a newer save is refused (409)."""
    assignment = _own(Assignment.objects.select_for_update().get(pk=assignment.pk), annotator)
    if assignment.status != Assignment.Status.ACTIVE or assignment.expires_at <= timezone.now():
        raise AnnotationConflict(
            "This example is no longer reserved for you, so the draft was not saved. Ask for the next example to go on."
        )
    if revision is not None and revision != assignment.revision:
        raise AnnotationConflict(
            "You changed this example in another tab or window. This page now shows the newer draft."
        )
    cleaned = _answer_or_error(assignment.task.project.schema, draft, partial=True)
    assignment.draft = cleaned
    assignment.draft_saved_at = timezone.now()
    assignment.revision += 1
    if active_seconds is not None:
        assignment.active_seconds = max(assignment.active_seconds, float(active_seconds))
    assignment.save(update_fields=["draft", "draft_saved_at", "revision", "active_seconds"])
    return assignment


def _seconds_spent(assignment: Assignment, active_seconds: float | None, now) -> float:
    """Visible time reported by the page, never more than the time since the reservation began."""
    wall = max((now - assignment.reserved_at).total_seconds(), 0.0)
    reported = max(float(active_seconds or 0), assignment.active_seconds)
    return round(min(reported, wall) if reported > 0 else wall, 1)


def annotation_submit(
    *, assignment: Assignment, annotator, answer: dict, active_seconds: float | None = None
) -> Annotation:
    """Submit the answer to a reserved example. Refused with a plain message (409) when it was already submitted
    (another tab) or when the reservation ran out and the example went to someone else or is complete; the answer
    is then kept as the draft, so nothing typed is lost."""
    conflict = None
    with transaction.atomic():
        assignment = _own(Assignment.objects.select_for_update().get(pk=assignment.pk), annotator)
        task = Task.objects.select_for_update().select_related("project").get(pk=assignment.task_id)
        project = task.project
        if assignment.status == Assignment.Status.SUBMITTED:
            raise AnnotationConflict(
                "You already submitted this example in another tab or window; that answer is "
                "kept. Use Undo if you want to change it."
            )
        if assignment.status in (Assignment.Status.SKIPPED, Assignment.Status.UNDONE):
            raise AnnotationConflict("You left this example (skipped or undone); ask for the next example.")
        cleaned = _answer_or_error(project.schema, answer)
        now = timezone.now()
        if assignment.status == Assignment.Status.EXPIRED or assignment.expires_at <= now:
            conflict = _renew_expired(assignment, task, project, now)
        if conflict is None and Annotation.objects.filter(task=task, annotator_name=annotator.get_username()).exists():
            raise AnnotationConflict(
                "Your answer to this example already arrived from Label Studio; that answer is "
                "kept. Ask for the next example to go on."
            )
        if conflict is None:
            created = Annotation.objects.create(
                task=task,
                annotator=annotator,
                annotator_name=annotator.get_username(),
                answer=cleaned,
                seconds=_seconds_spent(assignment, active_seconds, now),
                source=Annotation.Source.APP,
            )
            Assignment.objects.filter(pk=assignment.pk).update(
                status=Assignment.Status.SUBMITTED, finished_at=now, draft={}
            )
            _task_settle(task)
            return created
        # Keep what they typed: it is shown again if the example comes back to them.
        Assignment.objects.filter(pk=assignment.pk).update(draft=cleaned, draft_saved_at=now)
    raise AnnotationConflict(conflict)


def _renew_expired(assignment: Assignment, task: Task, project: AnnotationProject, now) -> str | None:
    """Accept a late answer when the example is still free; otherwise say why not."""
    ended = timezone.localtime(assignment.expires_at).strftime("%H:%M")
    taken = (
        Assignment.objects.filter(task=task, status=Assignment.Status.ACTIVE, expires_at__gt=now)
        .exclude(pk=assignment.pk)
        .exists()
    )
    done = task.annotation_count >= project.annotations_per_example or task.status != Task.Status.OPEN
    if taken or done or not project.is_open:
        why = (
            "the project has been finished"
            if not project.is_open
            else "someone else is annotating it now"
            if taken
            else "it already has all the answers it needs"
        )
        return (
            f"Your reservation on this example ran out at {ended} and {why}, so your answer was not counted. "
            "It is kept as a draft; ask for the next example to go on."
        )
    try:
        with transaction.atomic():
            Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.ACTIVE)
    except IntegrityError:
        return (
            f"Your reservation on this example ran out at {ended} and someone else is annotating it now, so "
            "your answer was not counted. It is kept as a draft; ask for the next example to go on."
        )
    return None


@transaction.atomic
def assignment_skip(*, assignment: Assignment, annotator) -> Assignment:
    """Pass on an example: it goes to someone else and is not offered to this annotator again."""
    assignment = _own(Assignment.objects.select_for_update().get(pk=assignment.pk), annotator)
    if assignment.status != Assignment.Status.ACTIVE:
        raise AnnotationConflict("This example is no longer reserved for you.")
    assignment.status = Assignment.Status.SKIPPED
    assignment.finished_at = timezone.now()
    assignment.save(update_fields=["status", "finished_at"])
    return assignment


@transaction.atomic
def annotation_undo(*, project: AnnotationProject, annotator) -> Assignment:
    """Take back the annotator's last submission in the project: the example is reserved for them again with their
    answer as the draft."""
    _require_open(project)
    last = (
        Annotation.objects.select_for_update()
        .filter(task__project=project, annotator=annotator, source=Annotation.Source.APP)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        raise ValidationError("There is nothing to undo: you have not submitted anything in this project.")
    task = Task.objects.select_for_update().get(pk=last.task_id)
    if task.status == Task.Status.ADJUDICATED:
        raise AnnotationConflict("A reviewer has already settled this example, so your answer can no longer change.")
    now = timezone.now()
    _expire_reservations(project, now)
    if Assignment.objects.filter(task=task, status=Assignment.Status.ACTIVE).exists():
        raise AnnotationConflict("Someone else is annotating this example right now; try Undo again in a few minutes.")
    Assignment.objects.filter(task=task, annotator=annotator, status=Assignment.Status.SUBMITTED).update(
        status=Assignment.Status.UNDONE
    )
    draft, seconds = last.answer, last.seconds
    last.delete()
    assignment = Assignment.objects.create(
        task=task,
        annotator=annotator,
        reserved_at=now,
        draft=draft,
        draft_saved_at=now,
        active_seconds=seconds,
        expires_at=now + timedelta(minutes=project.reservation_minutes),
    )
    _task_settle(task)
    return Assignment.objects.select_related("task__example").get(pk=assignment.pk)


# --- settling answers --------------------------------------------------------------------------------------------


def _task_settle(task: Task) -> Task:
    """Recount the task's answers and work out its consensus once it has enough of them."""
    project = task.project
    answers = list(task.annotations.order_by("created_at", "id").values_list("answer", flat=True))
    task.annotation_count = len(answers)
    if task.status == Task.Status.ADJUDICATED:
        pass
    elif len(answers) >= project.annotations_per_example:
        consensus, disagreements = schemas.resolve(project.schema, answers)
        task.status = Task.Status.DISAGREEMENT if disagreements else Task.Status.AGREED
        task.answer = None if disagreements else consensus
        task.disagreements = disagreements
    else:
        task.status, task.answer, task.disagreements = Task.Status.OPEN, None, []
    task.save(update_fields=["annotation_count", "status", "answer", "disagreements", "updated_at"])
    return task


@transaction.atomic
def annotation_record_external(
    *, task: Task, annotator, annotator_name: str, answer: dict, seconds: float, label_studio_annotation_id: int
) -> Annotation:
    """Store (or update) an answer made in Label Studio, so it counts like one made here."""
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)
    annotation = Annotation.objects.filter(task=task, annotator_name=annotator_name).first()
    if annotation is None:
        annotation = Annotation.objects.create(
            task=task,
            annotator=annotator,
            annotator_name=annotator_name,
            answer=answer,
            seconds=max(seconds, 0.0),
            source=Annotation.Source.LABEL_STUDIO,
            label_studio_annotation_id=label_studio_annotation_id,
        )
    else:
        annotation.answer = answer
        annotation.seconds = max(seconds, 0.0)
        annotation.label_studio_annotation_id = label_studio_annotation_id
        annotation.save(update_fields=["answer", "seconds", "label_studio_annotation_id"])
    _task_settle(task)
    return annotation


@transaction.atomic
def task_adjudicate(*, task: Task, actor, answer: dict, settled_seen: str | None = None) -> Task:
    """A reviewer's final answer for an example, whatever the annotators said.

    ``settled_seen`` is ``task.settled_stamp`` as the reviewer's page showed it: when another reviewer settled the
    example since, nothing changes and AnnotationConflict says so (checked before the answer, so a reviewer whose
    form was left half-filled learns what happened rather than which field is missing). None skips the check."""
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)
    if settled_seen is not None and task.settled_stamp != settled_seen:
        who = task.adjudicated_by.get_username() if task.adjudicated_by else "someone"
        at = timezone.localtime(task.adjudicated_at).strftime("%H:%M") if task.adjudicated_at else ""
        opening = (
            "You settled this example in another tab or window"
            if task.adjudicated_by_id == actor.pk
            else f"Someone settled this example while you were reading it ({who}, at {at})"
        )
        raise AnnotationConflict(
            f"{opening}. Their final answer is shown below and nothing of yours was saved; "
            "save again if yours should replace it."
        )
    if task.annotation_count == 0:
        raise ValidationError("Nobody has annotated this example yet; there is nothing to settle.")
    cleaned = _answer_or_error(task.project.schema, answer)
    before = {
        "status": task.status,
        "answer": task.answer,
        "adjudicated_by": task.adjudicated_by_id,
        "adjudicated_at": task.adjudicated_at.isoformat() if task.adjudicated_at else None,
    }
    task.status = Task.Status.ADJUDICATED
    task.answer = cleaned
    task.adjudicated_by = actor
    task.adjudicated_at = timezone.now()
    task.save(update_fields=["status", "answer", "adjudicated_by", "adjudicated_at", "updated_at"])
    audit_record(actor=actor, action="task.adjudicate", obj=task, before=before, after={"answer": cleaned})
    task.undo = before  # what task_adjudicate_undo puts back
    return task


@transaction.atomic
def task_adjudicate_undo(*, task: Task, actor, previous: dict, settled_seen: str) -> Task:
    """Put back an example as it was before ``task_adjudicate`` (``previous`` is its ``undo``), unless it changed
    since (``settled_seen``: the stamp right after that decision), which AnnotationConflict says."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.settled_stamp != settled_seen:
        raise AnnotationConflict("This example changed since you settled it, so it cannot be undone from here.")
    before = {"status": task.status, "answer": task.answer}
    task.status = previous["status"]
    task.answer = previous["answer"]
    task.adjudicated_by_id = previous["adjudicated_by"]
    task.adjudicated_at = datetime.fromisoformat(previous["adjudicated_at"]) if previous["adjudicated_at"] else None
    task.save(update_fields=["status", "answer", "adjudicated_by", "adjudicated_at", "updated_at"])
    audit_record(actor=actor, action="task.adjudicate_undo", obj=task, before=before, after={"status": task.status})
    return task


@transaction.atomic
def task_gold_set(*, task: Task, actor, answer: dict | None) -> Task:
    """Mark an example as gold with its correct answer (annotators are checked against it), or unmark it."""
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)
    before = {"is_gold": task.is_gold, "gold_answer": task.gold_answer}
    if answer is None:
        task.is_gold, task.gold_answer = False, None
    else:
        task.is_gold, task.gold_answer = True, _answer_or_error(task.project.schema, answer)
    task.save(update_fields=["is_gold", "gold_answer", "updated_at"])
    audit_record(
        actor=actor,
        action="task.gold",
        obj=task,
        before=before,
        after={"is_gold": task.is_gold, "gold_answer": task.gold_answer},
    )
    return task


# --- the result: a new dataset version ---------------------------------------------------------------------------


def _apply_answers(project: AnnotationProject, version: DatasetVersion) -> None:
    fields = project.schema["fields"]
    settled = Task.objects.filter(project=project, status__in=Task.SETTLED).values_list(
        "example__row_index", "answer", "status", "annotation_count"
    )
    pending: list[tuple[int, dict, str, int]] = []

    def flush() -> None:
        rows = {row.row_index: row for row in version.examples.filter(row_index__in=[p[0] for p in pending])}
        changed = []
        for row_index, answer, status, count in pending:
            row = rows.get(row_index)
            if row is None:
                continue
            extra = {}
            for field in fields:
                value = answer.get(field["name"])
                if value is None:
                    continue
                if field["writes"] == "target":
                    row.target = value
                elif field["writes"] == "label":
                    row.label = value
                else:
                    extra[field["name"]] = value
            row.metadata = {
                **(row.metadata or {}),
                "annotation": {**extra, "project": project.pk, "settled_by": status, "answers": count},
            }
            row.row_hash = row_hash(row.input, row.target, row.label, row.group)
            row.text_hash = text_hash(row.input, row.target)
            row.flags = quality_flags(row.input, row.target)
            changed.append(row)
        Example.objects.bulk_update(changed, ["target", "label", "metadata", "row_hash", "text_hash", "flags"])
        pending.clear()

    for item in settled.iterator(chunk_size=TASK_BATCH):
        pending.append(item)
        if len(pending) >= 500:
            flush()
    flush()


def _new_text_check(project: AnnotationProject, *, known: dict | None = None, report=None) -> dict:
    """Look for personal data in the text annotators wrote (not in what they kept from the reviewed example).

    The source version passed privacy review, but a corrected reply is new text and could carry a name or a phone
    number. Each settled text answer that differs from the example's reviewed target is run through the same
    Presidio detector as the privacy review; a finding counts only when its value is not already in the reviewed
    example (a surrogate name kept from the original is not new personal data).

    ``known`` maps texts already checked to their findings and receives the new ones, so a second pass (inside the
    publishing transaction) only checks what changed since the first. ``report(done, total)`` follows the checking.
    """
    known = {} if known is None else known
    text_fields = [field for field in project.schema["fields"] if field["kind"] == "text"]
    result = {"texts": 0, "findings": 0, "entities": {}, "rows": []}
    if not text_fields:
        return result
    written: list[tuple[int, str, str, str]] = []  # row, new text, reviewed input, reviewed target
    settled = Task.objects.filter(project=project, status__in=Task.SETTLED).values_list(
        "example__row_index", "answer", "example__input", "example__target"
    )
    for row_index, answer, source_input, source_target in settled.iterator(chunk_size=TASK_BATCH):
        for field in text_fields:
            value = (answer or {}).get(field["name"])
            if value and value.strip() != (source_target or "").strip():
                written.append((row_index, value, source_input, source_target))
    result["texts"] = len(written)
    unchecked = list(dict.fromkeys(text for _, text, _, _ in written if text not in known))
    if unchecked:
        engine = engine_for_dataset(project.version.dataset_id)
        last = time.monotonic()
        for done, (text, findings) in enumerate(zip(unchecked, engine.detect(unchecked), strict=True), start=1):
            known[text] = findings
            if report is not None and (time.monotonic() - last >= 1.0 or done == len(unchecked)):
                report(done, len(unchecked))
                last = time.monotonic()
    for row_index, new_text, source_input, source_target in written:
        reviewed = f"{source_input}\n{source_target}".casefold()
        new = [finding for finding in known[new_text] if finding.text.casefold() not in reviewed]
        for finding in new:
            result["entities"][finding.entity_type] = result["entities"].get(finding.entity_type, 0) + 1
        if new:
            result["findings"] += len(new)
            if len(result["rows"]) < 20:
                result["rows"].append(row_index)
    return result


def _require_settled(project: AnnotationProject) -> None:
    if not Task.objects.filter(project=project, status__in=Task.SETTLED).exists():
        raise ValidationError(
            "No example has a settled answer yet: examples need their answers to agree, or a "
            "reviewer's decision, before they can go into a new version."
        )


@transaction.atomic
def annotation_project_publish(
    *, project: AnnotationProject, actor, finish: bool = False, settled_only: bool = False, checked: dict | None = None
) -> DatasetVersion:
    """A new version of the project's dataset with the consensus and adjudicated answers written in.

    Every row of the source version is kept (``settled_only`` keeps only the rows with a settled answer), so the new
    version traces back to the source row by row. ``finish`` also closes the project to annotators. The version is
    approved like its source unless the text annotators wrote holds personal data (``_new_text_check``): then it
    waits for a privacy review before anything can use it. ``checked``: texts a publish run already checked.

    It runs in the caller's time: the pages and the API go through ``publish_run_start``, which runs it in the
    worker; the management command and scripts call it directly.
    """
    project = AnnotationProject.objects.select_for_update().get(pk=project.pk)
    version_require_approved(project.version)
    _require_settled(project)
    settled = Task.objects.filter(project=project, status__in=Task.SETTLED)
    counts = {
        "settled": settled.count(),
        "adjudicated": settled.filter(status=Task.Status.ADJUDICATED).count(),
        "disagreements": Task.objects.filter(project=project, status=Task.Status.DISAGREEMENT).count(),
        "open": Task.objects.filter(project=project, status=Task.Status.OPEN).count(),
    }
    keep = project.version.examples.filter(pk__in=settled.values("example_id")) if settled_only else None
    privacy_check = _new_text_check(project, known=checked)
    version = version_derive(
        parent=project.version,
        operation=DatasetVersion.Operation.ANNOTATE,
        params={
            "annotation_project": project.pk,
            "project_name": project.name,
            "settled_only": settled_only,
            **counts,
            "privacy_check": privacy_check,
        },
        actor=actor,
        keep=keep,
        transform=lambda new: _apply_answers(project, new),
        # New personal data may have been typed in: the version then waits for a privacy reviewer like an import.
        privacy=DatasetVersion.Privacy.RAW if privacy_check["findings"] else None,
    )
    if finish and project.is_open:
        project.status = AnnotationProject.Status.FINISHED
        project.save(update_fields=["status"])
        Assignment.objects.filter(task__project=project, status=Assignment.Status.ACTIVE).update(
            status=Assignment.Status.EXPIRED, finished_at=timezone.now()
        )
    audit_record(
        actor=actor,
        action="annotation_project.publish",
        obj=project,
        after={
            "version": version.pk,
            "finished": finish,
            "privacy": version.privacy,
            **counts,
            "privacy_check": privacy_check,
        },
    )
    return version


# --- publishing in the worker -------------------------------------------------------------


def publish_run_start(
    *, project: AnnotationProject, actor, finish: bool = False, settled_only: bool = False
) -> PublishRun:
    """Queue a new version of the project's dataset for the worker (see ``publish_run_execute``).

    Refused with a plain message when nothing is settled or another run of the project is still going; a run whose
    worker stopped responding is marked failed first, so the person can start again.
    """
    from annotation.tasks import publish_run_task

    with transaction.atomic():
        project = AnnotationProject.objects.select_for_update().get(pk=project.pk)
        version_require_approved(project.version)
        _require_settled(project)
        for lost in project.publish_runs.filter(status__in=PublishRun.UNFINISHED):
            if lost.is_lost:
                _publish_run_fail(lost.pk, PublishRun.LOST_MESSAGE)
        if project.publish_runs.filter(status__in=PublishRun.UNFINISHED).exists():
            raise ValidationError("A new version of this project is already being made. Wait for it to finish.")
        run = PublishRun.objects.create(project=project, finish=finish, settled_only=settled_only, created_by=actor)
        audit_record(
            actor=actor,
            action="annotation_project.publish_start",
            obj=project,
            after={"run": run.pk, "finish": finish, "settled_only": settled_only},
        )
        transaction.on_commit(lambda: publish_run_task.delay(run.pk))
    return run


def publish_run_execute(*, run_id: int) -> PublishRun | None:
    """Make the version of a queued run. Claims the run, so a message delivered twice does nothing.

    The text annotators wrote is checked for personal data first, outside any lock, with progress on the run. The
    version is then written in one transaction that locks the project; only the text that changed since the check
    (an answer settled meanwhile) is checked again there.
    """
    now = timezone.now()
    if not PublishRun.objects.filter(pk=run_id, status=PublishRun.Status.QUEUED).update(
        status=PublishRun.Status.CHECKING, started_at=now, heartbeat_at=now
    ):
        return None
    run = PublishRun.objects.select_related("project__version", "created_by").get(pk=run_id)
    mine = PublishRun.objects.filter(pk=run_id, status__in=[PublishRun.Status.CHECKING, PublishRun.Status.WRITING])

    def report(done: int, total: int) -> None:
        mine.update(texts_checked=done, texts_total=total, heartbeat_at=timezone.now())

    try:
        checked: dict = {}
        _new_text_check(run.project, known=checked, report=report)
        if not mine.update(status=PublishRun.Status.WRITING, heartbeat_at=timezone.now()):
            return None  # marked lost meanwhile; a newer run may be going
        with transaction.atomic():
            # The project first, then the run: the order publish_run_start takes them in.
            AnnotationProject.objects.select_for_update().get(pk=run.project_id)
            if not PublishRun.objects.select_for_update().filter(pk=run_id, status=PublishRun.Status.WRITING):
                return None
            version = annotation_project_publish(
                project=run.project,
                actor=run.created_by,
                finish=run.finish,
                settled_only=run.settled_only,
                checked=checked,
            )
            PublishRun.objects.filter(pk=run_id).update(
                status=PublishRun.Status.DONE, version=version, finished_at=timezone.now()
            )
    except ValidationError as exc:
        _publish_run_fail(run_id, " ".join(exc.messages))
    except Exception as exc:  # noqa: BLE001 (a person must see why; the worker log has the traceback)
        log.exception("Publish run %s failed", run_id)
        _publish_run_fail(run_id, f"The new version could not be made because of an unexpected error: {exc}")
    run.refresh_from_db()
    return run


def _publish_run_fail(run_id: int, error: str) -> None:
    PublishRun.objects.filter(pk=run_id, status__in=PublishRun.UNFINISHED).update(
        status=PublishRun.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )


@transaction.atomic
def annotation_project_reopen(*, project: AnnotationProject, actor) -> AnnotationProject:
    project = AnnotationProject.objects.select_for_update().get(pk=project.pk)
    if not project.is_open:
        project.status = AnnotationProject.Status.OPEN
        project.save(update_fields=["status"])
        audit_record(actor=actor, action="annotation_project.reopen", obj=project)
    return project
