from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.roles import ROLES
from accounts.services import roles_sync, user_create
from curation.demo import write_tickets
from curation.models import Dataset
from curation.services import dataset_import
from curation.services_redaction import (
    findings_bulk_decide,
    redaction_run_approve,
    redaction_run_execute,
    redaction_run_start,
)
from training.services import demo_base_models_ensure

DEMO_DATASET = "Support tickets (demo)"
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
        self.stdout.write("\nDemo accounts (username / password):")
        for name, username, password in rows:
            self.stdout.write(f"  {name:<17} {username:<17} {password}")

    def _reviewed(self, name, task_type, mapping, *, seed, curator, reviewer):
        """Import, detect personal data, accept every finding and approve: what a reviewer would do by hand."""
        path = write_tickets(settings.VAR_DIR / "demo" / f"tickets-{seed}.jsonl", count=240, seed=seed)
        upload = dataset_import(path=path, dataset_name=name, mapping=mapping, task_type=task_type, actor=curator)
        run = redaction_run_start(version=upload.version, actor=reviewer)
        redaction_run_execute(run_id=run.pk)  # here, not on the worker: the demo needs it before it starts
        run.refresh_from_db()
        findings_bulk_decide(run=run, actor=reviewer, status="accepted")
        return redaction_run_approve(run=run, actor=reviewer)
