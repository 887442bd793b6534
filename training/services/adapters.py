"""The adapter registry: store what a finished job made, its model card, stages, downloads, "try it" and merging."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.services import audit_record
from curation.models import TaskType
from training import runner
from training.infra import artifact_storage, artifacts_delete, storage_download
from training.models import TrainedModel, TrainingJob


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_store(folder: Path, prefix: str) -> list[dict]:
    """Replace what artifact storage holds under ``prefix`` with the files of ``folder``; their names, sizes, sha256."""
    storage = artifact_storage()
    artifacts_delete(prefix)
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
    storage_download(artifact_storage(), trained.artifact_prefix, Path(dest))
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
