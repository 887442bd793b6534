"""An admin reads the audit log as a new user meets it, at 1366 × 900 in Chromium: filters, readable values,
a table that fits the page, and the filtered list as a CSV file."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import AuditEvent
from accounts.services import audit_record


@pytest.mark.browser
def test_admin_filters_reads_and_exports_the_audit_log_at_1366(
    transactional_db, live_server, make_user, page, screenshots, tmp_path
):
    shot = screenshots("newuser-audit-")
    page.set_viewport_size({"width": 1366, "height": 900})
    page.set_default_timeout(60_000)  # a shared CI machine can be slow; the checks below do not depend on speed
    make_user("admin", username="ada", first_name="Ada", last_name="Admin")
    curator = make_user("curator", username="casey")
    engineer = make_user("engineer", username="erin_with_a_rather_long_username_for_the_column")
    audit_record(
        actor=curator,
        action="upload.map",
        obj=curator,
        before={"mapping": {"input": "question"}, "task_type": "sft"},
        after={
            "mapping": {"input": "question", "target": "answer", "label": "category", "group": "segment"},
            "task_type": "sft",
            "note": "x" * 400,  # a long value wraps inside its cell
        },
    )
    audit_record(
        actor=engineer,
        action="model.stage",
        obj=engineer,
        before={"stage": "candidate"},
        after={"stage": "production", "gate_passed": True, "checks": ["rougeL", "csat"]},
    )
    old = audit_record(actor=engineer, action="training.start", obj=engineer, after={"preset": "quick"})
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    page.goto("/login/", timeout=180_000)  # the server's first answer loads every app (slow on a busy machine)
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hello, Ada Admin")).to_be_visible()
    page.goto("/accounts/audit/")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    table = page.locator("table.audit-table")
    # Values read as words: "field: before → after", no Python or JSON brackets.
    expect(table).to_contain_text("stage: candidate → production")
    # (PostgreSQL keeps a JSON object's keys in its own order.)
    expect(table).to_contain_text("mapping: input: question → group: segment; input: question; label: category")
    expect(table).to_contain_text("gate passed: yes")
    expect(table).to_contain_text("checks: rougeL, csat")
    for raw in ("{'", '{"', "True", "['"):
        expect(table).not_to_contain_text(raw)
    # The page fits 1366 px: long names and values wrap instead of pushing the table wider.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    assert page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap'); return w.scrollWidth <= w.clientWidth; })()"
    )
    shot("all-entries")

    # Filter: this engineer, model actions, the last week; then a search.
    page.get_by_label("Person").select_option(label=engineer.username)
    page.get_by_label("Action").select_option(label="All model actions")
    page.get_by_label("From").fill((timezone.localdate() - timedelta(days=7)).isoformat())
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("1 entry match these filters.")).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("model.stage")
    expect(table).not_to_contain_text("upload.map")
    expect(page.get_by_label("Person")).to_have_value(str(engineer.pk))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot("filtered")

    page.goto("/accounts/audit/")
    page.get_by_label("Search").fill("CATEGORY")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("upload.map")
    shot("searched")

    # The CSV link downloads the filtered entries as a CSV file, not a page.
    with page.expect_download() as info:
        page.get_by_role("link", name="Download these entries as CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("audit-log-") and download.suggested_filename.endswith(".csv")
    path = tmp_path / "audit.csv"
    download.save_as(path)
    text = path.read_text(encoding="utf-8")
    assert not text.lstrip().startswith("<")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["when", "who", "action"]
    assert [row[2] for row in rows[1:]] == ["upload.map"]
    assert "task type: sft" in rows[1][6]
    assert AuditEvent.objects.filter(action="audit.export", actor__username="ada").exists()
