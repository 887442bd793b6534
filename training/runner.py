"""LoRA fine-tuning of a local Hugging Face model: the plain-Python runner behind training jobs.

No Django here. Services hand it plain data (a TrainConfig, file paths, callbacks) and store what it returns, so a
worker on another machine can run it, also as a command (`python -m training.runner ...`, one JSON object per
line; `accelerate launch -m training.runner ...` or `torchrun` for several GPUs on one worker).

The training loop is a short hand-written torch loop (not the HF Trainer): forward, backward, clip, AdamW, LR
schedule. Everything else is bookkeeping kept off the hot path: the loss is read back from the GPU only at report
steps, nothing is written to disk between checkpoints. `bench/train_overhead.py` compares it with a bare PEFT loop.

Heavy libraries (torch, transformers, peft) are imported inside the functions that need them, so the web process
can import this module for PRESETS, TrainConfig and config_errors without loading torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import gc
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100
CHECKPOINTS_KEPT = 2
STATE_FILE = "trainer_state.json"
GRAD_CLIP_NORM = 1.0

TASKS = ("sft", "classification")
SCHEDULERS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")

PRESETS: dict[str, dict] = {
    "quick": {"max_steps": 30, "lora_r": 8, "lora_alpha": 16, "learning_rate": 3e-4, "checkpoint_every": 10},
    "balanced": {"epochs": 1.0, "max_steps": 0, "lora_r": 16, "lora_alpha": 32, "learning_rate": 2e-4},
    "thorough": {
        "epochs": 3.0,
        "max_steps": 0,
        "lora_r": 32,
        "lora_alpha": 64,
        "learning_rate": 1e-4,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.05,
    },
}

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


# --- errors ------------------------------------------------------------------------------------------------------


class TrainingError(Exception):
    """A failure a person can act on: `code` for the program, `message` and `hint` in plain words."""

    codes = (
        "config",
        "data",
        "model_missing",
        "model_corrupt",
        "task_unsupported",
        "out_of_memory",
        "disk_full",
        "qlora_unavailable",
    )

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class ConfigError(TrainingError):
    """Settings that cannot be used; `errors` maps each field to a plain-words message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        fields = ", ".join(self.errors)
        message = " ".join(self.errors.values()) if len(self.errors) <= 3 else f"Check these settings: {fields}."
        super().__init__("config", message, "Change the settings named above and start again.")


# --- configuration -----------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    task: str
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_length: int = 256
    eval_fraction: float = 0.1
    seed: int = 42
    precision: str = "auto"
    qlora: bool = False
    checkpoint_every: int = 50
    prompt_template: str = "### Instruction:\n{input}\n\n### Response:\n"
    labels: list[str] = field(default_factory=list)
    device: str = "auto"

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from JSON-like data. Unknown keys and values of the wrong type raise ConfigError; ranges are
        checked separately by config_errors so a form can show every problem at once."""
        if not isinstance(data, dict):
            raise ConfigError({"config": "The settings must be a JSON object."})
        known = {f.name: f for f in dataclasses.fields(cls)}
        errors = {key: f"Unknown setting “{key}”." for key in data if key not in known}
        if "task" not in data:
            errors["task"] = "Choose a task: sft or classification."
        values = {}
        for key, value in data.items():
            if key not in known:
                continue
            coerced, problem = _coerce(key, value)
            if problem:
                errors[key] = problem
            else:
                values[key] = coerced
        if errors:
            raise ConfigError(errors)
        return cls(**values)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        data["target_modules"] = list(self.target_modules) if self.target_modules is not None else None
        return data


_INT_FIELDS = {"lora_r", "lora_alpha", "max_steps", "batch_size", "grad_accum", "max_seq_length", "seed"}
_INT_FIELDS |= {"checkpoint_every"}
_FLOAT_FIELDS = {"lora_dropout", "learning_rate", "warmup_ratio", "epochs", "eval_fraction"}
_STR_FIELDS = {"task", "lr_scheduler", "precision", "prompt_template", "device"}


def _coerce(key: str, value: Any) -> tuple[Any, str]:
    label = key.replace("_", " ").capitalize()
    if key in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            return None, f"{label} must be a whole number."
        return int(value), ""
    if key in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None, f"{label} must be a number."
        return float(value), ""
    if key in _STR_FIELDS:
        if not isinstance(value, str):
            return None, f"{label} must be text."
        return value, ""
    if key == "qlora":
        if not isinstance(value, bool):
            return None, "QLoRA must be true or false."
        return value, ""
    if key in ("labels", "target_modules"):
        if value is None and key == "target_modules":
            return None, ""
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            return None, f"{label} must be a list of names."
        return list(value), ""
    return value, ""


def _between(errors: dict, key: str, value: float, low: float, high: float, text: str) -> None:
    if not low <= value <= high:
        errors[key] = f"{text} must be between {_plain_number(low)} and {_plain_number(high)}."


def _plain_number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.10f}".rstrip("0")


def config_errors(config: TrainConfig) -> dict[str, str]:
    """Field -> plain-words message for every setting out of range or not among its choices; {} when all is fine."""
    errors: dict[str, str] = {}
    if config.task not in TASKS:
        errors["task"] = "Task must be sft (write answers) or classification (pick a label)."
    _between(errors, "lora_r", config.lora_r, 1, 256, "LoRA rank")
    _between(errors, "lora_alpha", config.lora_alpha, 1, 1024, "LoRA alpha")
    _between(errors, "lora_dropout", config.lora_dropout, 0, 0.5, "LoRA dropout")
    if config.target_modules is not None and (
        not config.target_modules or not all(name.strip() for name in config.target_modules)
    ):
        errors["target_modules"] = "Target modules must name at least one layer, or be left empty for the default."
    _between(errors, "learning_rate", config.learning_rate, 1e-6, 1e-2, "Learning rate")
    if config.lr_scheduler not in SCHEDULERS:
        errors["lr_scheduler"] = "Learning rate schedule must be linear, cosine or constant."
    _between(errors, "warmup_ratio", config.warmup_ratio, 0, 0.5, "Warmup ratio")
    if config.max_steps == 0:
        if not 0 < config.epochs <= 100:
            errors["epochs"] = "Epochs must be more than 0 and at most 100."
    elif config.epochs < 0:
        errors["epochs"] = "Epochs cannot be negative."
    _between(errors, "max_steps", config.max_steps, 0, 1_000_000, "Maximum steps (0 means: use epochs)")
    _between(errors, "batch_size", config.batch_size, 1, 1024, "Batch size")
    _between(errors, "grad_accum", config.grad_accum, 1, 1024, "Gradient accumulation")
    _between(errors, "max_seq_length", config.max_seq_length, 16, 32768, "Maximum sequence length")
    _between(errors, "eval_fraction", config.eval_fraction, 0, 0.5, "Evaluation share")
    _between(errors, "seed", config.seed, 0, 2**32 - 1, "Seed")
    if config.precision not in PRECISIONS:
        errors["precision"] = "Precision must be auto, fp32, bf16 or fp16."
    _between(errors, "checkpoint_every", config.checkpoint_every, 0, 1_000_000, "Checkpoint interval (0 turns it off)")
    try:
        formatted = config.prompt_template.format(input="\x00")
    except (KeyError, IndexError, ValueError):
        formatted = ""
    if "\x00" not in formatted:
        errors["prompt_template"] = "The prompt template must contain {input} and no other {…} placeholders."
    if config.task == "classification":
        names = [name.strip() for name in config.labels]
        if len(names) < 2 or not all(names):
            errors["labels"] = "Classification needs at least two label names."
        elif len(set(names)) != len(names):
            errors["labels"] = "Label names must be different from each other."
    if config.device not in DEVICES:
        errors["device"] = "Device must be auto, cpu or cuda."
    if config.qlora and config.device == "cpu":
        errors["qlora"] = "QLoRA needs a GPU; turn it off or set the device to auto or cuda."
    return errors


def apply_preset(name: str, overrides: dict | None = None, *, task: str) -> TrainConfig:
    """The TrainConfig of a named preset for `task`, with `overrides` on top (ConfigError on unknown keys)."""
    if name not in PRESETS:
        raise ConfigError({"preset": f"Unknown preset “{name}”; choose one of: {', '.join(PRESETS)}."})
    return TrainConfig.from_dict({"task": task, **PRESETS[name], **(overrides or {})})


def qlora_available() -> tuple[bool, str]:
    """(True, "") when this worker can load 4-bit models, else (False, the reason in plain words)."""
    import torch

    if not torch.cuda.is_available():
        return False, "QLoRA needs an NVIDIA GPU with CUDA; this worker has none."
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False, "QLoRA needs the bitsandbytes package, which is not installed on this worker."
    except Exception as exc:  # bitsandbytes raises assorted errors when its CUDA libraries do not match
        return False, f"The bitsandbytes package is installed but does not work on this worker: {exc}"
    return True, ""


# --- model inspection --------------------------------------------------------------------------------------------


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


# --- results and progress ----------------------------------------------------------------------------------------


@dataclass
class Progress:
    step: int
    max_steps: int
    epoch: float
    loss: float | None
    eval_loss: float | None
    learning_rate: float
    tokens_per_second: float
    memory_mb: float
    phase: str  # loading | training | evaluating | checkpointing | saving


@dataclass
class TrainResult:
    status: str  # succeeded | cancelled
    adapter_dir: Path | None
    metrics: dict
    hardware: dict
    resumed_from_step: int = 0


# --- data --------------------------------------------------------------------------------------------------------


def load_rows(path: Path, config: TrainConfig) -> list[dict]:
    """Rows of a JSONL file, checked for the task: {"input", "target"} (sft) or {"input", "label"} (classification)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise TrainingError("data", f"The data file {name} does not exist.", "Export the dataset version again.")
    answer_key = "target" if config.task == "sft" else "label"
    labels = set(config.labels)
    rows = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise _data_error(f"Line {number} of {name} is not valid JSON.") from None
                if not isinstance(row, dict):
                    raise _data_error(f"Line {number} of {name} is not a JSON object.")
                for key in ("input", answer_key):
                    if not isinstance(row.get(key), str) or not row[key].strip():
                        raise _data_error(f"Line {number} of {name} has no text in “{key}”.")
                if config.task == "classification" and row["label"] not in labels:
                    raise _data_error(
                        f"Line {number} of {name} has the label “{row['label']}”, which is not one of the labels "
                        f"of this job ({', '.join(config.labels)})."
                    )
                rows.append({"input": row["input"], answer_key: row[answer_key]})
    except UnicodeDecodeError:
        raise _data_error(f"{name} is not UTF-8 text.") from None
    return rows


def _data_error(message: str) -> TrainingError:
    return TrainingError("data", message, "Fix or remove that row in the dataset and start the job again.")


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out round(eval_fraction * rows) rows (at least one, never all) chosen with `seed`; order kept."""
    if eval_fraction <= 0 or len(rows) < 2:
        return list(rows), []
    count = min(len(rows) - 1, max(1, round(len(rows) * eval_fraction)))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def encode_rows(rows: list[dict], tokenizer: Any, config: TrainConfig) -> list[dict]:
    """Token ids per row. sft: {"input_ids", "labels"} with the prompt masked (-100); classification:
    {"input_ids", "label"} (label index in config.labels). Everything cut to max_seq_length."""
    if not rows:
        return []
    if config.task == "classification":
        index = {name: i for i, name in enumerate(config.labels)}
        encoded = tokenizer(
            [row["input"] for row in rows], truncation=True, max_length=config.max_seq_length, add_special_tokens=True
        )["input_ids"]
        return [{"input_ids": ids, "label": index[row["label"]]} for ids, row in zip(encoded, rows, strict=True)]

    prompts, responses = [], []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos_text = tokenizer.eos_token or ""
    for row in rows:
        if tokenizer.chat_template:
            user = [{"role": "user", "content": row["input"]}]
            prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(
                [*user, {"role": "assistant", "content": row["target"]}], tokenize=False
            )
            # The template's own end-of-turn markers belong to the response; a template whose prompt is not a
            # prefix of the whole conversation falls back to target + EOS.
            response = full[len(prompt) :] if full.startswith(prompt) else row["target"] + eos_text
        else:
            prompt = config.prompt_template.format(input=row["input"])
            response = row["target"] + eos_text
        prompts.append(prompt)
        responses.append(response)
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    limit = config.max_seq_length
    examples = []
    for prompt, response in zip(prompt_ids, response_ids, strict=True):
        if not tokenizer.chat_template and bos:
            prompt = bos + prompt
        prompt, response = _truncate(prompt, response, limit, bos)
        examples.append({"input_ids": prompt + response, "labels": [IGNORE_INDEX] * len(prompt) + response})
    return examples


def _truncate(prompt: list[int], response: list[int], limit: int, bos: list[int]) -> tuple[list[int], list[int]]:
    """Fit prompt + response into `limit` tokens. The response keeps at least half the window (it is what is
    learnt); the prompt loses its beginning, after BOS, so the words next to the response stay."""
    if len(prompt) + len(response) <= limit:
        return prompt, response
    keep_response = min(len(response), max(limit - len(prompt), limit // 2))
    keep_prompt = limit - keep_response
    if keep_prompt < len(prompt):
        has_bos = bool(bos) and prompt[:1] == bos and keep_prompt > 1
        prompt = bos + prompt[len(prompt) - keep_prompt + 1 :] if has_bos else prompt[len(prompt) - keep_prompt :]
        if keep_prompt == 0:
            prompt = []
    return prompt, response[:keep_response]


def collate(examples: list[dict], pad_token_id: int) -> tuple[dict, int]:
    """Pad a batch on the right to its longest row. Returns (tensors, number of real tokens).

    Rows may hold lists (as encode_rows returns them) or tensors (as train() keeps them: converting once up front
    makes a step's collation about four times cheaper).
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    ids = [_as_tensor(example["input_ids"]) for example in examples]
    lengths = torch.tensor([len(row) for row in ids])
    input_ids = pad_sequence(ids, batch_first=True, padding_value=pad_token_id).long()
    attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
    if "labels" in examples[0]:
        labels = [_as_tensor(example["labels"]) for example in examples]
        labels = pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX).long()
    else:
        labels = torch.tensor([example["label"] for example in examples], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return batch, int(lengths.sum())


def _as_tensor(values: Any) -> Any:
    import torch

    return values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.int32)


def _tensorize(examples: list[dict]) -> list[dict]:
    """Token lists as int32 tensors (half the memory of int64; widened per batch)."""
    import torch

    return [
        {
            key: torch.tensor(value, dtype=torch.int32) if isinstance(value, list) else value
            for key, value in row.items()
        }
        for row in examples
    ]


# --- training ----------------------------------------------------------------------------------------------------


def _lr_factor(step: int, *, kind: str, warmup: int, total: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    done = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    return max(0.0, 1.0 - done)


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


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(seed)


def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    with contextlib.suppress(ImportError):
        import numpy

        kind, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = [kind, keys.tolist(), pos, has_gauss, cached]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        with contextlib.suppress(ImportError):
            import numpy

            kind, keys, pos, has_gauss, cached = state["numpy"]
            numpy.random.set_state((kind, numpy.array(keys, dtype=numpy.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
    )


def _disk_full(what: str) -> TrainingError:
    return TrainingError(
        "disk_full",
        f"The worker's disk is full: {what} could not be saved.",
        "Free space on the worker (old outputs, caches) and start the job again; it resumes from the last "
        "complete checkpoint.",
    )


@dataclass
class _Dist:
    """The process group that `accelerate launch` or `torchrun` describe in the environment (one process if none)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> _Dist:
        return cls(
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class _Run:
    """One call of train(): holds the model and optimizer so that close() can free them on every exit path."""

    def __init__(
        self,
        config: TrainConfig,
        output_dir: Path,
        on_progress: Callable[[Progress], None] | None,
        should_cancel: Callable[[], bool] | None,
        on_log: Callable[[str], None] | None,
        on_checkpoint: Callable[[Path, int], None] | None,
    ) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        self.dist = _Dist.from_env()
        self.callbacks = (on_progress, should_cancel, on_log, on_checkpoint)
        self.model = self.peft_model = self.optimizer = self.scheduler = self.scaler = None
        self.step = 0
        self.micro = 0  # micro-batches consumed across all processes: the data position
        self.tokens = 0
        self.loss_sum_before = 0.0  # sum of step losses before resuming
        self.eval_loss: float | None = None
        self.eval_accuracy: float | None = None
        self.resumed_from = 0
        self.device_type = "cpu"
        self.train_started = time.perf_counter()
        self.tokens_at_start = 0
        self.evaluated_at = -1
        self._eval_fresh = False
        self.total_steps = 0
        self.batches_per_epoch = 0
        self.loss_sum_total = 0.0
        self.train_examples: list[dict] = []
        self.eval_examples: list[dict] = []
        self._permutation: tuple[int, list[int]] | None = None

    # callbacks, only on the main process

    def log(self, message: str) -> None:
        if self.callbacks[2] and self.dist.is_main:
            self.callbacks[2](message)

    def progress(self, phase: str, loss: float | None = None) -> None:
        if not self.callbacks[0] or not self.dist.is_main:
            return
        # eval_loss rides on the first report after an evaluation only, so a curve gets one point per evaluation.
        fresh, self._eval_fresh = self._eval_fresh, False
        elapsed = time.perf_counter() - self.train_started
        lr = self.scheduler.get_last_lr()[0] if self.scheduler is not None else 0.0
        self.callbacks[0](
            Progress(
                step=self.step,
                max_steps=self.total_steps,
                epoch=round(self.micro / self.batches_per_epoch, 4) if self.batches_per_epoch else 0.0,
                loss=loss,
                eval_loss=self.eval_loss if fresh else None,
                learning_rate=lr,
                tokens_per_second=(self.tokens - self.tokens_at_start) / elapsed if phase == "training" else 0.0,
                memory_mb=self.memory_mb(),
                phase=phase,
            )
        )

    def memory_mb(self) -> float:
        if self.device_type == "cuda":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

    # setup

    def resolve_device(self) -> tuple[Any, str]:
        import torch

        config = self.config
        has_cuda = torch.cuda.is_available()
        if config.device == "cuda" and not has_cuda:
            raise TrainingError(
                "config", "This worker has no CUDA GPU.", "Set the device to auto or cpu, or run on a GPU worker."
            )
        if config.qlora:
            ok, reason = qlora_available()
            if not ok:
                raise TrainingError("qlora_unavailable", reason, "Turn QLoRA off, or run the job on a GPU worker.")
        use_cuda = has_cuda and config.device != "cpu"
        if use_cuda:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        self.device_type = device.type
        precision = config.precision
        if precision == "auto":
            precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda else "fp32"
        if precision == "fp16" and not use_cuda:
            raise TrainingError(
                "config", "Half precision (fp16) needs a GPU.", "Choose precision auto or fp32 on this worker."
            )
        if self.dist.enabled:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if use_cuda else "gloo")
        return device, precision

    def load_model(self, base_model: str, info: ModelInfo, device: Any, precision: str) -> None:
        import torch
        from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        config = self.config
        started = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(base_model)
        except Exception as exc:  # tokenizers fail with many exception types on damaged files
            raise _corrupt(f"The model's tokenizer cannot be loaded ({_short(exc)}).") from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.tokenizer = tokenizer

        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        kwargs: dict[str, Any] = {"dtype": half if half is not None and device.type == "cuda" else torch.float32}
        if config.qlora:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=half or torch.float32,
            )
            kwargs["device_map"] = {"": device.index or 0}
        try:
            if config.task == "classification":
                model = AutoModelForSequenceClassification.from_pretrained(
                    base_model,
                    num_labels=len(config.labels),
                    id2label=dict(enumerate(config.labels)),
                    label2id={name: i for i, name in enumerate(config.labels)},
                    **kwargs,
                )
            else:
                model = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
            if not config.qlora:
                model.to(device)
        except Exception as exc:
            if _is_oom(exc):
                raise TrainingError(
                    "out_of_memory",
                    "The model ran out of memory while loading.",
                    "Try QLoRA, or a worker with more GPU memory.",
                ) from None
            raise _corrupt(f"The model's weights cannot be loaded ({_short(exc)}).") from None
        loaded_class = type(model).__name__
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        model.config.use_cache = False
        if config.qlora:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
            )

        targets = config.target_modules or _default_target_modules(model, info.model_type)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            bias="none",
            task_type=TaskType.SEQ_CLS if config.task == "classification" else TaskType.CAUSAL_LM,
        )
        try:
            model = get_peft_model(model, lora)
        except ValueError as exc:
            if "target" not in str(exc).lower():
                raise
            raise ConfigError(
                {
                    "target_modules": f"None of the target modules ({', '.join(targets)}) exist in this model. "
                    f"Its layers are: {', '.join(_linear_module_names(model)[:20])}."
                }
            ) from None
        # Trainable weights (LoRA, classifier head) stay fp32 even when the frozen base is bf16/fp16: Adam updates
        # are too small for half precision and GradScaler refuses fp16 gradients.
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        self.peft_model = model
        self.model = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.log(
            f"Loaded model {loaded_class} ({total:,} parameters, {trainable:,} trainable, LoRA on "
            f"{', '.join(targets)}) on {device.type} in {precision} in {time.perf_counter() - started:.1f} s"
        )

    def fingerprint(self, info: ModelInfo, train_rows: list[dict], eval_rows: list[dict]) -> str:
        """What a checkpoint must match to be resumed: settings that change the result, the model, the data."""
        settings = {k: v for k, v in self.config.to_dict().items() if k not in ("checkpoint_every", "device")}
        digest = hashlib.sha256()
        # Not the number of processes: a job may resume on a worker with another GPU count (the data position is
        # counted in batches, so it carries over; the effective batch size changes from then on).
        digest.update(json.dumps([settings, info.model_type, info.parameter_count]).encode())
        for row in (*train_rows, {"--": "eval"}, *eval_rows):
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        return digest.hexdigest()

    # data stream

    def batch_indices(self, micro: int) -> list[int]:
        """Rows of global micro-batch `micro`: a seeded permutation per epoch, so the position is just a number."""
        import torch

        epoch, position = divmod(micro, self.batches_per_epoch)
        if self._permutation is None or self._permutation[0] != epoch:
            generator = torch.Generator().manual_seed(self.config.seed + epoch)
            self._permutation = (epoch, torch.randperm(len(self.train_examples), generator=generator).tolist())
        size = self.config.batch_size
        return self._permutation[1][position * size : (position + 1) * size]

    # checkpoints

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        return [
            (step, folder)
            for step, folder in checkpoint_folders(self.checkpoint_root)
            if (folder / STATE_FILE).is_file()
        ]

    def save_checkpoint(self, fingerprint: str, loss_sum: float) -> None:
        import torch

        if self.dist.is_main:
            self.checkpoint_root.mkdir(parents=True, exist_ok=True)
            final = self.checkpoint_root / f"checkpoint-{self.step}"
            staging = Path(tempfile.mkdtemp(prefix=f".tmp-checkpoint-{self.step}-", dir=self.checkpoint_root))
            try:
                self.peft_model.save_pretrained(staging)
                torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
                torch.save(self.scheduler.state_dict(), staging / "scheduler.pt")
                if self.scaler is not None:
                    torch.save(self.scaler.state_dict(), staging / "scaler.pt")
                torch.save(_rng_state(), staging / "rng_state.pt")
                state = {
                    "step": self.step,
                    "micro_batches": self.micro,
                    "epoch": self.micro / self.batches_per_epoch,
                    "tokens": self.tokens,
                    "loss_sum": loss_sum,
                    "eval_loss": self.eval_loss,
                    "fingerprint": fingerprint,
                    "world_size": self.dist.world_size,
                }
                # Written last: a folder named checkpoint-N with this file is complete (the rename is atomic).
                (staging / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
                if final.exists():
                    remove_tree(final)
                os.replace(staging, final)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if exc.errno == errno.ENOSPC:
                    raise _disk_full(f"the checkpoint at step {self.step}") from None
                raise
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            for _, old in self.complete_checkpoints()[:-CHECKPOINTS_KEPT]:
                remove_tree(old)
            self.log(f"Saved checkpoint {self.step}")
            if self.callbacks[3]:
                self.callbacks[3](final, self.step)
        self.barrier()

    def resume(self, fingerprint: str, device: Any) -> None:
        import torch
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        checkpoints = self.complete_checkpoints()
        if not checkpoints:
            return
        step, folder = checkpoints[-1]
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        if state.get("fingerprint") != fingerprint:
            raise TrainingError(
                "config",
                "The output folder holds checkpoints of a run with other settings, data or base model.",
                "Use a new output folder, or delete its checkpoints folder to start over.",
            )
        weights = load_file(str(folder / "adapter_model.safetensors"), device=str(device))
        set_peft_model_state_dict(self.peft_model, weights)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        if self.scaler is not None and (folder / "scaler.pt").is_file():
            self.scaler.load_state_dict(torch.load(folder / "scaler.pt", weights_only=True))
        self.step, self.micro, self.tokens = state["step"], state["micro_batches"], state["tokens"]
        self.loss_sum_before = state["loss_sum"]
        self.eval_loss = state.get("eval_loss")
        self.resumed_from = step
        # Last, so that nothing in setup draws from the restored generators before step+1 does.
        _set_rng_state(torch.load(folder / "rng_state.pt", weights_only=True))
        self.log(f"Resumed from checkpoint {step}")
        if state.get("world_size", 1) != self.dist.world_size:
            self.log(
                f"The checkpoint was made with {state.get('world_size', 1)} process(es), this run has "
                f"{self.dist.world_size}: the batch per step changes from here on."
            )

    def barrier(self) -> None:
        if self.dist.enabled:
            import torch.distributed as dist

            dist.barrier()

    # evaluation

    def evaluate(self, device: Any, autocast: Callable[[], Any]) -> None:
        """Loss over all eval rows (per label token for sft, per row for classification) and accuracy."""
        import torch

        if not self.eval_examples:
            return
        self.evaluated_at = self.step
        self.progress("evaluating")
        model = self.peft_model
        model.eval()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        counts = torch.zeros(2, device=device, dtype=torch.float64)  # weight, correct
        size = self.config.batch_size
        mine = self.eval_examples[self.dist.rank :: self.dist.world_size]
        with torch.no_grad():
            for start in range(0, len(mine), size):
                batch, _ = collate(mine[start : start + size], self.tokenizer.pad_token_id)
                batch = {key: value.to(device) for key, value in batch.items()}
                with autocast():
                    output = model(**batch)
                if self.config.task == "classification":
                    weight = batch["labels"].numel()
                    counts[1] += (output.logits.argmax(-1) == batch["labels"]).sum()
                else:
                    weight = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
                loss_sum += output.loss.double() * weight
                counts[0] += weight
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(loss_sum)
            dist.all_reduce(counts)
        model.train()
        if counts[0] > 0:
            self.eval_loss = float(loss_sum / counts[0])
            if self.config.task == "classification":
                self.eval_accuracy = float(counts[1] / counts[0])
            self._eval_fresh = True
        self.log(
            f"Evaluation loss {self.eval_loss:.4f}"
            + (f", accuracy {self.eval_accuracy:.1%}" if self.eval_accuracy is not None else "")
        )

    # the loop

    def loop(self, device: Any, autocast: Callable[[], Any], fingerprint: str) -> bool:
        """Train until total_steps; False when cancelled. Loss leaves the GPU only at report steps."""
        import torch

        config = self.config
        on_progress, should_cancel = self.callbacks[0], self.callbacks[1]
        model, optimizer, scheduler, scaler = self.model, self.optimizer, self.scheduler, self.scaler
        params = [p for p in self.peft_model.parameters() if p.requires_grad]
        accum, world, rank = config.grad_accum, self.dist.world_size, self.dist.rank
        pad_id = self.tokenizer.pad_token_id
        examples = self.train_examples
        # Every step on CPU (reading the loss costs nothing there); every 10 on a GPU, where it waits for the GPU.
        report_every = 1 if device.type == "cpu" else 10
        pin = device.type == "cuda"
        log_every = 10
        pending = torch.zeros((), device=device)  # step losses since the last report
        total_loss = torch.zeros((), device=device, dtype=torch.float64)  # step losses of this process's run
        pending_steps = 0
        model.train()
        if should_cancel is not None and self.cancel_requested(device):  # cancelled while the model loaded
            return False
        while self.step < self.total_steps:
            for k in range(accum):
                rows = self.batch_indices(self.micro + k * world + rank)
                batch, tokens = collate([examples[i] for i in rows], pad_id)
                self.tokens += tokens * world  # each process counts its share; ranks see the same batch sizes
                if pin:  # from pinned memory the copy is truly asynchronous: the CPU runs ahead of the GPU
                    batch = {key: value.pin_memory() for key, value in batch.items()}
                batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
                sync = contextlib.nullcontext() if not self.dist.enabled or k == accum - 1 else model.no_sync()
                with sync:
                    with autocast():
                        loss = model(**batch).loss
                    if (
                        accum > 1
                    ):  # a division is one more autograd node per step; skip it when there is nothing to scale
                        loss = loss / accum
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                pending += loss.detach()
            self.micro += accum * world
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            self.step += 1
            pending_steps += 1
            checkpoint_due = config.checkpoint_every > 0 and self.step % config.checkpoint_every == 0
            last = self.step == self.total_steps
            if self.step % report_every == 0 or checkpoint_due or last:
                if self.dist.enabled:  # SUM then divide: gloo (CPU) has no AVG
                    import torch.distributed as dist

                    dist.all_reduce(pending)
                    pending /= world
                total_loss += pending
                step_loss = pending.item() / pending_steps
                pending.zero_()
                pending_steps = 0
                if on_progress is not None:
                    self.progress("training", step_loss)
                if self.step % log_every == 0 or last or self.step == 1:
                    self.log(f"Step {self.step}/{self.total_steps} loss {step_loss:.4f}")
                if checkpoint_due:
                    self.evaluate(device, autocast)
                    self.progress("checkpointing")
                    self.save_checkpoint(fingerprint, self.loss_sum_before + float(total_loss))
                if should_cancel is not None and self.cancel_requested(device):
                    return False
            elif should_cancel is not None and not self.dist.enabled and should_cancel():
                return False
        self.loss_sum_total = self.loss_sum_before + float(total_loss)
        return True

    def cancel_requested(self, device: Any) -> bool:
        should_cancel = self.callbacks[1]
        wanted = bool(should_cancel())
        if not self.dist.enabled:
            return wanted
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if wanted else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def save_adapter(self) -> Path:
        target = self.output_dir / "adapter"
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tmp-adapter-", dir=self.output_dir))
            try:
                self.peft_model.save_pretrained(staging)
                self.tokenizer.save_pretrained(staging)
                (staging / "training_config.json").write_text(
                    json.dumps(self.config.to_dict(), indent=1), encoding="utf-8"
                )
                if target.exists():
                    remove_tree(target)
                os.replace(staging, target)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if exc.errno == errno.ENOSPC:
                    raise _disk_full("the trained adapter") from None
                raise
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self.log(f"Saved adapter to {target}")
        self.barrier()
        return target

    def close(self) -> None:
        """Drop every reference to the model and optimizer and give the memory back (also after errors)."""
        self.model = self.peft_model = self.optimizer = self.scheduler = self.scaler = None
        self.train_examples = self.eval_examples = []
        gc.collect()
        if self.device_type == "cuda":
            import torch

            torch.cuda.empty_cache()


def checkpoint_folders(root: Path) -> list[tuple[int, Path]]:
    """The ``checkpoint-N`` folders under root as (N, folder), oldest first."""
    found = []
    if root.is_dir():
        for folder in root.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
            if match and folder.is_dir():
                found.append((int(match.group(1)), folder))
    return sorted(found)


def remove_tree(folder: Path) -> None:
    """Rename first so that a half-deleted checkpoint never looks complete, then delete."""
    doomed = folder.with_name(f".tmp-delete-{folder.name}-{os.getpid()}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def train(
    config: TrainConfig,
    *,
    base_model: str,
    train_file: Path,
    output_dir: Path,
    eval_file: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_log: Callable[[str], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter on `base_model` and save it to output_dir/adapter/.

    Resumes from the latest complete checkpoint in output_dir/checkpoints/. Raises TrainingError (see its codes)
    for anything a person must fix; exceptions raised by the callbacks propagate unchanged, after the memory has
    been released. Under `accelerate launch`/`torchrun` every process calls this; only the first one calls the
    callbacks and writes files.
    """
    errors = config_errors(config)
    if errors:
        raise ConfigError(errors)
    run = _Run(config, output_dir, on_progress, should_cancel, on_log, on_checkpoint)
    try:
        return _execute(run, base_model=base_model, train_file=train_file, eval_file=eval_file)
    finally:
        run.close()


def _execute(run: _Run, *, base_model: str, train_file: Path, eval_file: Path | None) -> TrainResult:
    import torch

    config = run.config
    started = time.perf_counter()
    device, precision = run.resolve_device()
    info = inspect_model(base_model)
    if config.task not in info.task_types:
        can = " and ".join(info.task_types) or "neither task"
        raise TrainingError(
            "task_unsupported",
            f"The model {info.architecture} cannot be trained for {config.task}; it supports {can}.",
            "Choose a causal language model (e.g. Llama) for sft, or an encoder (e.g. BERT, MiniLM) for "
            "classification.",
        )
    rows = load_rows(train_file, config)
    if eval_file is not None:
        train_rows, eval_rows = rows, load_rows(eval_file, config)
    else:
        train_rows, eval_rows = split_rows(rows, config.eval_fraction, config.seed)
    if not train_rows:
        raise TrainingError("data", "The training data has no rows.", "Choose a dataset version with examples.")
    _seed_everything(config.seed)
    run.progress("loading")
    run.load_model(base_model, info, device, precision)
    run.train_examples = _tensorize(encode_rows(train_rows, run.tokenizer, config))
    run.eval_examples = _tensorize(encode_rows(eval_rows, run.tokenizer, config))

    world = run.dist.world_size
    run.batches_per_epoch = math.ceil(len(run.train_examples) / config.batch_size)
    micro_per_step = config.grad_accum * world
    if config.max_steps > 0:
        run.total_steps = config.max_steps
    else:
        run.total_steps = max(1, math.ceil(config.epochs * run.batches_per_epoch / micro_per_step))
    warmup = math.ceil(config.warmup_ratio * run.total_steps)
    params = [p for p in run.peft_model.parameters() if p.requires_grad]
    run.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0, fused=device.type == "cuda")
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer,
        functools.partial(_lr_factor, kind=config.lr_scheduler, warmup=warmup, total=run.total_steps),
    )
    if precision == "fp16":
        run.scaler = torch.amp.GradScaler("cuda")
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast() -> Any:
        if half is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=half)

    fingerprint = run.fingerprint(info, train_rows, eval_rows)
    if run.dist.is_main and run.checkpoint_root.is_dir():
        for stale in run.checkpoint_root.glob(".tmp-*"):  # left by a crash in the middle of a save
            shutil.rmtree(stale, ignore_errors=True)
    run.barrier()
    run.resume(fingerprint, device)
    run.tokens_at_start = run.tokens
    run.log(
        f"Training {run.total_steps} steps: {len(train_rows)} training rows, {len(eval_rows)} evaluation rows, "
        f"batch {config.batch_size} × {config.grad_accum} accumulation × {world} process(es)"
    )

    run.train_started = time.perf_counter()
    oom_step, where = None, "memory"
    try:
        finished = run.loop(device, autocast, fingerprint)
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc):
            raise
        oom_step = run.step + 1
        where = "GPU memory" if isinstance(exc, torch.cuda.OutOfMemoryError) or device.type == "cuda" else "memory"
    if oom_step is not None:  # outside the except block, so the traceback no longer pins the batch tensors
        run.close()
        raise TrainingError(
            "out_of_memory",
            f"The model ran out of {where} at step {oom_step}.",
            "Try a smaller batch size, shorter sequences (max sequence length), or QLoRA.",
        )
    train_seconds = time.perf_counter() - run.train_started
    hardware = _hardware(device, precision, world)
    if not finished:
        run.log(f"Cancelled at step {run.step}")
        return TrainResult(
            status="cancelled",
            adapter_dir=None,
            metrics={"steps": run.step},
            hardware=hardware,
            resumed_from_step=run.resumed_from,
        )
    if run.evaluated_at != run.step:  # a checkpoint at the last step has just evaluated
        run.evaluate(device, autocast)
    run.progress("saving")
    adapter_dir = run.save_adapter()
    new_tokens = run.tokens - run.tokens_at_start
    metrics = {
        "train_loss": run.loss_sum_total / run.total_steps if run.total_steps else None,
        "eval_loss": run.eval_loss,
        "steps": run.step,
        "epochs": round(run.micro / run.batches_per_epoch, 4),
        "runtime_seconds": round(time.perf_counter() - started, 3),
        "train_tokens": run.tokens,
        "tokens_per_second": new_tokens / train_seconds if train_seconds > 0 else 0.0,
    }
    if config.task == "classification":
        metrics["eval_accuracy"] = run.eval_accuracy
    return TrainResult(
        status="succeeded",
        adapter_dir=adapter_dir,
        metrics=metrics,
        hardware=hardware,
        resumed_from_step=run.resumed_from,
    )


def _hardware(device: Any, precision: str, world: int) -> dict:
    import platform

    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine() or "CPU"
    return {
        "device": device.type,
        "device_name": name,
        "gpu_count": world if device.type == "cuda" else 0,
        "processes": world,
        "precision": precision,
        "torch_version": torch.__version__,
    }


# --- command line ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m training.runner --config cfg.json --base-model DIR --train-file F --output-dir D`.

    Prints one JSON object per line on stdout: {"event": "log" | "progress" | "checkpoint" | "result" | "error"}.
    SIGTERM or SIGINT cancels at the next step (the result then says "cancelled"). Exit status 0 on success or
    cancel, 1 on a TrainingError.
    """
    parser = argparse.ArgumentParser(prog="python -m training.runner", description="Train a LoRA adapter.")
    parser.add_argument("--config", type=Path, required=True, help="JSON file with TrainConfig fields")
    parser.add_argument("--base-model", required=True, help="folder of the base model")
    parser.add_argument("--train-file", type=Path, required=True, help="JSONL training rows")
    parser.add_argument("--eval-file", type=Path, default=None, help="JSONL evaluation rows (default: hold out)")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    is_main = _Dist.from_env().is_main
    cancelled = False

    def emit(event: str, **payload: Any) -> None:
        if is_main:
            print(json.dumps({"event": event, **payload}, default=str), flush=True)

    def request_cancel(signum: int, frame: Any) -> None:
        nonlocal cancelled
        cancelled = True

    signal.signal(signal.SIGTERM, request_cancel)
    signal.signal(signal.SIGINT, request_cancel)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the load report goes to stderr anyway; keep the worker's log short
        try:
            data = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError({"config": f"The settings file cannot be read ({_short(exc)})."}) from None
        result = train(
            TrainConfig.from_dict(data),
            base_model=args.base_model,
            train_file=args.train_file,
            eval_file=args.eval_file,
            output_dir=args.output_dir,
            on_progress=lambda p: emit("progress", **dataclasses.asdict(p)),
            should_cancel=lambda: cancelled,
            on_log=lambda message: emit("log", message=message),
            on_checkpoint=lambda path, step: emit("checkpoint", path=str(path), step=step),
        )
    except TrainingError as exc:
        emit("error", **exc.to_dict())
        return 1
    finally:
        with contextlib.suppress(ImportError):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    emit(
        "result",
        status=result.status,
        adapter_dir=str(result.adapter_dir) if result.adapter_dir else None,
        metrics=result.metrics,
        hardware=result.hardware,
        resumed_from_step=result.resumed_from_step,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
