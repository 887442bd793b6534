"""What a new engineer trips over in training, in a real browser at 1366 px: the estimate refuses an encoder for
instruction data before submit, long names fit the launch form's selects, the "waiting" notice goes once a real
worker starts the job, and the trained model's page offers Evaluate (the model chosen) and Try it (a real answer
of the tiny Llama with its adapter)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.conftest import wait_for
from training import services as training
from training.models import TrainedModel, TrainingJob
from training.tinymodels import minilm_path

LONG_NAME = "Customer support tickets from the Nordic clinics and pharmacies, second half of 2026, cleaned twice"
PROMPT = "Ticket 3: my billing page shows an error since the update."


@pytest.fixture(autouse=True)
def _urls_loaded():
    """Load the URL configuration here rather than in the browser's first page load, which a busy machine can
    push past the page's 20 s timeout."""
    reverse("home")


def _log_in(page, username: str) -> None:
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, username)


def _named_version(approved_version, name: str):
    version = approved_version(rows=24)
    version.dataset.name = name
    version.dataset.save(update_fields=["name"])
    return version


# The width the selected option's text needs in the select's own font, beside the width the select shows.
_TEXT_FITS = """(id) => {
  const select = document.getElementById(id);
  const context = document.createElement("canvas").getContext("2d");
  context.font = getComputedStyle(select).font;
  const text = select.options[select.selectedIndex].text;
  return {text: text, needed: context.measureText(text).width, shown: select.clientWidth - 32,
          title: select.options[select.selectedIndex].title,
          pageFits: document.documentElement.scrollWidth <= document.documentElement.clientWidth};
}"""


@pytest.mark.browser
def test_estimate_refuses_an_encoder_for_instruction_data_and_long_names_fit(
    live_server, make_user, approved_version, tiny_base_model, page, screenshots
):
    shot = screenshots("newuser-train-launch-")
    engineer = make_user("engineer", username="erin")
    encoder = training.base_model_register(name="all-MiniLM-L6-v2", source=str(minilm_path()), actor=engineer)
    version = _named_version(approved_version, LONG_NAME)

    _log_in(page, "erin")
    page.goto("/training/new/")
    page.get_by_label("Dataset version", exact=True).select_option(str(version.pk))
    page.get_by_label("Base model", exact=True).select_option(str(encoder.pk))

    # Before submit: the estimate box and the field say why, in plain words; no memory figure is offered.
    errors = page.locator('#estimate [data-part="errors"]')
    expect(errors).to_contain_text("No estimate until these are fixed")
    expect(errors).to_contain_text("all-MiniLM-L6-v2 cannot be trained to write answers (instruction/response data)")
    expect(page.locator("#field-base_model .error")).to_contain_text("can only learn to pick a label")
    expect(page.locator("#field-base_model .error")).to_contain_text("such as tiny-llama")
    expect(page.locator('#estimate [data-part="result"]')).to_be_hidden()
    shot("estimate-refuses-encoder")

    # A model that can: the estimate comes back and the message next to the field goes.
    page.get_by_label("Base model", exact=True).select_option(str(tiny_base_model.pk))
    expect(page.locator('#estimate [data-part="memory"]')).to_have_text(re.compile(r"[0-9.]+ (MiB|GiB)"))
    expect(page.locator("#field-base_model .error")).to_have_count(0)

    # The long name is cut so the rows and the task stay in view; the whole name is the option's title.
    fit = page.evaluate(_TEXT_FITS, "id_dataset_version")
    assert fit["text"].endswith("(24 rows, Instruction / response)"), fit
    assert fit["needed"] <= fit["shown"], fit
    assert fit["title"].startswith(LONG_NAME) and fit["pageFits"], fit
    shot("long-names-in-selects")

    # Submitting the encoder anyway: the same words, from the same check, and nothing is queued.
    page.get_by_label("Base model", exact=True).select_option(str(encoder.pk))
    expect(errors).to_contain_text("cannot be trained to write answers")
    page.get_by_role("button", name="Start training").press("Enter")
    expect(page.locator("#id_base_model_error")).to_contain_text("all-MiniLM-L6-v2 cannot be trained to write answers")
    assert not TrainingJob.objects.exists()


@pytest.mark.browser
@pytest.mark.worker
def test_waiting_notice_goes_when_the_job_runs_and_the_model_page_evaluates_and_answers(
    live_server, celery_worker_proc, make_user, approved_version, tiny_base_model, page, screenshots, request
):
    shot = screenshots("newuser-train-job-")
    engineer = make_user("engineer", username="erin")
    version = _named_version(approved_version, "Support tickets")
    # A long job keeps the one worker busy, so the next job waits in the queue.
    blocker = training.training_job_create(
        version=version,
        base_model=tiny_base_model,
        actor=engineer,
        overrides={"max_steps": 5000, "max_seq_length": 64, "batch_size": 2, "checkpoint_every": 0},
    )

    def free_the_worker():  # also when the test fails: the worker serves the tests after this one
        job = TrainingJob.objects.get(pk=blocker.pk)
        if job.is_active:
            training.training_job_cancel(job=job, actor=engineer)

    request.addfinalizer(free_the_worker)
    wait_for(lambda: TrainingJob.objects.get(pk=blocker.pk).status == TrainingJob.Status.RUNNING, timeout=120)

    _log_in(page, "erin")
    page.goto("/training/new/")
    page.get_by_label("Dataset version", exact=True).select_option(str(version.pk))
    page.get_by_label("Base model", exact=True).select_option(str(tiny_base_model.pk))
    page.get_by_text("Advanced settings").click()
    # Enough learning that the tiny Llama writes the replies it saw (a few steps at the preset's rate leave it
    # answering only line breaks, which the page reports as "no text").
    page.get_by_label("Maximum steps", exact=True).fill("40")
    page.get_by_label("Learning rate", exact=True).fill("0.005")
    page.get_by_label("LoRA rank (r)", exact=True).fill("16")
    page.get_by_label("Maximum sequence length", exact=True).fill("64")
    page.get_by_label("Batch size", exact=True).fill("4")
    expect(page.locator('#estimate [data-part="memory"]')).not_to_be_empty()
    page.get_by_role("button", name="Start training").press("Enter")

    expect(page.locator("#job-status")).to_have_text("Waiting for a worker")
    notice = page.locator("#queued-notice")
    expect(notice).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("is launched")
    expect(page.locator(".messages")).not_to_contain_text("queued")
    job = TrainingJob.objects.exclude(pk=blocker.pk).get()
    shot("job-waiting")

    # The worker is freed; the page's poll (not a reload) shows the job training and the notice gone.
    page.evaluate("() => { window.sameDocument = true; }")
    free_the_worker()
    expect(page.locator("#job-status")).to_have_text(re.compile("Training|Finished"), timeout=120_000)
    if page.evaluate("() => window.sameDocument === true"):
        expect(notice).to_be_hidden()
    else:  # finished in one poll: the reloaded page has no notice at all
        expect(notice).to_have_count(0)
    expect(page.get_by_text("Waiting for a free worker")).to_be_hidden()
    shot("job-running-no-waiting-notice")

    expect(page.locator("#job-status")).to_have_text("Finished", timeout=180_000)
    assert TrainingJob.objects.get(pk=job.pk).status == TrainingJob.Status.SUCCEEDED
    trained = TrainedModel.objects.get(job=job)
    page.get_by_role("link", name=trained.name).click()
    expect(page.get_by_role("heading", name=re.compile(re.escape(trained.name)))).to_be_visible()

    # Try it: a real answer of the adapter, on the page.
    page.get_by_label("Your message").fill(PROMPT)
    page.get_by_role("button", name="Answer").click()
    answer = page.locator('#try-answer [data-part="answer"]')
    expect(answer).to_be_visible(timeout=60_000)
    expected = training.trained_model_try(trained=trained, prompt=PROMPT).text
    assert expected.strip()
    expect(answer).to_have_text(expected)  # greedy decoding: the page shows the model's own answer
    expect(page.get_by_label("Your message")).to_have_value(PROMPT)
    shot("model-try-it")

    # Evaluate: the evaluation form with this model (and its data) already chosen.
    page.get_by_role("link", name="Evaluate", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("evaluation", re.I)).first).to_be_visible()
    expect(page.get_by_label("Model", exact=True)).to_have_value(trained.name)
    expect(page.get_by_label("Dataset version", exact=True)).to_have_value(str(version.pk))
    shot("evaluate-form-preselected")
