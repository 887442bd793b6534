"""Per-step overhead of training.runner.train against a bare PEFT loop on the same tiny Llama, data and steps.

    .venv/bin/python bench/train_overhead.py                       # hidden 128, 2 layers, batch 8 x 128 tokens
    .venv/bin/python bench/train_overhead.py --hidden 256 --layers 4 --repeats 5
    .venv/bin/python bench/train_overhead.py --device cuda          # on a GPU worker
    .venv/bin/python bench/train_overhead.py --threads 2            # both cores (noisier when anything else runs)

Both sides do the same arithmetic each step: forward with labels, backward, clip the gradient norm to 1.0, AdamW,
linear LR schedule, zero the gradients, on identical batches in the same order. The bare loop gets its batches
already collated (and on the device) before the clock starts, so everything the runner does beyond that
(collating, progress callbacks, cancel checks, token counting) counts as runner overhead. No checkpoints and no
evaluation rows; loading and the final save are not timed.

Paired (the headline figure): the bare loop runs inside the runner's on_progress callback, one bare step after
each runner step (on a GPU: as many bare steps as the runner made since its last report, which is every 10 steps).
A runner step is the time between the end of one callback and the start of the next; a bare step is the time
spent in the callback. Each pair runs back to back, so load from other processes on a shared machine hits both
alike. Printed: the median of the per-pair ratios and the ratio of the summed times (goal: <= 1.03).

Separate (a cross-check): whole runs of each, alternating which goes first, medians of ms/step.

Builds its model under var/bench/. Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DIR = ROOT / "var" / "bench"


def make_rows(count: int) -> list[dict]:
    from training.tinymodels import default_corpus

    texts = default_corpus()
    rows = []
    for i in range(count):
        # Several sentences per side so that most rows fill the sequence window.
        question = " ".join(texts[(2 * i + k) % len(texts)] for k in range(0, 8, 2))
        answer = " ".join(texts[(2 * i + k) % len(texts)] for k in range(1, 9, 2))
        rows.append({"input": f"Ticket {i}: {question}", "target": answer})
    return rows


class BareLoop:
    """The textbook loop: PEFT model, pre-collated batches in the runner's order, nothing else."""

    def __init__(self, config, base: Path, rows: list[dict], device: str) -> None:
        import torch
        from peft import LoraConfig, TaskType, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from training.runner import collate, encode_rows
        from training.runner.loop import _lr_factor
        from training.runner.model import _LLAMA_LIKE_TARGETS

        self.device = device
        torch.manual_seed(config.seed)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
        model.config.use_cache = False
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=_LLAMA_LIKE_TARGETS,
            task_type=TaskType.CAUSAL_LM,
        )
        self.model = get_peft_model(model, lora)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.learning_rate, weight_decay=0.0, fused=device == "cuda"
        )
        schedule = functools.partial(_lr_factor, kind="linear", warmup=0, total=config.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

        examples = encode_rows(rows, tokenizer, config)
        batches, epoch = [], 0
        while len(batches) < config.max_steps:
            generator = torch.Generator().manual_seed(config.seed + epoch)
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order), config.batch_size):
                chosen = [examples[i] for i in order[start : start + config.batch_size]]
                batch, _ = collate(chosen, tokenizer.pad_token_id)
                batches.append({key: value.to(device) for key, value in batch.items()})
            epoch += 1
        self.batches = batches[: config.max_steps]
        self.done = 0

    def step(self) -> None:
        import torch

        loss = self.model(**self.batches[self.done]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.done += 1

    def sync(self) -> float:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


def paired_run(config, base: Path, data: Path, rows: list[dict], device: str, warmup: int) -> list[tuple[float, float]]:
    """(runner seconds per step, bare seconds per step) for each report of the runner after warm-up."""
    from training.runner import train

    bare = BareLoop(config, base, rows, device)
    pairs: list[tuple[float, float]] = []
    state = {"ended": None, "step": 0}

    def on_progress(progress) -> None:
        if progress.phase != "training":
            return
        began = bare.sync()  # the runner has just read its loss back, so its GPU work is done too
        steps = progress.step - state["step"]
        for _ in range(steps):
            bare.step()
        ended = bare.sync()
        if state["ended"] is not None and progress.step > warmup:
            pairs.append(((began - state["ended"]) / steps, (ended - began) / steps))
        state["ended"], state["step"] = ended, progress.step

    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as out:
        train(config, base_model=str(base), train_file=data, output_dir=Path(out), on_progress=on_progress)
    return pairs


def separate_runner(config, base: Path, data: Path, warmup: int) -> float:
    from training.runner import train

    stamps: dict[int, float] = {}

    def on_progress(progress) -> None:
        if progress.phase == "training":
            stamps[progress.step] = time.perf_counter()

    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as out:
        train(config, base_model=str(base), train_file=data, output_dir=Path(out), on_progress=on_progress)
    first = min(step for step in stamps if step >= warmup)  # on a GPU the runner reports every 10 steps
    return (stamps[config.max_steps] - stamps[first]) / (config.max_steps - first)


def separate_bare(config, base: Path, rows: list[dict], device: str, warmup: int) -> float:
    bare = BareLoop(config, base, rows, device)
    for _ in range(warmup):
        bare.step()
    started = bare.sync()
    while bare.done < len(bare.batches):
        bare.step()
    return (bare.sync() - started) / (len(bare.batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128, help="max sequence length (rows are long enough to fill it)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps at the start of each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (paired and separate)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steadier figures on a shared machine)"
    )
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from training.runner import TrainConfig
    from training.tinymodels import build_tiny_llama

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    base = build_tiny_llama(
        BENCH_DIR / f"tiny-llama-h{args.hidden}-l{args.layers}",
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
    )
    rows = make_rows(args.rows)
    data = BENCH_DIR / "train_overhead.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = TrainConfig(
        task="sft",
        max_steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        max_seq_length=args.seq,
        eval_fraction=0.0,
        checkpoint_every=0,
        precision="fp32",
        device=args.device,
    )

    print(f"machine: {platform.node()} {platform.machine()} cpus={os.cpu_count()} torch threads={args.threads}")
    print(f"torch: {torch.__version__}  device: {args.device}")
    print(f"model: tiny llama hidden={args.hidden} layers={args.layers}  batch={args.batch_size} x {args.seq} tokens")
    print(f"steps: {args.steps} timed after {args.warmup} warm-up, repeats: {args.repeats}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")

    pairs = []
    for repeat in range(args.repeats):
        run = paired_run(config, base, data, rows, args.device, args.warmup)
        pairs += run
        ours, bare = sum(p[0] for p in run), sum(p[1] for p in run)
        print(
            f"paired run {repeat + 1}: runner ms/step {ours / len(run) * 1000:.3f}  bare {bare / len(run) * 1000:.3f}"
        )
    per_pair = statistics.median(ours / bare for ours, bare in pairs)
    summed = sum(p[0] for p in pairs) / sum(p[1] for p in pairs)
    print(f"paired runner ms/step (median): {statistics.median(p[0] for p in pairs) * 1000:.3f}")
    print(f"paired bare PEFT ms/step (median): {statistics.median(p[1] for p in pairs) * 1000:.3f}")
    print(f"paired ratio runner/bare (median of {len(pairs)} pairs): {per_pair:.3f}")
    print(
        f"paired ratio runner/bare (summed times): {summed:.3f}  goal <= 1.03: {'met' if summed <= 1.03 else 'NOT met'}"
    )

    bare_runs, our_runs = [], []
    for repeat in range(args.repeats):
        order = ("bare", "runner") if repeat % 2 == 0 else ("runner", "bare")
        for side in order:
            if side == "bare":
                bare_runs.append(separate_bare(config, base, rows, args.device, args.warmup))
            else:
                our_runs.append(separate_runner(config, base, data, args.warmup))
        print(f"separate runs {repeat + 1}: bare ms/step {bare_runs[-1] * 1000:.3f}  runner {our_runs[-1] * 1000:.3f}")
    ratio = statistics.median(our_runs) / statistics.median(bare_runs)
    print(f"separate ratio runner/bare (medians): {ratio:.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
