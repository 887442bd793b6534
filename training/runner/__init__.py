"""LoRA fine-tuning of a local Hugging Face model: the plain-Python runner behind training jobs.

No Django here. Services hand it plain data (a TrainConfig, file paths, callbacks) and store what it returns, so a
worker on another machine can run it, also as a command (`python -m training.runner ...`, one JSON object per
line; `accelerate launch -m training.runner ...` or `torchrun` for several GPUs on one worker).

One module per part: errors, config (TrainConfig, presets, checks), model (inspection, LoRA targets), data (rows,
tokenizing, batches), loop (the run, checkpoints, resume) and cli (`__main__`). The names below are the runner's
public surface, as before the split.

Heavy libraries (torch, transformers, peft) are imported inside the functions that need them, so the web process
can import this package for PRESETS, TrainConfig and config_errors without loading torch.
"""

from training.runner.cli import main
from training.runner.config import (
    DEVICES,
    PRECISIONS,
    PRESETS,
    SCHEDULERS,
    TASKS,
    TrainConfig,
    apply_preset,
    config_errors,
    qlora_available,
)
from training.runner.data import IGNORE_INDEX, collate, encode_rows, load_rows, split_rows
from training.runner.errors import ActionableError, ConfigError, TrainingError
from training.runner.loop import (
    CHECKPOINTS_KEPT,
    GRAD_CLIP_NORM,
    STATE_FILE,
    Progress,
    TrainResult,
    checkpoint_folders,
    remove_tree,
    train,
)
from training.runner.model import DEFAULT_TARGET_MODULES, ModelInfo, inspect_model

__all__ = [
    "CHECKPOINTS_KEPT",
    "DEFAULT_TARGET_MODULES",
    "DEVICES",
    "GRAD_CLIP_NORM",
    "IGNORE_INDEX",
    "PRECISIONS",
    "PRESETS",
    "SCHEDULERS",
    "STATE_FILE",
    "TASKS",
    "ActionableError",
    "ConfigError",
    "ModelInfo",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "apply_preset",
    "checkpoint_folders",
    "collate",
    "config_errors",
    "encode_rows",
    "inspect_model",
    "load_rows",
    "main",
    "qlora_available",
    "remove_tree",
    "split_rows",
    "train",
]
