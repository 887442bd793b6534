"""A new privacy reviewer, annotator and annotation reviewer, each in Debian's Chromium (issue 13).

- Privacy review: the buttons (Redact / Keep as is) and the statuses (Will be redacted / Kept) use the same words,
  in the rows, the filter and the summary; after approval, an email made of a person's name follows the name's
  pseudonym ("Kristin Lee", "klee@..." become "Ann Moore", "amoore@...").
- Annotator: C puts the cursor after the text; Submit shows the next example without loading the page; the time
  spent on each example is recorded (it was 0 s for everyone).
- Annotation reviewer: "Use this annotator's answer" offers Undo on the next page; a save on an example another
  reviewer settled meanwhile says so instead of "Team is required".

Everything is real: the services, the database, the pages and their scripts. Findings are stored as the detection
worker would store them (tests/browser/test_review_flow.py runs the real detection), so the test stays short.
"""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from annotation import services as annotation_services
from annotation.models import Annotation, AnnotationProject, Task
from curation.models import DatasetVersion, Finding
from curation.services import redaction as services_redaction
from tests.browser.conftest import log_in
from tests.curation.test_views_review import make_review
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

PREFIX = "newuser-ra-"


def _say_yes(page) -> None:
    """Settling a disagreement cannot be undone by the annotators: the page asks first, in its own dialog."""
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("?")
    page.locator("#confirm-yes").click()


# --- privacy review ------------------------------------------------------------------------------------------------

ROWS = [
    {
        "input": "Hi, this is Kristin Lee from the Oak clinic. Write to klee@oakclinic.com or call our desk "
        "(800) 555-0100.",
        "target": "Thanks, we will write to you today.",
    },
]
SPANS = [
    (0, "input", "Kristin Lee", "PERSON", 0.85),
    (0, "input", "klee@oakclinic.com", "EMAIL_ADDRESS", 1.0),
    (0, "input", "(800) 555-0100", "PHONE_NUMBER", 0.75),  # the clinic's own desk: not personal data
]


@pytest.mark.browser
def test_privacy_review_speaks_one_vocabulary_and_a_names_email_follows_its_pseudonym(
    page, live_server, make_user, screenshots
):
    shot = screenshots(PREFIX + "privacy-")
    reviewer = make_user("privacy_reviewer", username="priya")
    run = make_review(reviewer, rows=ROWS, spans=SPANS)
    person, email, phone = (
        Finding.objects.get(run=run, entity_type=kind) for kind in ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER")
    )
    log_in(page, "priya")
    page.goto(reverse("curation:redaction_review", args=[run.pk]))
    page.wait_for_load_state("load")

    # The words on the buttons are the words of the statuses; nothing says accept or reject.
    item = page.locator(f"#finding-{person.pk}")
    expect(item.get_by_role("button", name=re.compile("^Redact"))).to_be_visible()
    expect(item.get_by_role("button", name=re.compile("^Keep as is"))).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^(Accept|Reject)\b"))).to_have_count(0)
    expect(item.locator(".rv-status")).to_have_text("Not reviewed")
    options = page.get_by_role("search").get_by_label("Decision", exact=True).locator("option").all_inner_texts()
    assert options == ["Any decision", "Not reviewed", "Will be redacted", "Kept"], options
    shot("review-words")

    # Keyboard: j to the first finding, x redacts it; the status says what the button said.
    page.keyboard.press("j")
    expect(item).to_have_class(re.compile(r"\bis-current\b"))
    page.keyboard.press("x")
    expect(page.locator(f"#finding-{person.pk} .rv-status")).to_contain_text("Will be redacted")
    expect(page.locator("#review-status")).to_contain_text("Will be redacted: this person's name is replaced")
    page.locator(f"#finding-{email.pk}").get_by_role("button", name=re.compile("^Redact")).click()
    expect(page.locator(f"#finding-{email.pk} .rv-status")).to_contain_text("Will be redacted")
    page.locator(f"#finding-{phone.pk}").get_by_role("button", name=re.compile("^Keep as is")).click()
    expect(page.locator(f"#finding-{phone.pk} .rv-status")).to_contain_text("Kept")
    expect(page.locator("#review-status")).to_contain_text("Kept as is: this phone number stays in the text.")
    expect(page.locator("#review-left")).to_contain_text("Every finding is decided.")
    shot("review-decided")
    assert dict(Finding.objects.filter(run=run).values_list("entity_type", "status")) == {
        "PERSON": "accepted",
        "EMAIL_ADDRESS": "accepted",
        "PHONE_NUMBER": "rejected",
    }

    # The summary counts in the same words, then approval writes the redacted version.
    page.get_by_role("link", name="Summary and approval").click()
    expect(page.locator("main")).to_contain_text("2 will be redacted")
    expect(page.locator("main")).to_contain_text("1 kept as is")
    expect(page.get_by_role("columnheader", name="Will be redacted")).to_be_visible()
    shot("summary-words")
    page.get_by_role("button", name="Approve and make the redacted version").click()
    expect(page.locator("section.privacy-panel")).to_contain_text("Redacted and approved by a privacy reviewer")
    run.refresh_from_db()
    mapping = services_redaction.pseudonyms_read(run=run, actor=reviewer)
    first, last = mapping["Kristin Lee"].split()
    assert mapping["klee@oakclinic.com"].startswith(f"{first[0].lower()}{last.lower()}@")
    redacted = run.result_version.examples.get().input
    assert f"this is {first} {last} from" in redacted and f"{first[0].lower()}{last.lower()}@" in redacted
    assert "Kristin" not in redacted and "klee" not in redacted and "(800) 555-0100" in redacted
    body = page.locator("main").inner_text()
    assert f"{first} {last}" in body and mapping["klee@oakclinic.com"] in body
    shot("redacted-version")


# --- annotation ----------------------------------------------------------------------------------------------------

SCHEMA = {
    "instructions": "Choose the team, then correct the reply so it could be sent as it is.",
    "fields": [
        {"name": "team", "kind": "choice", "title": "Team", "options": ["Billing", "Technical"], "writes": "label"},
        {"name": "reply", "kind": "text", "title": "Reply", "writes": "target"},
    ],
}
TICKETS = [
    ("I was charged twice for May.", "We refunded the second charge"),
    ("The app crashes when I open the calendar.", "Please update the app"),
    ("How do I change my invoice address?", "Open Settings, then Billing"),
]


def _project(make_user) -> AnnotationProject:
    engineer = make_user("engineer", username="erin")
    dataset = DatasetFactory(name="Support replies", task_type="instruction")
    version = VersionFactory(dataset=dataset, privacy=DatasetVersion.Privacy.APPROVED, row_count=len(TICKETS))
    for i, (text, reply) in enumerate(TICKETS):
        ExampleFactory(version=version, row_index=i, input=text, target=reply, label="")
    annotation_services.label_schema_save(dataset=dataset, schema=SCHEMA, actor=engineer)
    return annotation_services.annotation_project_create(
        name="Reply fixes", version=version, actor=engineer, annotations_per_example=2
    )


@pytest.mark.browser
def test_annotator_edits_at_the_end_submits_without_a_page_load_and_the_time_is_recorded(
    page, live_server, make_user, screenshots
):
    shot = screenshots(PREFIX + "annotate-")
    project = _project(make_user)
    make_user("annotator", username="alex")
    log_in(page, "alex")
    page.goto(reverse("annotation:label", args=[project.pk]))
    page.get_by_role("button", name=re.compile("Get the next example")).click()
    expect(page.locator("h1")).to_contain_text("Example 1")
    page.wait_for_load_state("load")

    # C: into the reply, the cursor after its last character, so typing adds to the end.
    box = page.get_by_label("Reply")
    expect(box).to_have_value(TICKETS[0][1])
    page.keyboard.press("c")
    expect(box).to_be_focused()
    caret = box.evaluate("(el) => [el.selectionStart, el.selectionEnd, el.value.length]")
    assert caret[0] == caret[1] == caret[2], caret
    page.keyboard.type(" today.")
    expect(box).to_have_value(TICKETS[0][1] + " today.")
    page.keyboard.press("Escape")
    page.keyboard.press("1")  # Billing
    shot("label-edited-at-the-end")

    # Submit: the next example appears in place. A mark set on this page survives, so it was not loaded again.
    page.evaluate("() => { window.stayedOnThePage = true; }")
    time.sleep(1.2)  # a person reads before pressing Enter: the clock must count it
    started = time.monotonic()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Example 2")
    swap_seconds = time.monotonic() - started
    assert page.evaluate("() => window.stayedOnThePage === true")
    expect(page.locator("#label-status")).to_contain_text("Your answer to example 1 is saved.")
    expect(page.get_by_label("Reply")).to_have_value(TICKETS[1][1])  # the next example's own reply
    expect(page.locator("#timer")).to_have_text(re.compile(r"^[0-2] s$"))  # its own clock, from zero
    first = Annotation.objects.get(annotator__username="alex", task__position=0)
    assert first.answer == {"team": "Billing", "reply": TICKETS[0][1] + " today."}
    assert first.seconds >= 1.0, first.seconds  # was 0 s on the agreement page
    shot("label-next-in-place")
    print(f"submit to next example shown: {swap_seconds:.2f} s")  # noqa: T201 (a figure for the record)

    # The next ones, with keys only, still in place; the last goes to the done page with the time per example.
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Example 3")
    assert page.evaluate("() => window.stayedOnThePage === true")
    time.sleep(1.1)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Your answer to example 3 is saved.")
    expect(page.locator("main")).to_contain_text(re.compile(r"[1-9]\d* s\s+usual time per example"))
    shot("label-done-time")
    seconds = list(Annotation.objects.filter(annotator__username="alex").values_list("seconds", flat=True))
    assert len(seconds) == 3 and all(value > 0 for value in seconds), seconds


# --- annotation review ---------------------------------------------------------------------------------------------


def _disagreement(project: AnnotationProject, make_user) -> Task:
    alex, blair = make_user("annotator", username="alex"), make_user("annotator", username="blair")
    for who, team in ((alex, "Billing"), (blair, "Technical")):
        held = annotation_services.assignment_next(project=project, annotator=who)
        annotation_services.annotation_submit(
            assignment=held, annotator=who, answer={"team": team, "reply": TICKETS[0][1]}
        )
    return Task.objects.get(project=project, status=Task.Status.DISAGREEMENT)


@pytest.mark.browser
def test_reviewer_can_undo_using_an_answer_and_is_told_when_someone_settled_first(
    page, live_server, make_user, screenshots
):
    shot = screenshots(PREFIX + "review-")
    project = _project(make_user)
    task = _disagreement(project, make_user)
    make_user("annotation_reviewer", username="rhea")
    other = make_user("annotation_reviewer", username="rob")
    log_in(page, "rhea")

    # "Use blair's answer": done, and the next page offers to take it back.
    page.goto(reverse("annotation:task_detail", args=[task.pk]))
    page.get_by_role("button", name="Use blair's answer").click()
    _say_yes(page)
    expect(page.locator(".messages")).to_contain_text("Example 1 is settled.")
    offer = page.locator("#settle-undo")
    expect(offer).to_contain_text("You settled example 1.")
    shot("settled-undo-offered")
    task.refresh_from_db()
    assert task.status == Task.Status.ADJUDICATED and task.answer["team"] == "Technical"
    offer.get_by_role("button", name="Undo the decision on example 1").click()
    expect(page.locator(".messages")).to_contain_text("Your decision on example 1 is undone: decide it again.")
    expect(page.locator("#answers-table tr.an-disagree")).to_contain_text("Technical")
    task.refresh_from_db()
    assert (task.status, task.answer, task.adjudicated_by) == (Task.Status.DISAGREEMENT, None, None)
    shot("settled-undone")

    # Rhea reads the example; meanwhile Rob settles it. Her Save (Team still empty) says what happened.
    page.reload()
    expect(page.get_by_role("heading", name="Decide the final answer")).to_be_visible()
    annotation_services.task_adjudicate(
        task=task, actor=other, answer={"team": "Billing", "reply": "Rob's reply"}, settled_seen=""
    )
    page.get_by_role("button", name="Save as the final answer").click()
    _say_yes(page)
    errors = page.locator("#task-errors")
    expect(errors).to_contain_text("Someone settled this example while you were reading it (rob, at")
    expect(page.locator("main")).not_to_contain_text("Team is required")
    expect(page.locator("#final-answer")).to_contain_text("Rob's reply")
    shot("settled-meanwhile")
    task.refresh_from_db()
    assert task.adjudicated_by == other and task.answer["reply"] == "Rob's reply"
