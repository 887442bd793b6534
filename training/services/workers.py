"""Workers advertise themselves with a heartbeat; the reaper requeues or fails the jobs of workers that died."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.services import audit_record
from training.models import JobAttempt, TrainingJob, Worker
from training.services.jobs import _enqueue_on_commit


def worker_heartbeat(*, hostname: str, queues: list[str], facts: dict) -> Worker:
    """A worker says it is alive and what it has; called at start and every few seconds."""
    worker, _ = Worker.objects.update_or_create(
        hostname=hostname[:200],
        defaults={
            "queues": list(queues),
            "gpu_count": facts.get("gpu_count", 0),
            "gpu_names": facts.get("gpu_names", []),
            "gpu_memory_bytes": facts.get("gpu_memory_bytes", 0),
            "cpu_count": facts.get("cpu_count", 0),
            "memory_bytes": facts.get("memory_bytes", 0),
            "software": facts.get("software", {}),
            "last_seen": timezone.now(),
        },
    )
    return worker


def worker_gone(*, hostname: str) -> None:
    Worker.objects.filter(hostname=hostname).delete()


def training_jobs_reap(*, stale_after_seconds: int | None = None) -> dict:
    """Re-queue jobs whose worker died (resuming from the checkpoint), up to their maximum attempts.

    Also re-publishes waiting jobs whose message the broker no longer holds (a broker restarted without
    persistence); the atomic claim makes any duplicate message harmless.
    """
    stale_after = stale_after_seconds if stale_after_seconds is not None else settings.TRAINING_STALE_AFTER_SECONDS
    stale = timezone.now() - timezone.timedelta(seconds=stale_after)
    requeued, failed, cancelled = [], [], []
    for job in TrainingJob.objects.filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True),
        status__in=[TrainingJob.Status.RUNNING, TrainingJob.Status.CANCELLING],
    ):
        with transaction.atomic():
            now = timezone.now()
            mine = TrainingJob.objects.filter(pk=job.pk, status=job.status, attempt_count=job.attempt_count)
            seen = f"{job.heartbeat_at:%H:%M:%S} UTC" if job.heartbeat_at else "never"
            lost = f"The worker {job.worker} stopped responding; its last sign of life: {seen}."
            if job.status == TrainingJob.Status.CANCELLING:
                done = mine.update(status=TrainingJob.Status.CANCELLED, finished_at=now, phase="")
                bucket, outcome = cancelled, "cancelled"
            elif job.attempt_count >= job.max_attempts:
                done = mine.update(
                    status=TrainingJob.Status.FAILED,
                    finished_at=now,
                    phase="",
                    error_code="worker_lost",
                    error=f"The worker stopped responding {job.attempt_count} times, so the job was not tried again.",
                    error_hint="Check the GPU workers (memory, drivers), then Retry: "
                    "it resumes from the last checkpoint.",
                )
                bucket, outcome = failed, "failed"
            else:
                job.celery_task_id = str(uuid.uuid4())
                done = mine.update(
                    status=TrainingJob.Status.QUEUED, worker="", phase="", celery_task_id=job.celery_task_id
                )
                bucket, outcome = requeued, "requeued"
                if done:
                    _enqueue_on_commit(job)
            if done:
                JobAttempt.objects.filter(job=job, number=job.attempt_count).update(
                    outcome=JobAttempt.Outcome.WORKER_LOST, finished_at=now, error=lost
                )
                audit_record(
                    actor=None,
                    action="training.reap",
                    obj=job,
                    after={"outcome": outcome},
                )
                bucket.append(job.pk)
    republished = _republish_lost_messages()
    return {"requeued": requeued, "failed": failed, "cancelled": cancelled, "republished": republished}


def _republish_lost_messages() -> list[int]:
    from training import broker
    from training.tasks import training_job_run

    republished = []
    waiting = TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED)
    for queue in set(waiting.values_list("queue", flat=True)):
        held = broker.task_ids_held(queue)
        if held is None:  # a broker we cannot look into: trust it
            continue
        for job in waiting.filter(queue=queue).exclude(celery_task_id__in=held):
            # Re-check after reading the broker: a job claimed meanwhile is no longer queued.
            if TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).exists():
                training_job_run.apply_async(args=[job.pk], queue=job.queue, task_id=job.celery_task_id)
                republished.append(job.pk)
    return republished
