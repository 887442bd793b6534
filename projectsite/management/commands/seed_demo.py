import datetime as dt

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.roles import ROLES
from accounts.services import roles_sync, user_create
from annotation.demo import demo_projects_ensure
from curation.demo import write_tickets
from curation.models import Dataset, DatasetVersion
from curation.services import (
    dataset_import,
    findings_bulk_decide,
    redaction_run_approve,
    redaction_run_execute,
    redaction_run_start,
)
from evaluation import demo as demo_kpis
from evaluation.models import UseCase
from evaluation.services import eval_run_create, eval_run_execute, kpi_ensure, kpi_import_csv, use_case_save
from training.models import BaseModel, TrainedModel
from training.services import demo_base_models_ensure, training_job_create, training_job_execute

DEMO_DATASET = "Support tickets (demo)"
DEMO_USE_CASE = "client-replies"
SECOND_ANNOTATOR = "annotator2"
# Enough for the tiny model to learn the replies' wording (ROUGE-L about 0.27) in about a minute on two cores.
DEMO_TRAINING = {"max_steps": 120, "learning_rate": 0.005, "lora_r": 16, "max_seq_length": 160, "batch_size": 8}
# Already through privacy review, so engineers can train on first start (the one above waits for a reviewer).
REVIEWED_DATASETS = (
    (
        "Client replies (demo, reviewed)",
        "sft",
        {"input": "customer_message", "target": "agent_reply", "group": "segment"},
    ),
    (
        "Ticket routing (demo, reviewed)",
        "classification",
        {"input": "customer_message", "label": "category", "group": "segment"},
    ),
)


def demo_password(slug: str) -> str:
    return f"{slug.replace('_', '-')}-demo-2026"


def account_table(rows: list[tuple[str, ...]]) -> str:
    """Rows as columns padded to their longest cell, under a rule, so the accounts line up."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  " + "  ".join("-" * width for width in widths))
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Create the role groups, one demo account per role and the demo dataset. Safe to run again."

    def handle(self, *args, **options):
        roles_sync()
        user_model = get_user_model()
        rows = []
        for role in ROLES:
            password = demo_password(role.slug)
            if not user_model.objects.filter(username=role.slug).exists():
                user_create(username=role.slug, password=password, roles=[role.slug])
            rows.append((role.name, role.slug, password))
        # A second annotator, so two people can label the same examples and agreement can be measured.
        if not user_model.objects.filter(username=SECOND_ANNOTATOR).exists():
            user_create(username=SECOND_ANNOTATOR, password=demo_password(SECOND_ANNOTATOR), roles=["annotator"])
        rows.append(("Annotator (2nd)", SECOND_ANNOTATOR, demo_password(SECOND_ANNOTATOR)))
        if not Dataset.objects.filter(name=DEMO_DATASET).exists():
            path = write_tickets(settings.VAR_DIR / "demo" / "support_tickets.jsonl")
            upload = dataset_import(
                path=path,
                dataset_name=DEMO_DATASET,
                mapping={"input": "customer_message", "target": "agent_reply", "label": "category", "group": "segment"},
                actor=user_model.objects.get(username="curator"),
            )
            self.stdout.write(f"Demo dataset “{DEMO_DATASET}”: {upload.good_rows} tickets imported.")
        reviewer = user_model.objects.get(username="privacy_reviewer")
        curator = user_model.objects.get(username="curator")
        for seed, (name, task_type, mapping) in enumerate(REVIEWED_DATASETS, start=11):
            if not Dataset.objects.filter(name=name).exists():
                version = self._reviewed(name, task_type, mapping, seed=seed, curator=curator, reviewer=reviewer)
                self.stdout.write(f"Demo dataset “{name}”: {version.row_count} rows, redacted and approved.")
        for model in demo_base_models_ensure(settings.VAR_DIR / "models"):
            self.stdout.write(
                f"Base model “{model.name}”: {model.parameter_count:,} parameters ({model.architecture})."
            )
        for project in demo_projects_ensure(
            routing_dataset=REVIEWED_DATASETS[1][0],
            replies_dataset=REVIEWED_DATASETS[0][0],
            curator=curator,
            annotators=[user_model.objects.get(username=name) for name in ("annotator", SECOND_ANNOTATOR)],
        ):
            self.stdout.write(f"Annotation project “{project.name}”: {project.task_count} examples.")
        if not UseCase.objects.filter(slug=DEMO_USE_CASE).exists():
            self._evaluation_demo(engineer=user_model.objects.get(username="engineer"))
        self.stdout.write("\nDemo accounts:")
        self.stdout.write(account_table([("Role", "Username", "Password"), *rows]))

    def _reviewed(self, name, task_type, mapping, *, seed, curator, reviewer):
        """Import, detect personal data, accept every finding and approve: what a reviewer would do by hand."""
        path = write_tickets(settings.VAR_DIR / "demo" / f"tickets-{seed}.jsonl", count=240, seed=seed)
        upload = dataset_import(path=path, dataset_name=name, mapping=mapping, task_type=task_type, actor=curator)
        run = redaction_run_start(version=upload.version, actor=reviewer)
        redaction_run_execute(run_id=run.pk)  # here, not on the worker: the demo needs it before it starts
        run.refresh_from_db()
        findings_bulk_decide(run=run, actor=reviewer, status="accepted")
        return redaction_run_approve(run=run, actor=reviewer)

    def _evaluation_demo(self, *, engineer):
        """A trained and evaluated demo adapter, its base model evaluated too, eight weeks of KPIs, a use case."""
        version = DatasetVersion.objects.get(
            dataset__name=REVIEWED_DATASETS[0][0], privacy=DatasetVersion.Privacy.APPROVED
        )
        base = BaseModel.objects.get(name="tiny-llama-demo")
        job = training_job_create(
            version=version, base_model=base, actor=engineer, preset="quick", overrides=DEMO_TRAINING
        )
        job = training_job_execute(job_id=job.pk, worker="seed_demo")  # here: the demo needs it before it starts
        adapter = TrainedModel.objects.get(job=job)
        for subject in (adapter, base):
            run = eval_run_create(subject=subject, version=version, actor=engineer)
            eval_run_execute(run_id=run.pk)
        for slug, name, unit, higher, kind, description, *_ in demo_kpis.KPIS:
            kpi_ensure(slug=slug, name=name, unit=unit, higher_is_better=higher, kind=kind, description=description)
        today = timezone.localdate()
        first_monday = today - dt.timedelta(days=today.weekday(), weeks=8)
        text = demo_kpis.kpi_csv(baseline=base.name, candidate=adapter.name, first_monday=first_monday)
        kpi_import_csv(text=text, actor=engineer, source="demo")
        use_case_save(
            slug=DEMO_USE_CASE,
            name="Client replies",
            description="Draft replies to clinic and hospital customers in the company's empathetic tone.",
            task="sft",
            dataset=version.dataset,
            eval_version=version,
            gate=[
                {"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 0.02},
                {"kind": "kpi", "name": "csat", "rule": "improve", "margin": 0.1},
                {"kind": "kpi", "name": "escalation_rate", "rule": "no_regress", "margin": 0.0},
            ],
            actor=engineer,
            retrain_base_model=base,
        )
        self.stdout.write(f"Demo adapter “{adapter.name}” trained and evaluated, with eight weeks of KPIs.")
