"""A privacy reviewer finds personal data in support tickets, reviews it in the browser and approves.

Everything is real: the import service, the Celery worker running Presidio and spaCy, the review pages
and their script in Debian's Chromium, and the approval that writes the redacted version.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from curation import services
from curation.demo import generate_tickets
from curation.models import DatasetVersion, Finding, RedactionRun
from tests.browser.conftest import log_in

MISSED_SSN = "536904157"  # a bare number without a context word: the detector cannot tell it is an SSN
SUPPORT_LINE = "(800) 555-0100"  # a phone number, but the company's own: not personal data
EXTRA_TICKETS = [
    {
        "ticket_id": "T-29001",
        "customer_message": f"🙂 Ana Ruiz wrote again: the old chart still lists {MISSED_SSN} beside her new number.",
        "agent_reply": "Thank you, we removed the old number from the chart.",
        "category": "records",
        "segment": "clinic",
        "channel": "portal",
    },
    {
        "ticket_id": "T-29002",
        "customer_message": "<img src=x onerror=alert('xss')> Your banner says to call our support line "
        f"{SUPPORT_LINE} for urgent issues, but nobody answers at night.",
        "agent_reply": f"Sorry about that: {SUPPORT_LINE} is staffed around the clock again since Monday.",
        "category": "integration",
        "segment": "hospital",
        "channel": "phone",
    },
]


def _select_with_the_mouse(page, text: str) -> None:
    """Drag the mouse over ``text`` where it appears in a field of the review page, as a person would."""
    box = page.evaluate(
        """async (wanted) => {
            const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
            for (const node of document.querySelectorAll(".rv-text span, .rv-text mark")) {
                const at = node.textContent.indexOf(wanted);
                if (at === -1) continue;
                const range = document.createRange();
                range.setStart(node.firstChild, at);
                range.setEnd(node.firstChild, at + wanted.length);
                node.scrollIntoView({block: "center"});
                // Wait until the page stops moving (a smooth scroll to the current finding may be running).
                let top = null, still = 0;
                while (still < 5) {
                    await frame();
                    const now = range.getBoundingClientRect().top;
                    still = now === top ? still + 1 : 0;
                    top = now;
                }
                const rects = range.getClientRects();
                const first = rects[0], last = rects[rects.length - 1];
                return {
                    x1: first.left + 1, y1: first.top + first.height / 2,
                    x2: last.right - 1, y2: last.top + last.height / 2,
                };
            }
            return null;
        }""",
        text,
    )
    assert box, f"{text!r} is not on the page"
    page.mouse.move(box["x1"], box["y1"])
    page.mouse.down()
    page.mouse.move(box["x2"], box["y2"], steps=8)
    page.mouse.up()


@pytest.mark.browser
def test_privacy_reviewer_detects_reviews_fixes_and_approves(
    live_server, celery_worker_proc, make_user, page, screenshots, tmp_path
):
    shot = screenshots("review-")
    curator = make_user("curator", username="casey")
    make_user("privacy_reviewer", username="rita", first_name="Rita", last_name="Reviewer")
    tickets = [*generate_tickets(6, seed=7), *EXTRA_TICKETS]
    path = tmp_path / "clinic-tickets.jsonl"
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tickets), encoding="utf-8")
    version = services.dataset_import(
        path=path,
        dataset_name="Clinic tickets",
        actor=curator,
        mapping={
            "input": "customer_message",
            "target": "agent_reply",
            "group": "segment",
            "metadata": ["ticket_id", "category"],
        },
    ).version
    assert version.row_count == 8
    emails = [m for t in tickets for m in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", t["customer_message"])]
    ssns = [m for t in tickets for m in re.findall(r"\b\d{3}-\d{2}-\d{4}\b", t["customer_message"])]
    assert emails and ssns, "the demo tickets should hold emails and SSNs"

    # The version page says the rows may hold personal data; the reviewer starts detection.
    log_in(page, "rita")
    page.goto(f"/datasets/versions/{version.pk}/")
    panel = page.locator("section.privacy-panel")
    expect(panel).to_contain_text("Not reviewed: may contain personal data")
    expect(panel.get_by_label("Social Security number", exact=True)).to_be_checked()
    expect(panel.get_by_label("Replace Email address with")).to_have_value("pseudonym")
    # Weak SSN guesses (a number near the word “social”) are not worth a reviewer's time in this dataset.
    panel.get_by_label("Lowest score for Social Security number").fill("0.6")
    panel.get_by_label("Replace Social Security number with").select_option("tag")
    shot("start")
    panel.get_by_role("button", name="Find personal data").click()

    # The run page follows the worker, then shows what was found.
    expect(page.get_by_role("heading", name="Personal data in version 1")).to_be_visible()
    shot("progress")
    expect(page.get_by_role("link", name="Review the findings")).to_be_visible(timeout=180_000)
    run = RedactionRun.objects.get(version=version)
    assert run.status == RedactionRun.Status.REVIEW, run.error
    expect(page.locator("#by-type")).to_contain_text("Email address")
    shot("summary-found")
    page.get_by_role("link", name="Review the findings").click()

    # The review queue: highlighted spans; the bare SSN was missed; the markup in a ticket is only text.
    expect(page.get_by_role("heading", name="Review personal data")).to_be_visible()
    expect(page.locator("mark.pii-EMAIL_ADDRESS").first).to_be_visible()
    expect(page.locator("mark.pii", has_text=MISSED_SSN)).to_have_count(0)
    expect(page.locator(".rv-text", has_text="<img src=x onerror=alert('xss')>")).to_have_count(1)
    expect(page.locator(".rv-text img")).to_have_count(0)
    shot("queue")

    # Keyboard: help, then the first finding not reviewed is accepted with j, a.
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    shot("help")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()
    accepted_before = Finding.objects.filter(run=run, status="accepted").count()
    page.keyboard.press("j")
    first = page.locator(".rv-finding.is-current")
    expect(first).to_have_count(1)
    first_id = first.get_attribute("data-finding")
    page.keyboard.press("a")
    expect(page.locator(f"#finding-{first_id}")).to_have_class(re.compile(r"\bis-accepted\b"))
    expect(page.locator("#review-status")).to_contain_text("Will be redacted")
    assert Finding.objects.filter(run=run, status="accepted").count() == accepted_before + 1

    # The missed SSN: select it with the mouse, choose the kind, add it. An emoji comes before it in the text.
    _select_with_the_mouse(page, MISSED_SSN)
    addbar = page.locator("#addbar")
    expect(addbar).to_be_visible()
    expect(page.locator("#add-quote")).to_have_text(MISSED_SSN)
    addbar.get_by_label("Kind of the selected text").select_option(label="Social Security number")
    shot("add-selection")
    addbar.get_by_role("button", name="Add").click()
    expect(page.locator("mark.pii-US_SSN.is-accepted", has_text=MISSED_SSN)).to_have_count(1)
    expect(page.locator("#review-status")).to_contain_text("Added. Will be redacted")
    added = Finding.objects.get(run=run, recognizer="reviewer")
    text = added.example.input
    assert text[added.start : added.end] == MISSED_SSN and text.startswith("🙂")

    # A false positive: the company's support line is not personal data. Click it, then r rejects it.
    for mark in page.locator("mark.pii-PHONE_NUMBER", has_text=SUPPORT_LINE).all():
        mark.click()
        current = page.locator(".rv-finding.is-current")
        page.keyboard.press("r")
        expect(page.locator(f"#finding-{current.get_attribute('data-finding')}")).to_have_class(
            re.compile(r"\bis-rejected\b")
        )
    rejected = Finding.objects.filter(run=run, status="rejected")
    assert rejected.count() >= 1 and set(rejected.values_list("entity_type", flat=True)) == {"PHONE_NUMBER"}
    shot("decided")

    # Every email at once, then everything left.
    side = page.get_by_role("complementary", name="Progress and decisions for many findings")
    side.get_by_label("Kind").select_option(label="Email address")
    side.get_by_role("button", name="Redact all matching").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, redact all matching").click()
    expect(page.locator(".messages")).to_contain_text(re.compile(r"\d+ email address findings? will be redacted\."))
    assert not Finding.objects.filter(run=run, entity_type="EMAIL_ADDRESS", status="pending").exists()
    shot("bulk-emails")
    side = page.get_by_role("complementary", name="Progress and decisions for many findings")
    side.get_by_label("Kind").select_option(label="Every kind")
    side.get_by_role("button", name="Redact all matching").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, redact all matching").click()
    expect(page.locator("#review-left")).to_contain_text("Every finding is decided.")

    # Approve on the summary page, then read the redacted version.
    page.get_by_role("link", name="Summary and approval").click()
    expect(page.locator("#by-type")).to_contain_text("Social Security number")
    shot("summary-decided")
    page.get_by_role("button", name="Approve and make the redacted version").click()
    expect(page.get_by_role("heading", name=re.compile(r"Clinic tickets\s+· version 2"))).to_be_visible()
    expect(page.locator("section.privacy-panel")).to_contain_text("Redacted and approved by a privacy reviewer")
    expect(page.locator(".messages")).to_contain_text("personal data replaced and approved")
    body = page.locator("main").inner_text()
    for value in [MISSED_SSN, *ssns, *emails]:
        assert value not in body, value
    assert "<US_SSN>" in body and SUPPORT_LINE in body  # SSNs became tags; the support line was kept
    shot("approved-version")

    new = DatasetVersion.objects.get(dataset=version.dataset, number=2)
    assert new.privacy == DatasetVersion.Privacy.APPROVED
    stored = json.dumps(list(new.examples.values("input", "target", "metadata")), ensure_ascii=False)
    for value in [MISSED_SSN, *ssns, *emails]:
        assert value not in stored, value
    assert "🙂 " in stored and "the old chart still lists <US_SSN> beside" in stored
