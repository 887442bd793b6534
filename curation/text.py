"""Text helpers for curation (plain Python): hashing, normalising, quality flags, split assignment."""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata

SHORT_WORDS = 3
LONG_CHARS = 20_000

# Bits match curation.models.Flag.
FLAG_SHORT = 1
FLAG_LONG = 2
FLAG_NOT_ENGLISH = 4
FLAG_UNKNOWN_LABEL = 8

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_STOPWORDS = frozenset(
    "the a an and or of to in is are was were be been for on with at by from this that it as not "
    "you your we our i my me he she they them his her their please thanks thank can could will "
    "would should have has had do does did if but so what when where how which who".split()
)


def row_hash(input_text: str, target: str, label: str, group: str) -> str:
    payload = json.dumps([input_text, target, label, group], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def normalise(text: str) -> str:
    """Case, accents-as-composed, punctuation and spacing removed: what a reader would call 'the same text'."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def text_hash(input_text: str, target: str) -> str:
    payload = normalise(input_text) + "\x1f" + normalise(target)
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def looks_english(text: str) -> bool:
    """A cheap heuristic: mostly Latin letters and some common English function words."""
    letters = [ch for ch in text[:2000] if ch.isalpha()]
    if len(letters) < 20:
        return True  # too little text to judge
    latin = sum(1 for ch in letters if ch.isascii())
    if latin / len(letters) < 0.6:
        return False
    words = [word.lower() for word in _WORD.findall(text[:2000])]
    if len(words) < 8:
        return True
    return sum(1 for word in words if word in _STOPWORDS) / len(words) >= 0.05


def quality_flags(input_text: str, target: str, label: str = "", label_set: frozenset[str] | None = None) -> int:
    flags = 0
    text = f"{input_text} {target}"
    if len(text.split()) < SHORT_WORDS:
        flags |= FLAG_SHORT
    if len(text) > LONG_CHARS:
        flags |= FLAG_LONG
    if not looks_english(text):
        flags |= FLAG_NOT_ENGLISH
    if label_set and label and label not in label_set:
        flags |= FLAG_UNKNOWN_LABEL
    return flags


DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def validate_ratios(ratios: dict[str, float]) -> dict[str, float]:
    unknown = set(ratios) - set(DEFAULT_RATIOS)
    if unknown:
        raise ValueError(f"Unknown split name(s): {', '.join(sorted(unknown))}. Use train, validation and test.")
    if any(value < 0 for value in ratios.values()):
        raise ValueError("Split shares cannot be negative.")
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"Split shares must add up to 100%, not {total * 100:g}%.")
    if ratios.get("train", 0) <= 0:
        raise ValueError("The train split must get a share above 0%.")
    return {name: float(ratios.get(name, 0.0)) for name in DEFAULT_RATIOS}


class SplitAssigner:
    """Seeded, stratified split assignment in one pass with memory per label, not per row.

    For each label (stratum) it keeps how many rows each split has; the next row of that label goes
    to a split drawn with weight equal to that split's shortfall against its target share. Each
    split's count therefore stays within one row of its share for every label, while the seed
    decides which rows land where.
    """

    def __init__(self, seed: int, ratios: dict[str, float]):
        self.ratios = validate_ratios(ratios)
        self.names = list(self.ratios)
        self.rng = random.Random(seed)
        self.counts: dict[str, dict[str, int]] = {}

    def assign(self, label: str = "") -> str:
        counts = self.counts.setdefault(label, dict.fromkeys(self.names, 0))
        total = sum(counts.values()) + 1
        weights = [max(self.ratios[name] * total - counts[name], 0.0) for name in self.names]
        if sum(weights) <= 0:
            weights = [self.ratios[name] for name in self.names]
        choice = self.rng.choices(self.names, weights=weights)[0]
        counts[choice] += 1
        return choice
