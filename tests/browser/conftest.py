"""A real browser for the UI flows: Debian's Chromium driven by Playwright (never `playwright install`).

These tests must run wherever the suite runs: a missing browser is a failure with a clear message, not a skip.
"""

import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
PASSWORD = "pw-for-tests-123"  # every user from tests.factories.UserFactory has it


def log_in(page, username: str) -> None:
    """Sign in through the login form and wait for the home page's greeting."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=re.compile("^Hello"))).to_be_visible()


@pytest.fixture
def browser(monkeypatch):
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}. Install it with `apt-get install -y chromium`; "
            "the browser tests must run, not skip.",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The Python package `playwright` is missing: install requirements.txt.", pytrace=False)
    # Playwright's sync API keeps an event loop in this thread; Django would then refuse the ORM calls the
    # test makes to check its results, although they run one at a time like any other test.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # With Playwright's loop in this thread, the test's ORM calls get a connection of their own (Django
            # keeps connections per context then); close it here, or PostgreSQL cannot drop the test database.
            from django.db import connections

            connections.close_all()


@pytest.fixture
def page(browser, live_server):
    """A fresh page on the live server; JavaScript errors and alert boxes fail the test."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))

    def on_dialog(dialog):
        problems.append(f"Unexpected dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def screenshots(page):
    """Make a camera: ``shot = screenshots("dedupe-")``; ``shot("login")`` saves var/screenshots/dedupe-01-login.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def camera(prefix: str = ""):
        count = 0

        def take(name: str) -> Path:
            nonlocal count
            count += 1
            path = SCREENSHOTS / f"{prefix}{count:02d}-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            return path

        return take

    return camera
