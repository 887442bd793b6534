"""A curator uploads a CSV of support tickets, maps its columns, checks, imports and browses it."""

import re

import pytest
from playwright.sync_api import expect

from curation import services
from curation.models import DatasetVersion, DedupeRun, Upload
from tests.browser.conftest import log_in

TICKETS = (
    "\n".join(
        [
            "Customer message,Agent answer,Team,Priority",
            '"Hello, I was charged twice for order 4471. Can you refund the second payment?",'
            '"Sorry about that! We refunded the second payment today; it shows in 3 to 5 days.",billing,high',
            "Where is my parcel? Tracking has not changed since Monday.,"
            "The carrier had a delay; your parcel arrives tomorrow.,delivery,normal",
            "How do I reset my password?,"
            '"Choose Forgot password on the login page, then follow the link in the email.",accounts,low',
            "The kettle I bought arrived broken,,billing,high",  # no answer: rejected
            "\"<script>alert('x')</script> My invoice shows the wrong VAT number.\","
            "We corrected the VAT number and sent you a new invoice.,billing,normal",
            "Can I change the delivery address after ordering?,"
            '"Yes, until the parcel ships: open the order and choose Change address.",delivery,low',
        ]
    )
    + "\n"
)


@pytest.mark.browser
def test_curator_uploads_checks_imports_and_browses(
    live_server, celery_worker_proc, make_user, page, screenshots, tmp_path
):
    screenshot = screenshots()
    make_user("curator", username="casey", first_name="Casey", last_name="Curator")
    csv_path = tmp_path / "support-tickets.csv"
    csv_path.write_text(TICKETS, encoding="utf-8")

    # Log in.
    page.goto("/login/")
    screenshot("login")
    page.get_by_label("Username").fill("casey")
    page.get_by_label("Password").fill("pw-for-tests-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hello, Casey Curator")).to_be_visible()
    screenshot("home")

    # Upload the file.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Upload").click()
    page.get_by_label("Dataset name").fill("Support tickets")
    page.get_by_label("Instruction / response").check()
    page.get_by_label("File", exact=True).set_input_files(str(csv_path))
    screenshot("upload-form")
    page.get_by_role("button", name="Upload").click()

    # Map the columns; the preview follows each change.
    expect(page.get_by_role("heading", name="Which column holds what?")).to_be_visible()
    preview = page.locator("#preview")
    page.get_by_label("Input (prompt or text)").select_option("Customer message")
    expect(preview).to_contain_text("needs a target (response) column")
    page.get_by_label("Target (response)").select_option("Agent answer")
    page.get_by_label("Group").select_option("Team")
    expect(preview.locator("table")).to_contain_text("Where is my parcel?")
    expect(preview).to_contain_text("We refunded the second payment today")
    expect(preview).to_contain_text("Will be rejected")  # the ticket without an answer
    expect(preview).to_contain_text("Priority")  # kept as metadata
    expect(preview).to_contain_text("<script>alert('x')</script>")  # shown as text, never run
    screenshot("mapping-preview")

    # Check the rows: a progress bar, then the report.
    page.get_by_role("button", name="Check rows").click()
    screenshot("checking")
    expect(page.get_by_role("heading", name="Check finished: your decision")).to_be_visible(timeout=90_000)
    expect(page.locator(".counts")).to_contain_text("5 good rows")
    expect(page.locator(".counts")).to_contain_text("1 rejected rows")
    problems = page.get_by_role("table")
    expect(problems).to_contain_text("“Agent answer” is empty.")
    expect(problems).to_contain_text("5")  # the line of the ticket without an answer
    expect(page.get_by_role("link", name="Download report of rejected rows")).to_be_visible()
    screenshot("checked")

    # Import the good rows.
    page.get_by_role("button", name="Import 5 good rows").click()
    expect(page.get_by_role("heading", name=re.compile(r"Support tickets\s+· version 1"))).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Imported 5 rows")
    upload = Upload.objects.get()
    assert upload.status == Upload.Status.IMPORTED
    assert upload.version.status == DatasetVersion.Status.READY and upload.version.row_count == 5
    rows = page.locator("table.rows tbody tr")
    expect(rows).to_have_count(5)
    screenshot("version")

    # Search, then filter.
    page.get_by_label("Search the text").fill("refund")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("charged twice")
    screenshot("search")
    page.get_by_label("Search the text").fill("")
    page.get_by_label("Group", exact=True).select_option("delivery")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(2)
    expect(page.locator("table.rows")).not_to_contain_text("password")
    screenshot("filter")

    # Open one example.
    rows.first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Row \d+$"))).to_be_visible()
    expect(page.locator("body")).to_contain_text("Where is my parcel?")
    expect(page.locator("dl.kv")).to_contain_text("Priority")
    expect(page.locator("dl.facts")).to_contain_text("delivery")
    screenshot("example")


@pytest.mark.browser
def test_curator_reviews_and_removes_duplicates(
    live_server, celery_worker_proc, make_user, page, screenshots, tmp_path
):
    screenshot = screenshots("dedupe-")
    curator = make_user("curator", username="casey")
    path = tmp_path / "tickets.csv"
    # Each ticket twice, the second time in other case and punctuation: duplicates for a reader, not for a byte check.
    body = TICKETS.split("\n", 1)[1]
    path.write_text(TICKETS + body.upper().replace(".", "!"), encoding="utf-8")
    upload = services.dataset_import(
        path=path,
        dataset_name="Doubled tickets",
        actor=curator,
        mapping={"input": "Customer message", "target": "Agent answer", "group": "Team"},
    )
    version = upload.version
    assert version.row_count == 10

    log_in(page, "casey")
    page.goto(f"/datasets/versions/{version.pk}/")
    page.get_by_text("Remove duplicates").click()
    page.get_by_label("Exact (same text after normalising case, spaces and punctuation)").check()
    page.get_by_role("button", name="Look for duplicates").click()

    # The page polls the worker's progress, then shows the groups side by side.
    expect(page.get_by_role("heading", name="Duplicates in version 1")).to_be_visible()
    screenshot("progress")
    expect(page.locator("fieldset.dup-group")).to_have_count(5, timeout=90_000)
    screenshot("groups")
    first_group = page.locator("fieldset.dup-group").first
    boxes = first_group.get_by_role("checkbox")
    expect(boxes.nth(0)).to_be_checked()
    expect(boxes.nth(1)).not_to_be_checked()
    boxes.nth(1).check()  # keep both rows of the first group
    page.get_by_role("button", name="Apply and make the new version").click()

    expect(page.get_by_role("heading", name=re.compile(r"Doubled tickets\s+· version 2"))).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("4 duplicate rows removed")
    expect(page.locator("table.rows tbody tr")).to_have_count(6)
    screenshot("result")
    run = DedupeRun.objects.get()
    assert run.status == DedupeRun.Status.APPLIED and run.result_version.row_count == 6
