"""Evaluation as a new engineer meets it, at 1366 × 900 in Chromium: the reference beside each answer is what was
scored, a model that answered nothing is flagged (never "fair", never promoted), the comparison shows a model evaluated
on another version and fits the screen, and a candidate that fails the gate says why with no primary Promote button.

Evaluations run through the worker's service in this process, on the real tiny Llama or on the local
OpenAI-compatible server that stands in for a remote endpoint (outside the project). The candidate adapter's answers
are stored as the worker stores them (all empty, as in the report) and scored by the real scoring service.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import transaction
from playwright.sync_api import expect

from evaluation import services as evaluation
from evaluation.models import EvalRun, Prediction
from tests.browser.conftest import log_in
from tests.conftest import wait_for
from tests.evaluation.openai_server import OpenAIServer
from training.models import TrainedModel, TrainingJob

PASSWORD = "pw-for-tests-123"
CATEGORIES = ("category-login", "category-billing")


def _support_tickets(approved_version):
    """Question, answer and a category mapped as the label, like the support-ticket CSV of the report."""
    version = approved_version(rows=24, test=6)
    version.dataset.name = "Support tickets with a long descriptive name for the comparison"
    version.dataset.save(update_fields=["name"])
    for example in version.examples.all():
        example.label = CATEGORIES[example.row_index % 2]
        example.save(update_fields=["label"])
    return version


def _evaluate(subject, version, actor) -> EvalRun:
    created = evaluation.eval_run_create(subject=subject, version=version, actor=actor)
    # The suite's shared worker may take the queued run first; then this call does nothing and the worker's result
    # is awaited instead.
    run = evaluation.eval_run_execute(run_id=created.pk)
    if run is None:
        wait_for(lambda: EvalRun.objects.get(pk=created.pk).status in (EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED))
        run = EvalRun.objects.get(pk=created.pk)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    return run


def _endpoint(server, actor, name: str):
    return evaluation.endpoint_save(name=name, base_url=server.base_url, model="m", actor=actor)


def _empty_adapter(version, base_model, actor) -> TrainedModel:
    job = TrainingJob.objects.create(dataset_version=version, base_model=base_model, task="sft", config={})
    trained = TrainedModel.objects.create(
        name="quick-preset-adapter-for-client-replies",
        job=job,
        base_model=base_model,
        dataset_version=version,
        task="sft",
        artifact_prefix="x",
        sha256="0" * 64,
    )
    # One transaction: the run's message goes out on commit, when the run is already finished, so the suite's
    # shared worker (if one is running) finds nothing queued to take.
    with transaction.atomic():
        run = evaluation.eval_run_create(subject=trained, version=version, actor=actor)
        examples = list(version.examples.filter(split="test"))
        Prediction.objects.bulk_create([Prediction(run=run, example=example, output="") for example in examples])
        EvalRun.objects.filter(pk=run.pk).update(total=len(examples))
        run.refresh_from_db()
        evaluation.eval_run_score(run=run)
        EvalRun.objects.filter(pk=run.pk).update(status="succeeded", progress=1.0, finished_at=dt.datetime.now(dt.UTC))
    return trained


@pytest.mark.browser
def test_new_engineer_reads_references_empty_answers_comparison_and_gate_at_1366(
    transactional_db, live_server, make_user, approved_version, tiny_base_model, page, screenshots
):
    page.set_viewport_size({"width": 1366, "height": 900})
    shot = screenshots("newuser-eval-")
    engineer = make_user("engineer", username="erin", first_name="Erin", last_name="Engineer")
    version = _support_tickets(approved_version)
    other_version = approved_version(rows=20, test=4)
    base_run = _evaluate(tiny_base_model, version, engineer)
    with OpenAIServer("echo", reply=lambda messages: "") as server:
        empty_run = _evaluate(_endpoint(server, engineer, "silent-endpoint-with-a-long-name"), version, engineer)
    with OpenAIServer("echo") as server:
        other_run = _evaluate(_endpoint(server, engineer, "echo-endpoint-on-other-data"), other_version, engineer)
    adapter = _empty_adapter(version, tiny_base_model, engineer)
    use_case = evaluation.use_case_save(
        slug="client-replies",
        name="Client replies",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 1.0}],  # lenient
        actor=engineer,
    )
    log_in(page, "erin")

    # 1. The reference beside each answer is the expected answer that was scored, not the category.
    page.goto(f"/evaluation/runs/{base_run.pk}/")
    answers = page.locator("table.answers tbody tr")
    expect(answers).to_have_count(6)
    targets = list(version.examples.filter(split="test").order_by("row_index").values_list("target", flat=True))
    expect(answers.locator("td:nth-child(4)")).to_have_text(targets)
    for category in CATEGORIES:
        expect(page.locator("table.answers")).not_to_contain_text(category)
    page.locator("table.answers").scroll_into_view_if_needed()
    shot("reference-is-the-target")

    # 2. A run whose answers are all empty says so, and its fairness panel does not call it fair.
    page.goto(f"/evaluation/runs/{empty_run.pk}/")
    alert = page.locator("#empty-outputs")
    expect(alert).to_contain_text("The model produced no text for 100% of rows (6 of 6).")
    fairness = page.locator('section[aria-labelledby="fairness-title"]')
    expect(fairness).to_contain_text("Not checked: the model produced no text for 100% of rows")
    expect(fairness).not_to_contain_text("Every gap is within its threshold")
    shot("empty-answers-flagged")

    # 3. Four models side by side, one evaluated on another version: its evaluation is shown with its version, and
    # the page fits 1366 px while the wide tables scroll inside their own box.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Evaluations").click()
    page.get_by_role("link", name="Compare models").click()
    names = [tiny_base_model.name, empty_run.subject_name, adapter.name, other_run.subject_name]
    for slot, name in enumerate(names, start=1):
        page.locator(f"#compare-model-{slot}").select_option(name)
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("heading", name="Answers to the same inputs")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("not evaluated yet")
    header = page.locator("table.compare-table").first.locator("thead th")
    expect(header.nth(4)).to_contain_text(f"evaluation #{other_run.pk}")
    expect(header.nth(4)).to_contain_text(f"version {other_version.number} (other data)")
    expect(page.locator("main")).to_contain_text("did not all use the same data")
    expect(header.nth(2)).to_contain_text("no text for 100% of rows")
    expect(page.locator(f'[data-empty-outputs="{adapter.name}"]')).to_contain_text(
        "The model produced no text for 100% of rows (6 of 6)."
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    for table in ("table.compare-table", "table.side-by-side"):
        cells = page.locator(table).first.locator("thead th")
        for column in (3, 4):  # the third and fourth models' columns are on screen, not scrolled away
            box = cells.nth(column).bounding_box()
            assert box and box["width"] > 60 and box["x"] + box["width"] <= 1366, (table, column, box)
        wrap = page.locator(table).first.locator("xpath=..")
        assert "table-wrap" in wrap.get_attribute("class")
        assert wrap.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    shot("compare-four-models")
    # Narrower than the answers table needs: the table scrolls sideways inside its own box, the page does not.
    page.set_viewport_size({"width": 900, "height": 900})
    wrap = page.locator("table.side-by-side").locator("xpath=..")
    assert page.evaluate("document.documentElement.scrollWidth") <= 900
    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth")
    wrap.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    assert wrap.evaluate("el => el.scrollLeft") > 0
    page.set_viewport_size({"width": 1366, "height": 900})
    shot("compare-four-models")

    # 4. The candidate that answered nothing fails the gate (lenient margin or not); the reasons are in plain words
    # and "Promote to production" is not the primary button.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Promotion").click()
    page.get_by_role("link", name=use_case.name).click()
    candidate = page.locator(f"#candidate-{adapter.pk}")
    expect(candidate).to_contain_text("Does not pass the gate")
    why = page.locator(f"#candidate-{adapter.pk}-why")
    expect(why).to_be_visible()
    expect(why).to_contain_text("The model produced no text for 100% of rows (6 of 6)")
    expect(why).not_to_contain_text("rougeL")
    button = candidate.get_by_role("button", name="Promote to production")
    expect(button).not_to_have_class(re.compile(r"\bprimary\b"))
    expect(button).to_have_class(re.compile(r"\bdanger\b"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    candidate.scroll_into_view_if_needed()
    shot("gate-refuses-empty-candidate")
    assert TrainedModel.objects.get(pk=adapter.pk).stage == TrainedModel.Stage.CANDIDATE
