"""Work waiting for each role, made through the services (and, where a worker would write it, as the worker leaves
it), for the home page tests: unit tests count the queues, browser tests photograph them."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from accounts.services import audit_record
from annotation import services as annotation_services
from curation.models import DatasetVersion, Example, Finding, RedactionRun, Upload
from evaluation import services as evaluation_services
from evaluation.models import EvalRun, Prediction, UseCase
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory
from training import runner
from training.models import BaseModel, TrainedModel, TrainingJob

SCHEMA = {
    "instructions": "Choose the team that should answer the ticket.",
    "fields": [
        {"name": "team", "kind": "choice", "title": "Team", "options": ["Billing", "Technical"], "writes": "label"}
    ],
}


def privacy_work(*, dataset_name: str = "Clinic letters") -> dict:
    """A raw version nobody has reviewed, and a review (as detection leaves it) with three undecided findings."""
    waiting = VersionFactory(dataset__name=dataset_name, row_count=3)
    reviewed = VersionFactory(dataset__name=f"{dataset_name} (second batch)", row_count=2)
    run = RedactionRun.objects.create(version=reviewed, status=RedactionRun.Status.REVIEW, progress=1.0)
    for i in range(2):
        example = ExampleFactory(version=reviewed, row_index=i, input=f"Mrs Jane Doe {i} called about her letter.")
        # The first row has two undecided findings; the second one undecided and one decided.
        spans = [(4, 12, Finding.Status.PENDING), (0, 3, Finding.Status.PENDING if i == 0 else Finding.Status.ACCEPTED)]
        for start, end, status in spans:
            Finding.objects.create(
                run=run,
                example=example,
                field="input",
                start=start,
                end=end,
                entity_type="PERSON",
                score=0.9,
                recognizer="test",
                status=status,
            )
    run.finding_count = 4
    run.save(update_fields=["finding_count"])
    return {"waiting": waiting, "run": run}


def annotation_work(*, engineer, annotators: list, name: str = "Ticket routing"):
    """A project over three tickets answered by two annotators who disagree on the first one."""
    dataset = DatasetFactory(name=f"{name} tickets", task_type="classification")
    version = VersionFactory(dataset=dataset, privacy=DatasetVersion.Privacy.APPROVED, row_count=3)
    for i, text in enumerate(["My invoice doubled.", "The app crashes on start.", "Refund the second charge."]):
        ExampleFactory(version=version, row_index=i, input=text, target="", label="")
    annotation_services.label_schema_save(dataset=dataset, schema=SCHEMA, actor=engineer)
    project = annotation_services.annotation_project_create(
        name=name, version=version, actor=engineer, annotations_per_example=2
    )
    for annotator, team in zip(annotators, ("Billing", "Technical"), strict=False):
        assignment = annotation_services.assignment_next(project=project, annotator=annotator)
        annotation_services.annotation_submit(
            assignment=assignment, annotator=annotator, answer={"team": team}, active_seconds=3
        )
    return project


def curator_work(*, curator, dataset_name: str = "Support replies") -> Upload:
    """An import checked by the worker and waiting for the curator's decision (as validation leaves it)."""
    staged = VersionFactory(dataset__name=dataset_name, status=DatasetVersion.Status.STAGED, row_count=40)
    return Upload.objects.create(
        file="uploads/replies.csv",
        original_name="replies.csv",
        size=2048,
        format=Upload.Format.CSV,
        status=Upload.Status.VALIDATED,
        dataset_name=dataset_name,
        version=staged,
        total_rows=42,
        good_rows=40,
        rejected_rows=2,
        progress=1.0,
        created_by=curator,
    )


def _base() -> BaseModel:
    return BaseModel.objects.create(
        name="tiny-llama",
        source="/models/tiny-llama",
        architecture="LlamaForCausalLM",
        model_type="llama",
        parameter_count=412_000,
        hidden_size=64,
        num_layers=2,
        vocab_size=1000,
        task_types=["sft", "classification"],
    )


def _job(version, base, status, **fields) -> TrainingJob:
    return TrainingJob.objects.create(
        dataset_version=version,
        base_model=base,
        task="sft",
        preset="quick",
        config=runner.apply_preset("quick", {}, task="sft").to_dict(),
        status=status,
        **fields,
    )


def _trained(name: str, version, base) -> TrainedModel:
    job = _job(version, base, TrainingJob.Status.SUCCEEDED, finished_at=timezone.now())
    return TrainedModel.objects.create(
        name=name,
        job=job,
        base_model=base,
        dataset_version=version,
        task="sft",
        artifact_prefix=f"jobs/{job.pk}/adapter",
        files=[{"name": "adapter_model.safetensors", "size": 8}],
        sha256="0" * 64,
    )


def _evaluated(subject, version, rouge: float) -> EvalRun:
    """A finished evaluation as the worker leaves it: every test row answered, scored."""
    fields = (
        {"kind": EvalRun.Kind.ADAPTER, "trained_model": subject, "base_model": subject.base_model}
        if isinstance(subject, TrainedModel)
        else {"kind": EvalRun.Kind.BASE, "base_model": subject}
    )
    now = timezone.now()
    tests = list(version.examples.filter(split="test"))
    run = EvalRun.objects.create(
        **fields,
        dataset_version=version,
        task="sft",
        status=EvalRun.Status.SUCCEEDED,
        progress=1.0,
        total=len(tests),
        metrics={"rougeL": rouge},
        started_at=now,
        finished_at=now,
    )
    Prediction.objects.bulk_create(
        Prediction(run=run, example=example, output=f"We fixed ticket {example.row_index}.") for example in tests
    )
    return run


def engineer_work(*, engineer) -> dict:
    """A running job, a failed job, a model nobody evaluated, and a use case whose production model (promoted
    through the gate) is beaten by a newer candidate."""
    version = VersionFactory(
        dataset__name="Support answers", privacy=DatasetVersion.Privacy.APPROVED, row_count=6, content_hash="c0ffee"
    )
    Example.objects.bulk_create(
        ExampleFactory.build(version=version, row_index=i, split="test" if i >= 3 else "train") for i in range(6)
    )
    base = _base()
    running = _job(version, base, TrainingJob.Status.RUNNING, created_by=engineer)
    failed = _job(
        version,
        base,
        TrainingJob.Status.FAILED,
        created_by=engineer,
        finished_at=timezone.now(),
        error="The worker ran out of GPU memory at step 12.",
    )
    unevaluated = _trained("answers-unevaluated", version, base)
    use_case = UseCase.objects.create(
        slug="client-replies",
        name="Client replies",
        task="sft",
        dataset=version.dataset,
        gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 0.01}],
    )
    _evaluated(base, version, 0.20)
    production = _trained("answers-v1", version, base)
    _evaluated(production, version, 0.30)
    evaluation_services.model_promote(use_case=use_case, trained=production, to_stage="production", actor=engineer)
    candidate = _trained("answers-v2", version, base)
    _evaluated(candidate, version, 0.35)
    return {
        "running": running,
        "failed": failed,
        "unevaluated": unevaluated,
        "production": production,
        "candidate": candidate,
        "use_case": use_case,
        "version": version,
    }


def manager_work(*, actor) -> None:
    """Business results for the production model and a challenger (through the real KPI import)."""
    evaluation_services.kpi_ensure(
        slug="csat", name="Customer satisfaction", unit="points (1–5)", higher_is_better=True
    )
    lines = ["kpi,model,period_start,period_end,segment,value,sample_size"]
    start = dt.date(2026, 11, 2)
    for week in range(3):
        day = start + dt.timedelta(weeks=week)
        end = day + dt.timedelta(days=6)
        lines.append(f"csat,answers-v1,{day},{end},,4.1,200")
        lines.append(f"csat,answers-v2,{day},{end},,4.4,200")
    result = evaluation_services.kpi_import_csv(text="\n".join(lines) + "\n", actor=actor)
    assert result["imported"] == 6, result


def admin_work(*, actor, dataset_name: str = "Broken file") -> None:
    """A failed personal-data detection (as the worker leaves it) and an audit event."""
    version = VersionFactory(dataset__name=dataset_name, row_count=1)
    run = RedactionRun.objects.create(
        version=version,
        status=RedactionRun.Status.FAILED,
        error="The PII model could not be loaded.",
        finished_at=timezone.now(),
    )
    audit_record(actor=actor, action="redaction.fail", obj=run, after={"error": run.error})
