"""Peak memory of a CPU training run of the demo model, beside what the launch form's estimate says.

    .venv/bin/python bench/train_memory.py              # the demo's own settings (seed_demo), about a minute
    .venv/bin/python bench/train_memory.py --steps 20   # shorter

Each measurement runs in a fresh Python process (ru_maxrss is the peak of a whole process and never goes down):
the resident memory of a bare interpreter, after importing torch, transformers and PEFT, after Django is set up as
in a worker, and the peak of the whole training run, which is what the job page shows as "Memory" on CPU. The
estimate is worked out for the same model, settings and rows, as the launch form does (training.estimate).
Prints `name: value` lines; nothing is asserted. Results: docs/benchmarks-training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The demo's training settings (projectsite/management/commands/seed_demo.py) and its rows (240 tickets, 80 % train).
DEMO_TRAINING = {"max_steps": 120, "learning_rate": 0.005, "lora_r": 16, "max_seq_length": 160, "batch_size": 8}
DEMO_ROWS = 192


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    figures = {"start_mib": _rss_mib()}
    if args.django:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectsite.settings")
        os.environ.setdefault("DEBUG", "1")  # settings only: the development secret key; no database is opened
        import django

        django.setup()
        import training.services  # noqa: F401  (what a worker imports before its first job)

        figures["django_mib"] = _rss_mib()
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from training import runner

    torch.set_num_threads(args.threads)
    figures["imports_mib"] = _rss_mib()
    if args.train:
        config = runner.apply_preset("quick", {**DEMO_TRAINING, "max_steps": args.steps, "device": "cpu"}, task="sft")
        with tempfile.TemporaryDirectory() as folder:
            result = runner.train(
                config, base_model=args.model, train_file=Path(args.data), output_dir=Path(folder) / "out"
            )
        figures["steps"] = result.metrics["steps"]
    figures["peak_mib"] = _peak_mib()
    print(json.dumps(figures))


def measure(args, *extra: str) -> dict:
    command = [sys.executable, __file__, "--child", "--model", args.model, "--data", args.data, *extra]
    command += ["--steps", str(args.steps), "--threads", str(args.threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEMO_TRAINING["max_steps"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--django", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from curation.demo import generate_tickets
    from training import estimate, runner
    from training.tinymodels import build_tiny_llama

    work = ROOT / "var" / "bench" / "train-memory"
    texts = [f"{row['customer_message']} {row['agent_reply']}" for row in generate_tickets(count=400, seed=3)]
    args.model = str(build_tiny_llama(work / "tiny-llama-demo", texts))  # as demo_base_models_ensure builds it
    rows = [{"input": t["customer_message"], "target": t["agent_reply"]} for t in generate_tickets(240, seed=11)]
    rows = rows[:DEMO_ROWS]
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    args.data = str(data)

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load_average_start: {os.getloadavg()[0]:.2f}")
    bare = measure(args)
    worker = measure(args, "--django")
    trained = measure(args, "--train")
    trained_worker = measure(args, "--train", "--django")

    info = runner.inspect_model(args.model)
    config = runner.apply_preset("quick", {**DEMO_TRAINING, "max_steps": args.steps}, task="sft")
    avg_chars = sum(len(r["input"]) + len(r["target"]) for r in rows) / len(rows)
    result = estimate.estimate(info, config, rows=len(rows), avg_tokens=max(avg_chars / 4, 8.0), device="cpu")

    print(f"model_parameters: {info.parameter_count}")
    print(f"rss_python_start_mib: {bare['start_mib']:.0f}")
    print(f"rss_after_torch_transformers_peft_mib: {bare['imports_mib']:.0f}")
    print(f"rss_after_django_and_imports_mib: {worker['imports_mib']:.0f}")
    print(f"peak_training_bare_process_mib: {trained['peak_mib']:.0f} ({trained['steps']} steps)")
    print(f"peak_training_django_process_mib: {trained_worker['peak_mib']:.0f}")
    print(f"training_adds_over_imports_mib: {trained['peak_mib'] - bare['imports_mib']:.0f}")
    print(f"estimate_mib: {result.memory_bytes / 2**20:.0f}")
    print(f"estimate_over_bare_peak: {result.memory_bytes / 2**20 / trained['peak_mib']:.2f}")
    print(f"estimate_over_worker_peak: {result.memory_bytes / 2**20 / trained_worker['peak_mib']:.2f}")
    print(f"load_average_end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
