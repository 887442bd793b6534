from django.core.management.base import BaseCommand

from accounts.roles import ROLES
from accounts.services import roles_sync


class Command(BaseCommand):
    help = "Create or update the role groups (Curator, Annotator, ...) with exactly their permissions."

    def handle(self, *args, **options):
        roles_sync()
        for role in ROLES:
            self.stdout.write(f"{role.name}: {', '.join(role.permissions) or 'no dataset permissions'}")
