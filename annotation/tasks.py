from celery import shared_task


@shared_task(acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def publish_run_task(run_id: int) -> None:
    """Make a new dataset version from a project's settled answers; a redelivered message does nothing."""
    from annotation.services import publish_run_execute

    publish_run_execute(run_id=run_id)
