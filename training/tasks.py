from celery import current_task, shared_task
from django.conf import settings

from training import services


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_SOFT_TIME_LIMIT + 600,
)
def training_job_run(job_id: int) -> None:
    """Train one job on a GPU worker. Claims the job first, so a second delivery of the message does nothing."""
    request = current_task.request
    services.training_job_execute(job_id=job_id, worker=request.hostname or "unknown", task_id=request.id or "")


@shared_task
def reap_stale_training_jobs() -> dict:
    """Periodic: re-queue jobs whose worker died; re-publish waiting jobs the broker lost."""
    return services.training_jobs_reap()


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def trained_model_merge_task(model_id: int) -> None:
    """Merge an adapter into its base model and store the result; a second delivery does nothing."""
    services.trained_model_merge_execute(model_id=model_id)
