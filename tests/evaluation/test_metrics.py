"""evaluation.metrics against values worked out by hand or by the reference libraries called directly."""

import math

import numpy as np
import pytest
import sacrebleu
from scipy import stats

from evaluation import metrics
from evaluation.metrics import (
    METRICS,
    balance_report,
    classification_metrics,
    compare,
    compute,
    default_metrics,
    fairness_gaps,
    format_value,
    generation_metrics,
    mean_ci,
    per_group,
    pooled_ci,
)

# --- classification ----------------------------------------------------------------------------------------------

GOLDS = ["a", "a", "b", "b", "c", "c"]
PREDS = ["a", "b", "b", "b", "c", "x"]  # "x" is not a label: wrong, and outside the confusion matrix


def test_classification_metrics_on_a_three_label_example():
    scores = classification_metrics(GOLDS, PREDS, ["a", "b", "c"])
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # F1 per label: a: P 1, R 1/2 → 2/3; b: P 2/3, R 1 → 4/5; c: P 1, R 1/2 → 2/3.
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    assert scores["confusion"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[1, 1, 0], [0, 2, 0], [0, 0, 1]],
        "other": [0, 0, 1],
    }


def test_classification_labels_default_to_the_gold_labels_and_foreign_golds_are_refused():
    assert classification_metrics(GOLDS, PREDS)["confusion"]["labels"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="not in the label list: c"):
        classification_metrics(GOLDS, PREDS, ["a", "b"])
    with pytest.raises(ValueError, match="6 gold answers but 5 predictions"):
        classification_metrics(GOLDS, PREDS[:5])


def test_macro_f1_averages_over_labels_that_occur():
    # In a group where only "a" occurs, macro F1 is a's F1, not dragged down by absent labels.
    assert classification_metrics(["a", "a"], ["a", "a"], ["a", "b", "c"])["macro_f1"] == 1.0


# --- generation --------------------------------------------------------------------------------------------------


def test_rouge_of_a_small_pair_by_hand():
    scores = generation_metrics(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert scores["rouge1"] == pytest.approx(5 / 6)  # 5 of 6 words shared, both sides
    assert scores["rouge2"] == pytest.approx(3 / 5)  # the-cat, on-the, the-mat of 5 bigrams
    assert scores["rougeL"] == pytest.approx(5 / 6)  # "the cat on the mat"


def test_rouge_uses_the_stemmer():
    assert generation_metrics(["cats running"], ["cat runs"])["rouge1"] == 1.0


def test_bleu_and_chrf_are_sacrebleus_corpus_scores():
    refs = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
    preds = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    scores = generation_metrics(refs, preds)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    assert 0 < scores["bleu"] < 100
    same = generation_metrics(refs, refs)
    assert same["bleu"] == pytest.approx(100.0) and same["chrf"] == pytest.approx(100.0)


def test_exact_match_ignores_case_and_spacing_and_lengths_count_words():
    scores = generation_metrics(["Hello  World", "yes", "one two three four"], [" hello world\n", "no", "one"])
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["pred_length_mean"] == pytest.approx((2 + 1 + 1) / 3)
    assert scores["pred_length_median"] == 1.0
    assert scores["ref_length_mean"] == pytest.approx((2 + 1 + 4) / 3)
    assert scores["pred_length_p95"] == pytest.approx(np.percentile([2, 1, 1], 95))


def test_perplexity_is_exp_of_the_mean_nll():
    assert metrics.perplexity(6.0, 3) == pytest.approx(math.exp(2.0))
    assert metrics.perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError):
        metrics.perplexity(1.0, 0)


# --- by name -----------------------------------------------------------------------------------------------------


def test_default_metrics_and_specs():
    assert default_metrics("classification") == ["accuracy", "macro_f1"]
    assert default_metrics("sft") == ["rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match", "pred_length_mean"]
    assert METRICS["perplexity"].higher_is_better is False and METRICS["perplexity"].tasks == ("sft",)
    assert METRICS["judge_score"].source == "judge"
    assert format_value("accuracy", 0.875) == "87.5 %"
    assert format_value("bleu", 41.2) == "41.20"
    assert format_value("pred_length_mean", 12.34) == "12.3 words"
    assert format_value("bleu", None) == "–"


def test_compute_rescores_with_the_named_metrics_only():
    assert compute("classification", GOLDS, PREDS, ["accuracy"]) == {"accuracy": pytest.approx(4 / 6)}
    refs, preds = ["the cat sat on the mat"], ["the cat lay on the mat"]
    scores = compute("sft", refs, preds, ["rouge2", "exact_match"])
    assert scores == {"rouge2": pytest.approx(0.6), "exact_match": 0.0}
    full = generation_metrics(refs, preds)
    assert compute("sft", refs, preds) == {name: pytest.approx(full[name]) for name in default_metrics("sft")}


@pytest.mark.parametrize(
    ("task", "name", "words"),
    [
        ("sft", "bogus", "Unknown metric “bogus”"),
        ("sft", "accuracy", "Accuracy (accuracy) is a metric for classification, not for sft."),
        ("classification", "bleu", "BLEU (bleu) is a metric for sft, not for classification."),
        ("sft", "perplexity", "measured by running the model"),
        ("sft", "judge_score", "comes from a judge model"),
        ("chat", "bleu", "Unknown task “chat”"),
    ],
)
def test_compute_refuses_metrics_that_do_not_fit(task, name, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        compute(task, ["a"], ["a"], [name])


# --- groups and fairness -----------------------------------------------------------------------------------------


def test_per_group_scores_each_group_with_its_count():
    groups = ["north", "north", "south", "south", "", " "]
    result = per_group("classification", groups, GOLDS, PREDS, labels=["a", "b", "c"])
    assert list(result) == ["(none)", "north", "south"]
    assert result["north"] == {"accuracy": 0.5, "macro_f1": pytest.approx((2 / 3 + 0) / 2), "n": 2}
    assert result["south"]["accuracy"] == 1.0 and result["south"]["n"] == 2
    assert result["(none)"]["accuracy"] == 0.5
    sft = per_group("sft", ["x", "y"], ["a b", "c d"], ["a b", "c"], ["exact_match"])
    assert sft == {"x": {"exact_match": 1.0, "n": 1}, "y": {"exact_match": 0.0, "n": 1}}


GROUPS = {
    "A": {"accuracy": 0.75, "perplexity": 10.0, "bleu": 30.0, "n": 40},
    "B": {"accuracy": 0.5, "perplexity": 14.0, "bleu": 24.0, "n": 30},
    "C": {"accuracy": 1.0, "perplexity": 1.0, "bleu": 90.0, "n": 0},  # empty: ignored
}


def test_fairness_gaps_respect_direction_and_ignore_empty_groups():
    gaps = fairness_gaps(GROUPS, ["accuracy", "perplexity"], threshold=0.25)
    assert gaps["accuracy"] == {
        "best_group": "A",
        "worst_group": "B",
        "best": 0.75,
        "worst": 0.5,
        "gap": 0.25,
        "ratio": pytest.approx(2 / 3),
        "flagged": False,  # 0.25 is not above 0.25
        "limit": 0.25,
    }
    # Lower perplexity is better: A is best even though B's number is larger.
    assert (gaps["perplexity"]["best_group"], gaps["perplexity"]["worst_group"]) == ("A", "B")
    assert gaps["perplexity"]["gap"] == 4.0 and gaps["perplexity"]["ratio"] == pytest.approx(1.4)


def test_one_threshold_on_a_0_to_1_scale_fits_every_metric():
    assert fairness_gaps(GROUPS, ["accuracy"], threshold=0.24)["accuracy"]["flagged"] is True
    # BLEU runs 0..100: 0.05 means 5 points, and the 6-point gap is above it; 0.1 (10 points) is not.
    bleu = fairness_gaps(GROUPS, ["bleu"], threshold=0.05)["bleu"]
    assert (bleu["gap"], bleu["limit"], bleu["flagged"]) == (6.0, pytest.approx(5.0), True)
    assert fairness_gaps(GROUPS, ["bleu"], threshold=0.1)["bleu"]["flagged"] is False
    # Perplexity has no upper bound: the gap is compared with the larger value (4 of 14 is 29 %).
    assert fairness_gaps(GROUPS, ["perplexity"], threshold=0.25)["perplexity"]["flagged"] is True
    assert fairness_gaps(GROUPS, ["perplexity"], threshold=0.3)["perplexity"]["flagged"] is False


def test_fairness_thresholds_per_metric_and_small_groups():
    gaps = fairness_gaps(GROUPS, ["accuracy", "perplexity", "bleu"], threshold={"accuracy": 0.1, "perplexity": 5.0})
    assert gaps["accuracy"]["flagged"] is True and gaps["perplexity"]["flagged"] is False
    assert gaps["bleu"]["flagged"] is False and gaps["bleu"]["limit"] is None  # no limit given: never flagged
    assert fairness_gaps(GROUPS, ["accuracy"], threshold=0.1, min_n=35)["accuracy"]["gap"] == 0.0  # only A left
    zero = fairness_gaps({"A": {"accuracy": 0.0, "n": 3}, "B": {"accuracy": 0.0, "n": 3}}, ["accuracy"], threshold=0)
    assert zero["accuracy"]["ratio"] is None
    with pytest.raises(ValueError, match="Unknown metric"):
        fairness_gaps(GROUPS, ["n"], threshold=0.1)


def test_balance_report_counts_and_shares():
    report = balance_report(["a", "a", "b", "a", "b", "b"], ["x", "x", "x", "y", "y", ""])
    assert report["labels"] == ["a", "b"]
    assert report["groups"]["x"] == {"n": 3, "labels": {"a": 2, "b": 1}, "shares": {"a": 2 / 3, "b": 1 / 3}}
    assert report["groups"]["y"]["shares"] == {"a": 0.5, "b": 0.5}
    assert report["groups"]["(none)"] == {"n": 1, "labels": {"a": 0, "b": 1}, "shares": {"a": 0.0, "b": 1.0}}
    assert report["max_share_gap"] == pytest.approx(2 / 3)  # "a": 2/3 in x, 0 in (none)
    assert balance_report(["a", "b"], ["x", "x"])["max_share_gap"] == 0.0


# --- uncertainty -------------------------------------------------------------------------------------------------


def test_mean_ci_is_the_t_interval():
    values = [4.1, 3.8, 4.6, 4.0, 4.4]
    mean, low, high = mean_ci(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(expected)
    assert mean_ci([3.0]) == (3.0, 3.0, 3.0)
    assert mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)
    narrow = mean_ci(values, confidence=0.8)
    assert low < narrow[1] < narrow[2] < high


def test_pooled_ci_for_proportions_is_the_wilson_binomial_interval():
    result = pooled_ci([0.8, 0.9], [100, 300], proportion=True)
    n, p, z = 400, (80 + 270) / 400, stats.norm.ppf(0.975)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert result["mean"] == pytest.approx(0.875) and result["n"] == 400
    assert (result["low"], result["high"]) == pytest.approx((centre - half, centre + half))
    assert result["se"] == pytest.approx(math.sqrt(p * (1 - p) / n))
    # For a large sample it is close to the textbook p ± 1.96·sqrt(p(1-p)/n).
    wald = (p - z * result["se"], p + z * result["se"])
    assert (result["low"], result["high"]) == pytest.approx(wald, abs=0.005)
    # Never outside 0..1 and not a zero-width interval at 100 %.
    perfect = pooled_ci([1.0], [5], proportion=True)
    assert perfect["high"] == 1.0 and 0.4 < perfect["low"] < 1.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        pooled_ci([87.0], [10], proportion=True)


def test_pooled_ci_with_stds_equals_the_interval_of_all_observations():
    rng = np.random.default_rng(1)
    periods = [rng.normal(4.2, 0.6, size) for size in (30, 45, 25)]
    result = pooled_ci(
        [float(p.mean()) for p in periods], [len(p) for p in periods], [float(p.std(ddof=1)) for p in periods]
    )
    everything = np.concatenate(periods).tolist()
    mean, low, high = mean_ci(everything)
    assert (result["mean"], result["low"], result["high"]) == pytest.approx((mean, low, high))
    assert result["n"] == 100 and result["method"] == "pooled"


def test_pooled_ci_without_stds_uses_the_spread_of_the_periods():
    means = [4.1, 4.4, 3.9, 4.2]
    result = pooled_ci(means, [50, 50, 50, 50])
    assert (result["mean"], result["low"], result["high"]) == pytest.approx(mean_ci(means))
    assert result["method"] == "periods" and result["df"] == 3
    single = pooled_ci([4.1], [50])
    assert single["mean"] == 4.1 and single["low"] is None and single["se"] is None


def test_compare_finds_a_real_improvement_and_not_noise():
    before = pooled_ci([0.80], [400], proportion=True)
    after = pooled_ci([0.86], [400], proportion=True)
    result = compare(before, after, higher_is_better=True)
    z = 0.06 / math.sqrt(0.8 * 0.2 / 400 + 0.86 * 0.14 / 400)
    assert result["delta"] == pytest.approx(0.06)
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(z))
    assert result["significant"] is True and result["better"] is True
    assert result["low"] < 0.06 < result["high"] and result["low"] > 0
    # The same rise is a worsening for a lower-is-better KPI (e.g. escalation rate).
    assert compare(before, after, higher_is_better=False)["better"] is False
    # With 50 tickets per side the same difference is noise.
    small = compare(
        pooled_ci([0.80], [50], proportion=True), pooled_ci([0.86], [50], proportion=True), higher_is_better=True
    )
    assert small["significant"] is False and small["better"] is False and small["p_value"] > 0.05


def test_compare_of_t_based_figures_matches_welchs_test():
    rng = np.random.default_rng(7)
    a, b = rng.normal(4.0, 0.8, 40), rng.normal(4.4, 0.5, 30)
    pa = pooled_ci([float(a.mean())], [len(a)], [float(a.std(ddof=1))])
    pb = pooled_ci([float(b.mean())], [len(b)], [float(b.std(ddof=1))])
    result = compare(pa, pb, higher_is_better=True)
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert result["p_value"] == pytest.approx(welch.pvalue)
    assert welch.pvalue < 0.05 and result["better"] is True
    no_se = compare(pooled_ci([4.0], [10]), pb, higher_is_better=True)
    assert no_se["p_value"] is None and no_se["significant"] is False
