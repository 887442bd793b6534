"""Real Celery worker processes: a worker killed mid-training, a second delivery, and a cancel that frees the worker.

The kill test runs its own workers on the `gpu-recovery` worker class (a queue that only the test settings
declare), so the shared test worker never takes its job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import _database_url, wait_for
from training import services
from training.models import JobAttempt, TrainedModel, TrainingJob, TrainingMetric

pytestmark = pytest.mark.worker
# Long enough that the worker is surely still training when it is killed, on a fast machine too.
STEPS = 600


class WorkerProcess:
    """``celery worker`` in its own process group, so SIGKILL takes the pool child with it, as a crash would."""

    def __init__(self, queue: str, name: str, args: tuple[str, ...] = (), **env):
        self.lines: list[str] = []
        ready = threading.Event()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "projectsite",
                "worker",
                "-Q",
                queue,
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"{name}-{os.getpid()}@%h",
                *args,
            ],
            env={
                **os.environ,
                "DATABASE_URL": _database_url(),
                "DJANGO_SETTINGS_MODULE": "projectsite.settings_test",
                "TRAINING_HEARTBEAT_SECONDS": "1",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line)
                if "ready." in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 90
        while not ready.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("The worker did not start:\n" + "".join(self.lines[-40:]))
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def test_a_worker_killed_mid_training_resumes_from_its_checkpoint_and_finishes_once(
    transactional_db, engineer, tiny_base_model, approved_version
):
    from projectsite.celery import app

    app.control.purge()
    version = approved_version(rows=40)
    first = WorkerProcess("gpu-recovery", "doomed")
    second = None
    try:
        job = services.training_job_create(
            version=version,
            base_model=tiny_base_model,
            actor=engineer,
            preset="quick",
            overrides={"max_steps": STEPS, "checkpoint_every": 10, "batch_size": 2, "max_seq_length": 64},
            queue="gpu-recovery",
        )

        # The worker says it is alive and what it has; the queue page and the launch estimate read this.
        from training.models import Worker

        advertised = wait_for(lambda: Worker.objects.filter(hostname__startswith="doomed-").first(), timeout=30)
        assert advertised.queues == ["gpu-recovery"] and advertised.cpu_count >= 1 and advertised.memory_bytes > 0

        def past_a_checkpoint():
            job.refresh_from_db()
            return job.last_checkpoint_step >= 10 or job.is_finished

        try:
            wait_for(past_a_checkpoint, timeout=180)
        except AssertionError:
            raise AssertionError(
                f"job {job.status} step {job.step} checkpoint {job.last_checkpoint_step} {job.error}\n"
                + job.log_tail
                + "".join(first.lines[-40:])
            ) from None
        first.kill()
        job.refresh_from_db()
        killed_at_step, checkpoint = job.step, job.last_checkpoint_step
        assert not job.is_finished and killed_at_step < STEPS, "the job finished before the kill; give it more steps"

        second = WorkerProcess("gpu-recovery", "rescuer")
        # The reaper notices the silent heartbeat and queues the job again (beat runs it every minute).
        wait_for(lambda: services.training_jobs_reap(stale_after_seconds=3)["requeued"] == [job.pk], timeout=60)

        def finished():
            job.refresh_from_db()
            return job.is_finished

        wait_for(finished, timeout=240)
        assert job.status == TrainingJob.Status.SUCCEEDED, (job.error, "".join(second.lines[-30:]))
        attempts = list(job.attempts.order_by("number"))
        assert [a.outcome for a in attempts] == [JobAttempt.Outcome.WORKER_LOST, JobAttempt.Outcome.SUCCEEDED]
        assert attempts[1].resumed_from_step >= checkpoint > 0
        assert attempts[0].worker != attempts[1].worker
        assert job.step == STEPS and job.final_metrics["steps"] == STEPS
        assert TrainedModel.objects.filter(job=job).count() == 1
        steps = list(TrainingMetric.objects.filter(job=job, kind="train").values_list("step", flat=True))
        assert steps == list(range(1, STEPS + 1))  # one point per step: nothing lost, nothing twice

        # The same message delivered again (a broker redelivering after the crash) starts nothing.
        from training.tasks import training_job_run

        training_job_run.apply_async(args=[job.pk], queue="gpu-recovery", task_id=attempts[0].celery_task_id)
        time.sleep(3)
        job.refresh_from_db()
        assert job.attempt_count == 2 and job.status == TrainingJob.Status.SUCCEEDED
    finally:
        first.kill()
        if second:
            second.stop()


def test_cancel_stops_a_running_job_within_seconds(
    transactional_db, celery_worker_proc, engineer, tiny_base_model, approved_version
):
    version = approved_version(rows=40)
    job = services.training_job_create(
        version=version,
        base_model=tiny_base_model,
        actor=engineer,
        preset="quick",
        overrides={"max_steps": 5000, "checkpoint_every": 1000, "batch_size": 2, "max_seq_length": 64},
    )

    def training():
        job.refresh_from_db()
        return job.step >= 3

    wait_for(training, timeout=180)
    services.training_job_cancel(job=job, actor=engineer)
    asked = time.monotonic()

    def stopped():
        job.refresh_from_db()
        return job.status == TrainingJob.Status.CANCELLED

    wait_for(stopped, timeout=30)
    assert time.monotonic() - asked < 30
    assert job.step < 5000 and job.attempts.get().outcome == JobAttempt.Outcome.CANCELLED
    assert not TrainedModel.objects.filter(job=job).exists()
