"""The training run: load the model with its LoRA adapter, the hand-written torch loop, checkpoints and resume.

The loop is a short hand-written torch loop (not the HF Trainer): forward, backward, clip, AdamW, LR schedule.
Everything else is bookkeeping kept off the hot path: the loss is read back from the GPU only at report steps,
nothing is written to disk between checkpoints. `bench/train_overhead.py` compares it with a bare PEFT loop.
"""

from __future__ import annotations

import contextlib
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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.runner.config import TrainConfig, config_errors, qlora_available
from training.runner.data import IGNORE_INDEX, _tensorize, collate, encode_rows, load_rows, split_rows
from training.runner.errors import ConfigError, TrainingError
from training.runner.model import (
    ModelInfo,
    _corrupt,
    _default_target_modules,
    _linear_module_names,
    _short,
    inspect_model,
)

CHECKPOINTS_KEPT = 2


STATE_FILE = "trainer_state.json"


GRAD_CLIP_NORM = 1.0


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


def _lr_factor(step: int, *, kind: str, warmup: int, total: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    done = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    return max(0.0, 1.0 - done)


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
        model, scaler = self.model, self.scaler
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
            self.optimizer_step(params)
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

    def optimizer_step(self, params: list[Any]) -> None:
        """Clip the accumulated gradients, step the optimizer (through the fp16 scaler if any) and the schedule."""
        import torch

        optimizer, scaler = self.optimizer, self.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)

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
    info = _trainable_model(base_model, config)
    train_rows, eval_rows = _train_eval_rows(config, train_file, eval_file)
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


def _trainable_model(base_model: str, config: TrainConfig) -> ModelInfo:
    info = inspect_model(base_model)
    if config.task not in info.task_types:
        can = " and ".join(info.task_types) or "neither task"
        raise TrainingError(
            "task_unsupported",
            f"The model {info.architecture} cannot be trained for {config.task}; it supports {can}.",
            "Choose a causal language model (e.g. Llama) for sft, or an encoder (e.g. BERT, MiniLM) for "
            "classification.",
        )
    return info


def _train_eval_rows(config: TrainConfig, train_file: Path, eval_file: Path | None) -> tuple[list[dict], list[dict]]:
    rows = load_rows(train_file, config)
    if eval_file is not None:
        train_rows, eval_rows = rows, load_rows(eval_file, config)
    else:
        train_rows, eval_rows = split_rows(rows, config.eval_fraction, config.seed)
    if not train_rows:
        raise TrainingError("data", "The training data has no rows.", "Choose a dataset version with examples.")
    return train_rows, eval_rows


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
