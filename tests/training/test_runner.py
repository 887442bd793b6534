"""training.runner on real tiny models (CPU, a few steps each). No database."""

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import LABELS, classification_rows, sft_rows, write_jsonl
from training import runner
from training.runner import (
    IGNORE_INDEX,
    ConfigError,
    TrainConfig,
    TrainingError,
    apply_preset,
    collate,
    config_errors,
    encode_rows,
    inspect_model,
    qlora_available,
    train,
)
from training.runner.loop import _lr_factor

ROOT = Path(__file__).resolve().parents[2]


def sft_config(**overrides) -> TrainConfig:
    settings = {"task": "sft", "max_steps": 8, "learning_rate": 1e-2, "max_seq_length": 64, "checkpoint_every": 2}
    return TrainConfig.from_dict({**settings, **overrides})


class Recorder:
    def __init__(self, crash_at: int | None = None):
        self.progress, self.logs, self.checkpoints = [], [], []
        self.crash_at = crash_at

    def on_progress(self, progress):
        self.progress.append(progress)
        if progress.phase == "training" and progress.step == self.crash_at:
            raise RuntimeError("simulated worker crash")

    def training_losses(self) -> dict[int, float]:
        return {p.step: p.loss for p in self.progress if p.phase == "training"}

    def kwargs(self) -> dict:
        return {
            "on_progress": self.on_progress,
            "on_log": self.logs.append,
            "on_checkpoint": lambda path, step: self.checkpoints.append((path, step)),
        }


@pytest.fixture(scope="module")
def reference(tiny_llama, tmp_path_factory):
    """One uninterrupted SFT run (8 steps, checkpoint every 2), shared by the tests that only read its results."""
    folder = tmp_path_factory.mktemp("reference")
    data = write_jsonl(folder / "sft.jsonl", sft_rows())
    recorder = Recorder()
    result = train(
        sft_config(), base_model=str(tiny_llama), train_file=data, output_dir=folder / "out", **recorder.kwargs()
    )
    return result, recorder, folder


# --- a real SFT run ---------------------------------------------------------------------------------------------


def test_sft_runs_the_requested_steps_and_the_loss_falls(reference):
    result, recorder, _ = reference
    assert result.status == "succeeded"
    assert result.metrics["steps"] == 8
    losses = recorder.training_losses()
    assert sorted(losses) == list(range(1, 9))
    assert (losses[7] + losses[8]) / 2 < (losses[1] + losses[2]) / 2 - 0.1
    assert result.metrics["eval_loss"] is not None
    assert result.metrics["train_tokens"] > 0 and result.metrics["tokens_per_second"] > 0
    assert result.hardware["device"] == "cpu" and result.hardware["precision"] == "fp32"
    phases = [p.phase for p in recorder.progress]
    assert phases[0] == "loading" and phases[-1] == "saving"
    assert {"training", "evaluating", "checkpointing"} <= set(phases)
    evaluations = [(p.step, p.phase) for p in recorder.progress if p.eval_loss is not None]
    assert evaluations == [(2, "checkpointing"), (4, "checkpointing"), (6, "checkpointing"), (8, "checkpointing")]
    assert recorder.progress[-2].eval_loss == result.metrics["eval_loss"]
    assert any(line.startswith("Loaded model LlamaForCausalLM") for line in recorder.logs)
    assert "Step 8/8 loss" in " ".join(recorder.logs)


def test_saved_adapter_loads_with_peft_and_changes_the_output(reference, tiny_llama):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _, _ = reference
    adapter = result.adapter_dir
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert (adapter / "tokenizer.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    inputs = tokenizer("The mobile app keeps logging me out", return_tensors="pt")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        base_logits = base(**inputs).logits
        tuned = PeftModel.from_pretrained(base, adapter)
        tuned_logits = tuned(**inputs).logits
        generated = tuned.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert not torch.allclose(base_logits, tuned_logits)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 5


def test_only_the_two_latest_checkpoints_are_kept(reference):
    result, recorder, folder = reference
    assert [step for _, step in recorder.checkpoints] == [2, 4, 6, 8]
    kept = sorted(p.name for p in (folder / "out" / "checkpoints").iterdir())
    assert kept == ["checkpoint-6", "checkpoint-8"]
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pt", "trainer_state.json"):
        assert (folder / "out" / "checkpoints" / "checkpoint-8" / name).is_file()


def test_resume_after_a_crash_continues_from_the_last_checkpoint_and_matches(reference, tiny_llama, tmp_path):
    result, reference_recorder, _ = reference
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    out = tmp_path / "out"
    crashed = Recorder(crash_at=5)
    with pytest.raises(RuntimeError, match="simulated worker crash"):
        train(sft_config(), base_model=str(tiny_llama), train_file=data, output_dir=out, **crashed.kwargs())
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert not (out / "adapter").exists()

    resumed = Recorder()
    second = train(sft_config(), base_model=str(tiny_llama), train_file=data, output_dir=out, **resumed.kwargs())
    assert second.status == "succeeded"
    assert second.resumed_from_step == 4
    assert second.metrics["steps"] == result.metrics["steps"] == 8
    assert sorted(resumed.training_losses()) == [5, 6, 7, 8]
    assert "Resumed from checkpoint 4" in resumed.logs
    for step in (5, 6, 7, 8):
        assert resumed.training_losses()[step] == pytest.approx(reference_recorder.training_losses()[step], abs=1e-5)
    expected = load_file(result.adapter_dir / "adapter_model.safetensors")
    actual = load_file(second.adapter_dir / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=1e-5)
    assert second.metrics["train_loss"] == pytest.approx(result.metrics["train_loss"], abs=1e-5)


def test_checkpoints_of_other_settings_are_not_resumed(reference, tiny_llama, tmp_path):
    _, _, folder = reference
    shutil.copytree(folder / "out" / "checkpoints", tmp_path / "out" / "checkpoints")
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    with pytest.raises(TrainingError) as caught:
        train(sft_config(lora_r=4), base_model=str(tiny_llama), train_file=data, output_dir=tmp_path / "out")
    assert caught.value.code == "config"
    assert "other settings" in caught.value.message


def test_cancel_after_step_three_stops_without_an_adapter(tiny_llama, sft_file, tmp_path):
    recorder = Recorder()
    result = train(
        sft_config(checkpoint_every=0, max_steps=20),
        base_model=str(tiny_llama),
        train_file=sft_file,
        output_dir=tmp_path / "out",
        should_cancel=lambda: bool(recorder.training_losses()) and max(recorder.training_losses()) >= 3,
        **recorder.kwargs(),
    )
    assert result.status == "cancelled"
    assert result.adapter_dir is None
    assert max(recorder.training_losses()) == 3
    assert not (tmp_path / "out" / "adapter").exists()


def test_epochs_with_gradient_accumulation_set_the_number_of_steps(tiny_llama, sft_file, tmp_path):
    # 40 rows, 4 held out: 36 rows = 9 batches of 4; two batches per step -> 5 steps for one epoch.
    config = sft_config(max_steps=0, epochs=1.0, grad_accum=2, checkpoint_every=0)
    result = train(config, base_model=str(tiny_llama), train_file=sft_file, output_dir=tmp_path / "out")
    assert result.metrics["steps"] == 5
    assert result.metrics["epochs"] == pytest.approx(10 / 9, abs=1e-3)


# --- data preparation -------------------------------------------------------------------------------------------


def test_prompt_and_padding_are_masked_in_the_collated_labels(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = TrainConfig(task="sft", max_seq_length=64)
    rows = [{"input": "Where is my invoice?", "target": "In Settings."}, {"input": "Hi", "target": "Hello there."}]
    examples = encode_rows(rows, tokenizer, config)
    batch, tokens = collate(examples, tokenizer.pad_token_id)
    assert tokens == sum(len(e["input_ids"]) for e in examples)
    for row, example, ids, labels, mask in zip(
        rows, examples, batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": row["input"]}], tokenize=False, add_generation_prompt=True
        )
        prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        length = len(example["input_ids"])
        assert (labels[:prompt_len] == IGNORE_INDEX).all()
        assert (labels[length:] == IGNORE_INDEX).all() and (mask[length:] == 0).all()
        learnt = labels[prompt_len:length]
        assert (learnt == ids[prompt_len:length]).all()
        assert tokenizer.decode(learnt).startswith(row["target"] + tokenizer.eos_token)


def test_prompt_template_is_used_without_a_chat_template_and_long_rows_are_cut(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = None
    config = TrainConfig(task="sft", max_seq_length=32, prompt_template="Q: {input}\nA: ")
    long_input = "Please help, the export keeps failing. " * 10
    short, long = encode_rows(
        [{"input": "Hi", "target": "Hello."}, {"input": long_input, "target": "Fixed."}], tokenizer, config
    )
    prompt_ids = [tokenizer.bos_token_id] + tokenizer("Q: Hi\nA: ", add_special_tokens=False)["input_ids"]
    assert short["input_ids"][: len(prompt_ids)] == prompt_ids
    assert short["labels"][: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert tokenizer.decode([t for t in short["labels"] if t != IGNORE_INDEX]) == "Hello." + tokenizer.eos_token
    assert len(long["input_ids"]) == 32
    assert long["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer.decode([t for t in long["labels"] if t != IGNORE_INDEX]) == "Fixed." + tokenizer.eos_token


# --- classification ---------------------------------------------------------------------------------------------


def test_classification_on_minilm_saves_an_adapter_with_its_head_and_reports_accuracy(minilm, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train_file = write_jsonl(tmp_path / "train.jsonl", classification_rows(24))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", classification_rows(6))
    config = TrainConfig(
        task="classification", labels=LABELS, max_steps=6, learning_rate=1e-3, max_seq_length=32, checkpoint_every=0
    )
    result = train(
        config, base_model=str(minilm), train_file=train_file, eval_file=eval_file, output_dir=tmp_path / "o"
    )
    assert result.status == "succeeded"
    assert 0.0 <= result.metrics["eval_accuracy"] <= 1.0
    assert result.metrics["eval_loss"] > 0
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert any("classifier" in key for key in weights), "the new head must be saved with the adapter"
    assert json.loads((result.adapter_dir / "training_config.json").read_text())["labels"] == LABELS

    # The reported accuracy is what the saved adapter really scores on the evaluation rows.
    tokenizer = AutoTokenizer.from_pretrained(result.adapter_dir)
    base = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=3)
    model = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    rows = classification_rows(6)
    with torch.no_grad():
        inputs = tokenizer([row["input"] for row in rows], return_tensors="pt", padding=True)
        predicted = model(**inputs).logits.argmax(-1).tolist()
    correct = sum(LABELS[i] == row["label"] for i, row in zip(predicted, rows, strict=True))
    assert result.metrics["eval_accuracy"] == pytest.approx(correct / len(rows))


def test_held_out_rows_are_seeded_and_never_all():
    rows = [{"input": str(i), "target": str(i)} for i in range(50)]
    train_rows, eval_rows = runner.split_rows(rows, 0.1, seed=7)
    assert len(eval_rows) == 5 and len(train_rows) == 45
    assert runner.split_rows(rows, 0.1, seed=7) == (train_rows, eval_rows)
    assert runner.split_rows(rows, 0.1, seed=8)[1] != eval_rows
    assert runner.split_rows(rows[:2], 0.5, seed=7)[0] != []
    assert runner.split_rows(rows, 0.0, seed=7) == (rows, [])


def test_learning_rate_schedules():
    factor = _lr_factor
    assert [factor(s, kind="linear", warmup=2, total=10) for s in (0, 1, 2, 6, 10)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert factor(5, kind="constant", warmup=0, total=10) == 1.0
    assert factor(0, kind="cosine", warmup=0, total=10) == 1.0
    assert factor(5, kind="cosine", warmup=0, total=10) == pytest.approx(0.5)
    assert factor(10, kind="cosine", warmup=0, total=10) == pytest.approx(0.0)


# --- settings ---------------------------------------------------------------------------------------------------


def test_defaults_and_presets_have_no_errors():
    assert config_errors(TrainConfig(task="sft")) == {}
    for name in runner.PRESETS:
        assert config_errors(apply_preset(name, task="sft")) == {}
    assert apply_preset("quick", task="sft").max_steps == 30
    thorough = apply_preset("thorough", {"batch_size": 2}, task="classification")
    assert (thorough.epochs, thorough.lora_r, thorough.lr_scheduler, thorough.batch_size) == (3.0, 32, "cosine", 2)
    assert thorough.warmup_ratio > 0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("learning_rate", 0.5, "Learning rate must be between 0.000001 and 0.01."),
        ("lora_r", 0, "LoRA rank must be between 1 and 256."),
        ("lora_dropout", 0.9, "LoRA dropout must be between 0 and 0.5."),
        ("batch_size", 0, "Batch size must be between 1 and 1,024."),
        ("max_seq_length", 8, "Maximum sequence length must be between 16 and 32,768."),
        ("eval_fraction", 0.8, "Evaluation share must be between 0 and 0.5."),
        ("epochs", 0.0, "Epochs must be more than 0 and at most 100."),
        ("lr_scheduler", "step", "Learning rate schedule must be linear, cosine or constant."),
        ("precision", "int8", "Precision must be auto, fp32, bf16 or fp16."),
        ("task", "chat", "Task must be sft (write answers) or classification (pick a label)."),
        ("prompt_template", "no placeholder", "The prompt template must contain {input}"),
        ("target_modules", [], "Target modules must name at least one layer"),
        ("device", "tpu", "Device must be auto, cpu or cuda."),
    ],
)
def test_config_errors_name_the_field_in_plain_words(field, value, words):
    config = TrainConfig.from_dict({"task": "sft", field: value})
    errors = config_errors(config)
    assert list(errors) == [field]
    assert errors[field].startswith(words)


def test_classification_needs_two_distinct_labels():
    assert "labels" in config_errors(TrainConfig(task="classification", labels=["only"]))
    assert "labels" in config_errors(TrainConfig(task="classification", labels=["a", "a"]))


def test_unknown_and_mistyped_settings_are_refused():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"task": "sft", "learnin_rate": 1e-4, "lora_r": "eight"})
    assert caught.value.code == "config"
    assert set(caught.value.errors) == {"learnin_rate", "lora_r"}
    assert "learnin_rate" in str(caught.value)
    with pytest.raises(ConfigError):
        apply_preset("fastest", task="sft")
    round_trip = TrainConfig.from_dict(sft_config().to_dict())
    assert round_trip == sft_config()


def test_train_refuses_invalid_settings_before_loading(tiny_llama, sft_file, tmp_path):
    with pytest.raises(ConfigError) as caught:
        train(sft_config(learning_rate=1.0), base_model=str(tiny_llama), train_file=sft_file, output_dir=tmp_path)
    assert "learning_rate" in caught.value.errors


# --- data and model problems ------------------------------------------------------------------------------------


def test_empty_data_is_a_data_error(tiny_llama, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(tiny_llama), train_file=empty, output_dir=tmp_path / "out")
    assert caught.value.code == "data"
    assert "no rows" in caught.value.message


def test_a_label_outside_the_labels_names_its_line(minilm, tmp_path):
    rows = classification_rows(3)
    rows[1]["label"] = "refunds"
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    config = TrainConfig(task="classification", labels=LABELS, max_steps=2)
    with pytest.raises(TrainingError) as caught:
        train(config, base_model=str(minilm), train_file=data, output_dir=tmp_path / "out")
    assert caught.value.code == "data"
    assert "Line 2 of bad.jsonl" in caught.value.message and "refunds" in caught.value.message


def test_a_missing_model_folder(sft_file, tmp_path):
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(tmp_path / "nowhere"), train_file=sft_file, output_dir=tmp_path / "out")
    assert caught.value.code == "model_missing"
    assert "does not exist" in caught.value.message


@pytest.fixture
def model_copy(tiny_llama, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_llama, tmp_path / "model"))


def test_a_corrupt_config_json(model_copy, sft_file, tmp_path):
    (model_copy / "config.json").write_text('{"model_type": "llama", ')
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(model_copy), train_file=sft_file, output_dir=tmp_path / "out")
    assert caught.value.code == "model_corrupt"
    assert "config.json" in caught.value.message


def test_truncated_safetensors_weights(model_copy, sft_file, tmp_path):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(model_copy), train_file=sft_file, output_dir=tmp_path / "out")
    assert caught.value.code == "model_corrupt"
    assert "model.safetensors is damaged" in caught.value.message
    assert caught.value.hint


def test_inspect_model_counts_parameters_without_loading(tiny_llama, minilm):
    from transformers import AutoModelForCausalLM

    info = inspect_model(str(tiny_llama))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert info.parameter_count == sum(p.numel() for p in model.parameters())
    assert (info.architecture, info.model_type, info.task_types) == ("LlamaForCausalLM", "llama", ["sft"])
    assert (info.hidden_size, info.num_layers, info.vocab_size) == (64, 2, model.config.vocab_size)
    encoder = inspect_model(str(minilm))
    assert encoder.task_types == ["classification"]
    assert encoder.parameter_count == 22_713_216  # all-MiniLM-L6-v2


def test_a_task_the_model_cannot_do(tiny_llama, minilm, sft_file, classification_file, tmp_path):
    classify = TrainConfig(task="classification", labels=LABELS, max_steps=2)
    with pytest.raises(TrainingError) as caught:
        train(classify, base_model=str(tiny_llama), train_file=classification_file, output_dir=tmp_path / "a")
    assert caught.value.code == "task_unsupported"
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(minilm), train_file=sft_file, output_dir=tmp_path / "b")
    assert caught.value.code == "task_unsupported"
    assert "cannot be trained for sft" in caught.value.message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this worker has CUDA")
def test_qlora_is_unavailable_without_cuda(tiny_llama, sft_file, tmp_path):
    ok, reason = qlora_available()
    assert not ok
    assert reason == "QLoRA needs an NVIDIA GPU with CUDA; this worker has none."
    with pytest.raises(TrainingError) as caught:
        train(sft_config(qlora=True), base_model=str(tiny_llama), train_file=sft_file, output_dir=tmp_path / "o")
    assert caught.value.code == "qlora_unavailable"
    assert caught.value.message == reason


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of GPU memory at step 2"),
        (
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2147483648 bytes"),
            "out of memory at step 2",
        ),
    ],
)
def test_out_of_memory_names_the_step_and_what_to_try(tiny_llama, sft_file, tmp_path, monkeypatch, error, message):
    """This worker has no GPU (and filling its RAM would hurt everything else), so the model's forward is replaced
    by one that raises the error torch raises when memory runs out, on the second training step; everything around
    it is the real runner."""
    from transformers import LlamaForCausalLM

    real_forward = LlamaForCausalLM.forward
    calls = []

    def forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", forward)
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(tiny_llama), train_file=sft_file, output_dir=tmp_path / "out")
    assert caught.value.code == "out_of_memory"
    assert caught.value.message == f"The model ran {message}."
    assert caught.value.hint == "Try a smaller batch size, shorter sequences (max sequence length), or QLoRA."


def test_a_full_disk_while_checkpointing(tiny_llama, sft_file, tmp_path, monkeypatch):
    """Filling the real disk would hurt everything else on this machine, so the optimizer-state write (torch.save)
    raises the OSError the kernel gives when no space is left."""

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(TrainingError) as caught:
        train(sft_config(), base_model=str(tiny_llama), train_file=sft_file, output_dir=tmp_path / "out")
    assert caught.value.code == "disk_full"
    assert caught.value.message == "The worker's disk is full: the checkpoint at step 2 could not be saved."
    assert "Free space" in caught.value.hint
    assert list((tmp_path / "out" / "checkpoints").iterdir()) == [], "no half-written checkpoint is left"


# --- command line -----------------------------------------------------------------------------------------------


def test_cli_prints_json_lines_ending_in_the_result(tiny_llama, sft_file, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sft_config(max_steps=3, checkpoint_every=0).to_dict()))
    command = [sys.executable, "-m", "training.runner", "--config", str(config), "--base-model", str(tiny_llama)]
    command += ["--train-file", str(sft_file), "--output-dir", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "result"
    assert events[-1]["status"] == "succeeded" and events[-1]["metrics"]["steps"] == 3
    assert Path(events[-1]["adapter_dir"], "adapter_model.safetensors").is_file()
    assert {"log", "progress"} <= {event["event"] for event in events}


def test_cli_reports_a_training_error_as_json(sft_file, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"task": "sft", "max_steps": 2}))
    command = [sys.executable, "-m", "training.runner", "--config", str(config), "--base-model", str(tmp_path / "x")]
    command += ["--train-file", str(sft_file), "--output-dir", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    event = json.loads(done.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["code"] == "model_missing"


def test_cli_cancels_on_sigterm(tiny_llama, sft_file, tmp_path):
    """A worker stops a job by sending SIGTERM to the command; it finishes the step it is in and says so."""
    import signal

    config = tmp_path / "config.json"
    config.write_text(json.dumps(sft_config(max_steps=100_000, checkpoint_every=0).to_dict()))
    command = [sys.executable, "-m", "training.runner", "--config", str(config), "--base-model", str(tiny_llama)]
    command += ["--train-file", str(sft_file), "--output-dir", str(tmp_path / "out")]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        for line in process.stdout:
            if json.loads(line).get("phase") == "training":
                process.send_signal(signal.SIGTERM)
                break
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 0
    result = json.loads(rest.splitlines()[-1])
    assert result["event"] == "result" and result["status"] == "cancelled" and result["adapter_dir"] is None
    assert result["metrics"]["steps"] < 100
