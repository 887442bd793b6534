"""evaluation.inference on real tiny models with adapters trained by the real runner (CPU, no database)."""

import json
import math

import pytest
from transformers import AutoTokenizer

from evaluation.inference import (
    InferenceError,
    PredictionCancelled,
    Predictor,
    perplexity_of,
    predict,
    prompt_ids,
)
from evaluation.metrics import classification_metrics
from tests.evaluation.conftest import LABELS

# --- prompts -----------------------------------------------------------------------------------------------------


def test_prompts_are_the_training_prompts_with_the_chat_template(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    [ids] = prompt_ids(tokenizer, ["My invoice is wrong."])
    assert tokenizer.decode(ids) == "<s><|user|>\nMy invoice is wrong.\n<|assistant|>\n"


def test_prompts_use_the_template_when_the_tokenizer_has_no_chat_template(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = None
    [ids] = prompt_ids(tokenizer, ["My invoice is wrong."], "Q: {input}\nA: ")
    assert ids[0] == tokenizer.bos_token_id  # the runner puts BOS before template prompts
    assert tokenizer.decode(ids) == "<s>Q: My invoice is wrong.\nA: "


# --- sft ---------------------------------------------------------------------------------------------------------


def test_sft_predictions_are_deterministic_new_text_and_independent_of_batching(tiny_llama, sft_adapter):
    result, train_rows, _ = sft_adapter
    inputs = [row["input"] for row in train_rows[:6]]
    progress = []
    first = predict(
        task="sft",
        base_model=str(tiny_llama),
        adapter_dir=result.adapter_dir,
        inputs=inputs,
        max_new_tokens=16,
        batch_size=4,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    with Predictor(task="sft", base_model=str(tiny_llama), adapter_dir=result.adapter_dir) as predictor:
        again = predictor.predict(inputs[:3], max_new_tokens=16) + predictor.predict(inputs[3:], max_new_tokens=16)
    one_by_one = predict(
        task="sft",
        base_model=str(tiny_llama),
        adapter_dir=result.adapter_dir,
        inputs=inputs,
        max_new_tokens=16,
        batch_size=1,
    )
    assert len(first) == len(inputs) and all(isinstance(answer, str) for answer in first)
    assert first == again  # also in chunks, with the model loaded once
    assert first == one_by_one  # left padding: a row's answer does not depend on its neighbours
    assert any(first), "the trained adapter should say something"
    for source, answer in zip(inputs, first, strict=True):
        assert answer == answer.strip()
        assert "<|assistant|>" not in answer and source not in answer  # only the new text
    assert progress == [(4, 6), (6, 6)]


def test_the_adapter_changes_the_answers(tiny_llama, sft_adapter):
    result, train_rows, _ = sft_adapter
    inputs = [row["input"] for row in train_rows[:4]]
    tuned = predict(task="sft", base_model=str(tiny_llama), adapter_dir=result.adapter_dir, inputs=inputs)
    base = predict(task="sft", base_model=str(tiny_llama), adapter_dir=None, inputs=inputs)
    assert len(base) == len(inputs)
    assert tuned != base


def test_perplexity_is_the_training_loss_on_the_answers(tiny_llama, sft_adapter):
    result, train_rows, eval_rows = sft_adapter
    inputs, targets = [row["input"] for row in eval_rows], [row["target"] for row in eval_rows]
    tuned = perplexity_of(base_model=str(tiny_llama), adapter_dir=result.adapter_dir, inputs=inputs, targets=targets)
    assert math.isfinite(tuned) and tuned > 1
    # The runner's evaluation loss is the mean loss per answer token on the same rows: the same figure.
    assert tuned == pytest.approx(math.exp(result.metrics["eval_loss"]), rel=1e-3)
    with Predictor(task="sft", base_model=str(tiny_llama), adapter_dir=None) as predictor:
        base = predictor.perplexity(inputs, targets, batch_size=2)
    assert base > tuned  # training on similar tickets made the answers less surprising
    with pytest.raises(RuntimeError, match="with block"):
        predictor.predict(inputs)


def test_cancel_stops_before_the_next_batch(tiny_llama, sft_adapter):
    result, train_rows, _ = sft_adapter
    asked = []

    def should_cancel():
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(PredictionCancelled) as caught:
        predict(
            task="sft",
            base_model=str(tiny_llama),
            adapter_dir=result.adapter_dir,
            inputs=[row["input"] for row in train_rows[:5]],
            max_new_tokens=4,
            batch_size=2,
            should_cancel=should_cancel,
        )
    assert (caught.value.done, caught.value.total) == (2, 5)


# --- classification ----------------------------------------------------------------------------------------------


def test_classification_restores_the_trained_head(minilm, classification_adapter):
    result, eval_rows = classification_adapter
    inputs = [row["input"] for row in eval_rows]
    predicted = predict(
        task="classification", base_model=str(minilm), adapter_dir=result.adapter_dir, inputs=inputs, labels=LABELS
    )
    assert set(predicted) <= set(LABELS)
    # The runner measured this accuracy with the trained head on the same rows; a fresh random head would not match.
    accuracy = classification_metrics([row["label"] for row in eval_rows], predicted, LABELS)["accuracy"]
    assert accuracy == pytest.approx(result.metrics["eval_accuracy"])
    # Labels default to the adapter's, and the same names in another order keep their meaning.
    assert predict(task="classification", base_model=str(minilm), adapter_dir=result.adapter_dir, inputs=inputs) == (
        predicted
    )
    reordered = predict(
        task="classification",
        base_model=str(minilm),
        adapter_dir=result.adapter_dir,
        inputs=inputs,
        labels=list(reversed(LABELS)),
    )
    assert reordered == predicted


def test_classification_refuses_labels_the_adapter_was_not_trained_for(minilm, classification_adapter):
    result, eval_rows = classification_adapter
    with pytest.raises(InferenceError) as caught:
        predict(
            task="classification",
            base_model=str(minilm),
            adapter_dir=result.adapter_dir,
            inputs=["x"],
            labels=["billing", "login", "shipping"],
        )
    assert caught.value.code == "labels"
    assert "trained to choose among billing, login, export" in caught.value.message


def test_a_base_encoder_without_adapter_answers_with_labels_reproducibly(minilm):
    inputs = ["I was charged twice.", "I cannot sign in.", "Where is the CSV export?"]
    first = predict(task="classification", base_model=str(minilm), adapter_dir=None, inputs=inputs, labels=LABELS)
    second = predict(task="classification", base_model=str(minilm), adapter_dir=None, inputs=inputs, labels=LABELS)
    assert set(first) <= set(LABELS) and first == second


# --- errors ------------------------------------------------------------------------------------------------------


def test_a_missing_model_folder_is_a_plain_error(tmp_path):
    with pytest.raises(InferenceError) as caught:
        predict(task="sft", base_model=str(tmp_path / "nowhere"), adapter_dir=None, inputs=["hi"])
    assert caught.value.code == "model_missing"
    assert "does not exist" in caught.value.message and caught.value.hint


def test_missing_and_damaged_adapters_are_plain_errors(tiny_llama, sft_adapter, tmp_path):
    with pytest.raises(InferenceError) as caught:
        predict(task="sft", base_model=str(tiny_llama), adapter_dir=tmp_path / "gone", inputs=["hi"])
    assert caught.value.code == "adapter_missing"

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "adapter_config.json").write_text("{not json", encoding="utf-8")
    (damaged / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(InferenceError) as caught:
        predict(task="sft", base_model=str(tiny_llama), adapter_dir=damaged, inputs=["hi"])
    assert caught.value.code == "adapter_corrupt" and "adapter_config.json cannot be read" in caught.value.message

    (damaged / "adapter_config.json").write_text(
        (sft_adapter[0].adapter_dir / "adapter_config.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with pytest.raises(InferenceError) as caught:  # a valid config but cut-off weights
        predict(task="sft", base_model=str(tiny_llama), adapter_dir=damaged, inputs=["hi"])
    assert caught.value.code == "adapter_corrupt" and "cannot be applied" in caught.value.message


def test_an_adapter_of_the_other_task_is_refused(tiny_llama, minilm, classification_adapter):
    settings = json.loads((classification_adapter[0].adapter_dir / "training_config.json").read_text())
    assert settings["task"] == "classification"
    with pytest.raises(InferenceError) as caught:
        predict(task="sft", base_model=str(minilm), adapter_dir=classification_adapter[0].adapter_dir, inputs=["x"])
    assert caught.value.code == "task_unsupported"  # MiniLM cannot generate text at all
    with pytest.raises(InferenceError) as caught:
        predict(task="sft", base_model=str(tiny_llama), adapter_dir=classification_adapter[0].adapter_dir, inputs=["x"])
    assert caught.value.code == "task_unsupported" and "trained for classification" in caught.value.message
