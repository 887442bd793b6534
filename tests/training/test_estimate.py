"""training.estimate: the documented formula, checked on a Llama-3-8B-shaped model and on MiniLM, and against the
peak memory of a real CPU training run of the tiny Llama."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.estimate import RUNTIME_BYTES, Estimate, estimate, fits, lora_parameters
from training.runner import ModelInfo, TrainConfig, inspect_model

from .conftest import sft_rows

GIB = 2**30
LLAMA_8B = ModelInfo(
    source="/models/llama-3-8b",
    architecture="LlamaForCausalLM",
    model_type="llama",
    parameter_count=8_030_261_248,
    hidden_size=4096,
    num_layers=32,
    vocab_size=128_256,
    task_types=["sft"],
)


def test_lora_parameters_for_llama_are_close_to_peft_count():
    # PEFT reports 41,943,040 trainable parameters for r=16 on all seven projections of Llama-3-8B (GQA makes
    # k/v smaller than the estimate assumes, so the estimate is a little high).
    count = lora_parameters(LLAMA_8B, TrainConfig(task="sft", lora_r=16))
    assert 41_943_040 <= count <= 41_943_040 * 1.3


def test_bf16_llama_8b_needs_about_twenty_gib_and_fits_an_h100_but_not_a_24_gib_card():
    config = TrainConfig(task="sft", lora_r=16, batch_size=1, max_seq_length=2048, epochs=1)
    result = estimate(LLAMA_8B, config, rows=1000, avg_tokens=512, device="cuda")
    assert 17 * GIB < result.memory_bytes < 26 * GIB
    assert result.tokens == 512_000
    assert fits(result, 80 * GIB)
    assert not fits(result, 16 * GIB)
    assert any("rough guess" in note for note in result.notes)


def test_qlora_needs_far_less_memory_than_bf16():
    config = TrainConfig(task="sft", lora_r=16, batch_size=1, max_seq_length=2048)
    full = estimate(LLAMA_8B, config, rows=1000, avg_tokens=512)
    quantised = estimate(
        LLAMA_8B, TrainConfig(task="sft", lora_r=16, batch_size=1, qlora=True), rows=1000, avg_tokens=512
    )
    assert quantised.memory_bytes < full.memory_bytes / 2
    assert 4 * GIB < quantised.memory_bytes < 10 * GIB
    assert any("QLoRA" in note for note in quantised.notes)


def test_memory_grows_with_batch_and_sequence_and_time_with_rows():
    small = estimate(LLAMA_8B, TrainConfig(task="sft", batch_size=1), rows=100, avg_tokens=200)
    bigger = estimate(LLAMA_8B, TrainConfig(task="sft", batch_size=8), rows=100, avg_tokens=200)
    longer = estimate(LLAMA_8B, TrainConfig(task="sft", batch_size=1), rows=100, avg_tokens=256 * 4)
    assert small.memory_bytes < bigger.memory_bytes
    assert small.memory_bytes < longer.memory_bytes
    assert longer.tokens == 100 * 256  # cut at max_seq_length
    assert estimate(LLAMA_8B, TrainConfig(task="sft"), rows=1000, avg_tokens=200).seconds == pytest.approx(
        10 * small.seconds
    )


def test_measured_throughput_replaces_the_guess_and_max_steps_sets_the_tokens():
    config = TrainConfig(task="sft", max_steps=30, batch_size=4, grad_accum=2)
    result = estimate(LLAMA_8B, config, rows=10_000, avg_tokens=100, tokens_per_second=2_000)
    assert result.tokens == 30 * 4 * 2 * 100
    assert result.seconds == pytest.approx(12.0)
    assert not any("rough guess" in note for note in result.notes)


def test_minilm_classification_on_cpu(minilm):
    info = inspect_model(str(minilm))
    config = TrainConfig(task="classification", labels=["a", "b"], batch_size=8, max_seq_length=128, epochs=2)
    result = estimate(info, config, rows=500, avg_tokens=40, device="cpu")
    assert isinstance(result, Estimate)
    weights = info.parameter_count * 4  # fp32 on cpu
    assert weights < result.memory_bytes - RUNTIME_BYTES["cpu"] < 4 * weights
    assert any("worker process itself" in note for note in result.notes)
    assert result.tokens == 2 * 500 * 40
    assert 0 < result.seconds < 3600


# A fresh process trains and prints its peak resident memory: what the job page shows as "Memory" for a CPU job, and
# what the estimate must come near. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a large
# pytest process would report the parent's size.
_TRAIN_AND_PEAK = """
import json, re, sys, tempfile
from pathlib import Path
import torch
torch.set_num_threads(1)
from training import runner
config = runner.TrainConfig.from_dict(json.loads(sys.argv[1]))
with tempfile.TemporaryDirectory() as folder:
    runner.train(config, base_model=sys.argv[2], train_file=Path(sys.argv[3]), output_dir=Path(folder))
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024)
"""


def test_cpu_estimate_of_the_tiny_model_is_within_twice_the_peak_of_a_real_run(tiny_llama, sft_file):
    config = TrainConfig(
        task="sft", max_steps=6, batch_size=8, max_seq_length=128, lora_r=16, checkpoint_every=0, device="cpu"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _TRAIN_AND_PEAK, json.dumps(config.to_dict()), str(tiny_llama), str(sft_file)],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    peak = int(out.strip().splitlines()[-1])
    rows = sft_rows()
    avg_chars = sum(len(row["input"]) + len(row["target"]) for row in rows) / len(rows)
    result = estimate(inspect_model(str(tiny_llama)), config, rows=len(rows), avg_tokens=avg_chars / 4, device="cpu")
    # The model's own share is a few MiB: without the process (as before: 8 MiB against 509 MB) this fails.
    assert peak / 2 <= result.memory_bytes <= peak * 2, (result.memory_bytes / 2**20, peak / 2**20)
