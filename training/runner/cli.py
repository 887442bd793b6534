"""The runner's command line: `python -m training.runner --config ... --base-model ...` prints one JSON object per
line (log, progress, result); `torchrun` or `accelerate launch` run it on several GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
from pathlib import Path
from typing import Any

from training.runner.config import TrainConfig
from training.runner.errors import ConfigError, TrainingError
from training.runner.loop import _Dist, train
from training.runner.model import _short


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
