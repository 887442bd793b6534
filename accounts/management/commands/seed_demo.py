from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.roles import ROLES
from accounts.services import roles_sync, user_create
from curation.demo import write_tickets
from curation.models import Dataset
from curation.services import dataset_import

DEMO_DATASET = "Support tickets (demo)"


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
        self.stdout.write("\nDemo accounts (username / password):")
        for name, username, password in rows:
            self.stdout.write(f"  {name:<17} {username:<17} {password}")
