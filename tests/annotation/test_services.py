"""annotation.services and selectors against the database: reservations, answers, consensus, review, new versions."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import AuditEvent
from annotation import selectors, services
from annotation.models import Annotation, Assignment, Task
from annotation.services import AnnotationConflict
from curation.models import DatasetVersion
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

SCHEMA = {
    "instructions": "Pick the team and rate the reply.",
    "fields": [
        {"name": "team", "kind": "choice", "title": "Team", "options": ["Billing", "Technical"], "writes": "label"},
        {"name": "quality", "kind": "rating", "title": "Quality", "scale": 5, "required": False},
    ],
}


@pytest.fixture
def version(db):
    dataset = DatasetFactory(task_type="classification")
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED, dataset=dataset)
    for i in range(4):
        ExampleFactory(version=version, row_index=i, input=f"Ticket {i}: my invoice is wrong", label="")
    return version


@pytest.fixture
def project(version, engineer):
    services.label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=engineer)
    return services.annotation_project_create(
        name="Routing", version=version, actor=engineer, annotations_per_example=2
    )


@pytest.fixture
def second(make_user):
    return make_user("annotator", username="annotator2")


def submit(project, user, answer):
    assignment = services.assignment_next(project=project, annotator=user)
    assert assignment is not None
    return services.annotation_submit(assignment=assignment, annotator=user, answer=answer)


def test_project_needs_an_approved_version_and_a_schema(engineer):
    raw = VersionFactory()
    ExampleFactory(version=raw)
    with pytest.raises(ValidationError, match="privacy review"):
        services.annotation_project_create(name="x", version=raw, actor=engineer, schema=SCHEMA)
    approved = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED)
    ExampleFactory(version=approved)
    with pytest.raises(ValidationError, match="label schema"):
        services.annotation_project_create(name="x", version=approved, actor=engineer)


def test_a_bad_schema_is_refused_with_a_plain_message(version, engineer):
    bad = {"fields": [{"name": "team", "kind": "choice", "options": ["A", "A"]}]}
    with pytest.raises(ValidationError, match="listed twice"):
        services.label_schema_save(dataset=version.dataset, schema=bad, actor=engineer)


def test_project_has_one_task_per_example_and_is_audited(project, version):
    assert project.task_count == 4
    assert list(project.tasks.values_list("example__row_index", flat=True)) == [0, 1, 2, 3]
    assert AuditEvent.objects.for_object(project).filter(action="annotation_project.create").exists()


def test_two_annotators_never_hold_the_same_example(project, annotator, second):
    first = services.assignment_next(project=project, annotator=annotator)
    other = services.assignment_next(project=project, annotator=second)
    assert first.task_id != other.task_id
    # Asking again (a second tab) gives the same reservation back.
    assert services.assignment_next(project=project, annotator=annotator).pk == first.pk


def test_second_annotator_gets_examples_that_already_have_an_answer(project, annotator, second):
    done = submit(project, annotator, {"team": "Billing"})
    assert services.assignment_next(project=project, annotator=second).task_id == done.task_id


def test_annotator_never_gets_an_example_twice(project, annotator):
    seen = set()
    while (assignment := services.assignment_next(project=project, annotator=annotator)) is not None:
        assert assignment.task_id not in seen
        seen.add(assignment.task_id)
        services.annotation_submit(assignment=assignment, annotator=annotator, answer={"team": "Billing"})
    assert len(seen) == 4


def test_agreement_settles_the_task_and_disagreement_goes_to_review(project, annotator, second):
    a1 = submit(project, annotator, {"team": "Billing", "quality": 4})
    b1 = submit(project, second, {"team": "Billing", "quality": 4})
    assert a1.task_id == b1.task_id
    task = Task.objects.get(pk=a1.task_id)
    assert task.status == Task.Status.AGREED
    assert task.answer == {"team": "Billing", "quality": 4}
    a2 = submit(project, annotator, {"team": "Billing"})
    b2 = submit(project, second, {"team": "Technical"})
    assert a2.task_id == b2.task_id
    task = Task.objects.get(pk=a2.task_id)
    assert task.status == Task.Status.DISAGREEMENT
    assert task.disagreements == ["team"]
    assert list(selectors.review_queue(project)) == [task]


def test_label_not_in_schema_is_refused_and_nothing_is_stored(project, annotator):
    assignment = services.assignment_next(project=project, annotator=annotator)
    with pytest.raises(ValidationError) as caught:
        services.annotation_submit(assignment=assignment, annotator=annotator, answer={"team": "Sales"})
    assert "not an option" in caught.value.message_dict["team"][0]
    assert not Annotation.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_double_submit_from_two_tabs_keeps_the_first_answer(project, annotator):
    assignment = services.assignment_next(project=project, annotator=annotator)
    services.annotation_submit(assignment=assignment, annotator=annotator, answer={"team": "Billing"})
    with pytest.raises(AnnotationConflict, match="another tab"):
        services.annotation_submit(assignment=assignment, annotator=annotator, answer={"team": "Technical"})
    assert list(Annotation.objects.values_list("answer", flat=True)) == [{"team": "Billing"}]


def test_someone_elses_reservation_cannot_be_used(project, annotator, second):
    assignment = services.assignment_next(project=project, annotator=annotator)
    with pytest.raises(PermissionDenied):
        services.annotation_submit(assignment=assignment, annotator=second, answer={"team": "Billing"})


def _expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(
        reserved_at=timezone.now() - timedelta(hours=2), expires_at=timezone.now() - timedelta(hours=1)
    )


def test_expired_reservation_still_free_is_accepted(project, annotator):
    assignment = services.assignment_next(project=project, annotator=annotator)
    _expire(assignment)
    annotation = services.annotation_submit(assignment=assignment, annotator=annotator, answer={"team": "Billing"})
    assert annotation.task_id == assignment.task_id


def test_expired_reservation_taken_by_someone_else_is_refused_and_kept_as_draft(project, annotator, second):
    mine = services.assignment_next(project=project, annotator=annotator)
    _expire(mine)
    theirs = services.assignment_next(project=project, annotator=second)
    assert theirs.task_id == mine.task_id  # the expired reservation was released to them
    with pytest.raises(AnnotationConflict, match="ran out .* someone else"):
        services.annotation_submit(assignment=mine, annotator=annotator, answer={"team": "Technical"})
    mine.refresh_from_db()
    assert mine.draft == {"team": "Technical"}
    assert not Annotation.objects.exists()


def test_draft_from_a_stale_tab_is_refused(project, annotator):
    assignment = services.assignment_next(project=project, annotator=annotator)
    saved = services.assignment_draft_save(
        assignment=assignment, annotator=annotator, draft={"team": "Billing"}, revision=0
    )
    assert saved.revision == 1
    with pytest.raises(AnnotationConflict, match="another tab"):
        services.assignment_draft_save(
            assignment=assignment, annotator=annotator, draft={"team": "Technical"}, revision=0
        )
    assignment.refresh_from_db()
    assert assignment.draft == {"team": "Billing"}


def test_skip_moves_on_and_the_example_is_not_offered_again(project, annotator):
    first = services.assignment_next(project=project, annotator=annotator)
    services.assignment_skip(assignment=first, annotator=annotator)
    following = services.assignment_next(project=project, annotator=annotator)
    assert following.task_id != first.task_id


def test_undo_reopens_the_last_submission_with_its_answer(project, annotator, second):
    a = submit(project, annotator, {"team": "Billing"})
    submit(project, second, {"team": "Billing"})
    assert Task.objects.get(pk=a.task_id).status == Task.Status.AGREED
    reopened = services.annotation_undo(project=project, annotator=annotator)
    assert reopened.task_id == a.task_id
    assert reopened.draft == {"team": "Billing"}
    task = Task.objects.get(pk=a.task_id)
    assert (task.status, task.annotation_count) == (Task.Status.OPEN, 1)
    # The next example shown is the reopened one.
    assert services.assignment_next(project=project, annotator=annotator).pk == reopened.pk
    services.annotation_submit(assignment=reopened, annotator=annotator, answer={"team": "Technical"})
    assert Task.objects.get(pk=a.task_id).status == Task.Status.DISAGREEMENT


def test_time_spent_is_recorded_but_never_more_than_the_wall_clock(project, annotator):
    assignment = services.assignment_next(project=project, annotator=annotator)
    Assignment.objects.filter(pk=assignment.pk).update(reserved_at=timezone.now() - timedelta(seconds=30))
    assignment.refresh_from_db()
    annotation = services.annotation_submit(
        assignment=assignment, annotator=annotator, answer={"team": "Billing"}, active_seconds=12.5
    )
    assert annotation.seconds == 12.5
    assignment = services.assignment_next(project=project, annotator=annotator)
    annotation = services.annotation_submit(
        assignment=assignment, annotator=annotator, answer={"team": "Billing"}, active_seconds=10_000
    )
    assert annotation.seconds < 60


def test_agreement_per_field_per_option_and_per_annotator_with_gold(project, annotator, second, make_user):
    reviewer = make_user("annotation_reviewer", username="lead")
    answers = [("Billing", "Billing"), ("Technical", "Technical"), ("Billing", "Technical"), ("Technical", "Technical")]
    for mine, theirs in answers:
        a = submit(project, annotator, {"team": mine, "quality": 3})
        b = submit(project, second, {"team": theirs, "quality": 3})
        assert a.task_id == b.task_id
    gold_task = Task.objects.get(project=project, position=2)  # Billing vs Technical
    services.task_gold_set(task=gold_task, actor=reviewer, answer={"team": "Technical"})
    report = selectors.project_agreement(project)
    team = next(field for field in report["fields"] if field["name"] == "team")
    # 3 of 4 items agree; Cohen's kappa for labels A=[B,T,B,T] B=[B,T,T,T] is 0.5.
    assert team["summary"]["percent_agreement"] == pytest.approx(0.75)
    assert team["summary"]["cohen_kappa"] == pytest.approx(0.5)
    assert [option["option"] for option in team["options"]] == ["Billing", "Technical"]
    people = {row["name"]: row for row in report["annotators"]}
    assert people["annotator"]["gold"] == {"n": 1, "correct": 0, "accuracy": 0.0}
    assert people["annotator2"]["gold"]["accuracy"] == 1.0
    assert people["annotator"]["answers"] == 4


def test_adjudication_and_publish_make_a_new_approved_version(project, annotator, second, make_user, engineer):
    reviewer = make_user("annotation_reviewer", username="lead")
    submit(project, annotator, {"team": "Billing", "quality": 5})
    submit(project, second, {"team": "Billing", "quality": 5})
    a = submit(project, annotator, {"team": "Billing"})
    submit(project, second, {"team": "Technical"})
    with pytest.raises(ValidationError, match="not an option"):
        services.task_adjudicate(task=Task.objects.get(pk=a.task_id), actor=reviewer, answer={"team": "<b>x</b>"})
    services.task_adjudicate(task=Task.objects.get(pk=a.task_id), actor=reviewer, answer={"team": "Technical"})
    new = services.annotation_project_publish(project=project, actor=engineer, finish=True)
    assert new.parent == project.version
    assert new.operation == DatasetVersion.Operation.ANNOTATE
    assert new.is_approved and new.row_count == 4
    labels = dict(new.examples.values_list("row_index", "label"))
    settled = dict(Task.objects.filter(project=project).values_list("example__row_index", "status"))
    agreed_row = next(row for row, status in settled.items() if status == Task.Status.AGREED)
    adjudicated_row = next(row for row, status in settled.items() if status == Task.Status.ADJUDICATED)
    assert labels[agreed_row] == "Billing"
    assert labels[adjudicated_row] == "Technical"
    meta = new.examples.get(row_index=agreed_row).metadata["annotation"]
    assert meta["quality"] == 5 and meta["settled_by"] == "agreed"
    assert new.stats["labels"] == {"": 2, "Billing": 1, "Technical": 1}
    project.refresh_from_db()
    assert not project.is_open
    assert list(selectors.published_versions(project)) == [new]
    with pytest.raises(ValidationError, match="finished"):
        services.assignment_next(project=project, annotator=annotator)
    only = services.annotation_project_publish(project=project, actor=engineer, settled_only=True)
    assert only.row_count == 2


def test_publish_with_nothing_settled_is_refused(project, engineer):
    with pytest.raises(ValidationError, match="No example has a settled answer"):
        services.annotation_project_publish(project=project, actor=engineer)
    assert not DatasetVersion.objects.filter(operation=DatasetVersion.Operation.ANNOTATE).exists()


def test_progress_counts_project_and_personal_work(project, annotator, second):
    submit(project, annotator, {"team": "Billing"})
    submit(project, second, {"team": "Billing"})
    submit(project, annotator, {"team": "Billing"})
    progress = selectors.project_progress(project, annotator)
    assert progress["answers"] == 3 and progress["answers_needed"] == 8
    assert progress["percent"] == 37.5
    assert progress["settled"] == 1
    assert progress["mine"]["answers"] == 2 and progress["mine"]["percent"] == 50.0


def test_the_database_refuses_a_second_active_reservation_of_one_example(project, annotator, second):
    from django.db import IntegrityError, transaction

    held = services.assignment_next(project=project, annotator=annotator)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            task=held.task,
            annotator=second,
            reserved_at=timezone.now(),
            expires_at=timezone.now() + timedelta(minutes=5),
        )


def test_an_answer_that_already_came_from_label_studio_is_not_stored_twice(project, annotator):
    held = services.assignment_next(project=project, annotator=annotator)
    services.annotation_record_external(
        task=held.task,
        annotator=annotator,
        annotator_name="annotator",
        answer={"team": "Billing"},
        seconds=3,
        label_studio_annotation_id=7,
    )
    with pytest.raises(AnnotationConflict, match="already arrived from Label Studio"):
        services.annotation_submit(assignment=held, annotator=annotator, answer={"team": "Technical"})
    assert list(Annotation.objects.values_list("answer", flat=True)) == [{"team": "Billing"}]


def test_an_example_that_comes_back_brings_back_the_draft(project, annotator):
    held = services.assignment_next(project=project, annotator=annotator)
    services.assignment_draft_save(assignment=held, annotator=annotator, draft={"quality": 2})
    _expire(held)
    again = services.assignment_next(project=project, annotator=annotator)
    assert again.task_id == held.task_id and again.pk != held.pk
    assert again.draft == {"quality": 2}


def test_late_answer_to_a_finished_project_says_so(project, annotator, second, engineer):
    held = services.assignment_next(project=project, annotator=annotator)
    _expire(held)
    other = services.assignment_next(project=project, annotator=second)
    services.annotation_submit(assignment=other, annotator=second, answer={"team": "Billing"})
    # Settle one example so the project can be published and finished.
    services.task_adjudicate(task=Task.objects.get(pk=other.task_id), actor=engineer, answer={"team": "Billing"})
    services.annotation_project_publish(project=project, actor=engineer, finish=True)
    with pytest.raises(AnnotationConflict, match="project has been finished"):
        services.annotation_submit(assignment=held, annotator=annotator, answer={"team": "Billing"})


REPLY_SCHEMA = {"instructions": "Correct the reply.", "fields": [{"name": "reply", "kind": "text", "writes": "target"}]}


@pytest.fixture
def reply_project(engineer):
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED)
    for i in range(2):
        ExampleFactory(
            version=version,
            row_index=i,
            input=f"Ticket {i} from Dana Whitfield: invoice is wrong",
            target="Hello Dana Whitfield, we fixed the invoice.",
        )
    return services.annotation_project_create(
        name="Replies", version=version, actor=engineer, annotations_per_example=1, schema=REPLY_SCHEMA
    )


def test_new_text_without_personal_data_keeps_the_version_approved(reply_project, annotator, engineer):
    # The name was already in the reviewed example, so keeping it adds no personal data.
    submit(reply_project, annotator, {"reply": "Hello Dana Whitfield, sorry: we fixed the invoice today."})
    submit(reply_project, annotator, {"reply": "Hello Dana Whitfield, we fixed the invoice."})
    new = services.annotation_project_publish(project=reply_project, actor=engineer)
    assert new.is_approved
    assert new.operation_params["privacy_check"] == {"texts": 1, "findings": 0, "entities": {}, "rows": []}


def test_personal_data_typed_by_an_annotator_sends_the_version_to_privacy_review(reply_project, annotator, engineer):
    submit(reply_project, annotator, {"reply": "Hello Dana, call me on 617-555-0134 or write to jo.m@example.org."})
    submit(reply_project, annotator, {"reply": "Hello Dana Whitfield, we fixed the invoice."})
    new = services.annotation_project_publish(project=reply_project, actor=engineer)
    assert new.privacy == DatasetVersion.Privacy.RAW
    check = new.operation_params["privacy_check"]
    assert check["rows"] == [0]
    assert {"PHONE_NUMBER", "EMAIL_ADDRESS"} <= set(check["entities"])
    with pytest.raises(ValidationError, match="privacy review"):
        from curation.services import version_require_approved

        version_require_approved(new)


def test_the_audit_trail_records_the_privacy_the_published_version_has(reply_project, annotator, engineer):
    # The version is created raw in one step, so the record of its creation does not say it was approved.
    submit(reply_project, annotator, {"reply": "Hello Dana, call me on 617-555-0134."})
    new = services.annotation_project_publish(project=reply_project, actor=engineer)
    created = AuditEvent.objects.for_object(new).get(action="version.create")
    assert created.after["privacy"] == DatasetVersion.Privacy.RAW == new.privacy
    assert created.after["parent"] == reply_project.version_id


def test_a_publish_run_checks_in_the_worker_and_checks_again_what_was_settled_meanwhile(
    reply_project, annotator, engineer, monkeypatch
):
    submit(reply_project, annotator, {"reply": "Hello Dana Whitfield, sorry: we fixed the invoice today."})
    run = services.publish_run_start(project=reply_project, actor=engineer, finish=True)
    assert run.status == "queued" and run.fraction == 0.0
    original = services.annotation_project_publish

    def an_answer_settles_meanwhile(**kwargs):
        # After the check outside the lock, before the version is written: row 1 gets a phone number.
        submit(reply_project, annotator, {"reply": "Call me on 617-555-0134."})
        return original(**kwargs)

    monkeypatch.setattr(services, "annotation_project_publish", an_answer_settles_meanwhile)
    run = services.publish_run_execute(run_id=run.pk)
    assert run.status == "done" and run.texts_checked == run.texts_total == 1 and run.fraction == 1.0
    new = run.version
    assert new.privacy == DatasetVersion.Privacy.RAW  # the text settled meanwhile was checked too
    assert new.operation_params["privacy_check"]["rows"] == [1]
    reply_project.refresh_from_db()
    assert not reply_project.is_open
    assert services.publish_run_execute(run_id=run.pk) is None  # a second delivery does nothing


def test_a_publish_run_that_cannot_finish_says_why_and_writes_nothing(reply_project, annotator, engineer, monkeypatch):
    submit(reply_project, annotator, {"reply": "Hello Dana Whitfield, we fixed it."})
    run = services.publish_run_start(project=reply_project, actor=engineer)
    DatasetVersion.objects.filter(pk=reply_project.version_id).update(privacy=DatasetVersion.Privacy.RAW)
    run = services.publish_run_execute(run_id=run.pk)
    assert run.status == "failed" and "has not passed privacy review" in run.error
    DatasetVersion.objects.filter(pk=reply_project.version_id).update(privacy=DatasetVersion.Privacy.APPROVED)

    def broken(dataset_id):
        raise RuntimeError("the spaCy model is missing")

    monkeypatch.setattr(services, "engine_for_dataset", broken)
    run = services.publish_run_execute(run_id=services.publish_run_start(project=reply_project, actor=engineer).pk)
    assert run.status == "failed" and run.error.endswith("unexpected error: the spaCy model is missing")
    assert not DatasetVersion.objects.filter(operation=DatasetVersion.Operation.ANNOTATE).exists()
    reply_project.refresh_from_db()
    assert reply_project.is_open


def test_agreement_figures_follow_every_new_answer_and_gold_change(project, annotator, second, engineer):
    def team():
        report = selectors.project_agreement(project)
        return next(f for f in report["fields"] if f["name"] == "team")["summary"], report

    submit(project, annotator, {"team": "Billing"})
    submit(project, second, {"team": "Billing"})
    assert team()[0]["percent_agreement"] == 1.0
    assert team()[0]["pairs"] == 1  # asked twice: the cached figures
    submit(project, annotator, {"team": "Billing"})
    submit(project, second, {"team": "Technical"})
    assert team()[0]["percent_agreement"] == 0.5
    task = Task.objects.get(project=project, position=0)
    services.task_gold_set(task=task, actor=engineer, answer={"team": "Technical"})
    people = {row["name"]: row for row in team()[1]["annotators"]}
    assert people["annotator"]["gold"]["accuracy"] == 0.0


def test_gold_examples_are_seeded_from_known_labels_and_check_annotators(engineer, annotator):
    dataset = DatasetFactory(task_type="classification")
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED, dataset=dataset)
    for i in range(10):
        ExampleFactory(version=version, row_index=i, label="" if i == 3 else ["Billing", "Technical"][i % 2])
    project = services.annotation_project_create(
        name="Gold", version=version, actor=engineer, schema=SCHEMA, annotations_per_example=1, gold_count=3
    )
    gold = list(project.tasks.filter(is_gold=True).order_by("position"))
    assert [task.example.row_index for task in gold] == [0, 4, 7]  # spread over the examples with a known label
    assert [task.gold_answer for task in gold] == [{"team": "Billing"}, {"team": "Billing"}, {"team": "Technical"}]
    while (held := services.assignment_next(project=project, annotator=annotator)) is not None:
        services.annotation_submit(assignment=held, annotator=annotator, answer={"team": "Billing"})
    me = next(row for row in selectors.project_agreement(project)["annotators"] if row["name"] == "annotator")
    assert me["gold"] == {"n": 3, "correct": 2, "accuracy": 2 / 3}


def test_more_gold_than_known_answers_is_refused_and_nothing_is_created(engineer):
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED, dataset=DatasetFactory())
    ExampleFactory(version=version, row_index=0, label="Billing")
    ExampleFactory(version=version, row_index=1, label="")
    with pytest.raises(ValidationError, match="Only 1 examples have a known label"):
        services.annotation_project_create(name="Gold", version=version, actor=engineer, schema=SCHEMA, gold_count=2)
    rating_only = {"fields": [{"name": "quality", "kind": "rating"}]}
    with pytest.raises(ValidationError, match="taken from known labels"):
        services.annotation_project_create(
            name="Gold", version=version, actor=engineer, schema=rating_only, gold_count=1
        )
    assert not Task.objects.exists()
