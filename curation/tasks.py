from celery import shared_task

from curation import services


@shared_task(acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def upload_stage_task(upload_id: int) -> None:
    """Check and stage an upload; safe to run twice (only an upload still “validating” is processed)."""
    services.upload_stage(upload_id=upload_id)


@shared_task(acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def dedupe_run_task(run_id: int) -> None:
    services.dedupe_run_execute(run_id=run_id)


@shared_task(bind=True, acks_late=True, soft_time_limit=12 * 3600, time_limit=12 * 3600 + 300)
def redaction_run_task(self, run_id: int) -> None:
    """Detect personal data in a version; claims the run, so a redelivered message does nothing.

    A long run hands over to a fresh task on the same queue every TUNINGDESK_REDACTION_ROWS_PER_TASK rows.
    """
    services.redaction_run_execute(run_id=run_id, queue=(self.request.delivery_info or {}).get("routing_key"))


@shared_task
def reap_stale_redaction_runs() -> int:
    """Periodic: re-queue detection runs whose worker stopped sending heartbeats (it died)."""
    run_ids = services.redaction_runs_stale()
    for run_id in run_ids:
        redaction_run_task.delay(run_id)
    return len(run_ids)
