"""The fast paths in curation.text give exactly what the plain definitions give.

Row hashes, text hashes, flags and splits are stored with every imported row and feed content hashes
and deduplication, so a fast path that differed by one character would silently change versions.
The plain definitions below are the originals the fast paths replaced.
"""

import hashlib
import json
import random
import re
import unicodedata

import pytest

from curation import text

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def plain_row_hash(input_text, target, label, group):
    payload = json.dumps([input_text, target, label, group], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def plain_normalise(value):
    value = unicodedata.normalize("NFKC", value).casefold()
    value = _PUNCT.sub(" ", value)
    return _SPACE.sub(" ", value).strip()


def plain_text_hash(input_text, target):
    payload = plain_normalise(input_text) + "\x1f" + plain_normalise(target)
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def plain_looks_english(value):
    letters = [ch for ch in value[:2000] if ch.isalpha()]
    if len(letters) < 20:
        return True
    latin = sum(1 for ch in letters if ch.isascii())
    if latin / len(letters) < 0.6:
        return False
    words = [word.lower() for word in _WORD.findall(value[:2000])]
    if len(words) < 8:
        return True
    return sum(1 for word in words if word in text._STOPWORDS) / len(words) >= 0.05


def plain_short(input_text, target):
    return len(f"{input_text} {target}".split()) < text.SHORT_WORDS


class PlainSplitAssigner(text.SplitAssigner):
    def assign(self, label=""):
        counts = self.counts.setdefault(label, dict.fromkeys(self.names, 0))
        total = sum(counts.values()) + 1
        weights = [max(self.ratios[name] * total - counts[name], 0.0) for name in self.names]
        if sum(weights) <= 0:
            weights = [self.ratios[name] for name in self.names]
        choice = self.rng.choices(self.names, weights=weights)[0]
        counts[choice] += 1
        return choice


ENGLISH = "Thanks for the details. I have refunded the duplicate charge on invoice INV-3371221; it shows soon."
SAMPLES = [
    "",
    " ",
    "a",
    "a b",
    " a  b ",
    "a b c",
    ENGLISH,
    ENGLISH.upper(),
    "Ich wurde diesen Monat doppelt belastet, Rechnung 12. Bitte erstatten Sie den Betrag zurück, danke schön.",
    "No puedo exportar los tickets de marzo. El botón de exportación aparece desactivado en el panel.",
    "日本語のテキストです。こんにちは世界、よろしくお願いします。" * 3,
    "Привет мир, это тестовое сообщение для проверки языка и хэшей." * 2,
    "İstanbul ǅ ﬁne ² ½ Ⅻ 一二三 café naïve \u00a0\u2003\u3000 tab\tand\x1fcontrol\x1c chars",
    "x" * 2500 + " the and of to",
    "the " * 700 + "zebra " * 100,
    'back\\slash "quotes" and \x00 nul',
    "lone \ud800 surrogate",
]


def random_samples(count=3000):
    rng = random.Random(20261129)
    pools = [
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 the a and of to is you please thanks",
        "".join(chr(i) for i in range(128)),
        "äöüßéèçñ ÄÖÜ İ ǅ ﬁ ² ½ Ⅻ 一二三 日本語 Привет Ελληνικά العربية "
        "\u00a0\u2003\u3000\u200b\u0301\u0307 ١٢٣ _-—…“”",
    ]
    for _ in range(count):
        pool = rng.choice([pools[0], pools[0] + pools[1], pools[0] * 3 + pools[2], pools[2]])
        yield "".join(rng.choice(pool) for _ in range(rng.choice([0, 3, 20, 60, 300, 2100])))


def code_points():
    """Every code point up to U+0800 and a stride through the rest, each in a word and next to others."""
    for cp in [*range(0x800), *range(0x800, 0x110000, 211)]:
        ch = chr(cp)
        yield f"A{ch}b. {ch}{ch} the quick brown fox jumps over the lazy dog {ch * 5}"
        yield ch * 30 + " to the of and is it"


@pytest.mark.parametrize("value", SAMPLES)
def test_fast_paths_match_the_plain_definitions_on_chosen_text(value):
    assert text.normalise(value) == plain_normalise(value)
    assert text.text_hash(value, ENGLISH) == plain_text_hash(value, ENGLISH)
    assert text.row_hash(value, ENGLISH, "label", "group") == plain_row_hash(value, ENGLISH, "label", "group")
    assert text.looks_english(value) == plain_looks_english(value)
    assert bool(text.quality_flags(value, "") & text.FLAG_SHORT) == plain_short(value, "")


def test_fast_paths_match_the_plain_definitions_on_random_text():
    values = list(random_samples())
    for first, second in zip(values[::2], values[1::2], strict=True):
        assert text.normalise(first) == plain_normalise(first)
        assert text.text_hash(first, second) == plain_text_hash(first, second)
        assert text.row_hash(first, second, "", "") == plain_row_hash(first, second, "", "")
        joined = f"{first} {second}"
        assert text.looks_english(joined) == plain_looks_english(joined)
        assert bool(text.quality_flags(first, second) & text.FLAG_SHORT) == plain_short(first, second)


def test_fast_paths_match_the_plain_definitions_on_unicode_code_points():
    for value in code_points():
        assert text.normalise(value) == plain_normalise(value)
        assert text.looks_english(value) == plain_looks_english(value)


def test_row_hash_of_values_that_are_not_text_is_unchanged():
    assert text.row_hash(12, "b", "", "") == plain_row_hash(12, "b", "", "")


@pytest.mark.parametrize(
    "ratios",
    [{"train": 0.8, "validation": 0.1, "test": 0.1}, {"train": 0.5, "validation": 0.5, "test": 0.0}, {"train": 1.0}],
)
def test_split_assignment_matches_random_choices(ratios):
    fast, plain = text.SplitAssigner(13, ratios), PlainSplitAssigner(13, ratios)
    labels = random.Random(1)
    for _ in range(20000):
        label = labels.choice(["", "billing", "login", "export"])
        assert fast.assign(label) == plain.assign(label)


def test_diff_segments_mark_the_words_that_differ_and_keep_the_text_whole():
    diff = text.diff_segments
    mine, other = "Where is my refund for order 1001?", "where is my refund for order 1002"
    segments = diff(mine, other)
    assert "".join(part for part, _ in segments) == mine
    assert [part for part, differs in segments if differs] == ["Where", "1001?"]
    assert diff("same words", "same words") == [("same words", False)]
    # Words only the other row has leave nothing to mark here; a word only this row has is marked.
    assert diff("a c", "a b c") == [("a c", False)]
    assert [part for part, differs in diff("a b c", "a c") if differs] == ["b "]
    assert diff("", "anything") == []
