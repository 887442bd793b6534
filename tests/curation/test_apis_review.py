"""The REST API for privacy review under /api/v1/: start, follow, findings, decisions, approval, pseudonyms.

Most tests store findings directly on a small version (as the worker would) to check each endpoint
exactly; ``test_real_worker_detects_and_the_api_takes_it_to_an_approved_version`` runs the real
detection (Presidio and spaCy) in a real Celery worker. Who may call what is in tests/test_permission_matrix.py.
"""

import json

import pytest
from django.core.cache import cache
from django.urls import reverse

from accounts.models import AuditEvent
from curation.models import DatasetVersion, Example, Finding, RedactionRun
from tests.conftest import wait_for
from tests.curation.test_views_review import ROWS, SPANS, finding, make_review
from tests.factories import ExampleFactory, VersionFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def run(reviewer):
    return make_review(reviewer)


def _findings(client, run, query=""):
    response = client.get(reverse("api-redaction-findings", args=[run.pk]) + query)
    assert response.status_code == 200, response.json()
    return response.json()["results"]


# --- start and follow ----------------------------------------------------------------------------


def test_start_queues_detection_with_its_settings_and_a_second_start_is_refused(reviewer, api_client):
    version = VersionFactory(row_count=1)
    ExampleFactory(version=version)
    client = api_client(reviewer)
    url = reverse("api-redaction-start", args=[version.pk])
    body = {
        "entities": ["PERSON", "US_SSN"],
        "thresholds": {"PERSON": 0.7},
        "operators": {"US_SSN": "mask"},
        "default_operator": "tag",
        "allow_list": ["Epic"],
        "deny_list": {"Dr. Okafor": "PERSON"},
    }
    response = client.post(url, body, format="json")
    assert response.status_code == 202, response.json()
    data = response.json()
    assert data["status"] == "queued" and data["status_label"] == "Waiting for a worker"
    assert data["progress"] == {"fraction": 0.0, "eta_seconds": None, "rows_done": 0, "rows_total": 1}
    assert data["counts"] == {"findings": 0, "pending": 0, "accepted": 0, "rejected": 0}
    assert data["config"]["operators"] == {"US_SSN": "mask"} and data["config"]["default_operator"] == "tag"
    assert data["config"]["deny_list"] == {"Dr. Okafor": "PERSON"} and data["created_by"] == reviewer.username

    again = client.post(url, {}, format="json")
    assert again.status_code == 400
    assert again.json()["error"] == (
        f"Redaction #{data['id']} of this version is already waiting for a worker. Finish or approve it first."
    )
    assert RedactionRun.objects.filter(version=version).count() == 1


def test_start_rejects_unknown_kinds_and_operators_with_plain_messages(reviewer, api_client):
    version = VersionFactory(row_count=0)
    client = api_client(reviewer)
    response = client.post(
        reverse("api-redaction-start", args=[version.pk]),
        {"entities": ["WIZARD"], "operators": {"PERSON": "burn"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["fields"]["operators.PERSON"] == [
        "Unknown operator “burn”. Use one of: tag, mask, hash, pseudonym."
    ]
    response = client.post(reverse("api-redaction-start", args=[version.pk]), {"entities": ["WIZARD"]}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["entities"] == ["Unknown entity type(s): WIZARD."]
    assert not RedactionRun.objects.exists()


def test_start_with_a_profile_looks_for_its_kinds_and_an_unknown_profile_is_named(reviewer, api_client):
    from curation.pii import GDPR_ENTITIES, HEALTHCARE_ENTITIES

    client = api_client(reviewer)
    default, gdpr, custom = (VersionFactory(row_count=0) for _ in range(3))
    response = client.post(reverse("api-redaction-start", args=[default.pk]), {}, format="json")
    assert response.status_code == 202, response.json()
    config = response.json()["config"]
    assert config["profile"] == "healthcare" and config["entities"] == sorted(HEALTHCARE_ENTITIES)
    response = client.post(reverse("api-redaction-start", args=[gdpr.pk]), {"profile": "gdpr"}, format="json")
    config = response.json()["config"]
    assert config["profile"] == "gdpr" and config["entities"] == sorted(GDPR_ENTITIES)
    assert "NATIONAL_ID" in config["entities"] and "NATIONAL_ID" not in HEALTHCARE_ENTITIES
    body = {"profile": "gdpr", "entities": ["PERSON", "EMAIL_ADDRESS"]}
    response = client.post(reverse("api-redaction-start", args=[custom.pk]), body, format="json")
    config = response.json()["config"]
    assert config["profile"] == "custom" and config["entities"] == ["EMAIL_ADDRESS", "PERSON"]

    other = VersionFactory(row_count=0)
    response = client.post(reverse("api-redaction-start", args=[other.pk]), {"profile": "hipaa2"}, format="json")
    assert response.status_code == 400
    assert (
        "hipaa2" in response.json()["fields"]["profile"][0]
        and "healthcare, gdpr" in response.json()["fields"]["profile"][0]
    )
    assert not RedactionRun.objects.filter(version=other).exists()


def test_run_detail_shows_progress_while_detecting_and_counts_after(curator, api_client, run):
    from django.utils import timezone

    RedactionRun.objects.filter(pk=run.pk).update(
        status=RedactionRun.Status.RUNNING,
        progress=0.25,
        processed=1,
        started_at=timezone.now() - timezone.timedelta(seconds=10),
    )
    client = api_client(curator)
    data = client.get(reverse("api-redaction-detail", args=[run.pk])).json()
    assert data["status"] == "running" and data["progress"]["rows_done"] == 1 and data["progress"]["rows_total"] == 3
    assert 25 <= data["progress"]["eta_seconds"] <= 35

    RedactionRun.objects.filter(pk=run.pk).update(status=RedactionRun.Status.REVIEW, progress=1.0)
    Finding.objects.filter(pk=finding(run, "Maria Lopez").pk).update(status="accepted")
    data = client.get(reverse("api-redaction-detail", args=[run.pk])).json()
    assert data["counts"] == {"findings": 8, "pending": 7, "accepted": 1, "rejected": 0}
    assert client.get(reverse("api-redaction-detail", args=[999999])).status_code == 404


# --- findings ----------------------------------------------------------------------------------


def test_findings_list_their_text_and_filter_by_kind_status_score_and_row(reviewer, api_client, run):
    client = api_client(reviewer)
    everything = _findings(client, run)
    assert len(everything) == 8
    ssn = next(item for item in everything if item["entity_type"] == "US_SSN")
    assert ssn["text"] == "536-90-4157" and ssn["entity_label"] == "Social Security number"
    assert ssn["row_index"] == 2 and ssn["field"] == "input" and ssn["status"] == "pending" and ssn["revision"] == 0
    assert ROWS[1]["input"][ssn["start"] : ssn["end"]] == "536-90-4157"  # code points, as Python counts

    assert {f["text"] for f in _findings(client, run, "?entity_type=EMAIL_ADDRESS")} == {
        "maria.lopez@example.com",
        "ann.lee@example.org",
    }
    assert [f["text"] for f in _findings(client, run, "?entity_type=PERSON&min_score=0.7&max_score=0.8")] == ["Ann Lee"]
    assert [f["field"] for f in _findings(client, run, "?entity_type=PERSON&min_score=0.7&max_score=0.8")] == [
        "metadata.note"
    ]
    Finding.objects.filter(pk=ssn["id"]).update(status="rejected")
    assert [f["id"] for f in _findings(client, run, "?status=rejected")] == [ssn["id"]]
    assert {f["text"] for f in _findings(client, run, f"?example={ssn['example']}")} == {"Ana Ruiz", "536-90-4157"}

    bad = client.get(reverse("api-redaction-findings", args=[run.pk]) + "?status=maybe&min_score=2")
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"status", "min_score"}


def test_findings_pages_walk_every_finding_once(reviewer, api_client, run):
    client = api_client(reviewer)
    url = reverse("api-redaction-findings", args=[run.pk]) + "?page_size=3"
    seen = []
    while url:
        page = client.get(url).json()
        assert len(page["results"]) <= 3
        seen += [item["id"] for item in page["results"]]
        url = page["next"]
    assert seen == sorted(run.findings.values_list("id", flat=True))


def test_patch_accepts_rejects_and_changes_the_kind(reviewer, api_client, run):
    client = api_client(reviewer)
    target = finding(run, "Ana Ruiz")
    url = reverse("api-finding-detail", args=[target.pk])
    response = client.patch(url, {"status": "rejected", "revision": 0}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "rejected" and response.json()["revision"] == 1
    assert response.json()["decided_by"] == reviewer.username

    response = client.patch(url, {"status": "accepted", "revision": 1, "entity_type": "ORGANIZATION"}, format="json")
    assert response.status_code == 200
    assert (response.json()["entity_type"], response.json()["status"]) == ("ORGANIZATION", "accepted")
    assert AuditEvent.objects.filter(action="finding.decide", actor=reviewer).count() == 2


def test_patch_on_a_stale_revision_is_409_with_the_services_message_and_changes_nothing(make_user, api_client, run):
    rita, rob = make_user("privacy_reviewer", username="rita"), make_user("privacy_reviewer", username="rob")
    target = finding(run, "Maria Lopez")
    url = reverse("api-finding-detail", args=[target.pk])
    assert api_client(rita).patch(url, {"status": "accepted", "revision": 0}, format="json").status_code == 200

    response = api_client(rob).patch(url, {"status": "rejected", "revision": 0}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": "rita changed this finding a moment ago (it is now “Will be redacted”). "
        "Reload to see the latest decision."
    }
    target.refresh_from_db()
    assert (target.status, target.revision, target.decided_by) == ("accepted", 1, rita)


def test_patch_with_a_bad_status_is_400(reviewer, api_client, run):
    target = finding(run, "Maria Lopez")
    response = api_client(reviewer).patch(
        reverse("api-finding-detail", args=[target.pk]), {"status": "maybe", "revision": 0}, format="json"
    )
    assert response.status_code == 400 and "Unknown status “maybe”" in response.json()["error"]
    target.refresh_from_db()
    assert target.status == "pending" and target.revision == 0


def test_add_a_missed_span_and_refuse_one_past_the_end(reviewer, api_client, run):
    client = api_client(reviewer)
    example = run.version.examples.get(row_index=2)
    start = example.input.index("MRN-7654321")
    url = reverse("api-redaction-findings", args=[run.pk])
    body = {
        "example": example.pk,
        "field": "input",
        "start": start,
        "end": start + 11,
        "entity_type": "MEDICAL_RECORD_NUMBER",
    }
    response = client.post(url, body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["text"] == "MRN-7654321" and response.json()["status"] == "accepted"
    assert response.json()["recognizer"] == "reviewer"

    length = len(example.input)
    response = client.post(url, {**body, "start": length - 2, "end": length + 4}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"The span {length - 2}–{length + 4} is outside the text, which has {length} characters."
    )
    response = client.post(url, {**body, "field": "metadata.priority"}, format="json")
    assert response.status_code == 400 and "no text field “metadata.priority”" in response.json()["error"]
    assert run.findings.filter(recognizer="reviewer").count() == 1


def test_bulk_decide_changes_exactly_the_pending_findings_of_the_kind_and_range(reviewer, api_client, run):
    client = api_client(reviewer)
    ann = run.findings.get(entity_type="PERSON", field="input", example__row_index=3)
    Finding.objects.filter(pk=ann.pk).update(status="rejected")
    response = client.post(
        reverse("api-redaction-bulk-decide", args=[run.pk]),
        {"status": "accepted", "entity_type": "PERSON", "min_score": 0.7, "max_score": 0.9},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"changed": 2, "pending": 5}
    decided = sorted(run.findings.exclude(status="pending").values_list("example__row_index", "field", "status"))
    # Maria Lopez (0.85) and Ann Lee in the metadata (0.7); Ann Lee in the input was decided before and stays.
    assert decided == [(1, "input", "accepted"), (3, "input", "rejected"), (3, "metadata.note", "accepted")]

    response = client.post(reverse("api-redaction-bulk-decide", args=[run.pk]), {"status": "pending"}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "Choose status accepted or rejected."


def test_approve_is_refused_while_detecting_and_while_findings_are_pending(reviewer, api_client, run):
    client = api_client(reviewer)
    url = reverse("api-redaction-approve", args=[run.pk])
    RedactionRun.objects.filter(pk=run.pk).update(status=RedactionRun.Status.RUNNING)
    response = client.post(url)
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Detection is still running. Approve when it has finished and every finding is decided."
    )
    RedactionRun.objects.filter(pk=run.pk).update(status=RedactionRun.Status.REVIEW)
    response = client.post(url)
    assert response.status_code == 400
    assert response.json()["error"] == "8 finding(s) are not decided yet. Accept or reject each one first."
    assert not DatasetVersion.objects.filter(privacy=DatasetVersion.Privacy.APPROVED).exists()


def test_approve_makes_a_redacted_version_and_the_pseudonym_map_read_is_audited(reviewer, curator, api_client, run):
    client = api_client(reviewer)
    client.patch(
        reverse("api-finding-detail", args=[finding(run, "(212) 555-0143").pk]),
        {"status": "rejected", "revision": 0},
        format="json",
    )
    client.post(reverse("api-redaction-bulk-decide", args=[run.pk]), {"status": "accepted"}, format="json")
    response = client.post(reverse("api-redaction-approve", args=[run.pk]))
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["privacy"] == "approved" and data["operation"] == "redact" and data["row_count"] == 3
    assert data["parent"] == run.version_id

    new = DatasetVersion.objects.get(pk=data["id"])
    rows = json.dumps(list(new.examples.values("input", "target", "metadata")), ensure_ascii=False)
    for _, _, value, _, _ in SPANS:
        assert (value in rows) == (value == "(212) 555-0143"), value

    summary = api_client(curator).get(reverse("api-redaction-summary", args=[run.pk])).json()
    assert summary["run"]["status"] == "approved" and summary["run"]["result_version"] == new.pk
    assert summary["totals"] == {"total": 8, "accepted": 7, "rejected": 1, "pending": 0, "added": 0}
    phone = next(row for row in summary["by_type"] if row["entity_type"] == "PHONE_NUMBER")
    assert phone == {
        "entity_type": "PHONE_NUMBER",
        "entity_label": "Phone number",
        "total": 1,
        "accepted": 0,
        "rejected": 1,
        "pending": 0,
        "added": 0,
        "acceptance_rate": 0.0,
    }
    assert summary["reviewers"] == [{"username": reviewer.username, "accepted": 7, "rejected": 1, "added": 0}]

    assert api_client(curator).get(reverse("api-redaction-pseudonyms", args=[run.pk])).status_code == 403
    assert not AuditEvent.objects.filter(action="pseudonyms.read").exists()
    response = client.get(reverse("api-redaction-pseudonyms", args=[run.pk]))
    assert response.status_code == 200
    entries = {entry["original"]: entry["surrogate"] for entry in response.json()["entries"]}
    assert "maria.lopez@example.com" in entries and entries["maria.lopez@example.com"] in rows
    event = AuditEvent.objects.get(action="pseudonyms.read")
    assert event.actor == reviewer and event.object_id == str(run.pk)

    # Approved: the findings can no longer change.
    response = client.patch(
        reverse("api-finding-detail", args=[finding(run, "Maria Lopez").pk]),
        {"status": "rejected", "revision": 1},
        format="json",
    )
    assert response.status_code == 400 and "cannot change" in response.json()["error"]


# --- the real pipeline ---------------------------------------------------------------------------


@pytest.mark.worker
def test_real_worker_detects_and_the_api_takes_it_to_an_approved_version(
    transactional_db, celery_worker_proc, make_user, api_client
):
    reviewer = make_user("privacy_reviewer", username="rita")
    client = api_client(reviewer)
    email, ssn, phone = "maria.lopez@examplehealth.com", "536-90-4157", "(212) 555-0143"
    rows = [
        {"input": f"Hi, this is Maria Lopez. My email is {email} and my SSN is {ssn}.", "target": "Thanks, Maria."},
        {"input": f"🙂 Please call me back at {phone} about the invoice.", "target": "We will call you today."},
    ]
    version = VersionFactory(row_count=len(rows))
    Example.objects.bulk_create(
        [ExampleFactory.build(version=version, row_index=i, **row) for i, row in enumerate(rows, start=1)]
    )

    response = client.post(
        reverse("api-redaction-start", args=[version.pk]), {"default_operator": "tag"}, format="json"
    )
    assert response.status_code == 202, response.json()
    url = reverse("api-redaction-detail", args=[response.json()["id"]])
    detail = wait_for(lambda: (d := client.get(url).json())["status"] in ("review", "failed") and d, timeout=180)
    assert detail["status"] == "review", detail["error"]
    assert detail["progress"]["rows_done"] == 2 and detail["progress"]["fraction"] == 1.0

    found = _findings(client, RedactionRun.objects.get(pk=detail["id"]))
    by_text = {item["text"]: item for item in found}
    assert by_text[email]["entity_type"] == "EMAIL_ADDRESS"
    assert by_text[ssn]["entity_type"] == "US_SSN"
    assert by_text[phone]["entity_type"] == "PHONE_NUMBER"
    assert rows[1]["input"][by_text[phone]["start"] : by_text[phone]["end"]] == phone  # right after an emoji

    client.post(reverse("api-redaction-bulk-decide", args=[detail["id"]]), {"status": "accepted"}, format="json")
    response = client.post(reverse("api-redaction-approve", args=[detail["id"]]))
    assert response.status_code == 201, response.json()
    new = DatasetVersion.objects.get(pk=response.json()["id"])
    text = " ".join(new.examples.order_by("row_index").values_list("input", flat=True))
    for value in (email, ssn, phone):
        assert value not in text
    assert "<EMAIL_ADDRESS>" in text and "<US_SSN>" in text and "<PHONE_NUMBER>" in text
    assert text.startswith("Hi, this is ") and "🙂 Please call me back at " in text
