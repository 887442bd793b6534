"""Inter-annotator agreement: plain Python, no Django.

Services hand in plain tables of answers and store the numbers and dicts returned here. Two table shapes occur:

- a *matrix* ``list[list[label | None]]``: one row per item, one column per annotator, ``None`` where that annotator
  did not answer (``fleiss_kappa``, ``krippendorff_alpha``, ``text_agreement``);
- a *mapping* ``{item: {annotator: label}}``, which is how answers come out of the database (``annotator_agreement``,
  ``summarize``).

Every statistic returns ``None``, never NaN and never an exception, where it is undefined: no data, too few pairs, or
a chance term that leaves nothing to divide by (everybody always chose the same label: agreement is perfect, but a
chance-corrected coefficient cannot tell it from luck). A float NaN in the input counts as a missing answer, like
``None``. Wrong arguments (unequal lengths, an unknown level, words where numbers are needed) raise ``ValueError``.

References
    Cohen, J. (1960). A coefficient of agreement for nominal scales. Educ. Psychol. Meas. 20, 37–46.
    Cohen, J. (1968). Weighted kappa. Psychol. Bull. 70(4), 213–220.
    Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters. Psychol. Bull. 76(5), 378–382.
    Gwet, K. L. (2014). Handbook of Inter-Rater Reliability, 4th ed. (Fleiss' kappa with missing ratings).
    Krippendorff, K. (2011). Computing Krippendorff's Alpha-Reliability. https://repository.upenn.edu/asc_papers/43
    Landis, J. R. & Koch, G. G. (1977). The measurement of observer agreement for categorical data.
        Biometrics 33(1), 159–174.
    Lin, C.-Y. (2004). ROUGE: a package for automatic evaluation of summaries (ROUGE-L).
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any

KINDS = ("choice", "rating", "text")
LEVELS = ("nominal", "ordinal", "interval")
WEIGHTS = ("linear", "quadratic")

# Landis & Koch (1977): upper bound of each band (inclusive) and its name; below 0 is "poor".
LANDIS_KOCH_BANDS: tuple[tuple[float, str], ...] = (
    (0.20, "slight"),
    (0.40, "fair"),
    (0.60, "moderate"),
    (0.80, "substantial"),
    (1.00, "almost perfect"),
)


def _present(value: object) -> bool:
    """An answer is missing when it is None or a float NaN (what pandas and JSON nulls turn into)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _answers(row: Iterable[object]) -> list[Any]:
    return [value for value in row if _present(value)]


def _paired(a: Sequence[object], b: Sequence[object]) -> list[tuple[Any, Any]]:
    if len(a) != len(b):
        raise ValueError(f"The two annotators have {len(a)} and {len(b)} answers; they must cover the same items.")
    return [(x, y) for x, y in zip(a, b, strict=True) if _present(x) and _present(y)]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"“{value}” is not a number; ratings and interval data must be numbers.")
    return float(value)


def interpret(value: float | None) -> str | None:
    """The Landis & Koch (1977) band for a kappa-like coefficient: "poor" (< 0), "slight" (0–0.20), "fair"
    (0.21–0.40), "moderate" (0.41–0.60), "substantial" (0.61–0.80), "almost perfect" (0.81–1); None for None."""
    if value is None:
        return None
    if value < 0:
        return "poor"
    for upper, name in LANDIS_KOCH_BANDS:
        if value <= upper:
            return name
    return LANDIS_KOCH_BANDS[-1][1]


# --- two annotators ----------------------------------------------------------------------------------------------


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's (1960) kappa for two annotators who labelled the same items (nominal labels).

    κ = (p_o − p_e) / (1 − p_e), with p_o the share of items both gave the same label and
    p_e = Σ_k (n_ak / n)(n_bk / n) the agreement expected from each annotator's own label frequencies.
    ``a[i]`` and ``b[i]`` are the two answers for item i; an item either of them left out (None) is skipped.

    None when undefined: no item answered by both, or p_e = 1, which happens exactly when both annotators used one
    and the same label throughout. Their agreement is then perfect, but kappa is 0/0 (scikit-learn returns NaN).
    Matches ``sklearn.metrics.cohen_kappa_score``.
    """
    pairs = _paired(a, b)
    n = len(pairs)
    if n == 0:
        return None
    count_a = Counter(x for x, _ in pairs)
    count_b = Counter(y for _, y in pairs)
    if len(count_a) == 1 and count_a.keys() == count_b.keys():
        return None  # p_e = 1
    observed = sum(x == y for x, y in pairs) / n
    expected = sum(count * count_b[label] for label, count in count_a.items()) / (n * n)
    return (observed - expected) / (1 - expected)


def weighted_kappa(a: list[int], b: list[int], *, weights: str = "quadratic") -> float | None:
    """Cohen's (1968) weighted kappa for two annotators' ordinal ratings (numbers, e.g. 1–5).

    κ_w = 1 − Σ_ij w_ij o_ij / Σ_ij w_ij e_ij, with o the observed share of items rated (i, j), e_ij = p_ai · p_bj
    what the two rating distributions give by chance, and the disagreement weight w_ij = |i − j| ("linear") or
    (i − j)² ("quadratic"). Weights use the rating *values*, so on a 1–5 scale 2 and 4 stay two steps apart even
    when nobody answered 3. scikit-learn weights by position among the ratings it saw instead; the two agree
    whenever every value between the lowest and highest rating occurs, or when sklearn is given
    ``labels=range(lowest, highest + 1)``. Items either annotator left out (None) are skipped.

    None when undefined: no item rated by both, or no disagreement is possible by chance (both used one and the
    same rating throughout).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"Unknown weights “{weights}”; choose {' or '.join(WEIGHTS)}.")
    pairs = [(_number(x), _number(y)) for x, y in _paired(a, b)]
    if not pairs:
        return None
    power = 1 if weights == "linear" else 2
    observed = sum(abs(x - y) ** power for x, y in pairs)
    # Chance: every rating of one annotator against every rating of the other, over the distinct values only.
    count_a, count_b = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    chance = sum(ca * cb * abs(x - y) ** power for x, ca in count_a.items() for y, cb in count_b.items()) / len(pairs)
    if chance <= 0:
        return None
    return 1 - observed / chance


# --- many annotators ---------------------------------------------------------------------------------------------


def fleiss_kappa(table: list[list[str | None]]) -> float | None:
    """Fleiss' (1971) kappa for many annotators and nominal labels.

    ``table``: one row per item, one column per annotator, None where that annotator gave no label. Items with fewer
    than two labels are ignored (they hold no pair to agree or disagree).

    κ = (P̄ − P̄_e) / (1 − P̄_e), where for item i with r_i labels, r_ik of them equal to k,
        P_i = Σ_k r_ik (r_ik − 1) / (r_i (r_i − 1))     (share of agreeing ordered pairs of labels on the item),
        P̄  = mean of P_i over the items,
        π_k = mean over the items of r_ik / r_i,       P̄_e = Σ_k π_k².
    With the same number of labels on every item this is exactly Fleiss' formula (π_k is then the overall share of
    label k). With varying numbers it is the generalisation in Gwet (2014) for missing ratings, except that Gwet
    also lets items with a single label into π_k; here they are left out entirely.

    None when undefined: no item with two labels, or P̄_e = 1 (one label used throughout).
    """
    items = [Counter(labels) for labels in map(_answers, table)]
    items = [counts for counts in items if counts.total() >= 2]
    if not items:
        return None
    agreement = 0.0
    shares: Counter = Counter()
    for counts in items:
        r = counts.total()
        agreement += sum(c * (c - 1) for c in counts.values()) / (r * (r - 1))
        for label, c in counts.items():
            shares[label] += c / r
    if len(shares) == 1:
        return None  # P̄_e = 1
    p_bar = agreement / len(items)
    p_e = sum((share / len(items)) ** 2 for share in shares.values())
    return (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha(table: list[list[object | None]], *, level: str = "nominal") -> float | None:
    """Krippendorff's alpha for any number of annotators, missing answers allowed (Krippendorff 2011).

    ``table``: one row per item (unit), one column per annotator, None where that annotator gave no value. Note that
    Krippendorff's paper prints the transpose (coders as rows). Only items with at least two values are pairable.

    α = 1 − D_o / D_e = 1 − (n − 1) Σ_ck o_ck δ²_ck / Σ_ck n_c n_k δ²_ck, where the coincidence matrix
    o_ck = Σ_u (number of ordered pairs (c, k) of values from different annotators in unit u) / (m_u − 1),
    n_c = Σ_k o_ck, n = Σ_c n_c (the number of pairable values), and the difference δ²_ck is
        nominal:  0 if c = k else 1;
        ordinal:  (Σ_{g from c to k} n_g − (n_c + n_k) / 2)², over the values in sorted order (so pass numbers);
        interval: (c − k)².
    On the paper's 4-coder, 12-unit example this gives 0.743 (nominal), 0.815 (ordinal), 0.849 (interval).
    The sums are taken in closed form rather than over a values × values matrix, so time and memory grow with the
    number of answers, not with the square of the number of distinct values.

    None when undefined: no two pairable values that differ (nothing pairable, or a single value throughout).
    """
    if level not in LEVELS:
        raise ValueError(f"Unknown level “{level}”; choose {', '.join(LEVELS)}.")
    units = [values for values in map(_answers, table) if len(values) >= 2]
    if level != "nominal":
        units = [[_number(v) for v in values] for values in units]
    pooled = Counter(v for unit in units for v in unit)
    if len(pooled) < 2:
        return None
    n = pooled.total()
    if level == "nominal":
        # Ordered pairs of different values: m² − Σ_c m_c² in a unit, n² − Σ_c n_c² overall.
        observed = sum((len(u) ** 2 - sum(c * c for c in Counter(u).values())) / (len(u) - 1) for u in units)
        expected = n * n - sum(c * c for c in pooled.values())
        return 1 - (n - 1) * observed / expected
    if level == "ordinal":
        # The ordinal δ²_ck equals (t_k − t_c)² with t_v = Σ_{g < v} n_g + n_v / 2, the mid-rank of v among the
        # pairable values, so ordinal alpha is interval alpha on mid-ranks.
        rank, below = {}, 0
        for value in sorted(pooled):
            rank[value] = below + pooled[value] / 2
            below += pooled[value]
        units = [[rank[v] for v in unit] for unit in units]
    # Squared differences over ordered pairs i ≠ j of m values: 2m Σ (v − mean)².
    observed = sum(2 * len(u) * _spread(u) / (len(u) - 1) for u in units)
    expected = 2 * n * _spread([v for u in units for v in u])
    return 1 - (n - 1) * observed / expected


def _spread(values: list[float]) -> float:
    """Σ (v − mean)², the stable way to sum squared differences between numbers."""
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values)


# --- free text ---------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


class _Tokenizer:
    """rouge_score's default tokenizer, except that letters outside ASCII survive.

    The default lowercases, keeps runs of [a-z0-9] and Porter-stems words longer than three characters; it deletes
    every other character, so two identical answers in Greek would score 0 and "Größe" shrinks to "gr e". Here a word
    is a run of Unicode letters and digits, and only ASCII words are stemmed (the stemmer is English). On ASCII text
    the tokens are the same as rouge_score's.
    """

    def __init__(self) -> None:
        from nltk.stem import porter

        # Stemming is most of the cost and answers reuse the same few thousand words.
        self._stem = lru_cache(maxsize=100_000)(porter.PorterStemmer().stem)

    def tokenize(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        return [self._stem(w) if len(w) > 3 and w.isascii() else w for w in words]


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())


def text_similarity(a: str, b: str) -> float:
    """ROUGE-L F-measure of two free-text answers, 0..1 (Lin 2004; rouge_score, Porter stemmer on).

    F = 2PR / (P + R) with P and R the length of the longest common word subsequence over each answer's length, so
    the score does not depend on which answer comes first. Answers with no words at all (empty, blank, only
    punctuation) on both sides score 1.0: they say the same nothing. One side without words scores 0.0.
    """
    if not _WORD.search(a) and not _WORD.search(b):
        return 1.0
    return float(_scorer().score(a, b)["rougeL"].fmeasure)


def text_agreement(table: list[list[str | None]]) -> float | None:
    """Mean text similarity: per item, the mean ``text_similarity`` over all pairs of its answers; then the mean over
    items with at least two answers, so each item weighs the same however many annotators answered it.

    ``table``: one row per item, one column per annotator, None where that annotator did not answer (an empty string
    is an answer). None when no item has two answers.
    """
    per_item = []
    for answers in map(_answers, table):
        if len(answers) >= 2:
            scores = [text_similarity(x, y) for x, y in combinations(answers, 2)]
            per_item.append(sum(scores) / len(scores))
    return sum(per_item) / len(per_item) if per_item else None


# --- consensus and annotators ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemAgreement:
    """How one item's annotators agree. ``share`` = count of the most frequent label / n (0.0 when n = 0)."""

    item: object
    n: int
    consensus: object | None
    share: float
    disagreement: bool


def _majority(labels: list[Any]) -> tuple[Any | None, int]:
    """The most frequent label and its count; None when two or more labels tie for the top (or there are none)."""
    top = Counter(labels).most_common(2)
    if not top:
        return None, 0
    if len(top) == 2 and top[0][1] == top[1][1]:
        return None, top[0][1]
    return top[0]


def consensus(table: dict[object, list[object]], *, min_share: float = 0.5) -> list[ItemAgreement]:
    """The majority label of each item, in the table's order, and whether the item needs a second look.

    ``table``: {item: [labels]}; None labels are skipped. ``consensus`` is the most frequent label (a plurality:
    it is kept even below ``min_share``) or None when labels tie for the top. ``disagreement`` is True on a tie or
    when ``share`` < ``min_share``. An item nobody labelled has n = 0, no consensus and no disagreement; one label
    alone is its own consensus (share 1.0).
    """
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be above 0 and at most 1, not {min_share}.")
    result = []
    for item, labels in table.items():
        present = _answers(labels)
        n = len(present)
        label, top = _majority(present)
        share = top / n if n else 0.0
        tie = n > 0 and label is None
        result.append(ItemAgreement(item, n, label, share, disagreement=tie or (n > 0 and share < min_share)))
    return result


def annotator_agreement(table: dict[object, dict[str, object]]) -> dict[str, dict]:
    """How well each annotator agrees with the others (leave-one-out).

    ``table``: {item: {annotator: label}}. For each annotator and each item they labelled, the *others' majority* is
    the most frequent label among the other annotators on that item; it is missing when nobody else labelled the item
    or the others tie. Per annotator, sorted by name:

    - ``n``: items they labelled;
    - ``compared``: of those, items with an others' majority;
    - ``with_consensus``: share of the compared items where their label equals the others' majority (None if none);
    - ``kappa_vs_others``: ``cohen_kappa`` of their labels against the others' majorities on the compared items
      (None when undefined).
    """
    mine: dict[str, list[Any]] = {}
    theirs: dict[str, list[Any]] = {}
    labelled: Counter = Counter()
    for answers in table.values():
        present = {name: label for name, label in answers.items() if _present(label)}
        for name, label in present.items():
            labelled[name] += 1
            majority, _ = _majority([other for who, other in present.items() if who != name])
            if majority is not None:
                mine.setdefault(name, []).append(label)
                theirs.setdefault(name, []).append(majority)
    result = {}
    for name in sorted(labelled):
        a, b = mine.get(name, []), theirs.get(name, [])
        result[name] = {
            "n": labelled[name],
            "compared": len(a),
            "with_consensus": sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None,
            "kappa_vs_others": cohen_kappa(a, b),
        }
    return result


def _text_summary(table: dict[object, dict[str, object]]) -> tuple[float | None, dict[str, dict]]:
    """``text_agreement`` of the table and, per annotator, the mean ``text_similarity`` of their answer to each other
    annotator's answer on the same item, averaged over the items someone else also answered (free text has no
    majority answer to agree with). Each pair is scored once: ROUGE-L is the slow part."""
    labelled: Counter = Counter()
    per_item: list[float] = []
    scores: dict[str, list[float]] = {}
    for answers in table.values():
        present = {name: text for name, text in answers.items() if _present(text)}
        labelled.update(present.keys())
        if len(present) < 2:
            continue
        pair_scores = {(x, y): text_similarity(present[x], present[y]) for x, y in combinations(present, 2)}
        per_item.append(sum(pair_scores.values()) / len(pair_scores))
        for name in present:
            mine = [score for pair, score in pair_scores.items() if name in pair]
            scores.setdefault(name, []).append(sum(mine) / len(mine))
    per_annotator = {
        name: {
            "n": labelled[name],
            "compared": len(scores.get(name, [])),
            "with_consensus": None,
            "kappa_vs_others": None,
            "text_similarity": sum(scores[name]) / len(scores[name]) if name in scores else None,
        }
        for name in sorted(labelled)
    }
    return (sum(per_item) / len(per_item) if per_item else None), per_annotator


def gold_accuracy(answers: dict[object, object], gold: dict[object, object]) -> dict:
    """Accuracy of one annotator's ``answers`` {item: label} against ``gold`` {item: label}, over the items that have
    a gold label and an answer: {"n", "correct", "accuracy"}; accuracy is None when n = 0."""
    scored = [(answers[item], label) for item, label in gold.items() if _present(label) and _present(answers.get(item))]
    correct = sum(answer == label for answer, label in scored)
    return {"n": len(scored), "correct": correct, "accuracy": correct / len(scored) if scored else None}


# --- one call for a project --------------------------------------------------------------------------------------


def summarize(kind: str, table: dict[object, dict[str, object]]) -> dict:
    """Every agreement figure that fits a project's kind of answer, from {item: {annotator: label}}.

    ``kind``: "choice" (nominal labels), "rating" (ordinal numbers such as 1–5) or "text" (free text). Returns:

    - ``items``, ``annotators``: how many have at least one answer; ``pairs``: how many pairs of answers to the
      same item the figures rest on;
    - ``percent_agreement`` (choice, rating): share of those pairs that match exactly; it stays meaningful when a
      kappa is undefined because everybody gave the same label;
    - ``cohen_kappa`` (choice, rating; exactly two annotators), ``fleiss_kappa`` (choice),
      ``krippendorff_alpha`` (choice: nominal, rating: ordinal), ``weighted_kappa`` (rating, two annotators,
      quadratic), ``text_similarity`` (text: ``text_agreement``); None where it does not apply or is undefined;
    - ``per_annotator``: ``annotator_agreement`` for choice and rating; for text, exact matches mean little, so
      ``with_consensus`` and ``kappa_vs_others`` are None and ``text_similarity`` gives each annotator's mean
      similarity to the others;
    - ``headline``: the figure to show first: for choice Cohen's kappa with two annotators, else Fleiss' kappa; for
      rating weighted kappa with two annotators, else Krippendorff's alpha; for text the text similarity;
    - ``interpretation``: the Landis & Koch band of the headline ("poor" … "almost perfect"), None when the headline
      is undefined or is the text similarity (ROUGE-L is not chance-corrected, so the bands do not apply).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind “{kind}”; choose {', '.join(KINDS)}.")
    names = sorted({name for answers in table.values() for name, label in answers.items() if _present(label)})
    rows = [[answers.get(name) for name in names] for answers in table.values()]
    answered = [_answers(row) for row in rows]
    pairs = [(x, y) for answers in answered for x, y in combinations(answers, 2)]
    two = len(names) == 2
    summary: dict[str, Any] = {
        "kind": kind,
        "items": sum(1 for answers in answered if answers),
        "annotators": len(names),
        "pairs": len(pairs),
        "percent_agreement": None,
        "cohen_kappa": None,
        "fleiss_kappa": None,
        "krippendorff_alpha": None,
        "weighted_kappa": None,
        "text_similarity": None,
    }
    if kind == "text":
        summary["text_similarity"], summary["per_annotator"] = _text_summary(table)
        summary["headline"] = "text_similarity"
        summary["interpretation"] = None
        return summary
    if pairs:
        summary["percent_agreement"] = sum(x == y for x, y in pairs) / len(pairs)
    if two:
        first, second = [row[0] for row in rows], [row[1] for row in rows]
        summary["cohen_kappa"] = cohen_kappa(first, second)
    if kind == "choice":
        summary["fleiss_kappa"] = fleiss_kappa(rows)
        summary["krippendorff_alpha"] = krippendorff_alpha(rows, level="nominal")
        summary["headline"] = "cohen_kappa" if two else "fleiss_kappa"
    else:
        summary["krippendorff_alpha"] = krippendorff_alpha(rows, level="ordinal")
        if two:
            summary["weighted_kappa"] = weighted_kappa(first, second, weights="quadratic")
        summary["headline"] = "weighted_kappa" if two else "krippendorff_alpha"
    summary["per_annotator"] = annotator_agreement(table)
    summary["interpretation"] = interpret(summary[summary["headline"]])
    return summary
