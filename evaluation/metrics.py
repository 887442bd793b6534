"""Scores for evaluation runs: plain Python, no Django.

Services hand in plain lists (gold answers, predictions, group names, KPI figures) and store the dicts returned here.
The metrics come from the usual libraries so that figures match what people compute elsewhere: scikit-learn for
accuracy, F1 and the confusion matrix, rouge_score (stemmer on) for ROUGE, sacrebleu (corpus level, default
settings) for BLEU and chrF, scipy for the t and normal distributions.

Value scales: shares (accuracy, F1, ROUGE, exact match) are 0..1, BLEU and chrF 0..100 as sacrebleu reports them,
lengths in words (whitespace-separated). `format_value` turns a stored value into what a page shows.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

TASKS = ("classification", "sft")
NO_GROUP = "(none)"


@dataclass(frozen=True)
class MetricSpec:
    """What a metric means for people and programs.

    `unit` "%" marks a share stored as 0..1 and shown as a percentage. `source` says where the value comes from:
    "predictions" (gold and predicted texts: compute() can re-score saved predictions), "model" (needs the model
    itself: perplexity) or "judge" (needs a judge endpoint). `scale` is the width of the metric's range (1 for
    shares, 100 for BLEU and chrF, 4 for a 1–5 score), None when it has no upper bound (perplexity, lengths); it
    lets one fairness threshold on a 0..1 scale fit every metric.
    """

    name: str
    label: str
    higher_is_better: bool
    tasks: tuple[str, ...]
    unit: str = ""
    source: str = "predictions"
    scale: float | None = 1.0


_CLS = ("classification",)
_SFT = ("sft",)

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", "Accuracy", True, _CLS, "%"),
        MetricSpec("macro_f1", "Macro F1", True, _CLS, "%"),
        MetricSpec("rouge1", "ROUGE-1", True, _SFT),
        MetricSpec("rouge2", "ROUGE-2", True, _SFT),
        MetricSpec("rougeL", "ROUGE-L", True, _SFT),
        MetricSpec("bleu", "BLEU", True, _SFT, scale=100.0),
        MetricSpec("chrf", "chrF", True, _SFT, scale=100.0),
        MetricSpec("exact_match", "Exact match", True, _SFT, "%"),
        # Neither longer nor shorter is better in itself; shown next to the reference length.
        MetricSpec("pred_length_mean", "Answer length (words)", False, _SFT, " words", scale=None),
        MetricSpec("perplexity", "Perplexity", False, _SFT, source="model", scale=None),
        MetricSpec("judge_score", "Judge score (1–5)", True, _SFT, source="judge", scale=4.0),
    )
}


def default_metrics(task: str) -> list[str]:
    """The metrics computed from predictions for `task`. Perplexity (needs the model) and judge_score (needs a
    judge endpoint) are asked for separately."""
    _check_task(task)
    return [name for name, spec in METRICS.items() if task in spec.tasks and spec.source == "predictions"]


def format_value(name: str, value: float | None) -> str:
    """A stored value as a page shows it: "87.5 %", "41.20", "12.3 words"; "–" for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    spec = METRICS.get(name)
    if spec is not None and spec.unit == "%":
        return f"{value * 100:.1f} %"
    if spec is not None and spec.unit:
        return f"{value:.1f}{spec.unit}"
    return f"{value:.2f}"


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"Unknown task “{task}”; choose classification or sft.")


def _check_pairs(golds: list[str], preds: list[str]) -> None:
    if len(golds) != len(preds):
        raise ValueError(f"There are {len(golds)} gold answers but {len(preds)} predictions; they must pair up.")
    if not golds:
        raise ValueError("There are no rows to score.")


# --- classification ----------------------------------------------------------------------------------------------


def classification_metrics(golds: list[str], preds: list[str], labels: list[str] | None = None) -> dict:
    """Accuracy, macro F1 and the confusion matrix.

    `labels` defaults to the gold labels, sorted. A predicted label outside the list counts as wrong; the confusion
    matrix is square over `labels` (rows gold, columns predicted) and `other` counts, per gold label, the
    predictions outside the list, so each row plus its `other` adds up to that label's rows. Macro F1 averages over
    the labels that occur among the golds or predictions: a label absent from a subset (one group of a fairness
    report) would otherwise count as F1 = 0 and drag the average down for no reason.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    _check_pairs(golds, preds)
    labels = list(labels) if labels is not None else sorted(set(golds))
    known = set(labels)
    strangers = sorted({gold for gold in golds if gold not in known})
    if strangers:
        raise ValueError(f"These gold labels are not in the label list: {', '.join(strangers)}.")
    seen = set(golds) | (set(preds) & known)
    scored = [label for label in labels if label in seen]
    matrix = confusion_matrix(golds, preds, labels=labels) if labels else []
    other = Counter(gold for gold, pred in zip(golds, preds, strict=True) if pred not in known)
    return {
        "accuracy": float(accuracy_score(golds, preds)),
        "macro_f1": float(f1_score(golds, preds, labels=scored, average="macro", zero_division=0)),
        "confusion": {
            "labels": labels,
            "matrix": [[int(cell) for cell in row] for row in matrix],
            "other": [other.get(label, 0) for label in labels],
        },
    }


# --- generation --------------------------------------------------------------------------------------------------

_ROUGE = ("rouge1", "rouge2", "rougeL")


def _rouge(references: list[str], predictions: list[str], names: Iterable[str] = _ROUGE) -> dict[str, float]:
    """Mean ROUGE F-measure over the pairs (rouge_score, Porter stemmer on)."""
    from rouge_score import rouge_scorer

    names = list(names)
    scorer = rouge_scorer.RougeScorer(names, use_stemmer=True)
    totals = dict.fromkeys(names, 0.0)
    for reference, prediction in zip(references, predictions, strict=True):
        scores = scorer.score(reference, prediction)  # (target, prediction)
        for name in names:
            totals[name] += scores[name].fmeasure
    return {name: total / len(references) for name, total in totals.items()}


def _bleu(references: list[str], predictions: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


def _chrf(references: list[str], predictions: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(predictions, [references]).score)


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _exact_match(references: list[str], predictions: list[str]) -> float:
    """Share of predictions equal to their reference, ignoring case and differences in whitespace."""
    hits = sum(_normalise(ref) == _normalise(pred) for ref, pred in zip(references, predictions, strict=True))
    return hits / len(references)


def _words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def generation_metrics(references: list[str], predictions: list[str]) -> dict:
    """ROUGE-1/2/L (mean F-measure, 0..1), BLEU and chrF (sacrebleu corpus level, 0..100), exact match (0..1, case
    and whitespace ignored) and lengths in words: pred_length_mean/median/p95 and ref_length_mean."""
    import numpy

    _check_pairs(references, predictions)
    lengths = numpy.array(_words(predictions), dtype=float)
    return {
        **_rouge(references, predictions),
        "bleu": _bleu(references, predictions),
        "chrf": _chrf(references, predictions),
        "exact_match": _exact_match(references, predictions),
        "pred_length_mean": float(lengths.mean()),
        "pred_length_median": float(numpy.median(lengths)),
        "pred_length_p95": float(numpy.percentile(lengths, 95)),
        "ref_length_mean": float(numpy.mean(_words(references))),
    }


# --- by name -----------------------------------------------------------------------------------------------------


def _check_metrics(task: str, metric_names: list[str]) -> None:
    for name in metric_names:
        spec = METRICS.get(name)
        if spec is None:
            raise ValueError(f"Unknown metric “{name}”; known metrics: {', '.join(METRICS)}.")
        if task not in spec.tasks:
            fits = " and ".join(spec.tasks)
            raise ValueError(f"{spec.label} ({name}) is a metric for {fits}, not for {task}.")
        if spec.source == "model":
            raise ValueError(f"{spec.label} is measured by running the model on the data, not from saved predictions.")
        if spec.source == "judge":
            raise ValueError(f"{spec.label} comes from a judge model, not from saved predictions.")


def compute(
    task: str,
    golds: list[str],
    preds: list[str],
    metric_names: list[str] | None = None,
    labels: list[str] | None = None,
) -> dict[str, float]:
    """The named metrics (default: default_metrics(task)) as {name: value}; used to re-score saved predictions.

    Raises ValueError with a plain message for an unknown metric, one of another task, or one that cannot be
    computed from predictions (perplexity, judge_score).
    """
    _check_task(task)
    names = list(metric_names) if metric_names is not None else default_metrics(task)
    _check_metrics(task, names)
    _check_pairs(golds, preds)
    if task == "classification":
        scores = classification_metrics(golds, preds, labels)
        return {name: scores[name] for name in names}
    values: dict[str, float] = {}
    rouge = [name for name in names if name in _ROUGE]
    if rouge:
        values.update(_rouge(golds, preds, rouge))
    for name in names:
        if name == "bleu":
            values[name] = _bleu(golds, preds)
        elif name == "chrf":
            values[name] = _chrf(golds, preds)
        elif name == "exact_match":
            values[name] = _exact_match(golds, preds)
        elif name == "pred_length_mean":
            values[name] = sum(_words(preds)) / len(preds)
    return {name: values[name] for name in names}


# --- groups and fairness -----------------------------------------------------------------------------------------


def _group_name(group: str | None) -> str:
    return group.strip() if group and group.strip() else NO_GROUP


def per_group(
    task: str,
    groups: list[str],
    golds: list[str],
    preds: list[str],
    metric_names: list[str] | None = None,
    labels: list[str] | None = None,
) -> dict[str, dict]:
    """{group: {metric: value, ..., "n": rows}} for every group (blank group → "(none)"), groups sorted by name.

    For classification pass the full label list so that each group is scored against the same labels.
    """
    if len(groups) != len(golds):
        raise ValueError(f"There are {len(groups)} group names for {len(golds)} rows; give one per row.")
    _check_pairs(golds, preds)
    rows: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        rows[_group_name(group)].append(index)
    if task == "classification" and labels is None:
        labels = sorted(set(golds))  # the same label list for every group
    result = {}
    for group in sorted(rows):
        indices = rows[group]
        scores = compute(task, [golds[i] for i in indices], [preds[i] for i in indices], metric_names, labels)
        result[group] = {**scores, "n": len(indices)}
    return result


def fairness_gaps(
    groups_metrics: dict[str, dict],
    metric_names: list[str],
    *,
    threshold: float | dict[str, float],
    min_n: int = 1,
) -> dict[str, dict]:
    """Best and worst group per metric, with the gap between them.

    Returns {metric: {"best_group", "worst_group", "best", "worst", "gap", "ratio", "flagged", "limit"}}: gap is the
    absolute difference, ratio worst/best (None when best is 0). "Best" respects the metric's direction (lowest
    perplexity is best). Groups with fewer than `min_n` rows (default 1: empty groups) or without a value for the
    metric are left out; a metric no group has is left out of the result.

    flagged is gap > limit. A single `threshold` is on a 0..1 scale, so one setting fits every metric: for shares
    the limit is the threshold itself (0.1 = ten percentage points), for BLEU and chrF threshold × 100 points, for
    the judge score threshold × 4 (the width of 1–5); for metrics without an upper bound (perplexity, lengths) the
    limit is threshold × the larger of the two values (a relative gap). A dict {metric: limit} gives absolute limits
    per metric instead (metrics missing from it are never flagged).
    """
    report = {}
    for name in metric_names:
        spec = METRICS.get(name)
        if spec is None:
            raise ValueError(f"Unknown metric “{name}”; known metrics: {', '.join(METRICS)}.")
        values = {
            group: float(scores[name])
            for group, scores in groups_metrics.items()
            if scores.get("n", 0) >= max(1, min_n) and _is_number(scores.get(name))
        }
        if not values:
            continue
        ranked = sorted(values, key=lambda group: (values[group], group), reverse=spec.higher_is_better)
        best_group, worst_group = ranked[0], ranked[-1]
        best, worst = values[best_group], values[worst_group]
        gap = abs(best - worst)
        if isinstance(threshold, dict):
            limit = threshold.get(name)
        elif spec.scale is not None:
            limit = threshold * spec.scale
        else:
            limit = threshold * max(abs(best), abs(worst))
        report[name] = {
            "best_group": best_group,
            "worst_group": worst_group,
            "best": best,
            "worst": worst,
            "gap": gap,
            "ratio": worst / best if best != 0 else None,
            "flagged": limit is not None and gap > limit,
            "limit": limit,
        }
    return report


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def balance_report(labels: list[str], groups: list[str]) -> dict:
    """How the labels spread over groups: {"groups": {group: {"n", "labels": {label: count}, "shares": {label:
    share}}}, "labels": [...sorted], "max_share_gap"}: the largest difference, over labels, between the groups
    with the highest and the lowest share of that label (0 with a single group)."""
    if len(labels) != len(groups):
        raise ValueError(f"There are {len(labels)} labels for {len(groups)} group names; give one per row.")
    counts: dict[str, Counter] = defaultdict(Counter)
    for label, group in zip(labels, groups, strict=True):
        counts[_group_name(group)][label] += 1
    names = sorted(set(labels))
    report = {}
    for group in sorted(counts):
        total = sum(counts[group].values())
        report[group] = {
            "n": total,
            "labels": {label: counts[group][label] for label in names},
            "shares": {label: counts[group][label] / total for label in names},
        }
    gap = 0.0
    for label in names:
        shares = [entry["shares"][label] for entry in report.values()]
        gap = max(gap, max(shares) - min(shares))
    return {"groups": report, "labels": names, "max_share_gap": gap}


# --- uncertainty -------------------------------------------------------------------------------------------------


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-distribution interval of the mean. One value, or identical values: (v, v, v)."""
    from scipy import stats

    if not values:
        raise ValueError("There are no values to average.")
    count = len(values)
    mean = math.fsum(values) / count
    if count == 1:
        return mean, mean, mean
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (count - 1))
    if sd == 0:
        return mean, mean, mean
    half = float(stats.t.ppf((1 + confidence) / 2, count - 1)) * sd / math.sqrt(count)
    return mean, mean - half, mean + half


def pooled_ci(
    means: list[float],
    sample_sizes: list[int],
    stds: list[float | None] | None = None,
    *,
    proportion: bool = False,
    confidence: float = 0.95,
) -> dict:
    """One KPI observed over periods or segments (a mean and a count each), pooled into one figure with its interval.

    The mean is weighted by the counts. The interval comes from, in this order:
    - the standard deviations, when every period has one: the variance of all observations together
      (within-period plus between-period spread), t with N-1 degrees of freedom;
    - the binomial, when proportion=True (means are shares in 0..1): Wilson score interval over N observations
      (unlike mean ± 1.96·se it stays inside 0..1 and does not shrink to nothing at 0 % or 100 %);
    - otherwise the spread of the period means around the weighted mean, t with periods-1 degrees of freedom.
      With a single period that spread is unknown: low, high and se are None.

    Returns {"mean", "low", "high", "n" (observations), "se" (standard error of the mean), "df" (degrees of
    freedom, None for the normal approximation), "periods", "method" ("pooled" | "binomial" | "periods")}.
    """
    from scipy import stats

    if len(means) != len(sample_sizes) or (stds is not None and len(stds) != len(means)):
        raise ValueError("Give one mean, one count (and one standard deviation, if any) per period.")
    if not means:
        raise ValueError("There are no periods to pool.")
    if any(size <= 0 for size in sample_sizes):
        raise ValueError("Every period needs at least one observation.")
    if proportion and any(not 0 <= mean <= 1 for mean in means):
        raise ValueError("Shares must lie between 0 and 1 (use 0.87, not 87).")
    total = sum(sample_sizes)
    mean = math.fsum(m * n for m, n in zip(means, sample_sizes, strict=True)) / total
    result = {"mean": mean, "n": total, "periods": len(means)}
    level = (1 + confidence) / 2

    if stds is not None and all(sd is not None for sd in stds):
        if total < 2:
            return {**result, "low": None, "high": None, "se": None, "df": None, "method": "pooled"}
        within = math.fsum((n - 1) * sd**2 for n, sd in zip(sample_sizes, stds, strict=True))
        between = math.fsum(n * (m - mean) ** 2 for m, n in zip(means, sample_sizes, strict=True))
        se = math.sqrt((within + between) / (total - 1) / total)
        half = float(stats.t.ppf(level, total - 1)) * se
        return {**result, "low": mean - half, "high": mean + half, "se": se, "df": total - 1, "method": "pooled"}

    if proportion:
        z = float(stats.norm.ppf(level))
        centre = (mean + z * z / (2 * total)) / (1 + z * z / total)
        half = z / (1 + z * z / total) * math.sqrt(mean * (1 - mean) / total + z * z / (4 * total * total))
        se = math.sqrt(mean * (1 - mean) / total)
        low, high = max(0.0, centre - half), min(1.0, centre + half)
        return {**result, "low": low, "high": high, "se": se, "df": None, "method": "binomial"}

    periods = len(means)
    if periods < 2:
        return {**result, "low": None, "high": None, "se": None, "df": None, "method": "periods"}
    # Variance of a weighted mean of independent period means with reliability weights w (sum 1):
    # sigma² · Σw², with sigma² estimated unbiasedly as Σ w (m - mean)² / (1 - Σw²). Equal weights give sd/√k.
    weights = [n / total for n in sample_sizes]
    squares = math.fsum(w * w for w in weights)
    spread = math.fsum(w * (m - mean) ** 2 for w, m in zip(weights, means, strict=True)) / (1 - squares)
    se = math.sqrt(spread * squares)
    half = float(stats.t.ppf(level, periods - 1)) * se
    return {**result, "low": mean - half, "high": mean + half, "se": se, "df": periods - 1, "method": "periods"}


def compare(a: dict, b: dict, *, higher_is_better: bool, alpha: float = 0.05) -> dict:
    """Is b different from a? Welch-style test on the difference of two pooled_ci results (each with "mean", "se"
    and optionally "df"; df None means normal approximation).

    Returns {"delta": b - a, "low", "high" (interval of delta at 1 - alpha), "p_value", "significant": p < alpha,
    "better": b significantly better than a in the metric's direction, "df"}. Without a standard error on either
    side there is no test: p_value, low and high are None and nothing is significant.
    """
    from scipy import stats

    delta = b["mean"] - a["mean"]
    se_a, se_b = a.get("se"), b.get("se")
    if se_a is None or se_b is None:
        return {
            "delta": delta,
            "low": None,
            "high": None,
            "p_value": None,
            "significant": False,
            "better": False,
            "df": None,
        }
    se = math.sqrt(se_a**2 + se_b**2)
    dfs = (a.get("df"), b.get("df"))
    if None in dfs or se == 0:
        df = None  # a binomial side (or no spread at all): the normal approximation
    else:  # Welch–Satterthwaite
        df = se**4 / math.fsum(se_x**4 / df_x for se_x, df_x in zip((se_a, se_b), dfs, strict=True) if se_x > 0)
    if se == 0:
        p_value = 1.0 if delta == 0 else 0.0
        low = high = delta
    else:
        distribution = stats.t(df) if df else stats.norm()
        p_value = float(2 * distribution.sf(abs(delta) / se))
        half = float(distribution.ppf(1 - alpha / 2)) * se
        low, high = delta - half, delta + half
    significant = p_value < alpha
    improved = delta > 0 if higher_is_better else delta < 0
    return {
        "delta": delta,
        "low": low,
        "high": high,
        "p_value": p_value,
        "significant": significant,
        "better": significant and improved,
        "df": df,
    }


def perplexity(nll_sum: float, token_count: int) -> float:
    """exp(mean negative log-likelihood per token); inf when it overflows."""
    if token_count <= 0:
        raise ValueError("Perplexity needs at least one token.")
    try:
        return math.exp(nll_sum / token_count)
    except OverflowError:
        return math.inf
