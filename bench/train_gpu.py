"""LoRA training throughput and MFU of a Llama-3-8B-shaped model on one GPU (random weights, nothing downloaded).

    .venv/bin/python bench/train_gpu.py                         # batch 1 x 2048 tokens, H100/H200 peak
    .venv/bin/python bench/train_gpu.py --batch-size 4 --steps 20
    .venv/bin/python bench/train_gpu.py --peak-tflops 312       # A100
    .venv/bin/python bench/train_gpu.py --shape tiny --allow-cpu   # smoke test of this script without a GPU

The model: LlamaConfig with hidden 4096, 32 layers, 32 heads, 8 key/value heads, MLP 14336, vocabulary 128256
(the shape of Llama 3 8B), random weights in bf16 on cuda, SDPA attention, gradient checkpointing on, LoRA r=16
(alpha 32) on q, k, v, o, gate, up and down projections, AdamW on the LoRA weights, random token batches of
--seq tokens. The loop is the runner's: bf16 autocast, clip, fused AdamW, loss read back every 10 steps.

MFU = model FLOPs per second / peak. Model FLOPs per step (PaLM, Chowdhery et al. 2022, appendix B):

    6 × N × tokens + 12 × layers × hidden × seq × tokens

N = parameters that take part in matrix multiplications (all but the input embedding, a lookup); the second term is
attention (QK^T and AV, forward and backward). This is the usual convention, so the figure compares with
published MFU numbers. LoRA does less work than that (no weight gradients for the frozen base: about 4N per token)
and gradient checkpointing does more (the forward again: +2N), which the script also prints as "hardware FLOPs".
Peak: --peak-tflops, default 989 (H100/H200 SXM dense bf16).

Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

SHAPES = {
    "llama3-8b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "rope_theta": 500000.0,
        "max_position_embeddings": 8192,
    },
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 704,
        "vocab_size": 4096,
        "max_position_embeddings": 2048,
    },
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    parser.add_argument("--no-checkpointing", action="store_true", help="keep all activations (more memory)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (only sensible with --shape tiny)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(
            "no CUDA GPU on this machine: this benchmark needs one (or use --shape tiny --allow-cpu for a smoke test)"
        )
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[args.shape], attn_implementation="sdpa", use_cache=False)
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.config.use_cache = False
    if not args.no_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=TARGETS)
    lora.task_type = TaskType.CAUSAL_LM
    model = get_peft_model(model, lora)
    for parameter in model.parameters():  # the runner keeps trainable weights in fp32
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    build_seconds = time.perf_counter() - started

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedding = config.vocab_size * config.hidden_size
    matmul_params = total - trainable - embedding  # frozen base without the input embedding
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=device.type == "cuda")
    generator = torch.Generator(device="cpu").manual_seed(0)

    def batch() -> dict:
        ids = torch.randint(0, config.vocab_size, (args.batch_size, args.seq), generator=generator)
        ids = ids.to(device, non_blocking=True)
        return {"input_ids": ids, "labels": ids}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    pending = torch.zeros((), device=device)
    pending_steps = 0
    step_marks, losses = [], []
    for step in range(1, args.warmup + args.steps + 1):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(**batch()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        pending += loss.detach()
        pending_steps += 1
        if step % 10 == 0 or step == args.warmup or step == args.warmup + args.steps:
            losses.append(pending.item() / pending_steps)  # waits for the GPU, like the runner's report steps
            pending.zero_()
            pending_steps = 0
        if step == args.warmup:
            sync()
            step_marks.append(time.perf_counter())
    sync()
    step_marks.append(time.perf_counter())
    seconds_per_step = (step_marks[1] - step_marks[0]) / args.steps

    tokens = args.batch_size * args.seq
    attention = 12 * config.num_hidden_layers * config.hidden_size * args.seq * tokens
    model_flops = 6 * matmul_params * tokens + attention
    recompute = 0 if args.no_checkpointing else 2 * matmul_params * tokens + attention // 3
    hardware_flops = 4 * matmul_params * tokens + attention + recompute
    peak = args.peak_tflops * 1e12

    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    print(f"torch: {torch.__version__}")
    print(f"shape: {args.shape}  parameters: {total:,}  LoRA trainable: {trainable:,}  rank: {args.rank}")
    print(f"batch: {args.batch_size} x {args.seq} tokens  checkpointing: {'off' if args.no_checkpointing else 'on'}")
    print(f"build seconds: {build_seconds:.1f}")
    print(f"steps: {args.steps} timed after {args.warmup}")
    print(f"seconds/step: {seconds_per_step:.4f}")
    print(f"tokens/s: {tokens / seconds_per_step:,.0f}")
    print(f"model TFLOPs/s (6N + attention): {model_flops / seconds_per_step / 1e12:.1f}")
    print(f"MFU vs {args.peak_tflops:g} TFLOPS peak: {model_flops / seconds_per_step / peak:.1%}")
    print(f"hardware TFLOPs/s (LoRA 4N + recompute): {hardware_flops / seconds_per_step / 1e12:.1f}")
    print(f"hardware FLOPs utilisation: {hardware_flops / seconds_per_step / peak:.1%}")
    if device.type == "cuda":
        print(f"peak GPU memory GiB: {torch.cuda.max_memory_allocated() / 2**30:.1f}")
    print(f"loss (reports): {', '.join(f'{value:.3f}' for value in losses)}")
    print(f"loss median: {statistics.median(losses):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
