from celery import shared_task

from curation import services


@shared_task(acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def upload_stage_task(upload_id: int) -> None:
    """Check and stage an upload; safe to run twice (only an upload still “validating” is processed)."""
    services.upload_stage(upload_id=upload_id)


@shared_task(acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def dedupe_run_task(run_id: int) -> None:
    services.dedupe_run_execute(run_id=run_id)
