"""A manager reads the business results; an engineer compares the base model with a fresh adapter, is refused by the
promotion gate, then promotes the adapter once the gate is met: a real browser, a real (tiny, randomly initialised)
Llama trained and evaluated on CPU in this process, real KPI imports.

No Celery worker is needed: the test runs the workers' services itself. Should a worker of another test in the same
session claim a job or an evaluation first, the service here returns None and the test waits for that worker's result.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from curation.models import DatasetVersion
from evaluation import services as evaluation
from evaluation.models import EvalRun, Kpi, KpiObservation, StageChange, UseCase
from tests.browser.conftest import log_in
from tests.conftest import wait_for
from training import services as training
from training.models import TrainedModel, TrainingJob

WEEKS = [dt.date(2026, 9, 7) + dt.timedelta(weeks=i) for i in range(8)]
PASSWORD = "pw-for-tests-123"


def _version(approved_version) -> DatasetVersion:
    """30 approved support tickets: 20 to train on, 6 to test on (two customer groups), 4 to validate."""
    version = approved_version(rows=30, validation=4)
    version.dataset.name = "Support tickets"
    version.dataset.save(update_fields=["name"])
    for example in version.examples.all():
        example.group = "hospital" if example.row_index % 2 else "pharmacy"
        if 20 <= example.row_index < 26:
            example.split = "test"
        example.save(update_fields=["group", "split"])
    return version


def _train(version, base, actor) -> TrainedModel:
    job = training.training_job_create(
        version=version,
        base_model=base,
        actor=actor,
        preset="quick",
        overrides={"max_steps": 6, "max_seq_length": 64, "batch_size": 2, "checkpoint_every": 0},
    )
    training.training_job_execute(job_id=job.pk, worker="browser-test")
    wait_for(lambda: TrainingJob.objects.get(pk=job.pk).is_finished, timeout=300)
    assert TrainingJob.objects.get(pk=job.pk).status == TrainingJob.Status.SUCCEEDED
    return TrainedModel.objects.get(job=job)


def _evaluate(subject, version, actor) -> EvalRun:
    run = evaluation.eval_run_create(subject=subject, version=version, actor=actor, fairness_threshold=0.1)
    evaluation.eval_run_execute(run_id=run.pk)
    wait_for(lambda: not EvalRun.objects.get(pk=run.pk).is_active, timeout=300)
    run.refresh_from_db()
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    return run


def _kpi_figures(base: str, adapter: str) -> str:
    """Eight weeks in which the adapter's clients are clearly more satisfied and escalate less."""
    lines = ["kpi,model,period_start,period_end,segment,value,sample_size"]
    for i, week in enumerate(WEEKS):
        end = (week + dt.timedelta(days=6)).isoformat()
        wobble = (i % 3 - 1) * 0.03
        lines += [
            f"csat,{base},{week},{end},,{3.9 + wobble:.3f},180",
            f"csat,{adapter},{week},{end},,{4.3 - wobble:.3f},190",
            f"escalation_rate,{base},{week},{end},,{0.15 + wobble / 3:.4f},180",
            f"escalation_rate,{adapter},{week},{end},,{0.10 - wobble / 3:.4f},190",
        ]
    return "\n".join(lines) + "\n"


def _gate(csat_margin: float) -> list[dict]:
    return [
        {"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 1.0},
        {"kind": "kpi", "name": "csat", "rule": "improve", "margin": csat_margin},
    ]


@pytest.mark.browser
def test_manager_reads_results_engineer_compares_and_promotes_through_the_gate(
    transactional_db, live_server, make_user, approved_version, tiny_base_model, page, screenshots
):
    shot = screenshots("evaluation-")
    engineer = make_user("engineer", username="erin", first_name="Erin", last_name="Engineer")
    make_user("manager", username="mia", first_name="Mia", last_name="Manager")

    version = _version(approved_version)
    adapter = _train(version, tiny_base_model, engineer)
    _evaluate(tiny_base_model, version, engineer)
    adapter_run = _evaluate(adapter, version, engineer)
    evaluation.kpi_ensure(slug="csat", name="Customer satisfaction", unit="points (1–5)", higher_is_better=True)
    evaluation.kpi_ensure(
        slug="escalation_rate", name="Escalation rate", unit="share", higher_is_better=False, kind=Kpi.Kind.PROPORTION
    )
    result = evaluation.kpi_import_csv(text=_kpi_figures(tiny_base_model.name, adapter.name), actor=engineer)
    assert result == {"imported": 32, "problems": []}
    use_case = evaluation.use_case_save(
        slug="client-replies",
        name="Client replies",
        description="Draft replies to clients' support tickets.",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=_gate(csat_margin=0.5),
        actor=engineer,
    )

    # The manager: both KPIs, a line chart and an interval chart each, and the table in words.
    log_in(page, "mia")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Business results")).to_be_visible()
    expect(page.locator('figure.eval-chart[data-rendered="true"]')).to_have_count(4)
    for figure in page.locator("figure.eval-chart canvas").all():
        box = figure.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150
    expect(page.locator('figure[data-chart="interval"][data-intervals="2"]')).to_have_count(2)
    csat = page.locator('section[data-kpi="csat"]')
    expect(csat.get_by_role("heading", name="Customer satisfaction")).to_be_visible()
    adapter_row = csat.locator("tbody tr", has=page.get_by_role("rowheader", name=adapter.name))
    expect(adapter_row).to_contain_text(re.compile(r"4\.\d\d to 4\.\d\d"))
    expect(adapter_row).to_contain_text("significantly better")
    escalation_row = page.locator('section[data-kpi="escalation_rate"] tbody tr').filter(has_text=adapter.name)
    expect(escalation_row).to_contain_text(re.compile(r"\d+\.\d % to \d+\.\d %"))
    expect(escalation_row).to_contain_text("significantly better")  # lower escalation is better
    shot("dashboard")

    # The manager reads the scores of an evaluation, not the answers.
    page.goto(f"/evaluation/runs/{adapter_run.pk}/")
    expect(page.get_by_role("heading", name="Scores", exact=True)).to_be_visible()
    expect(page.get_by_text("Your role sees the scores, not the text of the rows")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    # The engineer imports a week with a mistake: the report names the line and column, and nothing is imported.
    log_in(page, "erin")
    page.goto("/evaluation/")
    page.get_by_role("link", name="Import KPI figures").click()
    page.get_by_label("Or paste the rows").fill(
        "kpi,model,period_start,period_end,segment,value,sample_size\n"
        f"csat,{adapter.name},2026-11-02,2026-11-08,,4.4,150\n"
        f"escalation_rate,{adapter.name},2026-11-02,2026-11-08,,9,150\n"
    )
    page.get_by_role("button", name="Check and import").click()
    report = page.locator("#import-problems")
    expect(report).to_contain_text("Nothing was imported")
    expect(report.locator("tbody tr")).to_have_count(1)
    expect(report.locator("tbody tr")).to_contain_text("3")
    expect(report.locator("tbody tr")).to_contain_text("give it between 0 and 1")
    shot("kpi-import-refused")
    assert KpiObservation.objects.count() == 32

    # The form to start an evaluation offers every model by name and the approved versions.
    page.goto("/evaluation/runs/new/")
    expect(page.get_by_label("Model", exact=True).locator("optgroup")).to_have_count(2)
    shot("evaluation-form")

    # The engineer compares the base model and the adapter: scores, KPIs and answers side by side.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("heading", name="Evaluations", exact=True)).to_be_visible()
    shot("runs")
    page.get_by_role("link", name="Compare models").click()
    page.get_by_label("Model 1", exact=True).select_option(tiny_base_model.name)
    page.get_by_label("Model 2", exact=True).select_option(adapter.name)
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("heading", name="Answers to the same inputs")).to_be_visible()
    answers = page.locator("table.side-by-side")
    expect(answers.locator("thead th")).to_have_text(["Input", "Reference", tiny_base_model.name, adapter.name])
    expect(answers.locator("tbody tr")).to_have_count(6)
    first_input = version.examples.filter(split="test").order_by("row_index").first().input
    expect(answers.locator("tbody tr").first).to_contain_text(first_input)
    expect(page.locator("table.compare-table").first).to_contain_text("ROUGE-L")
    expect(page.get_by_role("link", name="Download as CSV")).to_be_visible()
    shot("compare")

    # Promotion: the gate asks for +0.5 satisfaction points; the adapter brings about +0.4, so it is refused.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Promotion").click()
    page.get_by_role("link", name="Client replies").click()
    candidate = page.locator(f"#candidate-{adapter.pk}")
    expect(candidate).to_contain_text("Does not pass the gate")
    candidate.get_by_role("button", name="Promote to production").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, promote to production").click()
    refusal = page.locator("#promote-refusal")
    expect(refusal).to_contain_text("Not promoted")
    expect(refusal).to_contain_text(f"The gate does not pass, so {adapter.name} cannot be promoted.")
    expect(refusal.locator("tr.gate-row-fail")).to_contain_text("Fails: must improve by at least 0.5")
    expect(refusal.locator("tr.gate-row-pass")).to_contain_text("ROUGE-L")
    shot("promotion-refused")
    assert TrainedModel.objects.get(pk=adapter.pk).stage == TrainedModel.Stage.CANDIDATE
    assert not StageChange.objects.exists()

    # The team agrees that +0.2 points is worth it: the gate changes and the same button now promotes.
    evaluation.use_case_save(
        slug=use_case.slug,
        name=use_case.name,
        description=use_case.description,
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=_gate(csat_margin=0.2),
        actor=engineer,
    )
    page.goto(f"/evaluation/use-cases/{use_case.slug}/")
    candidate = page.locator(f"#candidate-{adapter.pk}")
    expect(candidate).to_contain_text("Passes the gate")
    candidate.get_by_role("button", name="Promote to production").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, promote to production").click()
    expect(page.locator(".messages")).to_contain_text(f"{adapter.name} is now the production model for Client replies.")
    expect(page.locator("#production-model")).to_contain_text(adapter.name)
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.locator('section[aria-labelledby="history-title"]')).to_contain_text("Candidate → Production")
    shot("promoted")
    assert UseCase.objects.get(pk=use_case.pk).production_id == adapter.pk
    assert TrainedModel.objects.get(pk=adapter.pk).stage == TrainedModel.Stage.PRODUCTION

    # The adapter's evaluation, as the engineer sees it: scores, fairness in words, answers.
    page.goto(f"/evaluation/runs/{adapter_run.pk}/")
    expect(page.get_by_role("heading", name="Fairness between groups")).to_be_visible()
    expect(page.locator("table.answers tbody tr")).to_have_count(6)
    shot("evaluation")
