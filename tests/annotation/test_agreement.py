"""annotation.agreement against published worked examples, scikit-learn, rouge_score, and hand calculations.

No database: the module is plain Python. Where a reference value is a published figure it is quoted with its source;
Krippendorff's alpha is also cross-checked against a second, direct implementation written here (pairwise
differences, no coincidence matrix), so the published figures are not the only thing standing behind it.
"""

import math
import random
import subprocess
import sys
from itertools import permutations

import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import cohen_kappa_score

from annotation.agreement import (
    ItemAgreement,
    annotator_agreement,
    cohen_kappa,
    consensus,
    fleiss_kappa,
    gold_accuracy,
    interpret,
    krippendorff_alpha,
    summarize,
    text_agreement,
    text_similarity,
    weighted_kappa,
)

N = None


def test_the_module_imports_no_django():
    code = "import sys, annotation.agreement; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- Landis & Koch -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (-0.3, "poor"),
        (0.0, "slight"),
        (0.20, "slight"),
        (0.21, "fair"),
        (0.40, "fair"),
        (0.5, "moderate"),
        (0.61, "substantial"),
        (0.80, "substantial"),
        (0.81, "almost perfect"),
        (1.0, "almost perfect"),
        (None, None),
    ],
)
def test_interpret_uses_the_landis_koch_bands(value, band):
    assert interpret(value) == band


# --- Cohen's kappa -----------------------------------------------------------------------------------------------


def test_cohen_kappa_hand_example():
    # 50 items: both "yes" 20, A yes / B no 5, A no / B yes 10, both "no" 15.
    # p_o = 35/50 = 0.7; A says yes 25/50, B 30/50: p_e = 0.5·0.6 + 0.5·0.4 = 0.5; κ = (0.7 − 0.5) / 0.5 = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa_score(a, b) == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_sklearn(seed):
    rng = random.Random(seed)
    labels = ["billing", "login", "export", "other"][: 2 + seed % 3]
    a = [rng.choice(labels) for _ in range(60)]
    # Correlated answers so kappa is away from 0: b copies a two times in three.
    b = [x if rng.random() < 0.67 else rng.choice(labels) for x in a]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_kappa_skips_items_either_annotator_left_out():
    a = ["x", "y", N, "x", "y", "x"]
    b = ["x", N, "y", "y", "y", "x"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(["x", "x", "y", "x"], ["x", "y", "y", "x"]))


def test_cohen_kappa_undefined_cases_are_none():
    # Both always chose the same label: perfect agreement, but p_e = 1 makes kappa 0/0 (sklearn gives NaN).
    assert cohen_kappa(["a"] * 5, ["a"] * 5) is None
    assert cohen_kappa([], []) is None
    assert cohen_kappa([N, "a"], ["b", N]) is None
    # Each constant but different: p_o = 0 = p_e, kappa 0 as in sklearn.
    assert cohen_kappa(["a"] * 4, ["b"] * 4) == 0.0 == cohen_kappa_score(["a"] * 4, ["b"] * 4)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0


def test_cohen_kappa_refuses_lists_of_different_lengths():
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a", "b"], ["a"])


# --- weighted kappa ----------------------------------------------------------------------------------------------


def _ratings(seed: int, count: int = 80) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    a = [rng.randint(1, 5) for _ in range(count)]
    b = [min(5, max(1, x + rng.choice([-1, 0, 0, 1, 2]))) for x in a]
    return a, b


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weights", ["quadratic", "linear"])
def test_weighted_kappa_matches_sklearn(seed, weights):
    a, b = _ratings(seed)
    assert set(a) | set(b) == {1, 2, 3, 4, 5}
    assert weighted_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights))


def test_weighted_kappa_measures_distance_in_rating_values_even_when_a_value_is_unused():
    # Nobody answered 3. Here 2 vs 4 is two steps apart; sklearn by default treats them as neighbours, and agrees
    # with us once told the whole scale.
    a = [1, 2, 4, 5, 2, 4, 1, 5, 2, 4]
    b = [1, 4, 4, 5, 2, 2, 2, 5, 2, 4]
    ours = weighted_kappa(a, b)
    assert ours == pytest.approx(cohen_kappa_score(a, b, weights="quadratic", labels=[1, 2, 3, 4, 5]))
    assert ours != pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))


def test_weighted_kappa_undefined_and_wrong_input():
    assert weighted_kappa([], []) is None
    assert weighted_kappa([3, 3, 3], [3, 3, 3]) is None
    assert weighted_kappa([3, N], [N, 4]) is None
    assert weighted_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    with pytest.raises(ValueError, match="weights"):
        weighted_kappa([1, 2], [1, 2], weights="cubic")
    with pytest.raises(ValueError, match="not a number"):
        weighted_kappa(["good", "bad"], ["good", "good"])


# --- Fleiss' kappa -----------------------------------------------------------------------------------------------

# Fleiss (1971), as reproduced in Wikipedia's "Fleiss' kappa" article: 10 items, 14 raters, 5 categories; each row
# gives how many raters put the item in each category. Published κ ≈ 0.210 (P̄ ≈ 0.378, P̄_e ≈ 0.213).
FLEISS_COUNTS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def _fleiss_table(counts: list[list[int]]) -> list[list[str]]:
    return [[category for category, k in zip("ABCDE", row, strict=False) for _ in range(k)] for row in counts]


def test_fleiss_kappa_on_the_fleiss_1971_example():
    table = _fleiss_table(FLEISS_COUNTS)
    assert all(len(row) == 14 for row in table)
    kappa = fleiss_kappa(table)
    assert kappa == pytest.approx(0.210, abs=5e-4)
    # The textbook formula on the count matrix, written out independently.
    items, raters = len(FLEISS_COUNTS), 14
    p_bar = sum((sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in FLEISS_COUNTS) / items
    p_e = sum((sum(column) / (items * raters)) ** 2 for column in zip(*FLEISS_COUNTS, strict=True))
    assert p_bar == pytest.approx(0.378, abs=5e-4)
    assert p_e == pytest.approx(0.213, abs=5e-4)
    assert kappa == pytest.approx((p_bar - p_e) / (1 - p_e))


def test_fleiss_kappa_with_two_raters_is_scotts_pi():
    a = ["x", "x", "y", "z", "y", "x", "z", "x"]
    b = ["x", "y", "y", "z", "x", "x", "z", "z"]
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    pooled = a + b
    p_e = sum((pooled.count(label) / len(pooled)) ** 2 for label in set(pooled))
    assert fleiss_kappa([list(pair) for pair in zip(a, b, strict=True)]) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_fleiss_kappa_with_varying_raters_per_item():
    # Items with 3, 2 and 2 labels (the last row and the single label are ignored).
    # P_i = 1, 0, 1 → P̄ = 2/3. π_a = (3/3 + 1/2 + 0) / 3 = 1/2, π_b = 1/2 → P̄_e = 1/2. κ = (2/3 − 1/2) / (1/2) = 1/3.
    table = [["a", "a", "a"], ["a", "b", N], ["b", "b", N], ["b", N, N], [N, N, N]]
    assert fleiss_kappa(table) == pytest.approx(1 / 3)
    assert fleiss_kappa(table[:3]) == pytest.approx(1 / 3)


def test_fleiss_kappa_undefined_cases_are_none():
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([["a", N], [N, "b"]]) is None
    assert fleiss_kappa([["a", "a", "a"], ["a", "a", N]]) is None
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == 1.0


# --- Krippendorff's alpha ----------------------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with missing values: 4 coders
# (A–D, the paper's rows) and 12 units (the paper's columns). Published: nominal 0.743, ordinal 0.815,
# interval 0.849. Unit 12 has one value only and is not pairable.
KRIPPENDORFF_CODERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
KRIPPENDORFF_UNITS = [list(unit) for unit in zip(*KRIPPENDORFF_CODERS, strict=True)]


def _alpha_direct(table, level):
    """A second implementation: α = 1 − D_o / D_e from pairs of values, without a coincidence matrix.

    D_o = Σ_u Σ_{ordered pairs i≠j in u} δ(v_i, v_j) / (m_u − 1) / n;
    D_e = Σ_{ordered pairs i≠j among all n pairable values} δ(v_i, v_j) / (n (n − 1)).
    The ordinal δ needs n_g, how often value g occurs among the pairable values.
    """
    units = [[v for v in row if v is not None] for row in table]
    units = [u for u in units if len(u) >= 2]
    pooled = [v for u in units for v in u]
    n = len(pooled)
    freq = {g: pooled.count(g) for g in set(pooled)}

    def delta(c, k):
        if level == "nominal":
            return float(c != k)
        if level == "interval":
            return float(c - k) ** 2
        low, high = min(c, k), max(c, k)
        return (sum(f for g, f in freq.items() if low <= g <= high) - (freq[c] + freq[k]) / 2) ** 2

    d_o = sum(sum(delta(x, y) for x, y in permutations(u, 2)) / (len(u) - 1) for u in units) / n
    d_e = sum(delta(x, y) for x, y in permutations(pooled, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


@pytest.mark.parametrize(("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_on_the_papers_example(level, published):
    alpha = krippendorff_alpha(KRIPPENDORFF_UNITS, level=level)
    assert alpha == pytest.approx(published, abs=5e-4)
    assert alpha == pytest.approx(_alpha_direct(KRIPPENDORFF_UNITS, level))


def test_krippendorff_nominal_alpha_by_hand():
    # Nominal α = 1 − (n − 1)(n − Σ_c o_cc) / (n² − Σ_c n_c²), counted by hand from the table: n = 40 pairable values
    # (units 1–11); value frequencies n_c = 9, 13, 10, 5, 3 for 1..5; the matching pairs Σ o_cc = 28 from the eight
    # unanimous units, plus 2 from unit 2 (2, 2, 3, 2) and 2 from unit 8 (1, 1, 2, 1) = 32. 1 − 39·8/1216 = 0.7434.
    n_c = [9, 13, 10, 5, 3]
    assert sum(n_c) == 40
    by_hand = 1 - (40 - 1) * (40 - 32) / (40**2 - sum(c * c for c in n_c))
    assert by_hand == pytest.approx(0.7434, abs=1e-4)
    assert krippendorff_alpha(KRIPPENDORFF_UNITS) == pytest.approx(by_hand)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_matches_the_direct_implementation_on_random_tables(seed, level):
    rng = random.Random(seed)
    table = [[rng.choice([1, 2, 3, 4, 5, N]) for _ in range(rng.randint(1, 5))] for _ in range(25)]
    assert krippendorff_alpha(table, level=level) == pytest.approx(_alpha_direct(table, level))


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_perfect_and_systematic_disagreement(level):
    perfect = [[1, 1, 1], [2, 2, N], [3, 3, 3], [5, N, 5]]
    assert krippendorff_alpha(perfect, level=level) == pytest.approx(1.0)
    # Two coders who always contradict each other.
    opposed = [[1, 5], [5, 1], [1, 5], [5, 1], [2, 4], [4, 2]]
    assert krippendorff_alpha(opposed, level=level) < 0


def test_krippendorff_alpha_undefined_and_wrong_input():
    assert krippendorff_alpha([]) is None
    assert krippendorff_alpha([[1, N], [N, 2]]) is None  # nothing pairable
    assert krippendorff_alpha([[3, 3], [3, 3, 3]], level="interval") is None  # one value throughout
    assert krippendorff_alpha([["a", "a"], ["b", "a"]]) is not None  # nominal takes any labels
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1, 2]], level="ratio")
    with pytest.raises(ValueError, match="not a number"):
        krippendorff_alpha([["low", "high"]], level="interval")


def test_krippendorff_interval_alpha_does_not_depend_on_where_the_scale_starts():
    shifted = [[v if v is None else v + 1e9 for v in row] for row in KRIPPENDORFF_UNITS]
    assert krippendorff_alpha(shifted, level="interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(shifted, level="ordinal") == pytest.approx(0.815, abs=5e-4)


def test_nan_counts_as_missing():
    with_nan = [[math.nan if v is None else v for v in row] for row in KRIPPENDORFF_UNITS]
    assert krippendorff_alpha(with_nan, level="interval") == pytest.approx(0.849, abs=5e-4)
    assert cohen_kappa(["a", math.nan, "b"], ["a", "b", "b"]) == 1.0


# --- free text ---------------------------------------------------------------------------------------------------


def test_text_similarity_extremes_and_empty_answers():
    assert text_similarity("The invoice was sent twice.", "The invoice was sent twice.") == 1.0
    assert text_similarity("reset the password", "invoice refund pending") == 0.0
    assert text_similarity("", "") == 1.0
    assert text_similarity("  ", "—") == 1.0  # no words on either side
    assert text_similarity("", "something") == 0.0


def test_text_similarity_stems_and_is_symmetric():
    assert text_similarity("The cats are running", "the cat is runs") == pytest.approx(0.75)  # the, cat, run of 4
    a, b = "please reset my password today", "my password please reset"
    assert text_similarity(a, b) == text_similarity(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The refund was issued on Monday.", "A refund was issued Monday morning."),
        ("Login fails after the update", "After updating, the login page fails to load"),
        ("export CSV-files_now", "exporting csv files"),
    ],
)
def test_text_similarity_is_rouge_l_f_from_rouge_score_on_ascii(a, b):
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(a, b)["rougeL"].fmeasure
    assert text_similarity(a, b) == pytest.approx(reference)


def test_text_similarity_keeps_non_ascii_words():
    greek = "καλημέρα κόσμε"
    # rouge_score's default tokenizer deletes every non-ASCII letter, so identical Greek answers would score 0.
    assert rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(greek, greek)["rougeL"].fmeasure == 0.0
    assert text_similarity(greek, greek) == 1.0
    assert text_similarity("Die Größe stimmt", "die größe passt") == pytest.approx(2 / 3)


def test_text_agreement_averages_pairs_within_items_then_items():
    table = [
        ["reset the password", "reset the password", "invoice refund pending"],  # pairs 1, 0, 0 → 1/3
        ["same words", N, "same words"],  # 1
        ["only one answer", N, N],  # ignored
    ]
    assert text_agreement(table) == pytest.approx((1 / 3 + 1) / 2)
    assert text_agreement([["alone", N]]) is None
    assert text_agreement([]) is None


# --- consensus ---------------------------------------------------------------------------------------------------


def test_consensus_majorities_ties_and_thin_pluralities():
    result = consensus(
        {
            "t1": ["billing", "billing", "login"],
            "t2": ["billing", "login"],  # tie
            "t3": ["a", "b", "c", "a", "d"],  # plurality 2/5 < 0.5
            "t4": ["login", N, N],
            "t5": [],
            "t6": ["x", "x", "y", "y", "z"],  # tie at the top among three labels
        }
    )
    assert result == [
        ItemAgreement("t1", 3, "billing", 2 / 3, False),
        ItemAgreement("t2", 2, None, 0.5, True),
        ItemAgreement("t3", 5, "a", 0.4, True),
        ItemAgreement("t4", 1, "login", 1.0, False),
        ItemAgreement("t5", 0, None, 0.0, False),
        ItemAgreement("t6", 5, None, 0.4, True),
    ]


def test_consensus_min_share():
    table = {"t": ["a", "a", "b"]}
    assert consensus(table, min_share=0.6)[0].disagreement is False
    assert consensus(table, min_share=0.7)[0].disagreement is True
    assert consensus({}) == []
    with pytest.raises(ValueError, match="min_share"):
        consensus(table, min_share=0)


# --- per annotator -----------------------------------------------------------------------------------------------

# ann, bob and cid; cid skipped i4, only ann did i5.
ANNOTATIONS = {
    "i1": {"ann": "a", "bob": "a", "cid": "a"},
    "i2": {"ann": "a", "bob": "b", "cid": "b"},
    "i3": {"ann": "b", "bob": "b", "cid": "a"},
    "i4": {"ann": "a", "bob": "a"},
    "i5": {"ann": "b"},
    "i6": {"ann": "b", "bob": "b", "cid": "b"},
}


def test_annotator_agreement_leave_one_out():
    result = annotator_agreement(ANNOTATIONS)
    assert list(result) == ["ann", "bob", "cid"]
    # ann vs the others' majority: i1 a/a ✓, i2 a/b ✗, i3 others tie (skipped), i4 a/a ✓, i5 nobody else, i6 b/b ✓.
    # kappa on [a, a, a, b] vs [a, b, a, b]: p_o = 3/4, p_e = 3/4·1/2 + 1/4·1/2 = 1/2 → 1/2.
    assert result["ann"] == {"n": 6, "compared": 4, "with_consensus": 0.75, "kappa_vs_others": pytest.approx(0.5)}
    # bob: i2 and i3 are ties among the others; i1 a ✓, i4 a ✓ (ann alone), i6 b ✓ → perfect.
    assert result["bob"] == {"n": 5, "compared": 3, "with_consensus": 1.0, "kappa_vs_others": 1.0}
    # cid: i1 a ✓, i2 others tie, i3 others b vs a ✗, i6 b ✓. [a, a, b] vs [a, b, b]: p_o = 2/3,
    # p_e = 2/3·1/3 + 1/3·2/3 = 4/9 → κ = (2/9) / (5/9) = 0.4.
    assert result["cid"] == {
        "n": 4,
        "compared": 3,
        "with_consensus": pytest.approx(2 / 3),
        "kappa_vs_others": pytest.approx(0.4),
    }


def test_annotator_agreement_with_nobody_to_compare():
    assert annotator_agreement({}) == {}
    assert annotator_agreement({"i1": {"ann": "a", "bob": N}}) == {
        "ann": {"n": 1, "compared": 0, "with_consensus": None, "kappa_vs_others": None}
    }


def test_gold_accuracy():
    answers = {"i1": "a", "i2": "b", "i3": "a", "i4": N, "i9": "a"}
    gold = {"i1": "a", "i2": "a", "i3": "a", "i4": "b", "i5": "b"}
    # i1 ✓, i2 ✗, i3 ✓; i4 unanswered, i5 not answered, i9 has no gold.
    assert gold_accuracy(answers, gold) == {"n": 3, "correct": 2, "accuracy": pytest.approx(2 / 3)}
    assert gold_accuracy({}, gold) == {"n": 0, "correct": 0, "accuracy": None}
    assert gold_accuracy(answers, {}) == {"n": 0, "correct": 0, "accuracy": None}


# --- summarize ---------------------------------------------------------------------------------------------------


def test_summarize_choice_with_two_annotators():
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    table = {i: {"ann": x, "bob": y} for i, (x, y) in enumerate(zip(a, b, strict=True))}
    table["extra"] = {"ann": "yes"}
    summary = summarize("choice", table)
    assert summary["items"] == 51
    assert summary["annotators"] == 2
    assert summary["pairs"] == 50
    assert summary["percent_agreement"] == pytest.approx(0.7)
    assert summary["cohen_kappa"] == pytest.approx(0.4)
    rows = [[x, y] for x, y in zip(a, b, strict=True)]
    assert summary["fleiss_kappa"] == pytest.approx(fleiss_kappa(rows))
    assert summary["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(rows))
    assert summary["weighted_kappa"] is None
    assert summary["text_similarity"] is None
    assert summary["headline"] == "cohen_kappa"
    assert summary["interpretation"] == "fair"
    assert set(summary["per_annotator"]) == {"ann", "bob"}
    assert summary["per_annotator"]["ann"]["n"] == 51


def test_summarize_choice_with_three_annotators():
    summary = summarize("choice", ANNOTATIONS)
    assert summary["annotators"] == 3
    assert summary["pairs"] == 3 + 3 + 3 + 1 + 0 + 3
    assert summary["cohen_kappa"] is None
    assert summary["headline"] == "fleiss_kappa"
    assert summary["fleiss_kappa"] == pytest.approx(
        fleiss_kappa([["a", "a", "a"], ["a", "b", "b"], ["b", "b", "a"], ["a", "a", N], ["b", N, N], ["b", "b", "b"]])
    )
    assert summary["interpretation"] == interpret(summary["fleiss_kappa"])
    assert summary["per_annotator"] == annotator_agreement(ANNOTATIONS)


def test_summarize_rating():
    a, b = _ratings(7, 40)
    table = {i: {"ann": x, "bob": y} for i, (x, y) in enumerate(zip(a, b, strict=True))}
    summary = summarize("rating", table)
    assert summary["weighted_kappa"] == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    assert summary["cohen_kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert summary["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha([[x, y] for x, y in zip(a, b, strict=True)], level="ordinal")
    )
    assert summary["fleiss_kappa"] is None
    assert summary["headline"] == "weighted_kappa"
    assert summary["interpretation"] == interpret(summary["weighted_kappa"])
    table[0]["cid"] = 3
    assert summarize("rating", table)["headline"] == "krippendorff_alpha"


def test_summarize_text():
    table = {
        "q1": {"ann": "reset the password", "bob": "reset the password", "cid": "invoice refund pending"},
        "q2": {"ann": "same words", "cid": "same words"},
    }
    summary = summarize("text", table)
    assert summary["text_similarity"] == pytest.approx((1 / 3 + 1) / 2)
    assert summary["cohen_kappa"] is summary["fleiss_kappa"] is summary["krippendorff_alpha"] is None
    assert summary["headline"] == "text_similarity"
    assert summary["interpretation"] is None
    # ann: q1 mean(1, 0) = 0.5, q2 1 → 0.75; bob: q1 only, 0.5; cid: q1 0, q2 1 → 0.5.
    per = summary["per_annotator"]
    assert {name: row["text_similarity"] for name, row in per.items()} == {"ann": 0.75, "bob": 0.5, "cid": 0.5}
    assert {name: (row["n"], row["compared"]) for name, row in per.items()} == {
        "ann": (2, 2),
        "bob": (1, 1),
        "cid": (2, 2),
    }
    assert per["ann"]["with_consensus"] is per["ann"]["kappa_vs_others"] is None


def test_summarize_everybody_agrees_on_one_label():
    summary = summarize("choice", {i: {"ann": "ok", "bob": "ok"} for i in range(5)})
    assert summary["percent_agreement"] == 1.0
    assert summary["cohen_kappa"] is summary["fleiss_kappa"] is summary["krippendorff_alpha"] is None
    assert summary["interpretation"] is None


@pytest.mark.parametrize("kind", ["choice", "rating", "text"])
def test_summarize_empty_project(kind):
    summary = summarize(kind, {})
    assert summary["items"] == summary["annotators"] == summary["pairs"] == 0
    assert summary["per_annotator"] == {}
    assert summary["interpretation"] is None
    figures = ["percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "weighted_kappa"]
    assert all(summary[name] is None for name in [*figures, "text_similarity"])


def test_summarize_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        summarize("ranking", {})
