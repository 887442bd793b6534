"""The settings of one training run: TrainConfig, the presets, and the checks that name each bad field."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from training.runner.errors import ConfigError

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
