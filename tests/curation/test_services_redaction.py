"""Privacy review through the real Presidio pipeline on a small synthetic ticket dataset."""

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import AuditEvent
from curation import services
from curation.demo import write_tickets
from curation.models import DatasetVersion, Finding, RedactionRun
from curation.services.redaction import (
    finding_add,
    finding_decide,
    findings_bulk_decide,
    pseudonyms_read,
    redaction_config_clean,
    redaction_run_approve,
    redaction_run_execute,
    redaction_run_start,
)

pytestmark = pytest.mark.django_db

SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")


def _mentioned(value: str, text: str) -> bool:
    """A whole-word mention ("John" in "John Smith", not in "Johnson")."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


MAPPING = {"input": "customer_message", "target": "agent_reply"}


def _tickets(folder, *, name: str, actor, count: int, seed: int, mapping: dict = MAPPING):
    """A ready version of ``count`` synthetic tickets, imported as a curator would."""
    path = write_tickets(folder / f"{name}.jsonl", count=count, seed=seed)
    return services.dataset_import(path=path, dataset_name=name, actor=actor, mapping=mapping).version


@pytest.fixture
def version(curator, tmp_path):
    mapping = {**MAPPING, "label": "category", "group": "segment"}
    return _tickets(tmp_path, name="Tickets", actor=curator, count=24, seed=3, mapping=mapping)


@pytest.fixture
def run(version, reviewer):
    run = redaction_run_start(version=version, actor=reviewer)
    redaction_run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


def test_detection_stores_findings_with_offsets_into_the_text(run, version):
    assert (run.status, run.progress, run.processed) == (RedactionRun.Status.REVIEW, 1.0, 24)
    assert run.finding_count == run.findings.count() > 24
    kinds = set(run.findings.values_list("entity_type", flat=True))
    assert {"PERSON", "EMAIL_ADDRESS"} <= kinds
    for finding in run.findings.select_related("example")[:200]:
        text = getattr(finding.example, finding.field)
        assert 0 <= finding.start < finding.end <= len(text)
        if finding.entity_type == "EMAIL_ADDRESS":
            assert "@" in text[finding.start : finding.end]
    assert redaction_run_execute(run_id=run.pk) is None  # a redelivered task does nothing


def test_detection_resumes_after_a_dead_worker_without_duplicates(version, reviewer):
    run = redaction_run_start(version=version, actor=reviewer)
    redaction_run_execute(run_id=run.pk)
    complete = set(run.findings.values_list("example_id", "field", "start", "end", "entity_type"))
    # The worker died after half of the rows: its heartbeat is old and later findings were never written.
    middle = version.examples.order_by("row_index")[11].row_index
    run.findings.filter(example__row_index__gt=middle).delete()
    RedactionRun.objects.filter(pk=run.pk).update(
        status=RedactionRun.Status.RUNNING,
        last_row_index=middle,
        processed=12,
        finding_count=run.findings.count(),
        heartbeat_at=timezone.now() - timezone.timedelta(hours=1),
    )
    redaction_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RedactionRun.Status.REVIEW and run.processed == 24
    assert set(run.findings.values_list("example_id", "field", "start", "end", "entity_type")) == complete
    assert run.finding_count == len(complete)


def test_two_reviewers_deciding_the_same_finding_at_once(run, reviewer, make_user):
    other = make_user("privacy_reviewer", username="second_reviewer")
    finding = run.findings.first()
    seen = finding.revision
    finding_decide(finding=finding, actor=reviewer, status="accepted", revision=seen)
    with pytest.raises(ValidationError, match=f"{reviewer.username} changed this finding a moment ago"):
        finding_decide(finding=Finding.objects.get(pk=finding.pk), actor=other, status="rejected", revision=seen)
    finding.refresh_from_db()
    assert (finding.status, finding.decided_by) == ("accepted", reviewer)


def test_reviewer_adds_a_missed_span_and_bad_spans_are_refused(run, reviewer):
    example = run.version.examples.order_by("row_index").first()
    length = len(example.input)
    with pytest.raises(ValidationError, match=f"outside the text, which has {length} characters"):
        finding_add(
            run=run,
            example=example,
            field="input",
            start=length - 2,
            end=length + 5,
            entity_type="US_SSN",
            actor=reviewer,
        )
    with pytest.raises(ValidationError, match="no text field"):
        finding_add(run=run, example=example, field="label", start=0, end=2, entity_type="PERSON", actor=reviewer)
    added = finding_add(run=run, example=example, field="input", start=0, end=4, entity_type="PERSON", actor=reviewer)
    assert (added.status, added.recognizer, added.score) == ("accepted", "reviewer", 1.0)


def test_bulk_decisions_by_type_and_score(run, reviewer):
    emails = run.findings.filter(entity_type="EMAIL_ADDRESS").count()
    assert findings_bulk_decide(run=run, actor=reviewer, status="accepted", entity_type="EMAIL_ADDRESS") == emails
    low = run.findings.pending().filter(score__lt=0.6).count()
    assert findings_bulk_decide(run=run, actor=reviewer, status="rejected", max_score=0.5999) == low
    assert not run.findings.pending().filter(entity_type="EMAIL_ADDRESS").exists()
    assert set(run.findings.filter(entity_type="EMAIL_ADDRESS").values_list("status", flat=True)) == {"accepted"}


def test_approval_waits_for_detection_and_for_every_decision(version, reviewer):
    run = redaction_run_start(version=version, actor=reviewer)
    with pytest.raises(ValidationError, match="still running"):
        redaction_run_approve(run=run, actor=reviewer)
    with pytest.raises(ValidationError, match="already"):
        redaction_run_start(version=version, actor=reviewer)
    redaction_run_execute(run_id=run.pk)
    with pytest.raises(ValidationError, match="not decided yet"):
        redaction_run_approve(run=run, actor=reviewer)


def test_approved_version_holds_no_original_personal_data(run, version, reviewer, curator):
    # The reviewer adds what the detector missed: every SSN in the texts.
    for example in version.examples.all():
        for match in SSN.finditer(example.input):
            if not run.findings.filter(
                example=example, field="input", start__lte=match.start(), end__gte=match.end(), entity_type="US_SSN"
            ).exists():
                finding_add(
                    run=run,
                    example=example,
                    field="input",
                    start=match.start(),
                    end=match.end(),
                    entity_type="US_SSN",
                    actor=reviewer,
                )
    findings_bulk_decide(run=run, actor=reviewer, status="accepted")
    with pytest.raises(ValidationError, match="has not passed privacy review"):
        services.version_export(version=version, actor=curator, fmt="jsonl")

    approved = redaction_run_approve(run=run, actor=reviewer)
    assert approved.is_approved and approved.parent == version
    assert approved.operation == DatasetVersion.Operation.REDACT and approved.row_count == version.row_count
    assert services.version_require_approved(approved) == approved

    originals = {
        getattr(f.example, f.field)[f.start : f.end] for f in run.findings.accepted().select_related("example")
    }
    mapping = pseudonyms_read(run=RedactionRun.objects.get(pk=run.pk), actor=reviewer)
    # A short original ("Adam") may also occur inside some other person's realistic surrogate ("Adams"):
    # that is a new, invented value, not a leak.
    surrogates = " ".join(mapping.values())
    chunks, filename, _ = services.version_export(version=approved, actor=curator, fmt="jsonl")
    exported = "".join(chunks)
    assert filename.endswith(".jsonl") and exported.count("\n") == version.row_count
    leaked = sorted(value for value in originals if _mentioned(value, exported) and not _mentioned(value, surrogates))
    assert leaked == [], leaked
    assert SSN.search(exported) is None or all(m in surrogates for m in SSN.findall(exported))
    csv_chunks, _, _ = services.version_export(version=approved, actor=curator, fmt="csv")
    exported_csv = "".join(csv_chunks)
    assert not [v for v in originals if _mentioned(v, exported_csv) and not _mentioned(v, surrogates)]

    # Consistent pseudonyms: one original value maps to one surrogate everywhere in the dataset.
    assert mapping and all(original in originals for original in mapping)
    for original, surrogate in mapping.items():
        assert surrogate != original
    assert AuditEvent.objects.filter(action="pseudonyms.read", actor=reviewer).count() == 1
    stored = bytes(RedactionRun.objects.get(pk=run.pk).pseudonym_map)
    assert not any(value.encode() in stored for value in originals)  # encrypted at rest

    # Curation steps on an approved version keep it approved.
    child = services.version_split(version=approved, actor=curator, seed=3, ratios={"train": 0.5, "test": 0.5})
    assert child.is_approved and services.version_require_approved(child) == child


def test_a_decision_on_one_mention_applies_to_every_mention(curator, reviewer, write_file):
    rows = [
        {"q": "Please call our patient Zorblax Quintero back today.", "a": "Done."},
        {"q": "Zorblax asked again about the bill.", "a": "Sent to Zorblax."},
    ]
    path = write_file("t.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    version = services.dataset_import(
        path=path, dataset_name="Rare names", actor=curator, mapping={"input": "q", "target": "a"}
    ).version
    run = redaction_run_start(version=version, actor=reviewer, config={"entities": ["EMAIL_ADDRESS"]})
    redaction_run_execute(run_id=run.pk)
    run.refresh_from_db()
    first = version.examples.get(row_index=1)
    start = first.input.index("Zorblax Quintero")
    finding_add(
        run=run,
        example=first,
        field="input",
        start=start,
        end=start + len("Zorblax Quintero"),
        entity_type="PERSON",
        actor=reviewer,
    )
    finding_add(
        run=run,
        example=first,
        field="input",
        start=start,
        end=start + len("Zorblax"),
        entity_type="PERSON",
        actor=reviewer,
    )
    approved = redaction_run_approve(run=run, actor=reviewer)
    texts = " ".join(f"{e.input} {e.target}" for e in approved.examples.all())
    assert "Zorblax" not in texts and "Quintero" not in texts


def test_config_is_checked():
    assert redaction_config_clean(None)["default_operator"] == "pseudonym"
    with pytest.raises(ValidationError) as error:
        redaction_config_clean({"entities": ["PERSON", "FAVOURITE_COLOUR"], "operators": {"PERSON": "shred"}})
    assert set(error.value.message_dict) == {"entities", "operators"}
    with pytest.raises(ValidationError, match="between 0 and 1"):
        redaction_config_clean({"thresholds": {"PERSON": 3}})
    with pytest.raises(ValidationError, match="FAVOURITE_COLOUR, which is not an entity type"):
        redaction_config_clean({"thresholds": {"FAVOURITE_COLOUR": 0.5}})
    with pytest.raises(ValidationError, match="SHOE_SIZE, which is not an entity type"):
        redaction_config_clean({"operators": {"SHOE_SIZE": "mask"}})


def test_detection_runs_on_a_real_worker(transactional_db, celery_worker_proc, make_user, tmp_path):
    from tests.conftest import wait_for

    curator = make_user("curator")
    reviewer = make_user("privacy_reviewer", username="rev")
    version = _tickets(tmp_path, name="Worker tickets", actor=curator, count=5, seed=9)
    run = redaction_run_start(version=version, actor=reviewer)

    def finished():
        run.refresh_from_db()
        return run.status in (RedactionRun.Status.REVIEW, RedactionRun.Status.FAILED)

    wait_for(finished, timeout=120)
    assert run.status == RedactionRun.Status.REVIEW, run.error
    assert run.findings.exists()
    json.dumps(run.config)


def test_a_long_run_hands_over_to_fresh_tasks_and_finds_the_same(
    version, reviewer, curator, tmp_path, django_capture_on_commit_callbacks
):
    from curation.tasks import redaction_run_task

    # The same rows in a second version, detected in one go, give the findings to expect.
    mapping = {**MAPPING, "label": "category", "group": "segment"}
    twin = _tickets(tmp_path, name="Tickets again", actor=curator, count=24, seed=3, mapping=mapping)
    whole = redaction_run_start(version=twin, actor=reviewer)
    redaction_run_execute(run_id=whole.pk)
    expected = set(whole.findings.values_list("example__row_index", "field", "start", "end", "entity_type"))

    run = redaction_run_start(version=version, actor=reviewer)
    handed: list[int] = []
    tasks = 0
    while True:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            redaction_run_execute(run_id=run.pk, rows_per_task=10, queue="default")
        tasks += 1
        run.refresh_from_db()
        if run.status != RedactionRun.Status.QUEUED:
            break
        # Handed over: back in the queue with its place kept, and exactly one message for the next task.
        handed.append(run.processed)
        assert len(callbacks) == 1 and run.started_at is not None and run.heartbeat_at is not None
        assert run.progress == pytest.approx(run.processed / 24)
    assert (tasks, handed) == (3, [10, 20])
    assert (run.status, run.processed, run.progress) == (RedactionRun.Status.REVIEW, 24, 1.0)
    found = set(run.findings.values_list("example__row_index", "field", "start", "end", "entity_type"))
    assert found == expected and run.finding_count == len(expected)
    assert redaction_run_task.name == "curation.tasks.redaction_run_task"


def test_a_run_handed_over_whose_message_was_lost_is_reaped(version, reviewer):
    from curation.services.redaction import redaction_runs_stale

    run = redaction_run_start(version=version, actor=reviewer)
    RedactionRun.objects.filter(pk=run.pk).update(status=RedactionRun.Status.QUEUED, heartbeat_at=timezone.now())
    assert redaction_runs_stale() == []
    RedactionRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    assert redaction_runs_stale() == [run.pk]


@pytest.mark.worker
def test_a_worker_recycled_by_memory_limit_finishes_a_long_run(transactional_db, make_user, tmp_path):
    """A real worker with --max-memory-per-child replaces its pool process after every task (limit 1 KB);
    a run of 10 rows handed over every 4 rows still finishes, in three processes."""
    from curation.tasks import redaction_run_task
    from tests.conftest import wait_for
    from tests.training.test_recovery import WorkerProcess

    curator = make_user("curator")
    reviewer = make_user("privacy_reviewer", username="rev")
    version = _tickets(tmp_path, name="Recycled", actor=curator, count=10, seed=11)
    worker = WorkerProcess(
        "redaction-recycle", "recycle", args=("--max-memory-per-child", "1"), TUNINGDESK_REDACTION_ROWS_PER_TASK="4"
    )
    try:
        # Made directly rather than by redaction_run_start, whose message would go to the shared default queue;
        # only this test's worker listens on this one, and each handover follows the queue its task came from.
        run = RedactionRun.objects.create(version=version, config=redaction_config_clean(None), created_by=reviewer)
        redaction_run_task.apply_async(args=[run.pk], queue="redaction-recycle")

        def finished():
            run.refresh_from_db()
            return run.status in (RedactionRun.Status.REVIEW, RedactionRun.Status.FAILED)

        wait_for(finished, timeout=240)
        assert run.status == RedactionRun.Status.REVIEW, run.error
        assert run.processed == 10 and run.findings.exists()
        done = [line for line in worker.lines if "redaction_run_task" in line and "succeeded" in line]
        processes = {re.search(r"/(\S+?)\]", line).group(1) for line in done}
        assert len(done) == 3 and len(processes) == 3, "".join(worker.lines[-40:])
    finally:
        worker.stop()
