"""Human–AI hybrid verdicts (issue 17): per item, combine the people's answers with a model judge's probabilities.

Pure functions over plain values. Per item, over the answers at stake (the two a protocol showed, else every option):

* **humans**: the people's answers pooled as the report's vote pools them: the product of their probability vectors
  (each floored at 1 %, so no single answer vetoes an option), renormalised;
* **model**: the model judge's probabilities (the mean over its answers to the item when it judged it more than
  once, as a replay of per-trial transcripts does), renormalised over the answers at stake;
* **deferral** (the rule of Google DeepMind's 2025 *Human-AI Complementarity* study): the model's answer when its
  top probability is at least a threshold τ, the humans' otherwise;
* **pool**: a weighted log-linear pool, p(o) ∝ humans(o)^(1−w) · model(o)^w.

The verdict is the most probable answer (ties: the lowest option index); its confidence is that probability.

**Cross-validation.** τ and w are chosen by K-fold cross-validation over items (K = 5, or the number of items when
fewer; folds drawn from `numpy.random.default_rng([seed, 17])`): each fold's items are scored with the τ that gave
the highest accuracy, and the w that gave the highest mean log score, on the *other* folds' items. No item is ever
scored by a value fitted on it. Ties: the larger τ (defer to the model less), the smaller w (lean on people).

**Intervals**: the existing bootstrap (`bootstrap.draw_counts`, percentile intervals) over items, resampling the
out-of-fold per-item results (the folds are not redrawn in each resample, so the intervals leave out the
variability of the choice of τ and w). Calibration: the expected calibration error over ten equal-width bins of the
verdict's confidence, in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bootstrap import draw_counts, interval

FLOOR = 0.01
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(11)) + (1.01,)  # 1.01: never defer to the model
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
FOLDS = 5
N_BINS = 10
RULES = ("humans", "model", "deferral", "pool")
RULE_LABELS = {
    "humans": "Humans (pooled answers)",
    "model": "Model judge alone",
    "deferral": "Deferral (model when confident, else humans)",
    "pool": "Log-linear pool",
}
CV_TEXT = (
    "The deferral threshold and the pool's weight are chosen by {k}-fold cross-validation over items: each item is "
    "scored with the values that did best on the other folds' items (highest accuracy for the threshold, highest "
    "mean log score for the weight), never with a value fitted on the item itself."
)


@dataclass(frozen=True)
class HybridItem:
    item_id: int
    gold: int
    options: tuple[int, ...]  # the answers at stake, by option index
    human: tuple[dict[int, float], ...]  # each person's probabilities over the options
    model: dict[int, float]


def restricted(p: dict[int, float], options: Sequence[int]) -> dict[int, float]:
    """`p` over `options` only, renormalised (uniform when it gives them no mass)."""
    mass = [max(float(p.get(o, 0.0)), 0.0) for o in options]
    total = sum(mass)
    if total <= 0:
        return {o: 1 / len(options) for o in options}
    return {o: m / total for o, m in zip(options, mass, strict=True)}


def humans_pooled(answers: Sequence[dict[int, float]], options: Sequence[int]) -> dict[int, float]:
    """The people's answers as one distribution: the normalised product of their floored probabilities."""
    logs = {o: 0.0 for o in options}
    for answer in answers:
        p = restricted(answer, options)
        for o in options:
            logs[o] += math.log(max(p[o], FLOOR))
    top = max(logs.values())
    weights = {o: math.exp(v - top) for o, v in logs.items()}
    total = sum(weights.values())
    return {o: w / total for o, w in weights.items()}


def deferred(humans: dict[int, float], model: dict[int, float], threshold: float) -> dict[int, float]:
    """The model's distribution when its top probability reaches `threshold`, the humans' otherwise."""
    return model if max(model.values()) >= threshold else humans


def log_linear_pool(humans: dict[int, float], model: dict[int, float], weight: float) -> dict[int, float]:
    """p(o) ∝ humans(o)^(1 − weight) · model(o)^weight (each floored at 1e-6 so a zero does not absorb the rest)."""
    logs = {o: (1 - weight) * math.log(max(humans[o], 1e-6)) + weight * math.log(max(model[o], 1e-6)) for o in humans}
    top = max(logs.values())
    weights = {o: math.exp(v - top) for o, v in logs.items()}
    total = sum(weights.values())
    return {o: w / total for o, w in weights.items()}


def verdict(p: dict[int, float]) -> int:
    """The most probable answer; ties go to the lowest option index."""
    best = max(p.values())
    return min(o for o, v in p.items() if v == best)


def outcome(p: dict[int, float], gold: int) -> tuple[bool, float, float, float]:
    """(right, p(correct), Brier score over the answers at stake, confidence of the verdict)."""
    chosen = verdict(p)
    brier = sum((v - (1.0 if o == gold else 0.0)) ** 2 for o, v in p.items())
    return chosen == gold, p.get(gold, 0.0), brier, p[chosen]


def folds(item_ids: Sequence[int], k: int, seed: int) -> list[list[int]]:
    """K folds of the items (by position in `item_ids`), drawn once from the seed."""
    order = np.random.default_rng([seed, 17]).permutation(len(item_ids))
    return [sorted(int(i) for i in order[f::k]) for f in range(k)]


def _distributions(item: HybridItem) -> tuple[dict[int, float], dict[int, float]]:
    return humans_pooled(item.human, item.options), restricted(item.model, item.options)


def best_threshold(items: Sequence[HybridItem]) -> float:
    """The threshold with the highest deferral accuracy over `items` (ties: the larger)."""
    pairs = [(_distributions(item), item.gold) for item in items]

    def accuracy(t: float) -> float:
        return sum(verdict(deferred(h, m, t)) == gold for (h, m), gold in pairs)

    return max(THRESHOLDS, key=lambda t: (accuracy(t), t))


def best_weight(items: Sequence[HybridItem]) -> float:
    """The pool weight with the highest mean log score over `items` (ties: the smaller)."""
    pairs = [(_distributions(item), item.gold) for item in items]

    def score(w: float) -> float:
        return sum(math.log(max(log_linear_pool(h, m, w)[gold], 1e-12)) for (h, m), gold in pairs)

    return max(WEIGHTS, key=lambda w: (round(score(w), 9), -w))


def cross_validated(items: Sequence[HybridItem], *, seed: int, k: int = FOLDS) -> tuple[dict, list[dict]]:
    """Per rule, the per-item outcomes (arrays in `items` order), and per fold the values used on it."""
    n = len(items)
    k = max(1, min(k, n))
    results = {rule: np.zeros((n, 4)) for rule in RULES}
    used = []
    for fold in folds([item.item_id for item in items], k, seed):
        inside = set(fold)
        training = [item for i, item in enumerate(items) if i not in inside]
        threshold = best_threshold(training) if training else THRESHOLDS[-1]
        weight = best_weight(training) if training else 0.0
        used.append(
            {"items": len(fold), "item_ids": [items[i].item_id for i in fold], "threshold": threshold, "weight": weight}
        )
        for i in fold:
            h, m = _distributions(items[i])
            gold = items[i].gold
            rules = {
                "humans": h,
                "model": m,
                "deferral": deferred(h, m, threshold),
                "pool": log_linear_pool(h, m, weight),
            }
            for rule, p in rules.items():
                results[rule][i] = outcome(p, gold)
    return results, used


def ece(right: np.ndarray, confidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Expected calibration error (points) over ten equal-width confidence bins, per row of `weights` (B, n)."""
    bins = np.minimum((confidence * N_BINS).astype(int), N_BINS - 1)
    total = weights.sum(axis=1)
    error = np.zeros(weights.shape[0])
    for b in range(N_BINS):
        mask = bins == b
        if not mask.any():
            continue
        acc = weights[:, mask] @ right[mask]
        conf = weights[:, mask] @ confidence[mask]
        error += np.abs(acc - conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100 * error / np.where(total > 0, total, 1), np.nan)


def _estimate(point: float, replicates: np.ndarray) -> dict:
    lo, hi, undefined = interval(replicates)
    return {"value": None if math.isnan(point) else round(float(point), 4), "ci95": [lo, hi], "undefined": undefined}


def hybrid_analysis(items: Sequence[HybridItem], *, seed: int, resamples: int, k: int = FOLDS) -> dict:
    """Accuracy, mean p(correct), Brier and calibration of each rule, with 95 % intervals, and the differences
    between the hybrid rules and each of humans and model alone (see the module docstring)."""
    items = sorted(items, key=lambda item: item.item_id)
    n = len(items)
    if n == 0:
        return {"n_items": 0, "rules": {}, "differences": {}, "folds": [], "method": CV_TEXT.format(k=k)}
    results, used = cross_validated(items, seed=seed, k=k)
    ones = np.ones((1, n))
    counts = draw_counts(np.random.default_rng(seed), n, resamples).astype(np.float64)
    size = counts.sum(axis=1)

    def mean(values: np.ndarray, w: np.ndarray, s) -> np.ndarray:
        return 100 * (w @ values) / s

    rules = {}
    for rule in RULES:
        r = results[rule]
        right, p_gold, brier, confidence = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
        rules[rule] = {
            "label": RULE_LABELS[rule],
            "accuracy": _estimate(mean(right, ones, n)[0], mean(right, counts, size)),
            "p_correct": _estimate(mean(p_gold, ones, n)[0], mean(p_gold, counts, size)),
            "brier": _estimate(((ones @ brier) / n)[0], (counts @ brier) / size),
            "ece": _estimate(ece(right, confidence, ones)[0], ece(right, confidence, counts)),
        }
    differences = {}
    for hybrid in ("deferral", "pool"):
        for alone in ("humans", "model"):
            d = results[hybrid][:, 0] - results[alone][:, 0]
            differences[f"{hybrid}_minus_{alone}"] = _estimate(mean(d, ones, n)[0], mean(d, counts, size))
    return {
        "n_items": n,
        "k": max(1, min(k, n)),
        "rules": rules,
        "differences": differences,
        "folds": used,
        "method": CV_TEXT.format(k=max(1, min(k, n))),
    }
