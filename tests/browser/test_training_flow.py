"""An engineer launches LoRA training on an approved version, watches it learn, cancels a second job and downloads
the adapter: a real browser, a real Celery worker, a real (tiny, randomly initialised) Llama trained on CPU."""

from __future__ import annotations

import re
import zipfile

import pytest
from playwright.sync_api import expect

from curation import demo
from curation import services as curation_services
from curation.models import DatasetVersion, RedactionRun
from curation.services import redaction as services_redaction
from tests.browser.conftest import log_in
from tests.conftest import wait_for
from training.forms import human_count
from training.models import TrainedModel, TrainingJob

# Enough steps (a few hundredths of a second each on CPU) that the page sees the curve grow between two polls.
MAX_STEPS = 400  # long enough that the job is still training while the chart is watched


def _approved_demo_version(tmp_path, reviewer) -> DatasetVersion:
    """40 demo tickets imported, personal data detected, every finding accepted and the version approved."""
    path = demo.write_tickets(tmp_path / "tickets.jsonl", count=40)
    upload = curation_services.dataset_import(
        path=path,
        dataset_name="Support tickets",
        mapping={"input": "customer_message", "target": "agent_reply", "group": "segment"},
    )
    run = services_redaction.redaction_run_start(version=upload.version, actor=reviewer)
    # The worker also receives this run once the start commits; whichever claims it first detects, the other skips.
    services_redaction.redaction_run_execute(run_id=run.pk)
    wait_for(lambda: RedactionRun.objects.get(pk=run.pk).status == RedactionRun.Status.REVIEW, timeout=120)
    run.refresh_from_db()
    services_redaction.findings_bulk_decide(run=run, actor=reviewer, status="accepted")
    return services_redaction.redaction_run_approve(run=run, actor=reviewer)


def _fill_launch_form(page, version: DatasetVersion, base_model, *, max_steps: int) -> None:
    page.get_by_label("Dataset version", exact=True).select_option(
        label=f"Support tickets · version {version.number} (40 rows, Instruction / response)"
    )
    page.get_by_label("Base model", exact=True).select_option(
        label=f"tiny-llama ({human_count(base_model.parameter_count)} parameters, {base_model.architecture})"
    )
    page.get_by_label("Quick").check()
    page.get_by_text("Advanced settings").click()
    page.get_by_label("Maximum steps", exact=True).fill(str(max_steps))
    page.get_by_label("Maximum sequence length", exact=True).fill("64")
    page.get_by_label("Batch size", exact=True).fill("2")
    page.get_by_label("Checkpoint every (steps)", exact=True).fill("10")


def _points(page) -> int:
    return int(page.locator("#loss-chart").get_attribute("data-points") or 0)


@pytest.mark.browser
@pytest.mark.worker
def test_engineer_launches_watches_cancels_and_downloads(
    live_server, celery_worker_proc, make_user, tiny_base_model, page, screenshots, tmp_path
):
    screenshot = screenshots("training-")
    make_user("engineer", username="erin", first_name="Erin", last_name="Engineer")
    version = _approved_demo_version(tmp_path, make_user("privacy_reviewer", username="pat"))
    assert version.privacy == DatasetVersion.Privacy.APPROVED

    log_in(page, "erin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Training").click()
    expect(page.get_by_role("heading", name="Training jobs")).to_be_visible()
    page.get_by_role("link", name="New training job").click()

    # The form: presets as cards, the preset's values shown in the empty advanced fields, a live estimate.
    expect(page.get_by_role("heading", name="New training job")).to_be_visible()
    _fill_launch_form(page, version, tiny_base_model, max_steps=MAX_STEPS)
    expect(page.get_by_label("LoRA rank (r)")).to_have_attribute("placeholder", "8")
    expect(page.locator('#estimate [data-part="memory"]')).to_have_text(re.compile(r"[0-9.]+ (MiB|GiB)"))
    expect(page.locator('#estimate [data-part="time"]')).not_to_be_empty()
    screenshot("launch-form")
    # Keyboard, not mouse: right after a full-page screenshot, headless Chromium drops the next click while a
    # number field has the focus (the form does submit with a click when no screenshot is taken, as below).
    page.get_by_role("button", name="Start training").press("Enter")

    # The job page: it waits, then trains; the loss chart gets points as the worker reports them.
    expect(page.locator(".messages")).to_contain_text("is launched")
    first = TrainingJob.objects.order_by("pk").last()
    assert first.config["max_steps"] == MAX_STEPS and first.config["checkpoint_every"] == 10
    expect(page.locator("#job-status")).to_have_text("Training", timeout=120_000)
    expect(page.locator("#loss-chart")).not_to_have_attribute("data-points", "0", timeout=60_000)
    seen = _points(page)
    page.evaluate("window.sameDocument = true")
    # One expression reads both, so the reload at the end of the job cannot fall between the two checks; the
    # chart must grow by a poll of this same page, not by reloading it. (A function, not an expression: Playwright
    # evaluates an expression with eval, which the page's Content-Security-Policy refuses.)
    page.wait_for_function(
        "(seen) => window.sameDocument === true && Number(document.getElementById('loss-chart').dataset.points) > seen",
        arg=seen,
        timeout=30_000,
    )
    expect(page.locator("#job-progress")).to_contain_text(re.compile(rf"step \d+ of {MAX_STEPS}"))
    screenshot("training")

    # A second job waits behind the first (one worker) and is cancelled.
    page.goto("/training/new/")
    _fill_launch_form(page, version, tiny_base_model, max_steps=20)
    page.get_by_role("button", name="Start training").click()
    # Normally still waiting; on a fast machine the first job may be done and the worker already training this one.
    expect(page.locator("#job-status")).to_have_text(re.compile("Waiting for a worker|Training"))
    second = TrainingJob.objects.order_by("pk").last()
    assert second.pk != first.pk
    page.goto("/training/queue/")
    expect(page.locator("main")).to_contain_text(f"Job #{second.pk}")
    screenshot("queue")
    page.goto(f"/training/jobs/{second.pk}/")
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel job").click()
    expect(page.locator("#job-status")).to_have_text("Cancelled", timeout=60_000)
    assert TrainingJob.objects.get(pk=second.pk).status == TrainingJob.Status.CANCELLED
    screenshot("cancelled")

    # The first job finishes; the page reloads itself into its final state.
    page.goto(f"/training/jobs/{first.pk}/")
    expect(page.locator("#job-status")).to_have_text("Finished", timeout=180_000)
    expect(page.get_by_text("Training finished")).to_be_visible()
    expect(page.locator("#loss-chart")).not_to_have_attribute("data-points", "0")
    screenshot("finished")
    page.goto("/training/")
    screenshot("job-list")

    # Its trained model, and the adapter as a zip.
    page.goto(f"/training/jobs/{first.pk}/")
    trained = TrainedModel.objects.get(job=first)
    page.get_by_role("link", name=trained.name).click()
    expect(page.get_by_role("heading", name=re.compile(re.escape(trained.name)))).to_be_visible()
    expect(page.locator("main")).to_contain_text("adapter_model.safetensors")
    screenshot("model")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download adapter (.zip)").click()
    download = download_info.value
    assert download.suggested_filename == f"{trained.name}.zip"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
    assert {"adapter_model.safetensors", "adapter_config.json"} <= names
    assert names == {entry["name"] for entry in trained.files}
