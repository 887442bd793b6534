"""What a new curator tripped over (issue 13), in a real browser: exports of an unreviewed version, the upload
form's errors, the label column, what differs inside duplicate groups, the message after a step, and the privacy
state of each dataset. Screenshots: var/screenshots/newuser-curation-*.png.
"""

import re

import pytest
from playwright.sync_api import expect

from curation import services
from curation.models import DatasetVersion, DedupeRun
from curation.services import redaction as services_redaction

TICKETS = (
    "question,answer,category\n"
    "Where is my refund for order 1001?,We sent the refund on Monday; it takes 3 to 5 days.,billing\n"
    "My invoice shows the wrong amount,Thanks; we corrected the invoice and emailed you a new copy.,billing\n"
    "How do I change my delivery address?,Open your order and choose Change address before it ships.,delivery\n"
    "I cannot sign in since yesterday,Use Forgot password on the sign-in page.,login\n"
    "Can I pay by bank transfer?,Yes: choose Bank transfer at checkout.,billing\n"
    # Near duplicates of the first two rows: a changed order number, a changed word.
    "Where is my refund for order 1002?,We sent the refund on Monday; it takes 3 to 5 days.,billing\n"
    "My invoice shows the wrong total,Thanks; we corrected the invoice and emailed you a new copy.,billing\n"
)


def _login(page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-for-tests-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def _import(actor, tmp_path, name: str, **mapping):
    path = tmp_path / f"{name.replace(' ', '-')}.csv"
    path.write_text(TICKETS, encoding="utf-8")
    upload = services.dataset_import(
        path=str(path),
        dataset_name=name,
        actor=actor,
        mapping=mapping or {"input": "question", "target": "answer", "label": "category"},
    )
    return upload.version


def _approve(version: DatasetVersion) -> DatasetVersion:
    # Stands for a finished privacy review (the review itself has its own browser test, test_review_flow.py).
    DatasetVersion.objects.filter(pk=version.pk).update(privacy=DatasetVersion.Privacy.APPROVED)
    version.refresh_from_db()
    return version


@pytest.mark.browser
def test_export_buttons_of_an_unreviewed_version_are_off_with_the_reason(
    live_server, make_user, page, screenshots, tmp_path
):
    shot = screenshots("newuser-curation-export-")
    curator = make_user("curator", username="casey", first_name="Casey", last_name="Curator")
    raw = _import(curator, tmp_path, "Raw tickets")
    approved = _approve(_import(curator, tmp_path, "Approved tickets"))
    _login(page, "casey")

    page.goto(f"/datasets/versions/{raw.pk}/")
    actions = page.locator(".page-head .actions")
    for name in ("Download JSON Lines", "Download CSV"):
        expect(actions.get_by_role("button", name=name)).to_be_disabled()
        expect(actions.get_by_role("link", name=name)).to_have_count(0)
    why = page.locator("#export-why")
    expect(why).to_contain_text("Downloads are off: this version has not passed privacy review")
    expect(actions.get_by_role("button", name="Download CSV")).to_have_attribute("aria-describedby", "export-why")
    shot("disabled-with-reason")

    # Typed or bookmarked, the export address answers the page with the message: no file is saved.
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    response = page.goto(f"/datasets/versions/{raw.pk}/export.csv")
    assert response.status == 409
    assert "content-disposition" not in response.headers
    expect(page.get_by_role("alert")).to_contain_text("Nothing was downloaded.")
    expect(page.get_by_role("alert")).to_contain_text("has not passed privacy review")
    expect(page.get_by_role("heading", name=re.compile("Raw tickets"))).to_be_visible()
    shot("refused-page")
    assert downloads == []

    # An approved version downloads its rows, named after the dataset.
    page.goto(f"/datasets/versions/{approved.pk}/")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == "approved-tickets-v1.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_text(encoding="utf-8").count("\n") == 8  # the header and 7 rows, not a web page
    expect(page.locator("#export-why")).to_have_count(0)
    shot("approved-downloads")


@pytest.mark.browser
def test_upload_says_when_no_file_is_chosen_and_keeps_the_form_after_a_server_error(
    live_server, make_user, page, screenshots, tmp_path, settings
):
    shot = screenshots("newuser-curation-upload-")
    make_user("curator", username="casey", first_name="Casey", last_name="Curator")
    settings.TUNINGDESK_MAX_ROW_BYTES = 64 * 1024
    long_line = tmp_path / "long-line.csv"
    long_line.write_text("question,answer\n" + "x" * (100 * 1024) + ",answer\n", encoding="utf-8")
    _login(page, "casey")

    page.goto("/datasets/uploads/new/")
    page.get_by_label("Dataset name").fill("Support tickets")
    page.get_by_label("Classification").check()
    page.get_by_role("button", name="Upload").click()
    field = page.locator("#field-file")
    expect(field.get_by_text("Choose a file to upload.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/datasets/uploads/new/$"))  # nothing was sent
    shot("no-file")

    # A file the server refuses: the message names the row limit; the fields and the chosen file's name stay.
    page.get_by_label("File", exact=True).set_input_files(str(long_line))
    expect(field.get_by_text("Choose a file to upload.")).to_be_hidden()
    page.get_by_role("button", name="Upload").click()
    expect(field).to_contain_text("Line 2 is longer than the limit of 64 KB (65,536 bytes) per row")
    expect(page.get_by_label("Dataset name")).to_have_value("Support tickets")
    expect(page.get_by_label("Classification")).to_be_checked()
    expect(page.locator("#file-chosen-before")).to_contain_text("You chose “long-line.csv”")
    expect(page.locator("#file-chosen-before")).to_contain_text("choose it again")
    shot("error-keeps-fields")


@pytest.mark.browser
def test_curator_sees_labels_what_differs_in_duplicates_and_a_message_after_each_step(
    live_server, make_user, page, screenshots, tmp_path
):
    shot = screenshots("newuser-curation-curator-")
    curator = make_user("curator", username="casey", first_name="Casey", last_name="Curator")
    version = _import(curator, tmp_path, "Support tickets")
    _login(page, "casey")

    # The label column of instruction/response data: its card, its column, its filter.
    page.goto(f"/datasets/versions/{version.pk}/")
    card = page.locator(".stat-card").filter(has=page.get_by_role("heading", name="Labels"))
    expect(card.get_by_role("row", name="billing 5")).to_be_visible()
    expect(card.get_by_role("row", name="login 1")).to_be_visible()
    table = page.locator("table.rows")
    expect(table.get_by_role("columnheader", name="Target")).to_be_visible()
    expect(table.get_by_role("columnheader", name="Label")).to_be_visible()
    expect(table.get_by_role("row").filter(has_text="I cannot sign in")).to_contain_text("login")
    shot("label-card-and-column")

    # Near duplicates: what differs between the rows of a group is marked.
    run = services.dedupe_run_start(version=version, actor=curator, mode=DedupeRun.Mode.NEAR, threshold=0.6)
    services.dedupe_run_execute(run_id=run.pk)
    page.goto(f"/datasets/dedupe/{run.pk}/")
    refund = page.locator(".dup-group").filter(has_text="order 1001")
    expect(refund.locator(".dup-text mark.diff")).to_have_text(["1001", "1002"])
    invoice = page.locator(".dup-group").filter(has_text="wrong amount")
    expect(invoice.locator(".dup-text mark.diff")).to_have_text(["amount", "total"])
    expect(refund.locator(".dup-target mark.diff")).to_have_count(0)  # the answers are the same
    shot("dedupe-differences-marked")

    # Applying a step says what it made.
    page.get_by_role("button", name="Apply and make the new version").click()
    expect(page.locator(".messages")).to_contain_text("duplicate rows removed")
    shot("dedupe-applied-message")
    page.get_by_text("Filter by quality").click()
    page.get_by_label("Shortest allowed (characters)").fill("80")
    page.get_by_role("button", name="Make the filtered version").click()
    expect(page.locator(".messages")).to_contain_text("2 rows removed, 3 kept")
    shot("filter-applied-message")


@pytest.mark.browser
def test_dataset_list_shows_the_privacy_state_of_each_dataset(live_server, make_user, page, screenshots, tmp_path):
    shot = screenshots("newuser-curation-dataset-list-")
    curator = make_user("curator", username="casey", first_name="Casey", last_name="Curator")
    reviewer = make_user("privacy_reviewer", username="riley")
    _import(curator, tmp_path, "Raw tickets")
    services_redaction.redaction_run_start(version=_import(curator, tmp_path, "Tickets in review"), actor=reviewer)
    _approve(_import(curator, tmp_path, "Clean tickets"))
    _approve(_import(curator, tmp_path, "Reimported tickets"))
    _import(curator, tmp_path, "Reimported tickets")
    _login(page, "casey")

    page.goto("/datasets/")
    expect(page.get_by_role("columnheader", name="Privacy review")).to_be_visible()

    def row(name: str):
        return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))

    expect(row("Raw tickets")).to_contain_text("Not reviewed")
    expect(row("Tickets in review")).to_contain_text("Review in progress")
    expect(row("Clean tickets")).to_contain_text("Approved")
    expect(row("Reimported tickets")).to_contain_text("Not reviewed · version 1 is approved")
    shot("privacy-states")
