"""Text helpers for curation (plain Python): hashing, normalising, quality flags, split assignment."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import unicodedata
from bisect import bisect
from itertools import accumulate

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
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "for",
        "on",
        "with",
        "at",
        "by",
        "from",
        "this",
        "that",
        "it",
        "as",
        "not",
        "you",
        "your",
        "we",
        "our",
        "i",
        "my",
        "me",
        "he",
        "she",
        "they",
        "them",
        "his",
        "her",
        "their",
        "please",
        "thanks",
        "thank",
        "can",
        "could",
        "will",
        "would",
        "should",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "if",
        "but",
        "so",
        "what",
        "when",
        "where",
        "how",
        "which",
        "who",
    ]
)


# These run for every imported row, so they have fast paths that give exactly the same result
# (they were checked against the plain definitions on every code point and on random and real text).
_json_string = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) uses for a str
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# ASCII fast path of normalise: lower case; every byte that is neither \w nor \s becomes a space, and so
# does every \s byte, since bytes.split() knows fewer whitespace bytes than str.split() and \s.
_ASCII_NORMALISE = bytes(ch if chr(ch).isalnum() or ch == 0x5F else 0x20 for ch in range(128)).lower() + bytes(
    range(128, 256)
)


def row_hash(input_text: str, target: str, label: str, group: str) -> str:
    if type(input_text) is type(target) is type(label) is type(group) is str:
        payload = f"[{_json_string(input_text)},{_json_string(target)},{_json_string(label)},{_json_string(group)}]"
    else:
        payload = _ROW_ENCODER.encode([input_text, target, label, group])
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def normalise(text: str) -> str:
    """Case, accents-as-composed, punctuation and spacing removed: what a reader would call 'the same text'."""
    if text.isascii():
        return _normalised_ascii(text).decode("ascii")
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCT.sub(" ", text)
    # str.split() and \s agree on what whitespace is, so this equals _SPACE.sub(" ", text).strip().
    return " ".join(text.split())


def _normalised_ascii(text: str) -> bytes:
    """normalise() of ASCII text, as bytes: ASCII is NFKC already and casefolds to lower case."""
    return b" ".join(text.encode("ascii").translate(_ASCII_NORMALISE).split())


def _normalised_utf8(text: str) -> bytes:
    return _normalised_ascii(text) if text.isascii() else normalise(text).encode("utf-8", "surrogatepass")


def text_hash(input_text: str, target: str) -> str:
    payload = _normalised_utf8(input_text) + b"\x1f" + _normalised_utf8(target)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


_ASCII_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# ASCII words (runs of letters, as _WORD finds them), lower-cased, by turning every other byte into a space.
_ASCII_WORDS = bytes(ch if chr(ch).isalpha() else 0x20 for ch in range(128)).lower() + b" " * 128
_STOPWORDS_ASCII = frozenset(word.encode() for word in _STOPWORDS)


def looks_english(text: str) -> bool:
    """A cheap heuristic: mostly Latin letters and some common English function words."""
    head = text[:2000]
    # Counted in C, not per character in Python (this runs for every imported row):
    # ASCII letters by deleting them from the UTF-8 bytes (other characters never encode to ASCII bytes).
    encoded = head.encode("utf-8", "surrogatepass")
    latin = len(encoded) - len(encoded.translate(None, _ASCII_LETTERS))
    ascii_only = len(encoded) == len(head)
    letters = latin if ascii_only else sum(map(str.isalpha, head))
    if letters < 20:
        return True  # too little text to judge
    if latin / letters < 0.6:
        return False
    if ascii_only:
        words = encoded.translate(_ASCII_WORDS).split()
        if len(words) < 8:
            return True
        # English text meets its share of function words within a few words: stop counting there.
        need = _least_count(len(words), 0.05)
        for word in words:
            if word in _STOPWORDS_ASCII:
                need -= 1
                if not need:
                    return True
        return False
    words = [word.lower() for word in _WORD.findall(head)]
    if len(words) < 8:
        return True
    return sum(map(_STOPWORDS.__contains__, words)) / len(words) >= 0.05


def _least_count(total: int, share: float) -> int:
    """The least k >= 1 with k / total >= share (the same float test as the plain ratio check)."""
    k = max(math.ceil(total * share), 1)
    while k > 1 and (k - 1) / total >= share:
        k -= 1
    while k / total < share:
        k += 1
    return k


def quality_flags(input_text: str, target: str, label: str = "", label_set: frozenset[str] | None = None) -> int:
    flags = 0
    text = f"{input_text} {target}"
    if len(text.split(None, SHORT_WORDS)) < SHORT_WORDS:  # fewer than SHORT_WORDS words; stops counting there
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
        counts = self.counts.get(label)
        if counts is None:
            counts = self.counts[label] = dict.fromkeys(self.names, 0)
        total = sum(counts.values()) + 1
        weights = [max(self.ratios[name] * total - counts[name], 0.0) for name in self.names]
        if sum(weights) <= 0:
            weights = [self.ratios[name] for name in self.names]
        # The draw of random.choices(self.names, weights=weights)[0] (CPython 3.11-3.13), without its overhead:
        # one random() scaled by the total weight, placed among the cumulative weights.
        cumulative = list(accumulate(weights))
        choice = self.names[bisect(cumulative, self.rng.random() * (cumulative[-1] + 0.0), 0, len(cumulative) - 1)]
        counts[choice] += 1
        return choice


_DIFF_TOKEN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)


def diff_segments(text: str, other: str) -> list[tuple[str, bool]]:
    """``text`` cut into pieces, each marked True where it differs from ``other`` (word by word, so a changed
    letter, case or punctuation mark marks its word). Joined, the pieces are ``text`` again.

    Near-duplicate rows look alike at a glance; this shows a curator where they do not.
    """
    from difflib import SequenceMatcher

    mine, theirs = _DIFF_TOKEN.findall(text), _DIFF_TOKEN.findall(other)
    segments: list[tuple[str, bool]] = []
    matcher = SequenceMatcher(None, mine, theirs, autojunk=False)
    for tag, start, end, _, _ in matcher.get_opcodes():
        if start == end:
            continue  # words only the other text has: nothing of this text to mark
        piece = "".join(mine[start:end])
        differs = tag != "equal" and bool(piece.strip())
        if segments and segments[-1][1] == differs:
            segments[-1] = (segments[-1][0] + piece, differs)
        else:
            segments.append((piece, differs))
    return segments
