"""Rough memory and time a LoRA training job needs, worked out before it runs. Plain Python, no torch.

Memory, in bytes::

    memory = 1.15 × (weights + adapter + activations + logits) + runtime  # 15 % for the CUDA context, fragmentation

    weights     = parameter_count × bytes per weight
                  4 (fp32), 2 (bf16, fp16); "auto" means bf16 on cuda and fp32 on cpu.
                  QLoRA: 0.5625 (4-bit NF4 plus double-quantised scales) for all but the embedding matrix
                  (vocab_size × hidden_size), which stays at 2 bytes.
    adapter     = lora_parameters × 16         # fp32 weight, gradient, Adam's two moments
    lora_parameters = num_layers × r × hidden_size × Σ over target modules of (inputs + outputs) / hidden_size
                  2 for an attention projection (q_proj, k_proj, v_proj, o_proj, query, key, value),
                  4.5 for a Llama MLP projection (gate_proj, up_proj, down_proj: hidden + 3.5 × hidden),
                  12 for BERT's "dense" (three per block: h→h, h→4h, 4h→h), 2 for any other name.
    activations = batch_size × seq × hidden_size × num_layers × k × (2 in fp32, else 1)
                  k = 34 bytes per token per hidden unit per layer without gradient checkpointing (Korthikanti et
                  al. 2022, "Reducing Activation Recomputation in Large Transformer Models", 16-bit, attention
                  scores not stored as with SDPA/flash attention); k = 2 with checkpointing (QLoRA turns it on:
                  only each layer's input is kept), plus one layer at full size while it is recomputed.
    logits      = batch_size × seq × vocab_size × 4 × 2              # fp32 logits and their gradient (sft only)
    seq         = min(avg_tokens, max_seq_length)
    runtime     = on cpu 512 MiB: the worker's Python process with PyTorch, Transformers and PEFT loaded (453 MiB
                  measured) and what the first training steps allocate beyond the tensors above (autograd, oneDNN
                  and thread buffers: about 100 MiB). On CPU the job page shows the process's peak resident memory,
                  so this belongs in the figure; for small models it is nearly all of it (bench/train_memory.py,
                  docs/benchmarks-training.md). On cuda 0: the job page shows the GPU memory PyTorch allocated,
                  which leaves the process and the CUDA context out.
    Not counted: the tokenizer and the tokenized rows (a few MiB), the data loader, and a second process for
    multi-GPU runs.

Time, in seconds::

    seconds = tokens / tokens_per_second
    tokens  = max_steps × batch_size × grad_accum × seq     when max_steps is set, else epochs × rows × seq

tokens_per_second is best measured (a previous job on the same worker); without it the estimate guesses
FLOPs per second ÷ FLOPs per token, FLOPs per token = 4 × parameter_count (forward 2N, backward through the frozen
weights 2N; LoRA skips the base's weight gradients) + 2N when checkpointing recomputes the forward; FLOPs per
second = 100 TFLOPS on cuda (about a third of an A100's bf16 peak), 0.1 TFLOPS on cpu. Small models reach far less
(their steps are dominated by fixed costs), so the guess is said to be one in the notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from training.runner import DEFAULT_TARGET_MODULES, ModelInfo, TrainConfig

OVERHEAD = 1.15
ADAM_BYTES_PER_LORA_PARAM = 16
ACTIVATION_K = 34
ACTIVATION_K_CHECKPOINTED = 2
# The process itself, on CPU (see the module docstring; measured by bench/train_memory.py).
RUNTIME_BYTES = {"cuda": 0, "cpu": 512 * 2**20}
QLORA_BYTES_PER_WEIGHT = 0.5625
DEFAULT_FLOPS = {"cuda": 100e12, "cpu": 0.1e12}
# Small models are bound by per-step overhead, not arithmetic: a FLOP-based guess alone promises far too much.
MAX_TOKENS_PER_SECOND = {"cuda": 200_000.0, "cpu": 2_000.0}
_MODULE_WIDTH = {
    **dict.fromkeys(("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value"), 2.0),
    **dict.fromkeys(("gate_proj", "up_proj", "down_proj"), 4.5),
    "dense": 12.0,
}


@dataclass
class Estimate:
    memory_bytes: int
    seconds: float
    tokens: int
    notes: list[str] = field(default_factory=list)


def _precision(config: TrainConfig, device: str) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16" if device == "cuda" else "fp32"


def lora_parameters(info: ModelInfo, config: TrainConfig) -> int:
    """Approximate trainable LoRA parameters (see the module docstring for the widths per module name)."""
    targets = config.target_modules or DEFAULT_TARGET_MODULES.get(info.model_type)
    if targets is None:  # the runner then targets every linear layer: count a Llama-like block
        targets = DEFAULT_TARGET_MODULES["llama"]
    width = sum(_MODULE_WIDTH.get(name, 2.0) for name in targets)
    return int(info.num_layers * config.lora_r * info.hidden_size * width)


def estimate(
    info: ModelInfo,
    config: TrainConfig,
    *,
    rows: int,
    avg_tokens: float,
    device: str = "cuda",
    tokens_per_second: float | None = None,
) -> Estimate:
    """Memory and time for training `info` with `config` on `rows` rows of `avg_tokens` tokens on `device`."""
    notes: list[str] = []
    precision = _precision(config, device)
    checkpointing = config.qlora
    seq = max(1.0, min(float(avg_tokens), float(config.max_seq_length)))
    embedding = info.vocab_size * info.hidden_size

    if config.qlora:
        weights = (max(0, info.parameter_count - embedding)) * QLORA_BYTES_PER_WEIGHT + embedding * 2
        notes.append("QLoRA: weights counted at 4 bits, the embedding matrix at 16 bits.")
    else:
        weights = info.parameter_count * (4 if precision == "fp32" else 2)
    adapter = lora_parameters(info, config) * ADAM_BYTES_PER_LORA_PARAM
    per_layer = config.batch_size * seq * info.hidden_size * (2 if precision == "fp32" else 1)
    if checkpointing:
        activations = per_layer * (info.num_layers * ACTIVATION_K_CHECKPOINTED + ACTIVATION_K)
        notes.append("Gradient checkpointing (on with QLoRA) keeps only each layer's input.")
    else:
        activations = per_layer * info.num_layers * ACTIVATION_K
    logits = config.batch_size * seq * info.vocab_size * 8 if config.task == "sft" else 0
    runtime = RUNTIME_BYTES.get(device, RUNTIME_BYTES["cpu"])
    memory = int(OVERHEAD * (weights + adapter + activations + logits)) + runtime
    if runtime:
        notes.append(
            f"Includes about {runtime // 2**20} MiB for the worker process itself (Python with PyTorch loaded); "
            f"the model and its training need {(memory - runtime) / 2**20:,.0f} MiB of it."
        )

    if config.max_steps > 0:
        tokens = int(config.max_steps * config.batch_size * config.grad_accum * seq)
    else:
        tokens = int(math.ceil(config.epochs * rows * seq))
    if tokens_per_second is None or tokens_per_second <= 0:
        flops_per_token = (6 if checkpointing else 4) * max(1, info.parameter_count)
        tokens_per_second = min(
            DEFAULT_FLOPS.get(device, DEFAULT_FLOPS["cpu"]) / flops_per_token,
            MAX_TOKENS_PER_SECOND.get(device, MAX_TOKENS_PER_SECOND["cpu"]),
        )
        notes.append(
            f"Time is a rough guess ({tokens_per_second:,.0f} tokens/s on {device}); "
            "it becomes accurate once a job has run on this worker."
        )
    seconds = tokens / tokens_per_second
    return Estimate(memory_bytes=memory, seconds=seconds, tokens=tokens, notes=notes)


def fits(estimate: Estimate, memory_bytes_available: int) -> bool:
    """True when the estimated memory is within what the device has free."""
    return estimate.memory_bytes <= memory_bytes_available
