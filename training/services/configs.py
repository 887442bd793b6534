"""Training settings: a preset plus overrides, checked by the runner; the estimate of time and memory shown
before a launch."""

from __future__ import annotations

import dataclasses

from django.core.exceptions import ValidationError

from curation.models import DatasetVersion, Split
from training import estimate as estimates
from training import runner
from training.models import BaseModel
from training.services.base_models import _model_info

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
