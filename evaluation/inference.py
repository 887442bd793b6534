"""Predictions and perplexity of a base model with (or without) a trained LoRA adapter: plain Python, no Django.

Prompts are built by the training runner's own `encode_rows`, so a model is asked exactly what it learnt to answer:
the tokenizer's chat template when it has one, else the prompt template (from the call, else the adapter's
training_config.json, else the runner's default). Generation is greedy, hence deterministic for a given model,
input and batch size.

Heavy libraries are imported inside the functions, so the web process can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.metrics import perplexity
from training.runner.config import TrainConfig
from training.runner.data import IGNORE_INDEX, collate, encode_rows
from training.runner.errors import ActionableError, TrainingError
from training.runner.model import inspect_model

ADAPTER_SETTINGS_FILE = "training_config.json"  # written next to the adapter by training.runner


class InferenceError(ActionableError):
    """A failure a person can act on: `code` for the program, `message` and `hint` in plain words.

    Codes: model_missing, model_corrupt, adapter_missing, adapter_corrupt, task_unsupported, labels, config,
    out_of_memory. It shares its base with training.runner's TrainingError but is not one: a caller that catches
    TrainingError does not catch a failed prediction by mistake.
    """


class PredictionCancelled(Exception):
    """should_cancel() answered True: `done` of `total` inputs had been answered (the answers are dropped)."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"Cancelled after {done} of {total} inputs.")
        self.done = done
        self.total = total


# --- loading -----------------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: Any
    settings: dict = field(default_factory=dict)  # the adapter's training_config.json, {} without one
    labels: list[str] = field(default_factory=list)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or "out of memory" in str(exc).lower()


def _resolve_device(device: str) -> Any:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise InferenceError("config", f"Unknown device “{device}”.", "Choose auto, cpu or cuda.")
    if device == "cuda" and not torch.cuda.is_available():
        raise InferenceError("config", "This worker has no CUDA GPU.", "Choose the device auto or cpu.")
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def _check_base(base_model: str, task: str) -> None:
    try:
        info = inspect_model(base_model)
    except TrainingError as exc:
        raise InferenceError(exc.code, exc.message, exc.hint) from None
    if task not in info.task_types:
        can = " and ".join(info.task_types) or "neither task"
        raise InferenceError(
            "task_unsupported",
            f"The model {info.architecture} cannot be evaluated for {task}; it supports {can}.",
            "Choose a causal language model for sft, or an encoder for classification.",
        )


def adapter_settings(adapter_dir: str | Path) -> dict:
    """The adapter's training settings (training_config.json written by the runner); {} when there are none.

    Raises InferenceError when the folder is missing or does not hold a PEFT adapter.
    """
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise InferenceError(
            "adapter_missing",
            f"The adapter folder {folder} does not exist on this worker.",
            "Check that the training job finished and its adapter was copied to this worker.",
        )
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise InferenceError(
            "adapter_corrupt",
            f"The folder {folder} has no adapter_config.json, so it does not hold a trained adapter.",
            "Choose the adapter folder of a finished training job.",
        )
    if not any((folder / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        raise InferenceError(
            "adapter_corrupt",
            f"The adapter folder {folder} has no weights (adapter_model.safetensors).",
            "Copy the adapter folder again, complete.",
        )
    for name in ("adapter_config.json", ADAPTER_SETTINGS_FILE):
        file = folder / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InferenceError(
                "adapter_corrupt", f"The adapter's {name} cannot be read ({_short(exc)}).", "Copy the adapter again."
            ) from None
        if name == ADAPTER_SETTINGS_FILE:
            return data if isinstance(data, dict) else {}
    return {}


def _load_tokenizer(base_model: str, adapter_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    # The runner saves the tokenizer with the adapter (pad token set), so that copy is the one training used.
    source = adapter_dir if adapter_dir is not None and (adapter_dir / "tokenizer_config.json").is_file() else None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source or base_model))
    except Exception as exc:  # tokenizers fail with many exception types on damaged files
        raise InferenceError(
            "model_corrupt", f"The tokenizer cannot be loaded ({_short(exc)}).", "Copy the model folder again."
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _resolve_labels(labels: list[str] | None, settings: dict) -> list[str]:
    trained = [str(name) for name in settings.get("labels") or []]
    if labels is None:
        if len(trained) < 2:
            raise InferenceError(
                "labels", "Classification needs the list of label names.", "Give the labels of the dataset."
            )
        return trained
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InferenceError("labels", "Classification needs at least two different label names.")
    if trained and set(trained) != set(labels):
        raise InferenceError(
            "labels",
            f"The adapter was trained to choose among {', '.join(trained)}, not {', '.join(labels)}.",
            "Evaluate it on a dataset with the same labels, or train an adapter for these labels.",
        )
    # Same names: the adapter's order decides which output is which label.
    return trained or labels


@contextlib.contextmanager
def _loaded(
    *, task: str, base_model: str, adapter_dir: str | Path | None, labels: list[str] | None, device: str
) -> Iterator[_Loaded]:
    """Load tokenizer, base model and adapter; free the memory on leaving (also after errors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    target = _resolve_device(device)
    _check_base(base_model, task)
    adapter = Path(adapter_dir) if adapter_dir is not None else None
    settings = adapter_settings(adapter) if adapter is not None else {}
    if settings.get("task") and settings["task"] != task:
        raise InferenceError(
            "task_unsupported",
            f"The adapter was trained for {settings['task']}, not {task}.",
            "Choose an adapter trained for this task.",
        )
    names = _resolve_labels(labels, settings) if task == "classification" else []
    tokenizer = _load_tokenizer(base_model, adapter)
    dtype = torch.float32
    if target.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    loaded = model = None
    try:
        try:
            if task == "classification":
                # A base encoder without adapter gets a new, random head: seeded, so the baseline is reproducible.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model = AutoModelForSequenceClassification.from_pretrained(
                        base_model,
                        num_labels=len(names),
                        id2label=dict(enumerate(names)),
                        label2id={name: i for i, name in enumerate(names)},
                        dtype=dtype,
                    )
            else:
                model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
        except Exception as exc:
            if _is_oom(exc):
                raise InferenceError(
                    "out_of_memory", "The model ran out of memory while loading.", "Use a worker with more memory."
                ) from None
            raise InferenceError(
                "model_corrupt",
                f"The model's weights cannot be loaded ({_short(exc)}).",
                "Copy the model folder again or choose another base model.",
            ) from None
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        if adapter is not None:
            from peft import PeftModel

            try:
                # For classification PEFT restores the trained head too (saved as modules_to_save).
                model = PeftModel.from_pretrained(model, str(adapter))
                model = model.merge_and_unload()  # plain weights: faster, and identical outputs
            except Exception as exc:
                raise InferenceError(
                    "adapter_corrupt",
                    f"The adapter cannot be applied to this base model ({_short(exc)}).",
                    "Check that the adapter was trained on this base model, and copy it again if it is damaged.",
                ) from None
        model.to(target)
        model.eval()
        loaded = _Loaded(model=model, tokenizer=tokenizer, device=target, settings=settings, labels=names)
        yield loaded
    finally:
        if loaded is not None:  # the caller may still hold it: drop the model from it
            loaded.model = loaded.tokenizer = None
        model = None
        gc.collect()
        if target.type == "cuda":
            torch.cuda.empty_cache()


@contextlib.contextmanager
def _oom_as_error() -> Iterator[None]:
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc):
            raise
        raise InferenceError(
            "out_of_memory", "The model ran out of memory.", "Try a smaller batch size or a worker with more memory."
        ) from None


def _context_length(model: Any, tokenizer: Any) -> int | None:
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    limits = [int(value) for value in limits if isinstance(value, int) and 0 < value < 1_000_000]
    return min(limits) if limits else None


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InferenceError("config", "The batch size must be at least 1.")


# --- prompts -----------------------------------------------------------------------------------------------------


def prompt_ids(tokenizer: Any, inputs: list[str], prompt_template: str | None = None) -> list[list[int]]:
    """Token ids of the prompts training used for these inputs: the masked part of training.runner.encode_rows
    (chat template, or `prompt_template` with BOS), computed by encode_rows itself so the two cannot drift."""
    config = TrainConfig(task="sft", max_seq_length=10**9)  # no cut here; the caller fits prompts to the model
    if prompt_template is not None:
        config.prompt_template = prompt_template
    rows = encode_rows([{"input": text, "target": ""} for text in inputs], tokenizer, config)
    return [row["input_ids"][: row["labels"].count(IGNORE_INDEX)] for row in rows]


def _fit(prompt: list[int], limit: int, bos_id: int | None) -> list[int]:
    """Cut a long prompt like the runner does: drop its beginning, keep BOS, so the words next to the answer stay."""
    if len(prompt) <= limit:
        return prompt
    if bos_id is not None and prompt[:1] == [bos_id] and limit > 1:
        return [bos_id, *prompt[len(prompt) - limit + 1 :]]
    return prompt[len(prompt) - limit :]


def _template(prompt_template: str | None, settings: dict) -> str | None:
    if prompt_template is not None:
        return prompt_template
    saved = settings.get("prompt_template")
    return saved if isinstance(saved, str) else None


# --- predictions -------------------------------------------------------------------------------------------------


class Predictor:
    """A base model with its adapter, loaded once for several calls; a context manager that frees the memory.

        with Predictor(task="sft", base_model=path, adapter_dir=adapter) as predictor:
            for chunk in chunks:
                store(predictor.predict(chunk))

    Arguments as for predict(); loading raises InferenceError like predict() does.
    """

    def __init__(
        self,
        *,
        task: str,
        base_model: str,
        adapter_dir: str | Path | None,
        labels: list[str] | None = None,
        prompt_template: str | None = None,
        device: str = "auto",
    ) -> None:
        if task not in ("sft", "classification"):
            raise InferenceError("config", f"Unknown task “{task}”.", "Choose sft or classification.")
        self.task = task
        self._load = {
            "task": task,
            "base_model": base_model,
            "adapter_dir": adapter_dir,
            "labels": labels,
            "device": device,
        }
        self._prompt_template = prompt_template
        self._stack = contextlib.ExitStack()
        self._run: _Loaded | None = None

    def __enter__(self) -> Predictor:
        self._run = self._stack.enter_context(_loaded(**self._load))
        return self

    def __exit__(self, *exc: object) -> None:
        self._run = None
        self._stack.close()

    @property
    def labels(self) -> list[str]:
        """Classification: the label names in the order of the model's outputs."""
        return list(self._require().labels)

    def _require(self) -> _Loaded:
        if self._run is None:
            raise RuntimeError("Use the Predictor in a with block.")
        return self._run

    def predict(
        self,
        inputs: list[str],
        *,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        on_progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        max_seconds: float | None = None,
    ) -> list[str]:
        """One answer per input, in input order: see predict(). ``max_seconds`` stops each batch's generation
        after that long (the answer so far is kept): for answers a person waits for, such as "Try it"."""
        run = self._require()
        _check_batch_size(batch_size)
        if max_new_tokens < 1:
            raise InferenceError("config", "The answer length (max new tokens) must be at least 1.")
        if self.task == "classification":
            return _classify(run, list(inputs), batch_size, on_progress, should_cancel)
        template = _template(self._prompt_template, run.settings)
        return _generate(
            run, list(inputs), template, max_new_tokens, batch_size, on_progress, should_cancel, max_seconds
        )

    def perplexity(self, inputs: list[str], targets: list[str], *, batch_size: int = 8) -> float:
        """sft only: see perplexity_of()."""
        if self.task != "sft":
            raise InferenceError("config", "Perplexity is measured on written answers (sft), not on labels.")
        _check_batch_size(batch_size)
        return _perplexity(
            self._require(), inputs, targets, _template(self._prompt_template, self._require().settings), batch_size
        )


def predict(
    *,
    task: str,
    base_model: str,
    adapter_dir: str | Path | None,
    inputs: list[str],
    labels: list[str] | None = None,
    prompt_template: str | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    device: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[str]:
    """One answer per input, in input order.

    sft: greedy generation of at most `max_new_tokens` new tokens; returns the new text only, stripped.
    classification: the label whose output is highest. `labels` default to the adapter's own; given labels must be
    the same names (in any order). With adapter_dir None the base model answers alone; for classification with a
    plain encoder that means a new, untrained head (seeded random weights): a reproducible chance-level baseline,
    not a real one.

    on_progress(done, total) is called after each batch; should_cancel() is asked before each batch and True
    raises PredictionCancelled. Raises InferenceError for a missing or damaged model or adapter, labels that do
    not fit, or running out of memory. Loads the model on every call: use Predictor to answer in several chunks.
    """
    predictor = Predictor(
        task=task,
        base_model=base_model,
        adapter_dir=adapter_dir,
        labels=labels,
        prompt_template=prompt_template,
        device=device,
    )
    _check_batch_size(batch_size)
    if max_new_tokens < 1:
        raise InferenceError("config", "The answer length (max new tokens) must be at least 1.")
    if not inputs:
        return []
    with predictor:
        return predictor.predict(
            inputs,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            on_progress=on_progress,
            should_cancel=should_cancel,
        )


def _batches(
    order: list[int], batch_size: int, on_progress: Callable | None, should_cancel: Callable | None
) -> Iterator[list[int]]:
    total = len(order)
    for start in range(0, total, batch_size):
        if should_cancel is not None and should_cancel():
            raise PredictionCancelled(start, total)
        yield order[start : start + batch_size]
        if on_progress is not None:
            on_progress(min(start + batch_size, total), total)


def _generate(
    run: _Loaded,
    inputs: list[str],
    prompt_template: str | None,
    max_new_tokens: int,
    batch_size: int,
    on_progress: Callable | None,
    should_cancel: Callable | None,
    max_seconds: float | None = None,
) -> list[str]:
    import torch

    tokenizer, model = run.tokenizer, run.model
    prompts = prompt_ids(tokenizer, inputs, prompt_template)
    context = _context_length(model, tokenizer)
    if context is not None:
        if max_new_tokens >= context:
            raise InferenceError(
                "config",
                f"The answer length ({max_new_tokens} tokens) does not fit the model's window of {context} tokens.",
                "Ask for shorter answers.",
            )
        prompts = [_fit(prompt, context - max_new_tokens, tokenizer.bos_token_id) for prompt in prompts]
    pad_id = tokenizer.pad_token_id
    generation = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "pad_token_id": pad_id,
        # Unset the sampling settings a model may ship with: they only cause warnings under greedy search.
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    if max_seconds is not None:
        generation["max_time"] = max_seconds
    if model.generation_config.eos_token_id is None and tokenizer.eos_token_id is not None:
        generation["eos_token_id"] = tokenizer.eos_token_id
    answers: list[str] = [""] * len(inputs)
    # Similar lengths together: less padding. Left padding, so every row's new tokens start at the same column.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.no_grad(), _oom_as_error():
        for batch in _batches(order, batch_size, on_progress, should_cancel):
            rows = [prompts[i] for i in batch]
            width = max(len(row) for row in rows)
            input_ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in rows], device=run.device)
            mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=run.device)
            output = model.generate(input_ids=input_ids, attention_mask=mask, **generation)
            texts = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
            for i, text in zip(batch, texts, strict=True):
                answers[i] = text.strip()
    return answers


def _classify(
    run: _Loaded, inputs: list[str], batch_size: int, on_progress: Callable | None, should_cancel: Callable | None
) -> list[str]:
    import torch

    tokenizer, model = run.tokenizer, run.model
    limit = run.settings.get("max_seq_length")
    context = _context_length(model, tokenizer)
    if not isinstance(limit, int) or limit < 1:
        limit = context or 512
    elif context is not None:
        limit = min(limit, context)
    answers: list[str] = [""] * len(inputs)
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    with torch.no_grad(), _oom_as_error():
        for batch in _batches(order, batch_size, on_progress, should_cancel):
            encoded = tokenizer(
                [inputs[i] for i in batch], truncation=True, max_length=limit, padding=True, return_tensors="pt"
            )
            logits = model(**{key: value.to(run.device) for key, value in encoded.items()}).logits
            for i, index in zip(batch, logits.argmax(-1).tolist(), strict=True):
                answers[i] = run.labels[index]
    return answers


# --- perplexity --------------------------------------------------------------------------------------------------


def perplexity_of(
    *,
    base_model: str,
    adapter_dir: str | Path | None,
    inputs: list[str],
    targets: list[str],
    prompt_template: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> float:
    """Perplexity of the reference answers given the prompts: exp of the mean loss over the answer tokens only
    (prompt masked, end-of-answer token included), with rows encoded and cut exactly as training does, so it is
    exp(eval_loss) of the runner on the same rows."""
    _check_rows(inputs, targets)
    _check_batch_size(batch_size)
    with Predictor(
        task="sft", base_model=base_model, adapter_dir=adapter_dir, prompt_template=prompt_template, device=device
    ) as predictor:
        return predictor.perplexity(inputs, targets, batch_size=batch_size)


def _check_rows(inputs: list[str], targets: list[str]) -> None:
    if len(inputs) != len(targets):
        raise InferenceError("config", f"There are {len(inputs)} inputs but {len(targets)} reference answers.")
    if not inputs:
        raise InferenceError("config", "There are no rows to measure.")


def _perplexity(
    run: _Loaded, inputs: list[str], targets: list[str], prompt_template: str | None, batch_size: int
) -> float:
    import torch

    _check_rows(inputs, targets)
    config = TrainConfig(task="sft")
    if prompt_template is not None:
        config.prompt_template = prompt_template
    saved_limit = run.settings.get("max_seq_length")
    context = _context_length(run.model, run.tokenizer)
    config.max_seq_length = saved_limit if isinstance(saved_limit, int) and saved_limit > 0 else context or 1024
    if context is not None:
        config.max_seq_length = min(config.max_seq_length, context)
    rows = encode_rows(
        [{"input": text, "target": target} for text, target in zip(inputs, targets, strict=True)],
        run.tokenizer,
        config,
    )
    nll, count = 0.0, 0
    with torch.no_grad(), _oom_as_error():
        for start in range(0, len(rows), batch_size):
            batch, _ = collate(rows[start : start + batch_size], run.tokenizer.pad_token_id)
            batch = {key: value.to(run.device) for key, value in batch.items()}
            logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            nll += float(loss)
            count += int((labels != IGNORE_INDEX).sum())
    if count == 0:
        raise InferenceError("config", "The reference answers have no tokens to measure.")
    return perplexity(nll, count)
