from celery import shared_task
from django.conf import settings

from evaluation import services


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_SOFT_TIME_LIMIT + 600,
)
def eval_run_task(run_id: int) -> None:
    """Generate and score one evaluation; claims the run, so a second delivery does nothing."""
    services.eval_run_execute(run_id=run_id)


@shared_task
def retrain_tick_task() -> list[int]:
    """Periodic: scheduled retraining of every use case that has new approved data and is due."""
    return services.retrain_tick()


@shared_task
def reap_stale_eval_runs() -> list[int]:
    """Periodic: re-queue evaluations whose worker stopped sending heartbeats."""
    return services.eval_runs_reap()


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=3600, time_limit=3600 + 300)
def kpi_import_run_task(run_id: int) -> None:
    """Check every line of a KPI file, then write all its figures or none; a second delivery does nothing."""
    services.kpi_import_run_execute(run_id=run_id)


@shared_task
def reap_lost_kpi_import_runs() -> list[int]:
    """Periodic: fail KPI imports whose worker stopped responding (nothing of them was written)."""
    return services.kpi_import_runs_reap()
