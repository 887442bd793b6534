"""The privacy-review pages, as each persona sees them: real services, real templates, no mocks.

Detection itself runs in a worker (tests/browser/test_review_flow.py and the worker test of the API drive
the real pipeline); here findings are made directly on small versions, as the worker would store them,
so that each page and decision can be checked exactly.
"""

import json
import re

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from curation.models import DatasetVersion, Example, Finding, RedactionRun
from curation.services import redaction as services_redaction
from tests.factories import ExampleFactory, VersionFactory

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")
REVIEWERS = {"privacy_reviewer", "admin"}
RUN_VIEWERS = {"curator", "privacy_reviewer", "engineer", "admin"}
DATASET_VIEWERS = RUN_VIEWERS | {"manager"}

ROWS = [
    {
        "input": "Hi, I'm Maria Lopez. Write to maria.lopez@example.com or call (212) 555-0143.",
        "target": "Thanks, we will write to you today.",
    },
    {"input": "🙂 Ticket from Dr. Ana Ruiz: SSN 536-90-4157, record MRN-7654321.", "target": "Noted, thank you."},
    {
        "input": "<script>alert('pii')</script> <b>Ann Lee</b> wrote from ann.lee@example.org",
        "target": "We fixed the login.",
        "metadata": {"note": "Ann Lee called twice", "priority": 2},
    },
]
# (row, field, value, entity type, score): what a detector would have stored.
SPANS = [
    (0, "input", "Maria Lopez", "PERSON", 0.85),
    (0, "input", "maria.lopez@example.com", "EMAIL_ADDRESS", 1.0),
    (0, "input", "(212) 555-0143", "PHONE_NUMBER", 0.75),
    (1, "input", "Ana Ruiz", "PERSON", 0.6),
    (1, "input", "536-90-4157", "US_SSN", 0.85),
    (2, "input", "Ann Lee", "PERSON", 0.85),
    (2, "input", "ann.lee@example.org", "EMAIL_ADDRESS", 0.5),
    (2, "metadata.note", "Ann Lee", "PERSON", 0.7),
]


def make_review(actor, *, rows=ROWS, spans=SPANS, config=None) -> RedactionRun:
    """A version with these rows, a detection run started by the real service, and its findings stored."""
    version = VersionFactory(row_count=len(rows))
    Example.objects.bulk_create(
        [ExampleFactory.build(version=version, row_index=i, **row) for i, row in enumerate(rows, start=1)]
    )
    run = services_redaction.redaction_run_start(version=version, actor=actor, config=config)
    examples = list(version.examples.order_by("row_index"))
    findings = []
    for row, field, value, entity_type, score in spans:
        example = examples[row]
        start = services_redaction.field_text(example, field).index(value)
        findings.append(
            Finding(
                run=run,
                example=example,
                field=field,
                start=start,
                end=start + len(value),
                entity_type=entity_type,
                score=score,
                recognizer="test",
            )
        )
    Finding.objects.bulk_create(findings)
    # What the worker does when detection finishes.
    RedactionRun.objects.filter(pk=run.pk).update(
        status=RedactionRun.Status.REVIEW, progress=1.0, processed=len(rows), finding_count=len(findings)
    )
    run.refresh_from_db()
    return run


def finding(run, value: str, entity_type: str | None = None) -> Finding:
    """The finding whose span is ``value``."""
    for candidate in run.findings.select_related("example").order_by("id"):
        text = services_redaction.field_text(candidate.example, candidate.field)
        if text[candidate.start : candidate.end] == value and entity_type in (None, candidate.entity_type):
            return candidate
    raise AssertionError(f"No finding for {value!r}")


def start_data(**overrides) -> dict:
    """The start form as a reviewer sends it with the defaults left alone."""
    from curation.forms_review import ENTITY_TYPES, RedactionStartForm

    form = RedactionStartForm()
    data = {"entities": list(form.fields["entities"].initial), "deny_type": "PERSON"}
    for code in ENTITY_TYPES:
        data[f"operator_{code}"] = "pseudonym"
    data.update(overrides)
    return data


@pytest.fixture
def site(make_user):
    owner = make_user("privacy_reviewer", username="owner")
    run = make_review(owner)
    return {"owner": owner, "run": run, "version": run.version, "finding": finding(run, "Maria Lopez")}


def _url(site, name):
    run, version = site["run"], site["version"]
    args = {
        "version_detail": ("curation:version_detail", [version.pk]),
        "redaction_start": ("curation:redaction_start", [version.pk]),
        "redaction_detail": ("curation:redaction_detail", [run.pk]),
        "redaction_progress": ("curation:redaction_progress", [run.pk]),
        "redaction_review": ("curation:redaction_review", [run.pk]),
        "redaction_pseudonyms": ("curation:redaction_pseudonyms", [run.pk]),
    }[name]
    return reverse(args[0], args=args[1])


PAGES = {
    "version_detail": DATASET_VIEWERS,
    "redaction_start": REVIEWERS,
    "redaction_detail": RUN_VIEWERS,
    "redaction_progress": RUN_VIEWERS,
    "redaction_review": REVIEWERS,
    "redaction_pseudonyms": REVIEWERS,
}

POST_ONLY = {
    "curation:finding_decide": lambda site: [site["finding"].pk],
    "curation:finding_add": lambda site: [site["run"].pk],
    "curation:findings_bulk": lambda site: [site["run"].pk],
    "curation:redaction_approve": lambda site: [site["run"].pk],
}


# --- who may open what -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_opens_for_the_roles_that_may_see_it_and_no_one_else(client, site, make_user, page, persona):
    client.force_login(make_user(persona))
    response = client.get(_url(site, page))
    expected = 200 if persona in PAGES[page] else 403
    assert response.status_code == expected, f"{persona} on {page}"
    if expected == 200 and response["Content-Type"].startswith("text/html"):
        assert b"Log out" in response.content


@pytest.mark.parametrize("page", sorted(PAGES))
def test_anonymous_visitors_are_sent_to_the_login_page(client, site, page):
    response = client.get(_url(site, page))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_views_that_change_data_refuse_get(client, site, admin_user, name):
    client.force_login(admin_user)
    assert client.get(reverse(name, args=POST_ONLY[name](site))).status_code == 405


@pytest.mark.parametrize("persona", sorted(set(PERSONAS) - REVIEWERS))
@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_views_that_change_data_refuse_people_without_the_reviewer_permission(client, site, make_user, name, persona):
    client.force_login(make_user(persona))
    assert client.post(reverse(name, args=POST_ONLY[name](site))).status_code == 403
    assert not Finding.objects.exclude(status=Finding.Status.PENDING).exists()
    assert not DatasetVersion.objects.filter(privacy=DatasetVersion.Privacy.APPROVED).exists()


# --- the version page and starting detection -----------------------------------------------------


def _privacy_panel(html: str) -> str:
    return re.search(r'<section aria-labelledby="privacy-title".*?</section>', html, re.S).group(0)


def test_version_page_tells_a_raw_version_may_hold_personal_data_and_offers_the_form_to_reviewers(
    client, make_user, site
):
    version = VersionFactory(row_count=0, dataset=site["version"].dataset)
    client.force_login(make_user("privacy_reviewer", username="rita"))
    panel = _privacy_panel(client.get(reverse("curation:version_detail", args=[version.pk])).content.decode())
    assert "Not reviewed: may contain personal data" in panel
    assert "Find personal data" in panel
    assert 'type="checkbox" name="entities" value="US_SSN"' in panel and "Social Security number" in panel
    assert "Email address" in panel and "Medical record number" in panel
    assert re.search(r'value="US_SSN"[^>]*checked', panel)  # on by default
    assert not re.search(r'value="DATE_TIME"[^>]*checked', panel)  # loose NER kinds are off by default
    assert '<option value="pseudonym" selected>A realistic made-up value</option>' in panel
    assert "A tag, like &lt;PERSON&gt;" in panel  # operators in words, escaped
    assert "Never flag these words" in panel and "Always flag these words" in panel


@pytest.mark.parametrize("persona", ["curator", "engineer"])
def test_curators_see_the_privacy_state_and_the_reviews_but_cannot_start_one(client, site, make_user, persona):
    client.force_login(make_user(persona))
    panel = _privacy_panel(client.get(_url(site, "version_detail")).content.decode())
    assert "Not reviewed: may contain personal data" in panel
    assert reverse("curation:redaction_detail", args=[site["run"].pk]) in panel
    assert "Ready for review" in panel
    assert 'name="entities"' not in panel


def test_a_manager_sees_only_the_privacy_state(client, site, manager):
    client.force_login(manager)
    panel = _privacy_panel(client.get(_url(site, "version_detail")).content.decode())
    assert "Not reviewed: may contain personal data" in panel
    assert reverse("curation:redaction_detail", args=[site["run"].pk]) not in panel
    assert "<form" not in panel


def test_a_reviewer_starts_detection_with_chosen_kinds_scores_replacements_and_lists(client, make_user):
    reviewer = make_user("privacy_reviewer", username="rita")
    version = VersionFactory(row_count=1)
    ExampleFactory(version=version, input="Call Maria at (212) 555-0143.")
    client.force_login(reviewer)
    data = start_data(
        entities=["PERSON", "PHONE_NUMBER", "US_SSN"],
        threshold_PERSON="0.7",
        operator_PHONE_NUMBER="mask",
        operator_US_SSN="tag",
        allow_list="Epic\n  MyChart  \n",
        deny_list="Dr. Okafor | Person's name\nACME-7 | insurance_id\nProject Blue",
        deny_type="ORGANIZATION",
    )
    response = client.post(reverse("curation:redaction_start", args=[version.pk]), data)
    run = RedactionRun.objects.get(version=version)
    assert response.status_code == 302 and response["Location"] == reverse("curation:redaction_detail", args=[run.pk])
    assert run.status == RedactionRun.Status.QUEUED and run.created_by == reviewer
    assert run.config["entities"] == ["PERSON", "PHONE_NUMBER", "US_SSN"]
    assert run.config["thresholds"] == {"PERSON": 0.7}
    assert run.config["operators"] == {"PERSON": "pseudonym", "PHONE_NUMBER": "mask", "US_SSN": "tag"}
    assert run.config["allow_list"] == ["Epic", "MyChart"]
    assert run.config["deny_list"] == {"Dr. Okafor": "PERSON", "ACME-7": "INSURANCE_ID", "Project Blue": "ORGANIZATION"}
    assert AuditEvent.objects.filter(action="redaction.start", actor=reviewer).exists()

    page = client.get(response["Location"]).content.decode()
    assert "Looking for personal data" in page or "Waiting for a worker" in page
    assert '<progress max="100"' in page
    assert reverse("curation:redaction_progress", args=[run.pk]) in page


def test_the_start_form_offers_profiles_and_a_profile_brings_its_kinds(client, reviewer):
    from curation.pii import GDPR_ENTITIES

    client.force_login(reviewer)
    first, second = VersionFactory(row_count=1), VersionFactory(row_count=1)
    page = client.get(reverse("curation:redaction_start", args=[first.pk])).content.decode()
    assert 'type="radio" name="profile" value="healthcare"' in page and "GDPR" in page
    assert re.search(r'value="healthcare"[^>]*checked', page)
    # A profile wins over ticks left from another choice; "custom" keeps the ticks.
    client.post(reverse("curation:redaction_start", args=[first.pk]), start_data(profile="gdpr", entities=["PERSON"]))
    run = RedactionRun.objects.get(version=first)
    assert run.config["profile"] == "gdpr" and run.config["entities"] == sorted(GDPR_ENTITIES)
    client.post(
        reverse("curation:redaction_start", args=[second.pk]), start_data(profile="custom", entities=["PERSON"])
    )
    run = RedactionRun.objects.get(version=second)
    assert run.config["profile"] == "custom" and run.config["entities"] == ["PERSON"]
    page = client.get(reverse("curation:redaction_detail", args=[run.pk])).content.decode()
    assert "Custom choice of kinds" in page


def test_a_second_start_while_one_is_open_shows_the_services_message(client, site):
    client.force_login(site["owner"])
    response = client.post(_url(site, "redaction_start"), start_data())
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Redaction #{site['run'].pk} of this version is already ready for review" in html
    assert 'class="form-errors"' in html
    assert RedactionRun.objects.filter(version=site["version"]).count() == 1


def test_start_form_errors_are_shown_next_to_their_field(client, site, make_user):
    version = VersionFactory(row_count=0)
    client.force_login(site["owner"])
    url = reverse("curation:redaction_start", args=[version.pk])
    html = client.post(url, start_data(entities=[])).content.decode()
    assert "Choose at least one kind of personal data to look for." in html
    html = client.post(url, start_data(deny_list="Okafor | wizard", threshold_PERSON="7")).content.decode()
    assert "Line 1: “wizard” is not a kind of personal data." in html
    assert "Ensure this value is less than or equal to 1" in html
    assert not RedactionRun.objects.filter(version=version).exists()


def test_progress_answers_status_fraction_rows_and_eta(client, site):
    run = site["run"]
    RedactionRun.objects.filter(pk=run.pk).update(status=RedactionRun.Status.RUNNING, progress=0.5, processed=2)
    run.refresh_from_db()
    from django.utils import timezone

    RedactionRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timezone.timedelta(seconds=30))
    client.force_login(site["owner"])
    data = client.get(_url(site, "redaction_progress")).json()
    assert data["status"] == "running" and data["label"] == "Looking for personal data"
    assert data["fraction"] == 0.5 and data["rows"] == 2 and data["total_rows"] == 3
    assert 25 < data["eta_seconds"] < 40
    assert data["finished"] is False

    # While detecting, the review page sends the reviewer to the progress page.
    response = client.get(_url(site, "redaction_review"))
    assert response.status_code == 302 and response["Location"] == _url(site, "redaction_detail")


# --- the review page ---------------------------------------------------------------------------


def test_review_page_highlights_each_finding_with_its_kind_score_and_status(client, site):
    Finding.objects.filter(pk=finding(site["run"], "maria.lopez@example.com").pk).update(status="accepted")
    client.force_login(site["owner"])
    html = client.get(_url(site, "redaction_review") + "?show=all").content.decode()
    email = re.search(r'<mark class="pii pii-EMAIL_ADDRESS is-accepted"[^>]*>maria\.lopez@example\.com</mark>', html)
    assert email and 'title="Email address · score 1.00 · Will be redacted"' in email.group(0)
    person = re.search(r'<mark class="pii pii-PERSON is-pending"[^>]*>Maria Lopez</mark>', html)
    assert person and "score 0.85 · Not reviewed" in person.group(0)
    assert "Metadata: note" in html  # every text field is shown, metadata too
    # Counts of what is left, by kind.
    left = re.search(r'<div id="review-left".*?</div>', html, re.S).group(0)
    assert re.search(r"<span class=\"count\">7</span>\s*findings not reviewed", left)
    assert re.search(r'Person&#x27;s name</span> <span class="num">4</span>', left)
    # The shortcuts are on the page.
    for key in ("j", "k", "x", "s", "t", "n", "?"):
        assert f"<kbd>{key}</kbd>" in html


def test_offsets_of_segments_are_code_points_of_the_original_text_even_after_an_emoji(client, site):
    client.force_login(site["owner"])
    html = client.get(_url(site, "redaction_review")).content.decode()
    text = ROWS[1]["input"]
    start = text.index("536-90-4157")
    assert start == len("🙂 Ticket from Dr. Ana Ruiz: SSN ")  # one code point for the emoji, as Python counts
    assert re.search(rf'<mark class="pii pii-US_SSN is-pending" data-start="{start}" data-end="{start + 11}"', html)
    # Segments tile the whole text without gaps, and each field says how long it is.
    box = re.search(r'data-field="input" data-length="(\d+)">(.*?)</div>', html.split("Row 2", 1)[1], re.S)
    assert int(box.group(1)) == len(text)
    bounds = re.findall(r'data-start="(\d+)" data-end="(\d+)"', box.group(2))
    assert bounds[0][0] == "0" and bounds[-1][1] == str(len(text))
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_html_and_javascript_in_rows_are_shown_as_text_never_run(client, site):
    client.force_login(site["owner"])
    html = client.get(_url(site, "redaction_review")).content.decode()
    assert "&lt;script&gt;alert(&#x27;pii&#x27;)&lt;/script&gt;" in html
    assert "&lt;b&gt;" in html
    assert "<script>alert" not in html and "<b>Ann Lee</b>" not in html
    # The span text in the list of findings is escaped too.
    assert re.search(r'<q class="rv-quote">Ann Lee</q>', html)


def test_filters_by_kind_score_and_decision(client, site):
    run = site["run"]
    services_redaction.finding_decide(
        finding=finding(run, "536-90-4157"), actor=site["owner"], status="rejected", revision=0
    )
    client.force_login(site["owner"])
    url = _url(site, "redaction_review")

    def rows(query):
        return re.findall(r'<h2 class="rv-title">Row (\d+)</h2>', client.get(url + query).content.decode())

    assert rows("") == ["1", "2", "3"]  # every row still has something not reviewed
    assert rows("?entity_type=EMAIL_ADDRESS") == ["1", "3"]
    assert rows("?entity_type=EMAIL_ADDRESS&min_score=0.9") == ["1"]
    assert rows("?entity_type=PERSON&max_score=0.65") == ["2"]
    assert rows("?show=all&status=rejected") == ["2"]
    assert rows("?entity_type=US_SSN") == []  # the only SSN is decided: nothing left to review
    assert rows("?entity_type=US_SSN&show=all") == ["2"]
    assert rows("?min_score=abc") == ["1", "2", "3"]  # a wrong value is ignored


# --- decisions ---------------------------------------------------------------------------------


def test_accept_with_a_plain_form_returns_to_the_same_place(client, site):
    target = site["finding"]
    client.force_login(site["owner"])
    back = _url(site, "redaction_review") + "?entity_type=PERSON&page=1"
    response = client.post(
        reverse("curation:finding_decide", args=[target.pk]), {"status": "accepted", "revision": 0, "next": back}
    )
    assert response.status_code == 302 and response["Location"] == f"{back}#finding-{target.pk}"
    target.refresh_from_db()
    assert target.status == Finding.Status.ACCEPTED and target.revision == 1 and target.decided_by == site["owner"]
    page = client.get(back).content.decode()
    assert "Will be redacted: this person&#x27;s name is replaced once the review is approved." in page


def test_a_foreign_next_address_is_ignored(client, site):
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:finding_decide", args=[site["finding"].pk]),
        {"status": "accepted", "revision": 0, "next": "https://evil.example/"},
    )
    assert response["Location"].startswith(_url(site, "redaction_review"))


def test_reject_from_the_script_answers_json_with_the_fresh_card_and_counts(client, site):
    target = site["finding"]
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:finding_decide", args=[target.pk]),
        {"status": "rejected", "revision": 0},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200
    data = response.json()
    assert data["ok"] is True and data["message"] == "Kept as is: this person's name stays in the text."
    assert f'id="example-{target.example_id}"' in data["card"]
    assert re.search(r'<mark class="pii pii-PERSON is-rejected"[^>]*>Maria Lopez</mark>', data["card"])
    assert 'name="revision" value="1"' in data["card"]
    assert re.search(r'<span class="count">7</span>', data["left"])
    target.refresh_from_db()
    assert target.status == Finding.Status.REJECTED


def test_changing_the_kind_accepts_the_finding_as_the_new_kind(client, site):
    target = finding(site["run"], "Ana Ruiz")
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:finding_decide", args=[target.pk]),
        {"status": "accepted", "revision": 0, "entity_type": "ORGANIZATION"},
        HTTP_ACCEPT="application/json",
    )
    assert (
        response.status_code == 200
        and response.json()["message"]
        == "Changed to organisation. Will be redacted: it is replaced once the review is approved."
    )
    target.refresh_from_db()
    assert (target.entity_type, target.status) == ("ORGANIZATION", Finding.Status.ACCEPTED)


def test_changing_the_kind_to_one_the_same_span_already_has_is_refused(client, site):
    target = finding(site["run"], "Ann Lee")
    Finding.objects.create(
        run=site["run"],
        example=target.example,
        field=target.field,
        start=target.start,
        end=target.end,
        entity_type="ORGANIZATION",
        score=0.6,
        recognizer="test",
    )
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:finding_decide", args=[target.pk]),
        {"status": "accepted", "revision": 0, "entity_type": "ORGANIZATION"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert response.json()["message"] == "This text is already marked as ORGANIZATION; decide that finding instead."
    target.refresh_from_db()
    assert (target.entity_type, target.status, target.revision) == ("PERSON", "pending", 0)


def test_a_stale_revision_gives_the_clear_message_and_changes_nothing(client, site, make_user):
    first, second = make_user("privacy_reviewer", username="rita"), make_user("privacy_reviewer", username="rob")
    target = site["finding"]
    client.force_login(first)
    assert (
        client.post(
            reverse("curation:finding_decide", args=[target.pk]), {"status": "accepted", "revision": 0}
        ).status_code
        == 302
    )

    # Rob still sees revision 0 on his page and rejects.
    client.force_login(second)
    response = client.post(
        reverse("curation:finding_decide", args=[target.pk]),
        {"status": "rejected", "revision": 0},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 409
    data = response.json()
    assert data["ok"] is False
    assert (
        data["message"]
        == "rita changed this finding a moment ago (it is now “Will be redacted”). Reload to see the latest decision."
    )
    assert re.search(
        r'<mark class="pii pii-PERSON is-accepted"[^>]*>Maria Lopez</mark>', data["card"]
    )  # rita's decision
    target.refresh_from_db()
    assert (target.status, target.revision, target.decided_by) == (Finding.Status.ACCEPTED, 1, first)

    # Without the script: the same message on the page, nothing changed.
    response = client.post(
        reverse("curation:finding_decide", args=[target.pk]), {"status": "rejected", "revision": 0}, follow=True
    )
    assert "rita changed this finding a moment ago" in response.content.decode()
    target.refresh_from_db()
    assert target.status == Finding.Status.ACCEPTED and target.revision == 1


# --- adding spans ------------------------------------------------------------------------------


def test_a_reviewer_adds_a_missed_span_after_an_emoji(client, site):
    example = site["version"].examples.get(row_index=2)
    text = example.input
    start = text.index("MRN-7654321")
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:finding_add", args=[site["run"].pk]),
        {
            "example": example.pk,
            "field": "input",
            "start": start,
            "end": start + 11,
            "entity_type": "MEDICAL_RECORD_NUMBER",
        },
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.json()
    added = Finding.objects.get(recognizer="reviewer")
    assert text[added.start : added.end] == "MRN-7654321"
    assert (added.status, added.entity_type, added.decided_by) == ("accepted", "MEDICAL_RECORD_NUMBER", site["owner"])
    assert re.search(
        r'<mark class="pii pii-MEDICAL_RECORD_NUMBER is-accepted"[^>]*>MRN-7654321</mark>', response.json()["card"]
    )


def test_a_span_past_the_end_of_the_text_is_refused_with_a_clear_message(client, site):
    example = site["version"].examples.get(row_index=2)
    length = len(example.input)
    client.force_login(site["owner"])
    data = {"example": example.pk, "field": "input", "start": length - 3, "end": length + 5, "entity_type": "US_SSN"}
    response = client.post(reverse("curation:finding_add", args=[site["run"].pk]), data, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    expected = f"The span {length - 3}–{length + 5} is outside the text, which has {length} characters."
    assert response.json()["message"] == expected
    page = client.post(reverse("curation:finding_add", args=[site["run"].pk]), data, follow=True).content.decode()
    assert expected in page
    assert not Finding.objects.filter(recognizer="reviewer").exists()


def test_a_row_of_another_version_cannot_get_a_span(client, site):
    other = ExampleFactory()
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:finding_add", args=[site["run"].pk]),
        {"example": other.pk, "field": "input", "start": 0, "end": 2, "entity_type": "PERSON"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400 and response.json()["message"] == "This row is not part of this review."


# --- bulk decisions ------------------------------------------------------------------------------


def test_bulk_accept_by_kind_and_score_range_changes_exactly_those(client, site):
    run = site["run"]
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:findings_bulk", args=[run.pk]),
        {"status": "accepted", "entity_type": "PERSON", "min_score": "0.7", "max_score": "0.9"},
        follow=True,
    )
    assert "3 person&#x27;s name findings will be redacted." in response.content.decode()
    accepted = run.findings.filter(status=Finding.Status.ACCEPTED)
    assert sorted(accepted.values_list("field", "score")) == [("input", 0.85), ("input", 0.85), ("metadata.note", 0.7)]
    assert set(accepted.values_list("entity_type", flat=True)) == {"PERSON"}
    assert finding(run, "Ana Ruiz").status == Finding.Status.PENDING  # a person, but scored 0.6
    assert run.findings.pending().count() == len(SPANS) - 3


def test_bulk_reject_needs_a_valid_range(client, site):
    client.force_login(site["owner"])
    response = client.post(
        reverse("curation:findings_bulk", args=[site["run"].pk]),
        {"status": "rejected", "min_score": "0.9", "max_score": "0.2"},
        follow=True,
    )
    assert "The highest score must be at least the lowest score." in response.content.decode()
    assert not site["run"].findings.exclude(status="pending").exists()


# --- summary, approval and pseudonyms ------------------------------------------------------------


def test_summary_counts_by_kind_and_by_reviewer(client, site, make_user):
    run = site["run"]
    rob = make_user("privacy_reviewer", username="rob")
    services_redaction.finding_decide(
        finding=finding(run, "Maria Lopez"), actor=site["owner"], status="accepted", revision=0
    )
    services_redaction.finding_decide(finding=finding(run, "Ana Ruiz"), actor=rob, status="rejected", revision=0)
    services_redaction.findings_bulk_decide(run=run, actor=rob, status="accepted", entity_type="EMAIL_ADDRESS")
    client.force_login(make_user("curator"))
    html = client.get(_url(site, "redaction_detail")).content.decode()
    table = re.search(r'<table class="table" id="by-type">.*?</table>', html, re.S).group(0)
    person = re.search(r"Person&#x27;s name</span></th>(.*?)</tr>", table, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', person) == ["4", "1", "1", "2", "50%", "0"]
    email = re.search(r"Email address</span></th>(.*?)</tr>", table, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', email) == ["2", "2", "0", "0", "100%", "0"]
    reviewers = re.search(r"Decisions by reviewer.*?</table>", html, re.S).group(0)
    assert re.search(r"owner</th><td class=\"num\">1</td><td class=\"num\">0</td>", reviewers)
    assert re.search(r"rob</th><td class=\"num\">2</td><td class=\"num\">1</td>", reviewers)
    assert "Approve and make the redacted version" not in html  # a curator may read, not approve


def test_approve_is_refused_while_detection_runs(client, site):
    RedactionRun.objects.filter(pk=site["run"].pk).update(status=RedactionRun.Status.RUNNING)
    client.force_login(site["owner"])
    response = client.post(reverse("curation:redaction_approve", args=[site["run"].pk]), follow=True)
    assert (
        "Detection is still running. Approve when it has finished and every finding is decided."
        in response.content.decode()
    )
    assert not DatasetVersion.objects.filter(privacy=DatasetVersion.Privacy.APPROVED).exists()


def test_approve_is_refused_while_findings_are_pending(client, site):
    client.force_login(site["owner"])
    html = client.get(_url(site, "redaction_detail")).content.decode()
    assert "8 findings still need a decision." in html
    response = client.post(reverse("curation:redaction_approve", args=[site["run"].pk]), follow=True)
    assert "8 finding(s) are not decided yet. Accept or reject each one first." in response.content.decode()
    assert not DatasetVersion.objects.filter(privacy=DatasetVersion.Privacy.APPROVED).exists()


def test_approve_makes_an_approved_version_without_the_accepted_values_and_the_map_read_is_audited(
    client, site, make_user
):
    run, owner = site["run"], site["owner"]
    services_redaction.finding_decide(
        finding=finding(run, "(212) 555-0143"), actor=owner, status="rejected", revision=0
    )
    services_redaction.findings_bulk_decide(run=run, actor=owner, status="accepted")
    client.force_login(owner)
    response = client.post(reverse("curation:redaction_approve", args=[run.pk]))
    run.refresh_from_db()
    new = run.result_version
    assert response.status_code == 302 and response["Location"] == reverse("curation:version_detail", args=[new.pk])
    assert new.privacy == DatasetVersion.Privacy.APPROVED and new.is_ready and new.row_count == 3

    rows = json.dumps(list(new.examples.values("input", "target", "metadata")), ensure_ascii=False)
    accepted = [value for _, _, value, _, _ in SPANS if value != "(212) 555-0143"]
    for value in accepted:
        assert value not in rows, value
    assert "(212) 555-0143" in rows  # rejected: kept
    assert "🙂 Ticket from Dr. " in rows  # the text around the spans is unchanged

    page = client.get(response["Location"]).content.decode()
    assert "Redacted and approved by a privacy reviewer" in _privacy_panel(page)
    assert "personal data replaced and approved" in page

    # Reading the pseudonym map: only with its permission, and every reading is recorded.
    client.force_login(make_user("curator"))
    assert client.get(reverse("curation:redaction_pseudonyms", args=[run.pk])).status_code == 403
    assert not AuditEvent.objects.filter(action="pseudonyms.read").exists()
    client.force_login(owner)
    summary = client.get(reverse("curation:redaction_detail", args=[run.pk])).content.decode()
    assert reverse("curation:redaction_pseudonyms", args=[run.pk]) in summary
    html = client.get(reverse("curation:redaction_pseudonyms", args=[run.pk])).content.decode()
    assert "maria.lopez@example.com" in html and "Your reading was recorded in the audit log" in html
    event = AuditEvent.objects.get(action="pseudonyms.read")
    assert event.actor == owner and event.object_id == str(run.pk)


def test_a_failed_run_says_why_and_that_nothing_changed(client, site, curator):
    RedactionRun.objects.filter(pk=site["run"].pk).update(
        status=RedactionRun.Status.FAILED, error="Detection stopped: the spaCy model is missing."
    )
    client.force_login(curator)
    html = client.get(_url(site, "redaction_detail")).content.decode()
    assert "Detection stopped: the spaCy model is missing." in html and "Nothing was changed." in html
    assert "Approve and make the redacted version" not in html


def test_an_approved_review_is_read_only_and_the_pseudonym_page_waits_for_approval(client, site):
    client.force_login(site["owner"])
    html = client.get(_url(site, "redaction_pseudonyms")).content.decode()
    assert "This review is not approved yet" in html
    assert not AuditEvent.objects.filter(action="pseudonyms.read").exists()

    RedactionRun.objects.filter(pk=site["run"].pk).update(status=RedactionRun.Status.APPROVED)
    html = client.get(_url(site, "redaction_review") + "?show=all").content.decode()
    assert "its findings can no longer change" in html
    assert "Maria Lopez" in html and 'name="status" value="accepted"' not in html
    assert "Redact all matching" not in html


def test_the_run_page_says_which_profile_ran(client, site, make_user):
    # No config: the defaults, i.e. the healthcare profile (HIPAA Safe Harbor).
    client.force_login(site["owner"])
    html = client.get(_url(site, "redaction_detail")).content.decode()
    assert "<strong>Profile:</strong> Healthcare (HIPAA Safe Harbor identifiers)" in html
    custom = make_review(site["owner"], config={"entities": ["PERSON", "EMAIL_ADDRESS"]})
    html = client.get(reverse("curation:redaction_detail", args=[custom.pk])).content.decode()
    assert "<strong>Profile:</strong> Custom choice of kinds" in html
