"""What a base model folder holds (architecture, size, tasks it can learn) read without loading the weights, and
which of its layers LoRA adapts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.runner.errors import TrainingError

# Default LoRA targets by model_type: every attention and MLP projection. Other architectures get all their
# linear layers except the output head (see _default_target_modules).
_LLAMA_LIKE_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


_BERT_LIKE_TARGETS = ["query", "key", "value", "dense"]


DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    **dict.fromkeys(
        ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"), _LLAMA_LIKE_TARGETS
    ),
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet"), _BERT_LIKE_TARGETS),
}


# Encoders whose config says only "XModel": they can classify but not generate.
_ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "distilbert",
    "electra",
    "albert",
    "mpnet",
    "deberta",
    "deberta-v2",
    "modernbert",
}


_HEAD_MODULES = {"lm_head", "classifier", "score", "embed_out", "output"}


@dataclass
class ModelInfo:
    source: str
    architecture: str
    model_type: str
    parameter_count: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    task_types: list[str]


def _corrupt(message: str) -> TrainingError:
    return TrainingError(
        "model_corrupt", message, "Copy the model folder again (all files, complete) or choose another base model."
    )


def inspect_model(source: str) -> ModelInfo:
    """Describe the model in folder `source` from config.json and the safetensors headers, without loading weights.

    Raises TrainingError "model_missing" when the folder does not exist, "model_corrupt" when config.json,
    a weights file or the tokenizer cannot be read.
    """
    path = Path(source)
    if not path.is_dir():
        raise TrainingError(
            "model_missing",
            f"The base model folder {source} does not exist on this worker.",
            "Check the path, or copy the model to this worker first.",
        )
    config_path = path / "config.json"
    if not config_path.is_file():
        raise _corrupt(f"The folder {source} has no config.json, so it does not hold a Hugging Face model.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(f"The model's config.json cannot be read ({_short(exc)}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise _corrupt("The model's config.json does not say which kind of model it is (no model_type).")
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else config

    def first(*keys: str) -> int:
        for key in keys:
            value = text_config.get(key, config.get(key))
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 0

    _check_tokenizer(path)
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures and isinstance(architectures[0], str) else config["model_type"]
    return ModelInfo(
        source=str(source),
        architecture=architecture,
        model_type=config["model_type"],
        parameter_count=_parameter_count(path, config),
        hidden_size=first("hidden_size", "n_embd", "d_model", "dim"),
        num_layers=first("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
        vocab_size=first("vocab_size"),
        task_types=_task_types(architecture, config["model_type"]),
    )


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _check_tokenizer(path: Path) -> None:
    names = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
    if not any((path / name).is_file() for name in names):
        raise _corrupt("The model folder has no tokenizer files (tokenizer.json, vocab.txt or similar).")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _corrupt(f"The model's {name} cannot be read ({_short(exc)}).") from None


# Integer tensors in a checkpoint are buffers (position ids, masks), not parameters.
_BUFFER_DTYPES = {"I64", "I32", "I16", "BOOL"}


def _safetensors_parameters(file: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON); also catches truncated files."""
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            raw = handle.read(8)
            header_len = int.from_bytes(raw, "little") if len(raw) == 8 else -1
            if not 0 < header_len <= min(size - 8, 100_000_000):
                raise ValueError("the header is missing or has an impossible length")
            header = json.loads(handle.read(header_len))
        total, data_end = 0, 0
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            data_end = max(data_end, int(meta["data_offsets"][1]))
            if meta["dtype"] not in _BUFFER_DTYPES:
                total += math.prod(meta["shape"])
        if 8 + header_len + data_end > size:
            raise ValueError("the file is shorter than its header says (cut off while copying?)")
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise _corrupt(f"The weights file {file.name} is damaged: {_short(exc)}.") from None
    return total


def _parameter_count(path: Path, config: dict) -> int:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise _corrupt(f"The weights index model.safetensors.index.json cannot be read ({_short(exc)}).") from None
        missing = [name for name in shards if not (path / name).is_file()]
        if missing:
            raise _corrupt(f"Weight files listed in the index are missing: {', '.join(missing[:3])}.")
        return sum(_safetensors_parameters(path / name) for name in shards)
    files = sorted(path.glob("*.safetensors"))
    if files:
        return sum(_safetensors_parameters(file) for file in files)
    if any(path.glob("pytorch_model*.bin")):
        return _parameter_count_from_config(config)
    raise _corrupt("The model folder has no weights (model.safetensors or pytorch_model.bin).")


def _parameter_count_from_config(config: dict) -> int:
    """For old .bin checkpoints: build the model on the meta device (no memory, no weights read) and count."""
    try:
        import torch
        from transformers import AutoConfig, AutoModel

        model_config = AutoConfig.for_model(**config)
        with torch.device("meta"):
            model = AutoModel.from_config(model_config)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # an unknown architecture only loses the exact count
        return 0


def _task_types(architecture: str, model_type: str) -> list[str]:
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return ["sft"]
    if architecture.endswith("ForSequenceClassification"):
        return ["classification"]
    if model_type in _ENCODER_TYPES:
        return ["classification"]
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
            MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        )
    except ImportError:
        return []
    if (
        model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    ):
        return ["classification"]
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return ["sft"]
    return []


def _default_target_modules(model: Any, model_type: str) -> list[str]:
    if model_type in DEFAULT_TARGET_MODULES:
        return list(DEFAULT_TARGET_MODULES[model_type])
    return _linear_module_names(model)


def _linear_module_names(model: Any) -> list[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and leaf not in _HEAD_MODULES:
            names.add(leaf)
    return sorted(names)
