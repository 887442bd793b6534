"""Training rows: read the JSONL file, split off the evaluation rows, tokenize (prompt masked with IGNORE_INDEX), and
pad a batch. Inference (evaluation.inference) encodes its prompts with the same functions.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from training.runner.config import TrainConfig
from training.runner.errors import TrainingError

IGNORE_INDEX = -100


def load_rows(path: Path, config: TrainConfig) -> list[dict]:
    """Rows of a JSONL file, checked for the task: {"input", "target"} (sft) or {"input", "label"} (classification)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise TrainingError("data", f"The data file {name} does not exist.", "Export the dataset version again.")
    answer_key = "target" if config.task == "sft" else "label"
    labels = set(config.labels)
    rows = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise _data_error(f"Line {number} of {name} is not valid JSON.") from None
                if not isinstance(row, dict):
                    raise _data_error(f"Line {number} of {name} is not a JSON object.")
                for key in ("input", answer_key):
                    if not isinstance(row.get(key), str) or not row[key].strip():
                        raise _data_error(f"Line {number} of {name} has no text in “{key}”.")
                if config.task == "classification" and row["label"] not in labels:
                    raise _data_error(
                        f"Line {number} of {name} has the label “{row['label']}”, which is not one of the labels "
                        f"of this job ({', '.join(config.labels)})."
                    )
                rows.append({"input": row["input"], answer_key: row[answer_key]})
    except UnicodeDecodeError:
        raise _data_error(f"{name} is not UTF-8 text.") from None
    return rows


def _data_error(message: str) -> TrainingError:
    return TrainingError("data", message, "Fix or remove that row in the dataset and start the job again.")


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out round(eval_fraction * rows) rows (at least one, never all) chosen with `seed`; order kept."""
    if eval_fraction <= 0 or len(rows) < 2:
        return list(rows), []
    count = min(len(rows) - 1, max(1, round(len(rows) * eval_fraction)))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def encode_rows(rows: list[dict], tokenizer: Any, config: TrainConfig) -> list[dict]:
    """Token ids per row. sft: {"input_ids", "labels"} with the prompt masked (-100); classification:
    {"input_ids", "label"} (label index in config.labels). Everything cut to max_seq_length."""
    if not rows:
        return []
    if config.task == "classification":
        index = {name: i for i, name in enumerate(config.labels)}
        encoded = tokenizer(
            [row["input"] for row in rows], truncation=True, max_length=config.max_seq_length, add_special_tokens=True
        )["input_ids"]
        return [{"input_ids": ids, "label": index[row["label"]]} for ids, row in zip(encoded, rows, strict=True)]

    prompts, responses = [], []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos_text = tokenizer.eos_token or ""
    for row in rows:
        if tokenizer.chat_template:
            user = [{"role": "user", "content": row["input"]}]
            prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(
                [*user, {"role": "assistant", "content": row["target"]}], tokenize=False
            )
            # The template's own end-of-turn markers belong to the response; a template whose prompt is not a
            # prefix of the whole conversation falls back to target + EOS.
            response = full[len(prompt) :] if full.startswith(prompt) else row["target"] + eos_text
        else:
            prompt = config.prompt_template.format(input=row["input"])
            response = row["target"] + eos_text
        prompts.append(prompt)
        responses.append(response)
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    limit = config.max_seq_length
    examples = []
    for prompt, response in zip(prompt_ids, response_ids, strict=True):
        if not tokenizer.chat_template and bos:
            prompt = bos + prompt
        prompt, response = _truncate(prompt, response, limit, bos)
        examples.append({"input_ids": prompt + response, "labels": [IGNORE_INDEX] * len(prompt) + response})
    return examples


def _truncate(prompt: list[int], response: list[int], limit: int, bos: list[int]) -> tuple[list[int], list[int]]:
    """Fit prompt + response into `limit` tokens. The response keeps at least half the window (it is what is
    learnt); the prompt loses its beginning, after BOS, so the words next to the response stay."""
    if len(prompt) + len(response) <= limit:
        return prompt, response
    keep_response = min(len(response), max(limit - len(prompt), limit // 2))
    keep_prompt = limit - keep_response
    if keep_prompt < len(prompt):
        has_bos = bool(bos) and prompt[:1] == bos and keep_prompt > 1
        prompt = bos + prompt[len(prompt) - keep_prompt + 1 :] if has_bos else prompt[len(prompt) - keep_prompt :]
        if keep_prompt == 0:
            prompt = []
    return prompt, response[:keep_response]


def collate(examples: list[dict], pad_token_id: int) -> tuple[dict, int]:
    """Pad a batch on the right to its longest row. Returns (tensors, number of real tokens).

    Rows may hold lists (as encode_rows returns them) or tensors (as train() keeps them: converting once up front
    makes a step's collation about four times cheaper).
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    ids = [_as_tensor(example["input_ids"]) for example in examples]
    lengths = torch.tensor([len(row) for row in ids])
    input_ids = pad_sequence(ids, batch_first=True, padding_value=pad_token_id).long()
    attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
    if "labels" in examples[0]:
        labels = [_as_tensor(example["labels"]) for example in examples]
        labels = pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX).long()
    else:
        labels = torch.tensor([example["label"] for example in examples], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return batch, int(lengths.sum())


def _as_tensor(values: Any) -> Any:
    import torch

    return values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.int32)


def _tensorize(examples: list[dict]) -> list[dict]:
    """Token lists as int32 tensors (half the memory of int64; widened per batch)."""
    import torch

    return [
        {
            key: torch.tensor(value, dtype=torch.int32) if isinstance(value, list) else value
            for key, value in row.items()
        }
        for row in examples
    ]
