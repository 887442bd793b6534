import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import selectors, services
from annotation.models import AnnotationProject
from annotation.services_label_studio import label_studio_pull, label_studio_push
from curation.models import DatasetVersion
from projectsite.errors import error_text


class Command(BaseCommand):
    help = (
        "Annotation projects from the command line, like the web pages: create one, read its progress and agreement, "
        "publish its answers as a new dataset version, push it to or pull answers from Label Studio. "
        "Each subcommand prints one line of JSON."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        create = actions.add_parser("create-project", help="A project over an approved version.")
        create.add_argument("--name", required=True)
        create.add_argument("--version-id", type=int, required=True, help="ID of an approved version.")
        create.add_argument("--per-example", type=int, default=2, help="Annotators per example (1–10). Default: 2.")
        create.add_argument("--limit", type=int, help="Only the first N examples, in row order.")
        create.add_argument("--gold", type=int, default=0, help="Examples with a known label, as gold.")
        create.add_argument(
            "--schema", type=Path, help="A JSON file with the label schema. Default: the dataset's saved schema."
        )

        status = actions.add_parser("status", help="Progress and the agreement headline of each field.")
        status.add_argument("project_id", type=int)

        publish = actions.add_parser("publish", help="A new dataset version with the settled answers written in.")
        publish.add_argument("project_id", type=int)
        publish.add_argument("--finish", action="store_true", help="Also close the project to annotators.")
        publish.add_argument("--settled-only", action="store_true", help="Keep only the rows with a settled answer.")

        push = actions.add_parser("label-studio-push", help="Send the project and its examples to Label Studio (once).")
        push.add_argument("project_id", type=int)
        pull = actions.add_parser("label-studio-pull", help="Import the answers made in Label Studio.")
        pull.add_argument("project_id", type=int)

        for sub in (create, publish, push, pull):
            sub.add_argument("--user", help="Record this username as the one who did it.")

    def handle(self, *args, **options):
        action = options["action"]
        handlers = {
            "create-project": self._create,
            "status": self._status,
            "publish": self._publish,
            "label-studio-push": self._push,
            "label-studio-pull": self._pull,
        }
        try:
            result = handlers[action](options)
        except ValidationError as exc:
            raise CommandError(error_text(exc)) from None
        self.stdout.write(json.dumps(result, default=str))

    # --- lookups ---------------------------------------------------------------------------------

    def _actor(self, options):
        if not options.get("user"):
            return None
        actor = get_user_model().objects.filter(username=options["user"]).first()
        if actor is None:
            raise CommandError(f"There is no user “{options['user']}”.")
        return actor

    def _project(self, options) -> AnnotationProject:
        project = AnnotationProject.objects.select_related("version__dataset").filter(pk=options["project_id"]).first()
        if project is None:
            raise CommandError(f"There is no annotation project #{options['project_id']}.")
        return project

    # --- subcommands -----------------------------------------------------------------------------

    def _create(self, options) -> dict:
        version = DatasetVersion.objects.select_related("dataset").ready().filter(pk=options["version_id"]).first()
        if version is None:
            raise CommandError(f"There is no ready dataset version #{options['version_id']}.")
        schema = None
        if options["schema"]:
            try:
                schema = json.loads(options["schema"].read_text(encoding="utf-8"))
            except OSError as exc:
                raise CommandError(f"Cannot read the schema file: {exc.strerror or exc}.") from None
            except json.JSONDecodeError as exc:
                raise CommandError(f"The schema file is not valid JSON (line {exc.lineno}): {exc.msg}.") from None
        project = services.annotation_project_create(
            name=options["name"],
            version=version,
            actor=self._actor(options),
            annotations_per_example=options["per_example"],
            limit=options["limit"],
            gold_count=options["gold"],
            schema=schema,
        )
        return {
            "project_id": project.pk,
            "name": project.name,
            "version_id": version.pk,
            "tasks": project.task_count,
            "annotations_per_example": project.annotations_per_example,
        }

    def _status(self, options) -> dict:
        project = self._project(options)
        agreement = selectors.project_agreement(project)
        headlines = {}
        for field in agreement["fields"]:
            summary = field["summary"]
            headlines[field["name"]] = {
                "headline": summary["headline"],
                "value": summary[summary["headline"]],
                "interpretation": summary["interpretation"],
                "items": summary["items"],
            }
        return {
            "project_id": project.pk,
            "name": project.name,
            "status": project.status,
            "progress": selectors.project_progress(project),
            "agreement": headlines,
        }

    def _publish(self, options) -> dict:
        project = self._project(options)
        version = services.annotation_project_publish(
            project=project,
            actor=self._actor(options),
            finish=options["finish"],
            settled_only=options["settled_only"],
        )
        project.refresh_from_db()
        return {
            "project_id": project.pk,
            "version_id": version.pk,
            "dataset_id": version.dataset_id,
            "number": version.number,
            "rows": version.row_count,
            "project_status": project.status,
        }

    def _push(self, options) -> dict:

        project = label_studio_push(project=self._project(options), actor=self._actor(options))
        return {
            "project_id": project.pk,
            "label_studio_project_id": project.label_studio_project_id,
            "label_studio_url": project.label_studio_url,
            "tasks": project.task_count,
        }

    def _pull(self, options) -> dict:

        report = label_studio_pull(project=self._project(options), actor=self._actor(options))
        return {"project_id": options["project_id"], **report}
