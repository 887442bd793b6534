"""Reads for training: jobs, curves, the queue view, workers and the registry."""

from __future__ import annotations

import statistics

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Window
from django.urls import reverse
from django.utils import timezone

from curation.models import DatasetVersion
from training.infra import artifact_storage, training_queues
from training.models import BaseModel, TrainedModel, TrainingJob, TrainingMetric, Worker


def job_list(*, status: str = "", queue: str = "", base_model: str = "", mine_of=None) -> QuerySet[TrainingJob]:
    jobs = TrainingJob.objects.select_related("base_model", "dataset_version__dataset", "created_by")
    if status:
        jobs = jobs.filter(status=status)
    if queue:
        jobs = jobs.filter(queue=queue)
    if base_model:
        jobs = jobs.filter(base_model__name=base_model)
    if mine_of is not None:
        jobs = jobs.filter(created_by=mine_of)
    return jobs.order_by("-created_at", "-pk")


def job_get(job_id: int) -> TrainingJob:
    return TrainingJob.objects.select_related("base_model", "dataset_version__dataset", "created_by").get(pk=job_id)


def job_curves(job: TrainingJob, *, max_points: int = 2000) -> dict:
    """Train and eval loss (and learning rate) by step; long runs are thinned evenly to ``max_points``."""
    curves = {}
    for kind in TrainingMetric.Kind.values:
        rows = list(
            TrainingMetric.objects.filter(job=job, kind=kind)
            .order_by("step")
            .values_list("step", "loss", "learning_rate")
        )
        if len(rows) > max_points:
            stride = len(rows) / max_points
            rows = [rows[int(i * stride)] for i in range(max_points)] + [rows[-1]]
        curves[kind] = rows
    return {
        "train": [{"step": s, "loss": loss} for s, loss, _ in curves["train"]],
        "eval": [{"step": s, "loss": loss} for s, loss, _ in curves["eval"]],
        "learning_rate": [{"step": s, "value": lr} for s, _, lr in curves["train"] if lr is not None],
    }


def workers_live(*, queue: str | None = None) -> list[Worker]:
    since = timezone.now() - timezone.timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)
    workers = Worker.objects.filter(last_seen__gte=since)
    return [w for w in workers if queue is None or queue in w.queues]


def queue_overview() -> list[dict]:
    """Per worker class (queue): what waits, what runs, and which live workers serve it."""
    waiting = dict(
        TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED).values_list("queue").annotate(n=Count("pk"))
    )
    running = dict(
        TrainingJob.objects.filter(status__in=[TrainingJob.Status.RUNNING, TrainingJob.Status.CANCELLING])
        .values_list("queue")
        .annotate(n=Count("pk"))
    )
    overview = []
    for queue in training_queues():
        jobs = list(
            job_list(queue=queue).filter(status__in=TrainingJob.ACTIVE_STATUSES).order_by("created_at", "pk")[:50]
        )
        overview.append(
            {
                "queue": queue,
                "waiting": waiting.get(queue, 0),
                "running": running.get(queue, 0),
                "workers": workers_live(queue=queue),
                "jobs": jobs,
            }
        )
    return overview


def measured_tokens_per_second(*, base_model: BaseModel, queue: str) -> float | None:
    """The median speed of this model's last finished jobs on this worker class, for the time estimate."""
    speeds = [
        (job.final_metrics or {}).get("tokens_per_second")
        for job in TrainingJob.objects.filter(
            base_model=base_model, queue=queue, status=TrainingJob.Status.SUCCEEDED
        ).order_by("-finished_at")[:5]
    ]
    speeds = [s for s in speeds if s]
    return statistics.median(speeds) if speeds else None


def approved_versions() -> QuerySet[DatasetVersion]:
    """What may be trained on: ready versions that passed privacy review."""
    return DatasetVersion.objects.approved().select_related("dataset").order_by("dataset__name", "-number")


def base_model_list() -> QuerySet[BaseModel]:
    return BaseModel.objects.order_by("name")


def trained_model_list(*, stage: str = "") -> QuerySet[TrainedModel]:
    models = TrainedModel.objects.select_related("base_model", "dataset_version__dataset", "job")
    return models.filter(stage=stage) if stage else models


def trained_model_zip(trained: TrainedModel, *, merged: bool = False):
    """The adapter's files (or the merged model's) as a zip in a temporary file, open at position 0;
    closing it deletes it."""
    import tempfile
    import zipfile

    storage = artifact_storage()
    archive = tempfile.TemporaryFile()  # noqa: SIM115 (returned open; the response closes it)
    prefix, files = (
        (trained.merged_prefix, trained.merged_files) if merged else (trained.artifact_prefix, trained.files)
    )
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry in files:
            with (
                storage.open(f"{prefix}/{entry['name']}", "rb") as src,
                zf.open(entry["name"], "w") as out,
            ):
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
    archive.seek(0)
    return archive


# --- home page queues ----------------------------------------------------------------------------

QUEUE_ROWS = 5  # rows a home-page section lists; its count says how many there are in all


def engineer_queue(*, user, since) -> dict:
    """An engineer's work: jobs running or waiting, jobs that failed since ``since``, and trained models nobody has
    evaluated (no evaluation finished or under way). Three queries."""
    jobs = list(
        TrainingJob.objects.filter(
            Q(status__in=TrainingJob.ACTIVE_STATUSES) | Q(status=TrainingJob.Status.FAILED, finished_at__gte=since)
        )
        .select_related("base_model", "dataset_version__dataset")
        .order_by("-created_at", "-pk")
    )
    active = [job for job in jobs if job.status in TrainingJob.ACTIVE_STATUSES]
    failed = [job for job in jobs if job.status == TrainingJob.Status.FAILED]
    unevaluated = (
        trained_model_list()
        .exclude(stage=TrainedModel.Stage.ARCHIVED)
        .exclude(eval_runs__status__in=("queued", "running", "succeeded"))
        .select_related("dataset_version__dataset")
        .annotate(total=Window(Count("pk")))
        .order_by("-created_at", "-pk")
    )
    unevaluated_rows = list(unevaluated[:QUEUE_ROWS])
    return {
        "active": active[:QUEUE_ROWS],
        "active_count": len(active),
        "failed": failed[:QUEUE_ROWS],
        "failed_count": len(failed),
        "unevaluated": unevaluated_rows,
        "unevaluated_count": unevaluated_rows[0].total if unevaluated_rows else 0,
    }


def failed_recent(*, since) -> list[dict]:
    """Training jobs that failed since ``since``, for the admin's home page."""
    return [
        {
            "what": f"Training job #{job.pk} ({job.base_model.name} on {job.dataset_version})",
            "when": job.finished_at or job.created_at,
            "error": job.error,
            "url": reverse("training:job_detail", args=[job.pk]),
        }
        for job in TrainingJob.objects.filter(status=TrainingJob.Status.FAILED, created_at__gte=since)
        .select_related("base_model", "dataset_version__dataset")
        .order_by("-created_at")[:QUEUE_ROWS]
    ]
