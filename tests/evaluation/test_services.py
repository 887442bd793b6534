"""Evaluation services: the gate on versions, real generation with the tiny model, scoring, KPI import, promotion."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import AuditEvent
from curation.models import DatasetVersion
from evaluation import selectors, services
from evaluation.models import EvalRun, Kpi, KpiImportRun, KpiObservation, RetrainRun, StageChange, UseCase
from tests.evaluation.openai_server import OpenAIServer
from training import services as training
from training.models import TrainedModel, TrainingJob


@pytest.fixture(autouse=True)
def _no_heartbeat_thread(settings):
    settings.TRAINING_HEARTBEAT_SECONDS = 3600


@pytest.fixture
def adapter(engineer, tiny_base_model, approved_version):
    version = approved_version(rows=30, validation=4, test=6)
    job = training.training_job_create(
        version=version,
        base_model=tiny_base_model,
        actor=engineer,
        overrides={"max_steps": 4, "max_seq_length": 64, "batch_size": 2, "learning_rate": 0.005},
    )
    job = training.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    return TrainedModel.objects.get(job=job)


def evaluate(subject, version, actor, **kwargs) -> EvalRun:
    run = services.eval_run_create(subject=subject, version=version, actor=actor, **kwargs)
    return services.eval_run_execute(run_id=run.pk)


def test_an_adapter_and_its_base_model_are_evaluated_and_scored_per_group(engineer, adapter):
    version = adapter.dataset_version
    run = evaluate(adapter, version, engineer)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    assert run.predictions.count() == 6 and run.total == 6
    assert {"rouge1", "rougeL", "bleu", "chrf", "exact_match"} <= set(run.metrics)
    assert run.metrics["perplexity"] > 1  # of the reference answers, from the model itself
    assert set(run.per_group) == {"clinic", "hospital"} and run.per_group["clinic"]["n"] == 3
    assert "rougeL" in run.fairness and {"gap", "flagged"} <= set(run.fairness["rougeL"])
    base = evaluate(adapter.base_model, version, engineer)
    assert base.status == EvalRun.Status.SUCCEEDED and base.kind == EvalRun.Kind.BASE
    # Same inputs, two models: the comparison lines them up.
    data = selectors.comparison([adapter.name, adapter.base_model.name])
    assert len(data["outputs"]) == 6 and all(len(row["outputs"]) == 2 for row in data["outputs"])
    assert {row["metric"] for row in data["metrics"]} >= {"rougeL", "bleu"}
    # A second delivery of the message does nothing.
    assert services.eval_run_execute(run_id=run.pk) is None


def test_evaluation_is_refused_on_a_version_that_has_not_passed_privacy_review(engineer, adapter):
    version = adapter.dataset_version
    DatasetVersion.objects.filter(pk=version.pk).update(privacy=DatasetVersion.Privacy.RAW)
    version.refresh_from_db()
    with pytest.raises(ValidationError, match="has not passed privacy review"):
        services.eval_run_create(subject=adapter, version=version, actor=engineer)
    assert not EvalRun.objects.exists()


def test_a_version_without_test_rows_is_refused(engineer, tiny_base_model, approved_version):
    with pytest.raises(ValidationError, match="has no test rows"):
        services.eval_run_create(subject=tiny_base_model, version=approved_version(), actor=engineer)


def test_rescoring_adds_a_metric_without_generating_again(engineer, adapter):
    run = evaluate(adapter, adapter.dataset_version, engineer)
    outputs = list(run.predictions.values_list("output", flat=True))
    run = services.eval_run_rescore(run=run, metric_names=["pred_length_mean"], actor=engineer)
    assert "pred_length_mean" in run.metrics and "rougeL" in run.metrics
    assert list(run.predictions.values_list("output", flat=True)) == outputs
    with pytest.raises(ValidationError, match="Unknown metric"):
        services.eval_run_rescore(run=run, metric_names=["vibes"], actor=engineer)


def test_an_external_endpoint_is_a_baseline_and_a_judge(engineer, approved_version):
    version = approved_version(rows=20, test=4)
    with OpenAIServer(mode="echo") as server:
        endpoint = services.endpoint_save(
            name="off-the-shelf", base_url=server.base_url, model="gpt-x", api_key="sk-test", actor=engineer
        )
        assert bytes(endpoint.api_key_encrypted) and b"sk-test" not in bytes(endpoint.api_key_encrypted)
        run = evaluate(endpoint, version, engineer, judge=endpoint)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    assert run.predictions.filter(judge_score__isnull=False).count() == 4
    assert 1 <= run.metrics["judge_score"] <= 5


def test_an_endpoint_that_is_down_or_slow_fails_the_run_with_a_clear_message(engineer, approved_version):
    version = approved_version(rows=20, test=2)
    with OpenAIServer(mode="slow", delay=3) as server:
        slow = services.endpoint_save(
            name="slow", base_url=server.base_url, model="m", timeout_seconds=0.5, actor=engineer
        )
        run = evaluate(slow, version, engineer)
    assert run.status == EvalRun.Status.FAILED and "did not answer within" in run.error
    down = services.endpoint_save(
        name="down", base_url="http://127.0.0.1:9/v1", model="m", timeout_seconds=2, actor=engineer
    )
    run = evaluate(down, version, engineer)
    assert run.status == EvalRun.Status.FAILED and "refused" in run.error


KPI_CSV = """kpi,model,period_start,period_end,segment,value,sample_size
csat,{a},2026-10-05,2026-10-11,,4.1,200
csat,{b},2026-10-05,2026-10-11,,4.4,210
csat,{a},2026-10-12,2026-10-18,,4.0,190
csat,{b},2026-10-12,2026-10-18,,4.5,205
"""


def csat():
    return services.kpi_ensure(slug="csat", name="Customer satisfaction", unit="points (1-5)", higher_is_better=True)


def test_kpi_import_is_all_or_nothing_with_a_row_report(engineer, adapter):
    csat()
    services.kpi_ensure(
        slug="escalation", name="Escalation rate", unit="share", higher_is_better=False, kind=Kpi.Kind.PROPORTION
    )
    bad = (
        "kpi,model,period_start,period_end,segment,value,sample_size,unit\n"
        f"csat,{adapter.name},2026-10-05,2026-10-11,,4.1,200,points (1-5)\n"
        "csat,no-such-model,2026-10-05,2026-10-11,,4.1,200,\n"
        f"csat,{adapter.name},2026-10-12,2026-10-18,,4.1,-5,\n"
        f"csat,{adapter.name},2026-10-05,2026-10-11,,4.3,100,\n"
        f"csat,{adapter.name},2026-10-19,2026-10-25,,4.3,100,hours\n"
        f"escalation,{adapter.name},2026-10-19,2026-10-25,,12,100,\n"
    )
    result = services.kpi_import_csv(text=bad, actor=engineer)
    assert result["imported"] == 0 and not KpiObservation.objects.exists()
    problems = {(p["line"], p["field"]) for p in result["problems"]}
    assert problems == {(3, "model"), (4, "sample_size"), (5, "period_start"), (6, "unit"), (7, "value")}
    good = KPI_CSV.format(a=adapter.base_model.name, b=adapter.name)
    assert services.kpi_import_csv(text=good, actor=engineer) == {"imported": 4, "problems": []}
    again = services.kpi_import_csv(text=good, actor=engineer)
    assert again["imported"] == 0 and all("already imported" in p["message"] for p in again["problems"])


def test_dashboard_gives_intervals_and_deltas_against_the_reference(engineer, adapter):
    csat()
    services.kpi_import_csv(text=KPI_CSV.format(a=adapter.base_model.name, b=adapter.name), actor=engineer)
    (panel,) = selectors.kpi_dashboard(reference=adapter.base_model.name)
    bars = {bar["model"]: bar for bar in panel["bars"]}
    assert bars[adapter.base_model.name]["is_reference"]
    candidate = bars[adapter.name]
    assert candidate["low"] < candidate["mean"] < candidate["high"]
    assert candidate["comparison"]["delta"] == pytest.approx(candidate["mean"] - bars[adapter.base_model.name]["mean"])
    assert [p["period"] for p in panel["series"][0]["points"]] == ["2026-10-05", "2026-10-12"]
    assert selectors.kpi_dashboard(start=dt.date(2026, 10, 12))[0]["series"][0]["points"][0]["period"] == "2026-10-12"


def test_promotion_is_refused_by_the_gate_then_accepted_and_can_be_rolled_back(engineer, adapter):
    version = adapter.dataset_version
    use_case = services.use_case_save(
        slug="replies",
        name="Client replies",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 0.0}],
        actor=engineer,
    )
    with pytest.raises(ValidationError, match="gate does not pass"):
        services.model_promote(use_case=use_case, trained=adapter, to_stage="production", actor=engineer)
    evaluate(adapter, version, engineer)
    base = evaluate(adapter.base_model, version, engineer)
    # Make the baseline clearly worse so the rule's outcome does not hang on a random tiny model.
    EvalRun.objects.filter(pk=base.pk).update(metrics={**base.metrics, "rougeL": -1.0})
    gate = selectors.gate_check(use_case=use_case, candidate=adapter)
    assert gate["passed"] and gate["baseline"] == adapter.base_model.name
    services.model_promote(use_case=use_case, trained=adapter, to_stage="production", actor=engineer)
    use_case.refresh_from_db()
    adapter.refresh_from_db()
    assert use_case.production == adapter and adapter.stage == "production"
    assert AuditEvent.objects.filter(action="model.promote", object_id=str(adapter.pk)).exists()
    with pytest.raises(ValidationError, match="no earlier production model"):
        services.model_rollback(use_case=use_case, actor=engineer)

    # A second adapter replaces it; rollback puts the first back.
    second = TrainedModel.objects.create(
        name="second",
        job=TrainingJob.objects.create(dataset_version=version, base_model=adapter.base_model, task="sft", config={}),
        base_model=adapter.base_model,
        dataset_version=version,
        task="sft",
        artifact_prefix="x",
        sha256="0" * 64,
    )
    UseCase.objects.filter(pk=use_case.pk).update(gate=[])
    use_case.refresh_from_db()
    with pytest.raises(ValidationError, match="no gate rules"):
        services.model_promote(use_case=use_case, trained=second, to_stage="production", actor=engineer)
    UseCase.objects.filter(pk=use_case.pk).update(
        gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 5}]
    )
    use_case.refresh_from_db()
    EvalRun.objects.create(
        kind="adapter",
        trained_model=second,
        base_model=adapter.base_model,
        dataset_version=version,
        task="sft",
        status="succeeded",
        metrics={"rougeL": 0.1},
        finished_at=dt.datetime.now(dt.UTC),
    )
    services.model_promote(use_case=use_case, trained=second, to_stage="production", actor=engineer)
    services.model_rollback(use_case=use_case, actor=engineer)
    use_case.refresh_from_db()
    assert use_case.production == adapter
    assert StageChange.objects.filter(use_case=use_case).count() == 3


def test_scheduled_retraining_trains_evaluates_and_proposes(engineer, adapter, monkeypatch):
    version = adapter.dataset_version
    use_case = services.use_case_save(
        slug="replies",
        name="Client replies",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 10}],
        actor=engineer,
        retrain_enabled=True,
        retrain_base_model=adapter.base_model,
    )
    UseCase.objects.filter(pk=use_case.pk).update(production=adapter)
    evaluate(adapter, version, engineer)
    # New approved data exists (the version is newer than the last retraining): a candidate is trained.
    (run_id,) = services.retrain_tick()
    run = RetrainRun.objects.get(pk=run_id)
    assert run.status == RetrainRun.Status.TRAINING and run.job.status == TrainingJob.Status.QUEUED
    training.training_job_execute(job_id=run.job.pk, worker="test@here")  # the worker's part
    services.retrain_advance()
    run.refresh_from_db()
    assert run.status == RetrainRun.Status.EVALUATING
    services.eval_run_execute(run_id=run.eval_run.pk)  # the worker's part
    services.retrain_advance()
    run.refresh_from_db()
    assert run.status == RetrainRun.Status.PROPOSED, run.message
    # Nothing new since: no second run.
    assert services.retrain_tick(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30)) == []


def test_an_evaluation_whose_worker_died_resumes_after_its_stored_predictions(engineer, adapter):
    run = services.eval_run_create(subject=adapter, version=adapter.dataset_version, actor=engineer)
    services.eval_run_execute(run_id=run.pk)
    first = run.predictions.order_by("example__row_index").first()
    # Simulate a worker that stored some predictions and died: running, silent, half done.
    run.predictions.exclude(pk=first.pk).delete()
    EvalRun.objects.filter(pk=run.pk).update(
        status=EvalRun.Status.RUNNING, heartbeat_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    assert services.eval_runs_reap(stale_after_seconds=60) == [run.pk]
    run = services.eval_run_execute(run_id=run.pk)
    assert run.status == EvalRun.Status.SUCCEEDED and run.predictions.count() == 6
    assert run.predictions.filter(pk=first.pk).exists()  # kept, not generated again


def test_empty_and_huge_answers_are_stored_and_scored(engineer, approved_version):
    version = approved_version(rows=20, test=4)
    huge = "word " * 40_000  # 200 KB, thousands of times a normal answer

    def reply(messages):
        text = messages[-1]["content"]
        return "" if "Ticket 16" in text or "Ticket 18" in text else huge

    with OpenAIServer(reply=reply) as server:
        endpoint = services.endpoint_save(name="wild", base_url=server.base_url, model="m", actor=engineer)
        run = evaluate(endpoint, version, engineer)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    outputs = sorted(len(p.output) for p in run.predictions.all())
    assert outputs[:2] == [0, 0] and outputs[-1] >= 199_000
    assert 0 <= run.metrics["rougeL"] <= 1 and run.metrics["pred_length_mean"] > 0


def test_a_pilot_compares_two_models_on_every_kpi_over_its_period(engineer, adapter):
    csat()
    services.kpi_import_csv(text=KPI_CSV.format(a=adapter.base_model.name, b=adapter.name), actor=engineer)
    with pytest.raises(ValidationError, match="two different models"):
        services.pilot_create(
            name="same",
            baseline=adapter.name,
            candidate=adapter.name,
            actor=engineer,
            period_start=dt.date(2026, 10, 5),
            period_end=dt.date(2026, 10, 18),
        )
    pilot = services.pilot_create(
        name="October pilot",
        baseline=adapter.base_model.name,
        candidate=adapter.name,
        actor=engineer,
        period_start=dt.date(2026, 10, 12),
        period_end=dt.date(2026, 10, 18),
    )
    (row,) = selectors.pilot_results(pilot)
    assert row["kpi"].slug == "csat"
    assert row["baseline"]["mean"] == pytest.approx(4.0) and row["candidate"]["mean"] == pytest.approx(4.5)


def test_the_balance_report_shows_labels_per_group(approved_version):
    version = approved_version(task_type="classification", rows=12)
    report = selectors.version_balance(version)
    assert set(report["groups"]) == {"clinic", "hospital"}
    assert report["labels"] == ["billing", "login", "records"]
    assert sum(report["groups"]["clinic"]["labels"].values()) == 6


# --- KPI files imported by the worker ---------------------------------------------------------------------------------


def _kpi_file_run(engineer, text: str) -> KpiImportRun:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return services.kpi_import_run_start(file=SimpleUploadedFile("kpis.csv", text.encode()), actor=engineer)


def test_a_kpi_import_whose_worker_died_is_failed_by_the_reaper_and_a_late_worker_writes_nothing(engineer):
    text = KPI_CSV.format(a="base", b="adapter")
    lost, fresh = _kpi_file_run(engineer, text), _kpi_file_run(engineer, text)
    long_ago = timezone.now() - KpiImportRun.STALE_AFTER - dt.timedelta(seconds=5)
    KpiImportRun.objects.filter(pk=lost.pk).update(status="checking", started_at=long_ago, heartbeat_at=long_ago)
    KpiImportRun.objects.filter(pk=fresh.pk).update(status="checking", heartbeat_at=timezone.now())

    assert services.kpi_import_runs_reap() == [lost.pk]

    lost.refresh_from_db()
    assert lost.status == KpiImportRun.Status.FAILED and lost.error == KpiImportRun.LOST_MESSAGE
    assert KpiImportRun.objects.get(pk=fresh.pk).status == KpiImportRun.Status.CHECKING
    # The worker of the lost run comes back (or its message is delivered again): it is no longer its run.
    assert services.kpi_import_run_execute(run_id=lost.pk) is None
    assert not KpiObservation.objects.exists()


def test_a_kpi_file_is_refused_at_once_when_empty_or_too_large(engineer, monkeypatch):
    with pytest.raises(ValidationError) as empty:
        _kpi_file_run(engineer, "")
    assert empty.value.message_dict == {"file": ["The file is empty."]}
    monkeypatch.setattr(services, "KPI_FILE_MAX_BYTES", 10)
    with pytest.raises(ValidationError) as large:
        _kpi_file_run(engineer, KPI_CSV)
    assert "larger than" in large.value.message_dict["file"][0]
    assert not KpiImportRun.objects.exists()
