"""Two annotators label the same support tickets with the keyboard only, each in their own browser; the project page
measures their agreement; a reviewer settles the one disagreement; a curator makes the annotated dataset version.

Everything is real: the pages and their script in Debian's Chromium, the services, the database. Example text and a
label hold HTML that would open a dialog if it ever ran: any dialog fails the test.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from annotation.models import Annotation, AnnotationProject, Assignment, Task
from curation.models import DatasetVersion
from tests.browser.conftest import SCREENSHOTS, log_in
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

EVIL_LABEL = "<img src=x onerror=alert('label')>"
EVIL_TEXT = "<img src=x onerror=alert('example')> The invoice page shows this code instead of my bill."
TICKETS = [
    "I was charged twice for May. Please refund the second payment.",
    "The app crashes every time I open the calendar on my phone.",
    "How do I change the e-mail address on my invoices?",
    EVIL_TEXT,
]
SCHEMA = {
    "instructions": "Read the ticket. Choose the team that should answer it and how urgent it is.\n"
    "Add a short note for the team when something is unusual.",
    "fields": [
        {
            "name": "team",
            "kind": "choice",
            "title": "Team",
            "writes": "label",
            "options": ["Billing", "Technical", "Account", EVIL_LABEL],
        },
        {
            "name": "urgency",
            "kind": "rating",
            "title": "Urgency",
            "scale": 3,
            "rubric": {"1": "Can wait", "2": "This week", "3": "Today"},
        },
        {"name": "note", "kind": "text", "title": "Note for the team", "required": False},
    ],
}


class Browsers:
    """One browser context (own cookies: own person) per name; JavaScript errors and dialogs are collected."""

    def __init__(self, browser, base_url: str):
        self.browser = browser
        self.base_url = base_url
        self.contexts = []
        self.problems: list[str] = []
        self.count = 0

    def open(self, username: str):
        context = self.browser.new_context(base_url=self.base_url, viewport={"width": 1280, "height": 900})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda error: self.problems.append(f"{username}: JavaScript error: {error}"))

        def on_dialog(dialog):
            self.problems.append(f"{username}: unexpected dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        log_in(page, username)
        return page

    def shot(self, page, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.count += 1
        page.screenshot(path=str(SCREENSHOTS / f"annotation-{self.count:02d}-{name}.png"), full_page=True)

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsers(browser, live_server):
    opened = Browsers(browser, live_server.url)
    yield opened
    opened.close()
    assert not opened.problems, opened.problems


def _example(page, number: int) -> None:
    expect(page.locator("h1")).to_contain_text(f"Example {number}")
    page.wait_for_load_state("load")  # the page script listens for keys from here on


def _keys(page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


@pytest.mark.browser
def test_two_annotators_label_with_the_keyboard_a_reviewer_settles_and_a_curator_publishes(
    live_server, celery_worker_proc, make_user, browsers
):
    make_user("engineer", username="erin")
    make_user("annotator", username="alex")
    make_user("annotator", username="blair")
    make_user("annotation_reviewer", username="rhea")
    make_user("curator", username="casey")
    make_user("admin", username="ada")
    dataset = DatasetFactory(name="Support tickets", task_type="classification")
    version = VersionFactory(dataset=dataset, number=1, privacy=DatasetVersion.Privacy.APPROVED, row_count=len(TICKETS))
    for i, text in enumerate(TICKETS):
        ExampleFactory(version=version, row_index=i, input=text, target="", label="")

    # The engineer writes the label schema and opens a project: two answers per example.
    erin = browsers.open("erin")
    erin.goto(f"/datasets/{dataset.pk}/")
    erin.get_by_role("link", name="Label schema").click()
    expect(erin.get_by_role("heading", name="Label schema of Support tickets")).to_be_visible()
    erin.get_by_label("Label schema (JSON)").fill(json.dumps(SCHEMA, indent=2))
    erin.get_by_role("button", name="Save the schema").click()
    expect(erin.locator(".messages")).to_contain_text("The label schema of Support tickets is saved")
    expect(erin.locator(".an-keys").first).to_contain_text("Billing")
    browsers.shot(erin, "schema")
    erin.get_by_role("link", name="New project").click()
    erin.get_by_label("Project name").fill("Ticket routing")
    erin.get_by_label("Dataset version").select_option(
        label=f"Support tickets · version {version.number} (4 rows, Classification)"
    )
    erin.get_by_label("Answers per example").fill("2")
    browsers.shot(erin, "new-project")
    erin.get_by_role("button", name="Create the project").click()
    expect(erin.locator(".messages")).to_contain_text("is open: 4 examples to annotate")
    project = AnnotationProject.objects.get(name="Ticket routing")
    label_url = f"/annotation/projects/{project.pk}/label/"

    # Alex: keyboard only, from the first key press to the last.
    alex = browsers.open("alex")
    alex.goto("/annotation/")
    expect(alex.get_by_role("button", name="Start annotating Ticket routing")).to_be_visible()
    browsers.shot(alex, "projects")
    alex.goto(label_url)
    alex.wait_for_load_state("load")
    expect(alex.locator("#next-button")).to_be_focused()
    _keys(alex, "Enter")
    _example(alex, 1)
    expect(alex.locator("#example-input")).to_have_text(TICKETS[0])
    expect(alex.locator("#timer")).not_to_have_text("0 s", timeout=5_000)  # the clock runs while the tab is shown
    _keys(alex, "1", "w")  # Billing, urgency 2
    expect(alex.get_by_role("radio", name="Billing")).to_be_checked()
    expect(alex.get_by_role("radio", name=re.compile("^2"))).to_be_checked()
    expect(alex.locator("#save-status")).to_contain_text("Saved")  # autosaved after a second
    assert Assignment.objects.get(annotator__username="alex", status="active").draft == {
        "team": "Billing",
        "urgency": 2,
    }
    browsers.shot(alex, "label-first")

    # A second tab on the same example: its change wins the race, the first tab is shown the newer draft.
    tab = alex.context.new_page()
    tab.on("dialog", lambda dialog: browsers.problems.append(f"second tab: dialog {dialog.message}"))
    tab.on("pageerror", lambda error: browsers.problems.append(f"second tab: JavaScript error: {error}"))
    tab.goto(label_url)
    _example(tab, 1)
    expect(tab.get_by_role("radio", name="Billing")).to_be_checked()  # the draft from the first tab
    _keys(tab, "3")  # Account
    expect(tab.locator("#save-status")).to_contain_text("Saved")
    _keys(alex, "e")  # the first tab still thinks Billing: its save is refused and the newer draft shown
    expect(alex.locator("#label-status")).to_contain_text("You changed this example in another tab or window")
    expect(alex.get_by_role("radio", name="Account")).to_be_checked()
    expect(alex.get_by_role("radio", name=re.compile("^2"))).to_be_checked()
    browsers.shot(alex, "label-newer-draft")
    _keys(alex, "1")  # back to Billing, saved on top of the newer draft
    expect(alex.locator("#save-status")).to_contain_text("Saved")
    _keys(alex, "Enter")
    _example(alex, 2)
    # The second tab submits the example the first already submitted: refused, its answer still on the page.
    _keys(tab, "Enter")
    expect(tab.locator("#conflict")).to_contain_text("You already submitted this example in another tab")
    expect(tab.get_by_role("radio", name="Account")).to_be_checked()
    browsers.shot(tab, "label-second-tab-refused")
    tab.close()
    first = Annotation.objects.get(annotator__username="alex", task__position=0)
    assert first.answer == {"team": "Billing", "urgency": 2}

    expect(alex.locator("#label-status")).to_contain_text("Your answer to example 1 is saved.")  # no page load
    _keys(alex, "2", "e", "c")  # Technical, urgency 3, into the note
    expect(alex.get_by_label("Note for the team")).to_be_focused()
    alex.keyboard.type("The calendar crashes when opened")
    _keys(alex, "Escape", "Enter")  # leave the text box, submit

    _example(alex, 3)
    _keys(alex, "u")  # take example 2 back: it returns with the answer given
    _example(alex, 2)
    expect(alex.locator(".messages")).to_contain_text("taken back")
    expect(alex.get_by_role("radio", name="Technical")).to_be_checked()
    expect(alex.get_by_label("Note for the team")).to_have_value("The calendar crashes when opened")
    browsers.shot(alex, "label-undone")
    _keys(alex, "Enter")

    _example(alex, 3)
    _keys(alex, "3", "q", "Enter")  # Account, urgency 1

    # The ticket whose text is HTML, and the label that is HTML: shown as text, nothing runs.
    _example(alex, 4)
    expect(alex.locator("#example-input")).to_have_text(EVIL_TEXT)
    expect(alex.locator(".an-text img, .an-option img")).to_have_count(0)
    expect(alex.locator(".an-option-label", has_text=EVIL_LABEL)).to_be_visible()
    _keys(alex, "4", "q")
    expect(alex.get_by_role("radio", name=EVIL_LABEL)).to_be_checked()
    browsers.shot(alex, "label-html-as-text")
    _keys(alex, "Enter")
    expect(alex.get_by_role("heading", name="All done")).to_be_visible()
    expect(alex.locator("#done-mine")).to_have_text("4")
    browsers.shot(alex, "all-done")

    # Blair, in another browser, gets the same examples; disagrees with Alex on the team of the first.
    blair = browsers.open("blair")
    blair.goto(label_url)
    blair.wait_for_load_state("load")
    _keys(blair, "Enter")
    _example(blair, 1)
    expect(blair.locator(".an-option input:checked")).to_have_count(0)  # nothing of Alex's answer is shown
    _keys(blair, "2", "w", "Enter")  # Technical: Alex said Billing
    _example(blair, 2)
    _keys(blair, "2", "e", "c")
    blair.keyboard.type("The calendar crashes when it is opened")
    _keys(blair, "Control+Enter")  # submits from inside the text box
    _example(blair, 3)
    _keys(blair, "3", "q", "Enter")
    _example(blair, 4)
    _keys(blair, "4", "q", "Enter")
    expect(blair.get_by_role("heading", name="All done")).to_be_visible()
    assert Annotation.objects.filter(task__project=project).count() == 8
    disagreement = Task.objects.get(project=project, status=Task.Status.DISAGREEMENT)
    assert disagreement.position == 0 and disagreement.disagreements == ["team"]

    # The project page measures their agreement.
    erin.goto(f"/annotation/projects/{project.pk}/")

    def card(title: str):
        return erin.locator(".an-agree-card").filter(has=erin.get_by_role("heading", name=re.compile(f"^{title}")))

    expect(card("Team")).to_contain_text(re.compile(r"Cohen's kappa\s+-?\d\.\d\d"))
    expect(card("Urgency")).to_contain_text(re.compile(r"Weighted kappa\s+1\.00 — almost perfect"))
    expect(card("Note for the team")).to_contain_text(re.compile(r"Text similarity \(ROUGE-L\)\s+0\.\d\d"))
    expect(erin.locator("#count-disagreements")).to_have_text("1")
    expect(erin.locator("#annotator-table")).to_contain_text("alex")
    browsers.shot(erin, "project-agreement")

    # The reviewer settles the disagreement: Blair was right.
    rhea = browsers.open("rhea")
    rhea.goto(f"/annotation/projects/{project.pk}/")
    rhea.get_by_role("link", name=re.compile("Review disagreements")).click()
    expect(rhea.locator("#review-table")).to_contain_text(TICKETS[0])
    browsers.shot(rhea, "review-queue")
    rhea.get_by_role("link", name="Open example 1").click()
    answers = rhea.locator("#answers-table")
    expect(answers).to_contain_text("alex")
    expect(answers).to_contain_text("blair")
    expect(answers.locator("tr.an-disagree")).to_contain_text("Billing")
    expect(answers.locator("tr.an-disagree")).to_contain_text("Technical")
    browsers.shot(rhea, "review-task")
    rhea.get_by_role("button", name="Use blair's answer").click()
    rhea.get_by_role("dialog").get_by_role("button", name="Yes, use blair's answer").click()
    expect(rhea.locator(".messages")).to_contain_text("No disagreement is left to review.")
    expect(rhea.locator("#review-empty")).to_be_visible()
    disagreement.refresh_from_db()
    assert disagreement.status == Task.Status.ADJUDICATED and disagreement.answer["team"] == "Technical"

    # The curator makes the new version and finishes the project; the version holds the settled labels.
    casey = browsers.open("casey")
    casey.goto(f"/annotation/projects/{project.pk}/")
    casey.get_by_label("Also finish the project").check()
    casey.get_by_role("button", name="Create new dataset version").click()
    expect(casey.get_by_role("dialog")).to_contain_text("Annotators can no longer add answers")
    casey.get_by_role("dialog").get_by_role("button", name="Yes, finish the project").click()
    # The worker makes the version; the page follows its progress and shows the outcome when it is done.
    expect(casey.locator("#publish-result")).to_contain_text("settled answers written into 4 rows", timeout=60_000)
    expect(casey.locator("#publish-result")).to_contain_text("The project was finished")
    new = DatasetVersion.objects.get(dataset=dataset, operation=DatasetVersion.Operation.ANNOTATE)
    browsers.shot(casey, "published")
    casey.get_by_role("link", name=f"Support tickets, version {new.number}").click()
    expect(casey.get_by_role("heading", name=re.compile(f"Support tickets.*version {new.number}"))).to_be_visible()
    rows = casey.locator("table.rows tbody tr")
    expect(rows.nth(0)).to_contain_text("Technical")  # the reviewer's decision
    expect(rows.nth(1)).to_contain_text("Technical")
    expect(rows.nth(2)).to_contain_text("Account")
    expect(rows.nth(3)).to_contain_text(EVIL_LABEL)  # agreed by both, shown as text
    expect(casey.locator("table.rows img")).to_have_count(0)
    browsers.shot(casey, "new-version")
    assert list(new.examples.order_by("row_index").values_list("label", flat=True)) == [
        "Technical",
        "Technical",
        "Account",
        EVIL_LABEL,
    ]

    # The finished project says so to annotators.
    alex.goto(label_url)
    expect(alex.locator(".notice")).to_contain_text("This project is finished")

    # With every role's items, the top bar still fits on one line at 1280 pixels.
    ada = browsers.open("ada")
    expect(ada.get_by_role("link", name="Annotate", exact=True)).to_be_visible()
    tops = ada.evaluate("""() => [...document.querySelectorAll('.brand, .nav a, .account')]
        .map((node) => Math.round(node.getBoundingClientRect().top + node.getBoundingClientRect().height / 2))""")
    assert max(tops) - min(tops) <= 6, tops
    browsers.shot(ada, "top-bar")
