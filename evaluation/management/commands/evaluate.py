import json
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from curation.models import DatasetVersion
from evaluation import services
from evaluation.models import EvalRun, ExternalEndpoint
from projectsite.errors import error_text
from training.models import TrainedModel


class Command(BaseCommand):
    help = (
        "Evaluate a model on the test split of an approved version, like the web form. "
        'The last line printed is JSON: {"run_id", "status", "metrics", "fairness", "error"}.'
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model",
            required=True,
            help="A trained model's ID, or the name of a trained model, base model or endpoint.",
        )
        parser.add_argument("--dataset-version", type=int, required=True, help="ID of an approved version.")
        parser.add_argument("--split", default="test", choices=["test", "validation", "train"])
        parser.add_argument("--judge", help="Name of an endpoint that rates the answers 1–5.")
        parser.add_argument("--user", help="Record this username as the one who started it.")
        parser.add_argument("--wait", action="store_true", help="Wait until the run ends, printing its progress.")
        parser.add_argument(
            "--here", action="store_true", help="Run in this process instead of on a worker (implies --wait)."
        )

    def handle(self, *args, **options):
        version = DatasetVersion.objects.select_related("dataset").filter(pk=options["dataset_version"]).first()
        if version is None:
            raise CommandError(f"There is no dataset version #{options['dataset_version']}.")
        name = options["model"]
        subject = TrainedModel.objects.filter(pk=int(name)).first() if name.isdigit() else None
        judge = None
        if options["judge"]:
            judge = ExternalEndpoint.objects.filter(name=options["judge"]).first()
            if judge is None:
                raise CommandError(f"There is no endpoint called “{options['judge']}”.")
        actor = None
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"There is no user “{options['user']}”.")
        try:
            subject = subject or services.subject_resolve(name)
            run = services.eval_run_create(
                subject=subject, version=version, actor=actor, split=options["split"], judge=judge, via="command"
            )
        except ValidationError as exc:
            raise CommandError(error_text(exc)) from None
        self.stderr.write(f"Evaluation #{run.pk} of {run.subject_name} queued on “{run.queue}”.")
        if options["here"]:
            services.eval_run_execute(run_id=run.pk)
        elif options["wait"]:
            last = None
            while True:
                run.refresh_from_db()
                line = f"{run.get_status_display()}: {run.progress:.0%}"
                if line != last:
                    self.stderr.write(line)
                    last = line
                if not run.is_active:
                    break
                time.sleep(1)
        run.refresh_from_db()
        self.stdout.write(
            json.dumps(
                {
                    "run_id": run.pk,
                    "status": run.status,
                    "metrics": run.metrics,
                    "fairness": run.fairness,
                    "error": run.error or None,
                }
            )
        )
        if run.status == EvalRun.Status.FAILED:
            raise CommandError(f"Evaluation #{run.pk} failed: {run.error}")
