"""What a new user meets first: each role's home page as its work queue, the styled 403 and 404 pages, and the
confirmation asked before an action that cannot be undone (cancel keeps everything as it was, yes acts)."""

import re

import pytest
from playwright.sync_api import expect

from evaluation.models import StageChange
from tests.accounts import home_work
from training.models import TrainedModel

PASSWORD = "pw-for-tests-123"


def _sign_in(page, username: str) -> None:
    page.context.clear_cookies()
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Hello, "))).to_be_visible()


def _fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"


@pytest.mark.browser
def test_each_role_finds_its_work_on_the_home_page(live_server, make_user, page, screenshots):
    shot = screenshots("newuser-home-")
    page.set_viewport_size({"width": 1366, "height": 900})
    engineer = make_user("engineer", username="erin")
    alex = make_user("annotator", username="alex")
    blair = make_user("annotator", username="blair")
    make_user("annotation_reviewer", username="rhea")
    make_user("privacy_reviewer", username="pia")
    casey = make_user("curator", username="casey")
    make_user("manager", username="max")
    root = make_user("admin", username="ada")
    privacy = home_work.privacy_work()
    project = home_work.annotation_work(engineer=engineer, annotators=[alex, blair])
    home_work.curator_work(curator=casey)
    work = home_work.engineer_work(engineer=engineer)
    home_work.manager_work(actor=engineer)
    home_work.admin_work(actor=root)

    # Privacy reviewer: the review with undecided findings opens its queue.
    _sign_in(page, "pia")
    queue = page.locator("#queue-privacy")
    expect(queue).to_contain_text("1 review has findings to decide (3 findings in all)")
    expect(queue).to_contain_text("2 versions wait for a search for personal data")  # one failed: search again
    _fits(page)
    shot("privacy-reviewer")
    queue.get_by_role("link", name=str(privacy["run"].version)).click()
    expect(page).to_have_url(re.compile(rf"/datasets/privacy/{privacy['run'].pk}/review/"))

    # Annotator: the project with examples left, and their progress.
    _sign_in(page, "alex")
    queue = page.locator("#queue-annotate")
    expect(queue).to_contain_text("Ticket routing: 2 examples left for you; you answered 1 (33.3% of yours)")
    expect(queue.get_by_role("progressbar", name="Your progress in Ticket routing")).to_be_visible()
    expect(page.locator("#queue-disagreements")).to_have_count(0)
    shot("annotator")
    queue.get_by_role("link", name="Ticket routing").click()
    expect(page).to_have_url(re.compile(rf"/annotation/projects/{project.pk}/label/"))

    # Annotation reviewer: the disagreement waiting.
    _sign_in(page, "rhea")
    queue = page.locator("#queue-disagreements")
    expect(queue).to_contain_text("Ticket routing: 1 example where annotators disagree")
    shot("annotation-reviewer")
    queue.get_by_role("link", name="Ticket routing").click()
    expect(page).to_have_url(re.compile(rf"/annotation/projects/{project.pk}/review/"))

    # Curator: the import waiting for a decision, the versions not approved yet.
    _sign_in(page, "casey")
    queue = page.locator("#queue-curate")
    expect(queue).to_contain_text("1 import waits for your decision")
    expect(queue).to_contain_text("replies.csv into “Support replies”: 40 usable rows, 2 rejected")
    expect(queue).to_contain_text("privacy review under way")
    _fits(page)
    shot("curator")

    # Engineer: running and failed jobs, the model nobody evaluated, the candidate that passes the gate.
    _sign_in(page, "erin")
    queue = page.locator("#queue-engineer")
    expect(queue).to_contain_text("1 training job is running or waiting")
    expect(queue).to_contain_text("The worker ran out of GPU memory at step 12.")
    expect(queue).to_contain_text("1 trained model has no evaluation")
    expect(queue).to_contain_text("answers-v2 passes the gate of Client replies: it can be promoted")
    _fits(page)
    shot("engineer")
    queue.get_by_role("link", name="answers-unevaluated").click()
    expect(page).to_have_url(re.compile(rf"/training/models/{work['unevaluated'].pk}/"))

    # Manager: the KPI headline and the last promotion.
    _sign_in(page, "max")
    queue = page.locator("#queue-manager")
    expect(queue).to_contain_text("answers-v1 in production averages 4.10 points (1–5)")
    expect(queue).to_contain_text("best other: answers-v2 at 4.40 points (1–5)")
    expect(queue).to_contain_text("answers-v1 went into production for Client replies (erin)")
    shot("manager")

    # Admin: the failed task and the latest audit events.
    _sign_in(page, "ada")
    queue = page.locator("#queue-admin")
    expect(queue).to_contain_text("2 background tasks failed in the last 7 days")
    expect(queue).to_contain_text("Personal-data detection on Broken file")
    expect(queue).to_contain_text("The PII model could not be loaded.")
    expect(queue).to_contain_text("The worker ran out of GPU memory at step 12.")
    expect(queue).to_contain_text("ada · auth.login")  # the newest audit events: everyone's sign-in
    _fits(page)
    shot("admin")


@pytest.mark.browser
def test_forbidden_and_missing_pages_keep_the_menu_and_lead_home(live_server, make_user, page, screenshots):
    shot = screenshots("newuser-home-")
    make_user("annotator", username="alex")
    _sign_in(page, "alex")

    response = page.goto("/accounts/audit/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="You cannot open this page")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Annotate")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Writes and corrects target responses and labels")
    shot("403")
    page.get_by_role("link", name="Go to your home page").click()
    expect(page.get_by_role("heading", name="Hello, alex")).to_be_visible()

    response = page.goto("/annotation/projects/999999/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="There is nothing at this address")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    shot("404")

    # The API keeps its JSON errors.
    response = page.goto("/api/v1/no-such-thing/")
    assert response.status == 404 and response.headers["content-type"] == "application/json"


@pytest.mark.browser
def test_promotion_asks_first_cancel_keeps_the_model_where_it_was(live_server, make_user, page, screenshots):
    shot = screenshots("newuser-home-")
    engineer = make_user("engineer", username="erin")
    work = home_work.engineer_work(engineer=engineer)
    candidate = work["candidate"]
    _sign_in(page, "erin")
    page.goto(f"/evaluation/use-cases/{work['use_case'].slug}/")
    card = page.locator(f"#candidate-{candidate.pk}")
    expect(card).to_contain_text("Passes the gate")

    card.get_by_role("button", name="Promote to production").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Put answers-v2 into production for Client replies? answers-v1 will be archived")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    shot("confirm-promotion")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#production-model")).to_contain_text("answers-v1")
    assert TrainedModel.objects.get(pk=candidate.pk).stage == TrainedModel.Stage.CANDIDATE
    assert StageChange.objects.count() == 1  # only the promotion made while setting up

    # Escape closes it too, without acting.
    card.get_by_role("button", name="Promote to production").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert TrainedModel.objects.get(pk=candidate.pk).stage == TrainedModel.Stage.CANDIDATE

    card.get_by_role("button", name="Promote to production").click()
    dialog.get_by_role("button", name="Yes, promote to production").click()
    expect(page.locator(".messages")).to_contain_text("answers-v2 is now the production model for Client replies.")
    expect(page.locator("#production-model")).to_contain_text("answers-v2")
    shot("promoted-after-confirming")
    assert TrainedModel.objects.get(pk=candidate.pk).stage == TrainedModel.Stage.PRODUCTION
