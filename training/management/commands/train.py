import json
import socket
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from curation.models import DatasetVersion
from projectsite.errors import error_text
from training import runner, services
from training.models import BaseModel, TrainedModel, TrainingJob


class Command(BaseCommand):
    help = (
        "Launch a LoRA fine-tuning job on an approved dataset version, like the web form. "
        'The last line printed is JSON: {"job_id", "status", "metrics", ...}.'
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset-version", type=int, required=True, help="ID of an approved version.")
        parser.add_argument("--base-model", required=True, help="Name of a registered base model.")
        parser.add_argument("--preset", choices=list(runner.PRESETS), default="quick")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"Override a preset setting; repeatable. Keys: {', '.join(services.SETTABLE_FIELDS)}.",
        )
        parser.add_argument("--queue", default="gpu", help="Worker class (Celery queue). Default: gpu.")
        parser.add_argument("--user", help="Record this username as the one who launched it.")
        parser.add_argument("--wait", action="store_true", help="Wait until the job ends, printing its progress.")
        parser.add_argument(
            "--here",
            action="store_true",
            help="Train in this process instead of on a worker (implies --wait); the queued message then does nothing.",
        )

    def handle(self, *args, **options):
        version = DatasetVersion.objects.select_related("dataset").filter(pk=options["dataset_version"]).first()
        if version is None:
            raise CommandError(f"There is no dataset version #{options['dataset_version']}.")
        base_model = BaseModel.objects.filter(name=options["base_model"]).first()
        if base_model is None:
            known = ", ".join(BaseModel.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"There is no base model called “{options['base_model']}”. Registered: {known}.")
        actor = None
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"There is no user “{options['user']}”.")
        try:
            overrides = services.training_overrides_parse(options["set"])
            job = services.training_job_create(
                version=version,
                base_model=base_model,
                actor=actor,
                preset=options["preset"],
                overrides=overrides,
                queue=options["queue"],
                via="command",
            )
        except ValidationError as exc:
            raise CommandError(error_text(exc)) from None
        self.stderr.write(f"Training job #{job.pk} queued on “{job.queue}”.")
        for warning in job.estimate.get("warnings", []):
            self.stderr.write(f"Note: {warning}")
        if options["here"]:
            services.training_job_execute(job_id=job.pk, worker=f"command@{socket.gethostname()}")
        elif options["wait"]:
            self._wait(job)
        job.refresh_from_db()
        trained = TrainedModel.objects.filter(job=job).first()
        result = {
            "job_id": job.pk,
            "status": job.status,
            "metrics": job.final_metrics,
            "trained_model_id": trained.pk if trained else None,
            "error": job.error or None,
            "hint": job.error_hint or None,
        }
        self.stdout.write(json.dumps(result))
        if job.status == TrainingJob.Status.FAILED:
            raise CommandError(f"Training job #{job.pk} failed: {job.error} {job.error_hint}".strip())

    def _wait(self, job: TrainingJob) -> None:
        last = None
        while True:
            job.refresh_from_db()
            line = f"{job.get_status_display()}: step {job.step}/{job.max_steps or '?'}"
            if job.loss is not None:
                line += f", loss {job.loss:.4f}"
            if line != last:
                self.stderr.write(line)
                last = line
            if job.is_finished:
                return
            time.sleep(1)
