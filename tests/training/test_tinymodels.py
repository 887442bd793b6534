"""training.tinymodels: the tiny Llama really is a trainable model, and MiniLM loads from the installed package."""

import pytest
import torch

from training.tinymodels import build_tiny_llama, minilm_path


def test_tiny_llama_loads_generates_and_has_a_chat_template(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert len(tokenizer) == model.config.vocab_size <= 1000
    assert None not in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert (tiny_llama / "model.safetensors").is_file()
    text = "My invoice shows the wrong VAT number."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: lossless
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<s><|user|>\nHi\n<|assistant|>\n"
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 4


def test_build_is_idempotent_and_seeded(tiny_llama, tmp_path):
    stamp = (tiny_llama / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llama(tiny_llama) == tiny_llama
    assert (tiny_llama / "model.safetensors").stat().st_mtime_ns == stamp
    again = build_tiny_llama(tmp_path / "again", hidden_size=32, num_layers=1)
    other = build_tiny_llama(tmp_path / "other", hidden_size=32, num_layers=1, seed=1)
    assert (again / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()
    twin = build_tiny_llama(tmp_path / "twin", hidden_size=32, num_layers=1)
    assert (again / "model.safetensors").read_bytes() == (twin / "model.safetensors").read_bytes()


def test_build_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_llama(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_minilm_loads_as_a_three_label_classifier(minilm):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert minilm == minilm_path()
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    with torch.no_grad():
        logits = model(**tokenizer(["Please refund the double charge"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
