"""Merge a LoRA adapter into its base model and save a standalone model (plain Python, no Django).

The merged folder loads with `AutoModelFor…from_pretrained` alone (no peft), for serving stacks that do not
take adapters. It is as large as the base model.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.runner import TrainingError


def merge_adapter(*, base_model: str, adapter_dir: Path, output_dir: Path) -> Path:
    """Load the base model, apply the adapter, fold its weights in, save model and tokenizer as safetensors."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    settings_file = adapter_dir / "training_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    labels = list(settings.get("labels") or [])
    try:
        if settings.get("task") == "classification":
            model = AutoModelForSequenceClassification.from_pretrained(
                base_model,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                dtype=torch.float32,
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError) as exc:
        raise TrainingError(
            "model_corrupt",
            f"The adapter could not be merged into {base_model}: {exc}",
            "Check that the base model is the one the adapter was trained on.",
        ) from None
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        merged.save_pretrained(output_dir, safe_serialization=True)
        AutoTokenizer.from_pretrained(
            adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_model
        ).save_pretrained(output_dir)
    except OSError as exc:
        if getattr(exc, "errno", None) == 28:
            raise TrainingError(
                "disk_full", "The disk filled up while saving the merged model.", "Free space and try again."
            ) from None
        raise
    return output_dir
