"""Training jobs: create, cancel, retry, and run one on a worker (claim, write the data files, call the runner,
report progress through the job reporter, keep checkpoints in artifact storage, record the result).

The training itself is ``training/runner/`` (plain Python). These services feed it files made from an
approved dataset version, store what it reports, and keep a job alive across dead workers.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.services import audit_record
from curation.models import DatasetVersion, Split, TaskType
from curation.selectors import version_labels
from curation.services import version_require_approved
from training import runner
from training.infra import artifact_storage, artifacts_delete, storage_download, storage_write_text, training_queues
from training.models import BaseModel, JobAttempt, TrainingJob, TrainingMetric
from training.services.adapters import _adapter_register
from training.services.configs import training_config_build, training_estimate

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 200
PROGRESS_INTERVAL_SECONDS = 1.0


_TASK_WORDS = {
    TaskType.SFT: "write answers (instruction/response data)",
    TaskType.CLASSIFICATION: "pick a label (classification data)",
}


def base_model_task_problem(*, base_model: BaseModel, task: str) -> str:
    """Why ``base_model`` cannot be trained for ``task``, in plain words; "" when it can."""
    if base_model.can_do(task):
        return ""
    can = " or ".join(_TASK_WORDS.get(t, t) for t in base_model.task_types) or "no task Tuning Desk knows"
    others = [m.name for m in BaseModel.objects.exclude(pk=base_model.pk).order_by("name") if m.can_do(task)]
    advice = f"Choose a base model that can, such as {others[0]}." if others else "Register a base model that can."
    return (
        f"{base_model.name} cannot be trained to {_TASK_WORDS.get(task, task)}: "
        f"it is a {base_model.architecture or 'model'} that can only learn to {can}. {advice}"
    )


def training_job_check(*, version: DatasetVersion, base_model: BaseModel, queue: str) -> list[str]:
    """The checks a launch and its estimate share: approved data with training rows, a base model that can learn
    the version's task, a known queue. Returns the labels (classification) or []; raises ValidationError."""
    version_require_approved(version)
    task = version.dataset.task_type
    problem = base_model_task_problem(base_model=base_model, task=task)
    if problem:
        raise ValidationError({"base_model": problem})
    if queue not in training_queues():
        raise ValidationError(
            {"queue": f"Unknown worker class “{queue}”. Choose one of: {', '.join(training_queues())}."}
        )
    if not version.examples.filter(split=Split.TRAIN).exists():
        raise ValidationError(
            {"dataset_version": f"“{version}” has no training rows. Split it, or choose a version with rows."}
        )
    labels = version_labels(version) if task == TaskType.CLASSIFICATION else []
    if task == TaskType.CLASSIFICATION and len(labels) < 2:
        raise ValidationError({"dataset_version": "Classification needs at least two different labels in the data."})
    return labels


def training_job_create(
    *,
    version: DatasetVersion,
    base_model: BaseModel,
    actor,
    preset: str = "quick",
    overrides: dict | None = None,
    queue: str = "gpu",
    via: str = "web",
) -> TrainingJob:
    """Check everything a person can get wrong, then queue the job on ``queue`` once the transaction commits."""
    labels = training_job_check(version=version, base_model=base_model, queue=queue)
    task = version.dataset.task_type
    config = training_config_build(task=task, preset=preset, overrides=overrides, labels=labels)
    if config.qlora:
        from training import selectors

        if not any(worker.gpu_count for worker in selectors.workers_live(queue=queue)):
            raise ValidationError(
                {"qlora": f"QLoRA needs a worker with an NVIDIA GPU (CUDA); none is serving “{queue}” now."}
            )
    estimate = training_estimate(base_model=base_model, config=config, version=version, queue=queue)
    job = TrainingJob(
        dataset_version=version,
        base_model=base_model,
        task=task,
        preset=preset,
        config=config.to_dict(),
        queue=queue,
        estimate=estimate,
        max_attempts=settings.TRAINING_MAX_ATTEMPTS,
        celery_task_id=str(uuid.uuid4()),
        created_by=actor,
    )
    job.full_clean()
    with transaction.atomic():
        job.save()
        audit_record(
            actor=actor,
            action="training.launch",
            obj=job,
            after={"version": version.pk, "base_model": base_model.name, "preset": preset, "via": via},
        )
        _enqueue_on_commit(job)
    return job


def _enqueue_on_commit(job: TrainingJob) -> None:
    from training.tasks import training_job_run

    job_id, queue, task_id = job.pk, job.queue, job.celery_task_id
    transaction.on_commit(lambda: training_job_run.apply_async(args=[job_id], queue=queue, task_id=task_id))


def training_job_cancel(*, job: TrainingJob, actor) -> TrainingJob:
    """A waiting job is cancelled at once; a running one is asked to stop and stops within seconds."""
    with transaction.atomic():
        now = timezone.now()
        if TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.CANCELLED, cancel_requested=True, finished_at=now, phase=""
        ):
            pass
        elif not TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.CANCELLING, cancel_requested=True
        ):
            job.refresh_from_db()
            if job.status == TrainingJob.Status.CANCELLING:
                return job
            raise ValidationError(f"This job has already {job.get_status_display().lower()}; there is nothing to stop.")
        job.refresh_from_db()
        audit_record(actor=actor, action="training.cancel", obj=job, after={"status": job.status})
    return job


def training_job_retry(*, job: TrainingJob, actor) -> TrainingJob:
    """Queue a failed or cancelled job again; it resumes from its last checkpoint when it has one."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if not job.can_retry:
            raise ValidationError(
                f"Only a failed or cancelled job can be retried; this one is {job.get_status_display().lower()}."
            )
        version_require_approved(job.dataset_version)
        job.status = TrainingJob.Status.QUEUED
        job.cancel_requested = False
        job.error_code = job.error = job.error_hint = ""
        job.finished_at = None
        job.phase = ""
        job.worker = ""
        job.max_attempts = job.attempt_count + settings.TRAINING_MAX_ATTEMPTS
        job.celery_task_id = str(uuid.uuid4())
        job.save()
        audit_record(
            actor=actor, action="training.retry", obj=job, after={"resume_from_step": job.last_checkpoint_step}
        )
        _enqueue_on_commit(job)
    return job


def training_processes() -> int:
    """How many training processes this worker starts: one per GPU unless TRAINING_PROCESSES says otherwise."""
    if settings.TRAINING_PROCESSES:
        return settings.TRAINING_PROCESSES
    try:
        import torch

        return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1
    except ImportError:
        return 1


def training_job_claim(*, job_id: int, worker: str, task_id: str = "") -> TrainingJob | None:
    """Queued → running, atomically: of two deliveries of the same message only one gets the job."""
    now = timezone.now()
    with transaction.atomic():
        claimed = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.RUNNING,
            worker=worker[:200],
            heartbeat_at=now,
            started_at=now,
            attempt_count=F("attempt_count") + 1,
            phase="loading",
        )
        if not claimed:
            return None
        job = TrainingJob.objects.select_related("base_model", "dataset_version__dataset").get(pk=job_id)
        JobAttempt.objects.create(
            job=job,
            number=job.attempt_count,
            worker=worker[:200],
            celery_task_id=task_id[:64],
            resumed_from_step=job.last_checkpoint_step,
        )
    return job


def training_job_execute(*, job_id: int, worker: str, task_id: str = "") -> TrainingJob | None:
    """Claim the job and train it; returns None when someone else has it (a second delivery)."""
    job = training_job_claim(job_id=job_id, worker=worker, task_id=task_id)
    if job is None:
        return None
    attempt_number = job.attempt_count
    work_dir = Path(settings.TRAINING_WORK_DIR) / f"job-{job.pk}"
    output_dir = work_dir / "output"
    reporter = _JobReporter(job, attempt_number)
    reporter.start()
    try:
        reporter.log(f"Attempt {attempt_number} on {worker}.")
        train_file, eval_file = _write_data_files(job, work_dir)
        _checkpoint_restore(job, output_dir, reporter)
        config = runner.TrainConfig.from_dict(job.config)
        processes = training_processes()
        train = runner.train
        if processes > 1:
            from functools import partial

            from training.launch import train_distributed

            reporter.log(f"Training with {processes} processes (torchrun).")
            train = partial(train_distributed, processes=processes)
        result = train(
            config,
            base_model=job.base_model.source,
            train_file=train_file,
            eval_file=eval_file,
            output_dir=output_dir,
            on_progress=reporter.progress,
            should_cancel=reporter.should_cancel,
            on_log=reporter.log,
            on_checkpoint=reporter.checkpoint,
        )
    except runner.TrainingError as exc:
        reporter.stop()
        return _job_finish(
            job, attempt_number, TrainingJob.Status.FAILED, code=exc.code, error=exc.message, hint=exc.hint
        )
    except _TakenOver:
        reporter.stop()
        return None
    except Exception as exc:  # noqa: BLE001 (a person must see why; the log has the traceback)
        reporter.stop()
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            return _job_finish(
                job,
                attempt_number,
                TrainingJob.Status.FAILED,
                code="time_limit",
                error="Training ran past the time limit and was stopped.",
                hint="Lower the number of steps or epochs, or ask an admin to raise TRAINING_SOFT_TIME_LIMIT.",
            )
        log.exception("Training job %s failed", job.pk)
        return _job_finish(
            job,
            attempt_number,
            TrainingJob.Status.FAILED,
            code="internal",
            error=f"Training stopped because of an unexpected error: {exc}",
            hint="The worker log has the details. Retry, or ask an engineer to look.",
        )
    reporter.stop()
    if reporter.taken_over:
        return None
    if result.status == "cancelled":
        job = _job_finish(job, attempt_number, TrainingJob.Status.CANCELLED)
    else:
        try:
            trained = _adapter_register(job, result, output_dir)
        except OSError as exc:
            return _job_finish(
                job,
                attempt_number,
                TrainingJob.Status.FAILED,
                code="disk_full" if getattr(exc, "errno", None) == 28 else "storage",
                error=f"The adapter could not be stored: {exc}",
                hint="Free space in the artifact storage, then Retry: training resumes from its last checkpoint.",
            )
        job = _job_finish(
            job, attempt_number, TrainingJob.Status.SUCCEEDED, metrics=result.metrics, hardware=result.hardware
        )
        log.info("Training job %s finished as %s", job.pk, trained.name)
        artifacts_delete(f"{job.artifact_prefix}/checkpoints")
    shutil.rmtree(work_dir, ignore_errors=True)
    return job


def _job_finish(
    job: TrainingJob,
    attempt_number: int,
    status: str,
    *,
    code: str = "",
    error: str = "",
    hint: str = "",
    metrics: dict | None = None,
    hardware: dict | None = None,
) -> TrainingJob:
    now = timezone.now()
    fields = {"status": status, "finished_at": now, "phase": "", "error_code": code, "error": error, "error_hint": hint}
    if metrics is not None:
        fields["final_metrics"] = metrics
    if hardware is not None:
        fields["hardware"] = hardware
    if status == TrainingJob.Status.SUCCEEDED:
        fields["eta_seconds"] = 0
    with transaction.atomic():
        updated = TrainingJob.objects.filter(
            pk=job.pk,
            attempt_count=attempt_number,
            status__in=[TrainingJob.Status.RUNNING, TrainingJob.Status.CANCELLING],
        ).update(**fields)
        if updated:
            JobAttempt.objects.filter(job=job, number=attempt_number).update(
                outcome=status, finished_at=now, error=(f"{error} {hint}".strip())
            )
    job.refresh_from_db()
    return job


class _TakenOver(Exception):
    """The reaper gave this job to another worker (this one looked dead); stop without writing."""


class _JobReporter:
    """Carries the runner's callbacks to the database: throttled progress, curves, log tail, heartbeat, cancel."""

    def __init__(self, job: TrainingJob, attempt_number: int):
        self.job_id = job.pk
        self.attempt_number = attempt_number
        self.prefix = job.artifact_prefix
        self.resumed_step = job.last_checkpoint_step
        self.started = time.monotonic()
        self.cancel = threading.Event()
        self.taken_over = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._lines = [line for line in job.log_tail.splitlines() if line][-LOG_TAIL_LINES:]
        self._metrics: list[TrainingMetric] = []
        self._fields: dict = {}
        self._last_write = 0.0
        self._last_eval_step = -1
        self._first_step: int | None = None
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-job-{job.pk}", daemon=True)

    # The heartbeat thread also reads cancel requests, so a stopped job frees its GPU within seconds.
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(settings.TRAINING_HEARTBEAT_SECONDS):
                self._heartbeat()
        finally:
            connection.close()

    def _heartbeat(self) -> None:
        close_old_connections()
        alive = self._mine().update(heartbeat_at=timezone.now())
        if not alive:
            # Taken over only if this connection sees the job at all: a caller that trains inside its own
            # transaction (a command, a test) has a job row this thread cannot see yet.
            if TrainingJob.objects.filter(pk=self.job_id).exists():
                self.taken_over = True
                self.cancel.set()
            return
        if self._mine().filter(cancel_requested=True).exists():
            self.cancel.set()

    def _mine(self):
        return TrainingJob.objects.filter(
            pk=self.job_id,
            attempt_count=self.attempt_number,
            status__in=[TrainingJob.Status.RUNNING, TrainingJob.Status.CANCELLING],
        )

    def should_cancel(self) -> bool:
        return self.cancel.is_set()

    def progress(self, p: runner.Progress) -> None:
        with self._lock:
            if self._first_step is None:
                self._first_step = p.step
            fields = {
                "phase": p.phase,
                "step": p.step,
                "max_steps": p.max_steps,
                "epoch": p.epoch,
                "learning_rate": p.learning_rate,
            }
            # Checkpoint and evaluation reports carry no speed; keep the last training figures on the page.
            if p.tokens_per_second:
                fields["tokens_per_second"] = p.tokens_per_second
            if p.memory_mb:
                fields["memory_mb"] = p.memory_mb
            if p.loss is not None:
                fields["loss"] = p.loss
            if p.eval_loss is not None:
                fields["eval_loss"] = p.eval_loss
            done = p.step - self._first_step
            elapsed = time.monotonic() - self.started
            if done > 0 and p.max_steps:
                fields["eta_seconds"] = round(elapsed / done * max(p.max_steps - p.step, 0), 1)
            self._fields.update(fields)
            if p.loss is not None and p.phase == "training" and p.step > 0:
                self._metrics.append(
                    TrainingMetric(
                        job_id=self.job_id,
                        kind=TrainingMetric.Kind.TRAIN,
                        step=p.step,
                        epoch=p.epoch,
                        loss=p.loss,
                        learning_rate=p.learning_rate,
                        tokens_per_second=p.tokens_per_second,
                        memory_mb=p.memory_mb,
                    )
                )
            if p.eval_loss is not None and p.step != self._last_eval_step:
                self._last_eval_step = p.step
                self._metrics.append(
                    TrainingMetric(
                        job_id=self.job_id, kind=TrainingMetric.Kind.EVAL, step=p.step, epoch=p.epoch, loss=p.eval_loss
                    )
                )
            due = time.monotonic() - self._last_write >= PROGRESS_INTERVAL_SECONDS
        if due:
            self.flush()
        if self.taken_over:
            raise _TakenOver

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        with self._lock:
            self._lines.append(f"{stamp} {line}"[:500])
            del self._lines[:-LOG_TAIL_LINES]
            self._fields["log_tail"] = "\n".join(self._lines)

    def checkpoint(self, path: Path, step: int) -> None:
        """Copy the checkpoint to artifact storage (so another machine can resume) and keep only the latest."""
        storage = artifact_storage()
        target = f"{self.prefix}/checkpoints/checkpoint-{step}"
        for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            name = f"{target}/{file.relative_to(path).as_posix()}"
            if storage.exists(name):
                storage.delete(name)
            with file.open("rb") as handle:
                storage.save(name, File(handle))
        storage_write_text(storage, f"{target}/COMPLETE", str(step))
        with self._lock:
            self._fields["last_checkpoint_step"] = step
        self.flush()
        for older in _checkpoint_steps(storage, self.prefix):
            if older != step:
                artifacts_delete(f"{self.prefix}/checkpoints/checkpoint-{older}")

    def flush(self) -> None:
        with self._lock:
            fields, self._fields = self._fields, {}
            metrics, self._metrics = self._metrics, []
            self._last_write = time.monotonic()
        if not fields and not metrics:
            return
        with transaction.atomic():
            if not self._mine().update(heartbeat_at=timezone.now(), **fields):
                self.taken_over = True
                self.cancel.set()
                return
            if self._mine().filter(cancel_requested=True).exists():
                self.cancel.set()
            if metrics:
                TrainingMetric.objects.bulk_create(
                    metrics,
                    update_conflicts=True,
                    unique_fields=["job", "kind", "step"],
                    update_fields=["epoch", "loss", "learning_rate", "tokens_per_second", "memory_mb"],
                )


def _write_data_files(job: TrainingJob, work_dir: Path) -> tuple[Path, Path | None]:
    """The version's train rows (and validation rows, when it has some) as the runner's JSONL files."""
    version_require_approved(job.dataset_version)
    work_dir.mkdir(parents=True, exist_ok=True)
    key = "label" if job.task == TaskType.CLASSIFICATION else "target"
    paths = {}
    for split in (Split.TRAIN, Split.VALIDATION):
        path = work_dir / f"{split}.jsonl"
        count = 0
        with path.open("w", encoding="utf-8") as handle:
            rows = job.dataset_version.examples.filter(split=split).order_by("row_index").values_list("input", key)
            for text, target in rows.iterator(chunk_size=2000):
                handle.write(json.dumps({"input": text, key: target}, ensure_ascii=False) + "\n")
                count += 1
        paths[split] = path if count else None
    if paths[Split.TRAIN] is None:
        raise runner.TrainingError("data", "This dataset version has no training rows.", "Choose a version with rows.")
    return paths[Split.TRAIN], paths[Split.VALIDATION]


def _checkpoint_steps(storage, prefix: str) -> list[int]:
    try:
        folders, _ = storage.listdir(f"{prefix}/checkpoints")
    except FileNotFoundError:
        return []
    steps = []
    for folder in folders:
        if folder.startswith("checkpoint-") and storage.exists(f"{prefix}/checkpoints/{folder}/COMPLETE"):
            steps.append(int(folder.removeprefix("checkpoint-")))
    return sorted(steps)


def _checkpoint_restore(job: TrainingJob, output_dir: Path, reporter: _JobReporter) -> None:
    """Make the checkpoint the job row records the one to resume from, fetching it from artifact storage if needed.

    The row learns of a checkpoint in the same write as the loss curve up to its step. A worker killed after
    saving a checkpoint but before that write leaves a newer checkpoint whose curve points are lost; resuming
    from it would leave a gap in the curve, so it is discarded and those steps run again.
    """
    recorded = job.last_checkpoint_step
    local_root = output_dir / "checkpoints"
    local = []
    for step, folder in runner.checkpoint_folders(local_root):
        if step > recorded:
            runner.remove_tree(folder)
            reporter.log(f"Discarded checkpoint {step}: the job record stops at step {recorded}.")
        else:
            local.append(step)
    storage = artifact_storage()
    steps = [step for step in _checkpoint_steps(storage, job.artifact_prefix) if step <= recorded]
    if not steps or (local and max(local) >= steps[-1]):
        return
    step = steps[-1]
    target = local_root / f"checkpoint-{step}"
    tmp = local_root / f".restore-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    storage_download(storage, f"{job.artifact_prefix}/checkpoints/checkpoint-{step}", tmp)
    (tmp / "COMPLETE").unlink(missing_ok=True)
    tmp.replace(target)
    reporter.log(f"Fetched checkpoint {step} from artifact storage.")
