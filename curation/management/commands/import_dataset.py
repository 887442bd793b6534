import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from curation.formats import FORMATS
from curation.models import TaskType
from curation.services import dataset_import
from projectsite.errors import error_text

ROLES = ("input", "target", "label", "group")


def parse_mapping(text: str) -> dict:
    mapping: dict = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        role, sep, column = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLES or not column.strip():
            raise CommandError(f"--map takes role=COLUMN pairs with roles {', '.join(ROLES)}; got {part!r}.")
        mapping[role] = column.strip()
    return mapping


class Command(BaseCommand):
    help = (
        "Import a JSONL, JSON, CSV or TSV file as a new dataset version, with the same checks as the web upload. "
        'The last line printed is JSON: {"dataset_id", "version_id", "rows", "rejected"}.'
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name", required=True, help="Dataset name (created if new).")
        parser.add_argument("--format", choices=FORMATS, help="Default: from the file extension.")
        parser.add_argument("--map", default="", help="e.g. input=question,target=answer,label=topic,group=region")
        parser.add_argument("--task", choices=TaskType.values, default=TaskType.SFT)

    def handle(self, *args, **options):
        mapping = parse_mapping(options["map"]) if options["map"] else None
        try:
            upload = dataset_import(
                path=options["path"],
                dataset_name=options["name"],
                fmt=options["format"],
                mapping=mapping,
                task_type=options["task"],
            )
        except ValidationError as exc:
            raise CommandError(error_text(exc)) from None
        for problem in upload.problems.order_by("line")[:20]:
            self.stderr.write(f"line {problem.line}: {problem.message}")
        if upload.rejected_rows > 20:
            self.stderr.write(f"... and {upload.rejected_rows - 20} more rejected rows (see the upload's report).")
        if not upload.good_rows:
            raise CommandError(f"No row of {upload.original_name} could be imported ({upload.rejected_rows} rejected).")
        version = upload.version
        self.stdout.write(
            json.dumps(
                {
                    "dataset_id": version.dataset_id,
                    "version_id": version.pk,
                    "rows": upload.good_rows,
                    "rejected": upload.rejected_rows,
                }
            )
        )
