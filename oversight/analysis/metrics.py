"""The metrics of RESEARCH.md §5, exactly as defined there, in two forms.

1. **Reference definitions** (`weighted_vote`, `calibration_error`, `mean_individual_accuracy`, …): plain
   Python over a handful of answers, written to be read against the paper and checked by hand in tests.
2. **Weighted, vectorised forms** (`ConditionArrays`, `condition_series`, `baseline_series`): the same
   definitions over a participant × item grid, where every participant and every item carries a weight — the
   number of times a bootstrap resample drew it. With all weights 1 they *are* the point estimates (the report
   computes its point estimates this way, and a test checks they equal the reference definitions); with
   resampled weights they give 2,000 bootstrap replicates in a few matrix products.

Definitions and the choices this module makes where the paper is silent:

* **Accuracy** is the mean over participants of each participant's accuracy. A trial that timed out with no
  option selected counts as wrong.
* **Vote.** Each answer gives its chosen option probability p and every other option (1 − p)/(k − 1) for k
  options (RESEARCH.md: B at 60% → [.133, .60, .133, .133]). Likert: p = level/100, and "Certain (100%)" is
  scored as 0.99. Slider (5–95%): p = slider/100, taken literally (a 5% answer favours the other options).
  All-options format: the participant's own distribution, with every option floored at (1 − 0.99)/(k − 1) — the
  least a Likert "Certain" answer leaves each other option — and renormalised, so that no single answer can veto
  an option outright. An answer without an option or without a confidence is uninformative (uniform). The vote
  picks the option with the highest product of these probabilities over the item's participants (computed as a
  sum of logs; products within a relative 1e-9 on the log scale count as equal).
* **No opinion.** An answer without an option (a trial that timed out with nothing selected) carries no opinion:
  it adds nothing to the products and nothing to the plurality. An item where none of the answers has an option
  gets **no vote**: it counts as wrong in the vote's accuracy (as each of its empty answers counts as wrong in the
  participants' accuracy) and has no confidence, so it is in no calibration bin and not in the max-confidence
  subset. The tie rule below never picks an option for it.
* **Ties** (equal products — e.g. a lone 25% answer, or two opposite answers at the same level): the tied option
  chosen by the most participants wins; if still tied, the **tie rule** decides. `random` (the default): each
  (condition, item, option) gets a priority from a hash of the report's seed (`tie_priority`), and the tied
  option with the highest wins — a fair draw among the tied options, the same in every bootstrap resample and on
  every run with the same seed. `lowest_option`: the lowest option index (A before B), which favours A.
* **Vote confidence** (our reading; the paper does not define it): the chosen option's product divided by the
  sum of the products over the item's options.
* **Calibration error (CE).** Bins centred at 25, 42, 60, 80, 100%. A Likert answer sits at its level (its bin
  centre, the top bin's centre being 100). Slider and all-options answers (the chosen option's stated
  probability), model probabilities (the predicted option's probability, `model_confidence`: one definition for
  the report and the baseline runs' summaries) and vote confidences go to the nearest
  bin centre; a value exactly between two centres goes to the lower bin. Per non-empty bin: |accuracy in the
  bin − centre| in percentage points; CE is the unweighted mean over the non-empty bins. Human CE pools every
  answer of the condition (one observation per answer).
* **Mean confidence**: the mean over participants of each participant's mean stated confidence (the level as
  shown, so "Certain" counts as 100), the same participant-level averaging as accuracy.
* **Learning effect**: per participant, their scored items of the condition in the order shown; the first
  ⌊n/2⌋ form the first half and the last ⌊n/2⌋ the second (the middle item of an odd n is in neither). Reported
  as the mean over participants (with both halves) of each half's accuracy, and second − first; and, the paper's
  statistic, how many of those participants improved (second half more accurate), stayed level or declined.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from oversight.analysis.columns import TrialColumns
from oversight.analysis.tables import (
    BIN_CENTRES,
    DISTRIBUTION,
    LIKERT,
    BaselineRow,
    ConditionRow,
    ModelMethod,
    TrialRow,
)

CERTAIN_SCORED_AS = 0.99
TIE_RTOL = 1e-9
RANDOM = "random"
LOWEST_OPTION = "lowest_option"
TIE_RULES = (RANDOM, LOWEST_OPTION)
_CENTRES = np.asarray(BIN_CENTRES, dtype=float)
N_BINS = len(BIN_CENTRES)
TOP_BIN = N_BINS - 1
ALL_SCOPE = ("all",)  # the scope key for all of a condition's items


# --- Reference definitions -------------------------------------------------------------------------------


def likert_probability(level: float) -> float:
    """The probability a Likert level stands for in the vote: its percent, with "Certain (100%)" as 0.99."""
    return CERTAIN_SCORED_AS if level >= 100 else level / 100


def floored_distribution(distribution: Sequence[float], n_options: int) -> list[float]:
    """An all-options answer (percent) as vote probabilities: normalised, floored, renormalised."""
    values = [max(float(v), 0.0) for v in list(distribution)[:n_options]]
    values += [0.0] * (n_options - len(values))
    total = sum(values)
    if total <= 0:
        return [1 / n_options] * n_options
    floor = (1 - CERTAIN_SCORED_AS) / (n_options - 1)
    floored = [max(v / total, floor) for v in values]
    total = sum(floored)
    return [v / total for v in floored]


def answer_probabilities(
    *,
    choice: int | None,
    confidence: float | None,
    n_options: int,
    confidence_format: str = LIKERT,
    distribution: Sequence[float] | None = None,
) -> list[float] | None:
    """The probability vector one answer contributes to the vote; None when it is uninformative."""
    if choice is None or n_options < 2:
        return None
    if confidence_format == DISTRIBUTION and distribution:
        return floored_distribution(distribution, n_options)
    if confidence is None:
        return None
    p = likert_probability(confidence) if confidence_format == LIKERT else confidence / 100
    p = min(max(p, 0.0), CERTAIN_SCORED_AS)
    rest = (1 - p) / (n_options - 1)
    return [p if option == choice else rest for option in range(n_options)]


def nearest_bin(percent: float) -> int:
    """The bin centre (25/42/60/80/100) nearest to a percent; exactly halfway goes to the lower bin."""
    return BIN_CENTRES[int(nearest_bin_index(np.asarray([percent]))[0])]


def nearest_bin_index(percent: np.ndarray) -> np.ndarray:
    # argmin returns the first minimum, i.e. the lower bin on an exact tie.
    return np.abs(np.asarray(percent, dtype=float)[..., None] - _CENTRES).argmin(axis=-1)


def model_confidence(probabilities: Sequence[float], predicted: int | None = None) -> float:
    """A model's confidence in its answer: the probability of the option it predicted (the most probable one when
    `predicted` is not given). For a self-consistency vote the predicted option need not be the most probable."""
    if predicted is None:
        predicted = max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))
    return float(probabilities[predicted])


_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic): a well-mixed hash of each value."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= _MIX[0]
    x ^= x >> np.uint64(27)
    x *= _MIX[1]
    x ^= x >> np.uint64(31)
    return x


def tie_priority(seed: int, condition_id: int, item_ids: Sequence[int], n_options: int) -> np.ndarray:
    """(items, options) priorities in [0, 1) for the random tie rule: a hash of (seed, condition, item, option), so
    a tie is decided the same way for the same item whatever else the study holds, and by a fair draw."""
    items = np.asarray(item_ids, dtype=np.uint64).reshape(-1, 1)
    options = np.arange(n_options, dtype=np.uint64).reshape(1, -1)
    with np.errstate(over="ignore"):
        x = _splitmix(np.full(1, np.uint64(seed & 0xFFFFFFFFFFFFFFFF)) + np.uint64(condition_id & 0xFFFFFFFF))
        x = _splitmix(x + items * np.uint64(0x9E3779B97F4A7C15))
        x = _splitmix(x + options)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


@dataclass(frozen=True)
class Vote:
    choice: int
    confidence: float  # chosen product / sum of products
    products: tuple[float, ...]
    tie_break: str = ""  # "" (no tie), "plurality", or the tie rule that decided ("random", "lowest_option")


def weighted_vote(
    answers: Iterable[tuple[int | None, Sequence[float] | None]],
    n_options: int,
    *,
    priority: Sequence[float] | None = None,
) -> Vote | None:
    """The confidence-weighted majority vote over `(choice, probabilities or None)` answers to one item; None when
    no answer has an option (no opinion). `priority` (one number per option, e.g. a row of `tie_priority`) breaks
    a tie that the plurality leaves, the highest winning; without it the lowest option wins."""
    answers = list(answers)
    if not any(choice is not None for choice, _p in answers):
        return None
    logs = [0.0] * n_options
    plurality = [0] * n_options
    for choice, probabilities in answers:
        if choice is not None:
            plurality[choice] += 1
        if probabilities is not None:
            for option in range(n_options):
                logs[option] += math.log(probabilities[option])
    best = max(logs)
    tolerance = TIE_RTOL * max(1.0, abs(best))
    tied = [o for o in range(n_options) if logs[o] >= best - tolerance]
    tie_break = ""
    if len(tied) > 1:
        top = max(plurality[o] for o in tied)
        leaders = [o for o in tied if plurality[o] == top]
        if len(leaders) == 1:
            tie_break = "plurality"
        elif priority is not None:
            tie_break = RANDOM
            leaders = [max(leaders, key=lambda o: priority[o])]
        else:
            tie_break = LOWEST_OPTION
        tied = leaders
    choice = tied[0]
    norm = best + math.log(sum(math.exp(v - best) for v in logs))
    return Vote(
        choice=choice,
        confidence=math.exp(logs[choice] - norm),
        products=tuple(math.exp(v) for v in logs),
        tie_break=tie_break,
    )


def calibration_error(observations: Iterable[tuple[float, bool]]) -> tuple[float | None, list[dict]]:
    """CE over `(stated or predicted percent, correct)` pairs, and the per-bin table behind it."""
    counts = [0] * N_BINS
    right = [0] * N_BINS
    for percent, correct in observations:
        index = BIN_CENTRES.index(nearest_bin(percent))
        counts[index] += 1
        right[index] += bool(correct)
    bins = [
        {"centre": c, "n": n, "right": r, "accuracy": (100 * r / n) if n else None}
        for c, n, r in zip(BIN_CENTRES, counts, right, strict=True)
    ]
    errors = [abs(b["accuracy"] - b["centre"]) for b in bins if b["n"]]
    return (sum(errors) / len(errors) if errors else None), bins


def mean_individual_accuracy(trials: Iterable[TrialRow]) -> float | None:
    """Mean over participants of each participant's accuracy, in percent."""
    per_participant: dict[int, list[bool]] = defaultdict(list)
    for trial in trials:
        per_participant[trial.participant_id].append(bool(trial.correct))
    if not per_participant:
        return None
    return 100 * sum(sum(v) / len(v) for v in per_participant.values()) / len(per_participant)


def pooled_accuracy(trials: Iterable[TrialRow]) -> float | None:
    """Share of all answers that were right, in percent (not the paper's accuracy; reported for contrast)."""
    results = [bool(t.correct) for t in trials]
    return 100 * sum(results) / len(results) if results else None


# --- Weighted, vectorised forms --------------------------------------------------------------------------


@dataclass
class ConditionArrays:
    """One condition's answers on a dense participant × item grid (participants and items of this condition)."""

    condition: ConditionRow
    participants: np.ndarray  # (P,) global participant indices
    items: np.ndarray  # (I,) global item indices
    kmax: int
    answered: np.ndarray  # (P, I) 1 where the participant answered the item
    correct: np.ndarray  # (P, I)
    conf: np.ndarray  # (P, I) stated percent, 0 where none
    has_conf: np.ndarray  # (P, I)
    first_half: np.ndarray  # (P, I)
    second_half: np.ndarray  # (P, I)
    valid_options: np.ndarray  # (I, K) bool
    gold: np.ndarray  # (I,) -1 where unknown
    # Everything summed over participants, side by side, so two matrix products serve all item-level sums:
    # whole-number counts [correct·bin_k for 5 bins | has_conf·bin_k for 5 bins | chosen (I·K) | answered] in
    # float32 (exact for weighted counts up to 2^24, and half the work of float64), and the vote's log-probabilities
    # (I·K) in float64.
    counts: np.ndarray
    logs: np.ndarray
    # Weight-independent matrices gathered once per scope, reused by every batch of resamples.
    cache: dict = field(default_factory=dict, repr=False)
    # The random tie rule's priorities (I, K), from `tie_priority`; None: ties go to the lowest option.
    priority: np.ndarray | None = field(default=None, repr=False)

    def gathered(self, key, cols: np.ndarray, *parts: str, dtype=np.float64) -> np.ndarray:
        key = (key, np.dtype(dtype).str)
        if key not in self.cache:
            self.cache[key] = np.vstack([getattr(self, part)[:, cols] for part in parts]).astype(dtype)
        return self.cache[key]

    @property
    def n_items(self) -> int:
        return len(self.items)


def build_condition_arrays(
    condition: ConditionRow,
    cols: TrialColumns,
    rows: np.ndarray,
    p_global: np.ndarray,
    i_global: np.ndarray,
    gold: np.ndarray,
    confidence_format: str,
) -> ConditionArrays:
    """One condition's grid from its analysed trials: `rows` index `cols`; `p_global`/`i_global` are those
    rows' global participant and item indices; `gold` is indexed by global item."""
    participants = np.unique(p_global)
    items = np.unique(i_global)
    r = np.searchsorted(participants, p_global)
    c = np.searchsorted(items, i_global)
    n_p, n_i = len(participants), len(items)
    choice = cols.choice[rows]
    conf = cols.confidence[rows]
    has_conf = ~np.isnan(conf)
    conf = np.where(has_conf, conf, 0.0)
    n_opts = cols.n_options[rows]
    kmax = int(n_opts.max())

    answered = np.zeros((n_p, n_i))
    correct = np.zeros((n_p, n_i))
    conf_grid = np.zeros((n_p, n_i))
    has_grid = np.zeros((n_p, n_i))
    answered[r, c] = 1
    correct[r, c] = cols.correct[rows]
    conf_grid[r, c] = conf
    has_grid[r, c] = has_conf

    item_options = np.zeros(n_i, dtype=np.int64)
    item_options[c] = n_opts
    valid_options = np.arange(kmax)[None, :] < item_options[:, None]

    # Vote contributions. Uninformative answers stay at log 1 = 0 for every option: a constant across the
    # options, so it changes neither the winner nor the vote's confidence.
    logp = np.zeros((n_p, n_i, kmax))
    chosen = np.zeros((n_p, n_i, kmax))
    has_choice = choice >= 0
    chosen[r[has_choice], c[has_choice], choice[has_choice]] = 1
    if confidence_format == DISTRIBUTION:
        for k, row in enumerate(rows.tolist()):
            probs = answer_probabilities(
                choice=None if choice[k] < 0 else int(choice[k]),
                confidence=float(conf[k]) if has_conf[k] else None,
                n_options=int(n_opts[k]),
                confidence_format=confidence_format,
                distribution=cols.distribution[row],
            )
            if probs is not None:
                logp[r[k], c[k], : n_opts[k]] = np.log(probs)
    else:
        informative = has_choice & has_conf & (n_opts >= 2)
        p = np.where(conf >= 100, CERTAIN_SCORED_AS, conf / 100) if confidence_format == LIKERT else conf / 100
        p = np.clip(p, 0.0, CERTAIN_SCORED_AS)
        rest = (1 - p) / np.maximum(n_opts - 1, 1)
        with np.errstate(divide="ignore"):
            log_rest, log_p = np.log(rest), np.log(p)
        ri, ci, ki = r[informative], c[informative], n_opts[informative]
        option_mask = np.arange(kmax)[None, :] < ki[:, None]
        logp[ri, ci, :] = np.where(option_mask, log_rest[informative][:, None], 0.0)
        logp[ri, ci, choice[informative]] = log_p[informative]

    # Halves for the learning effect: each participant's trials ranked by their position in the block.
    order = np.lexsort((cols.block_position[rows], r))
    _, starts, counts = np.unique(r[order], return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(starts, counts)
    size = np.repeat(counts, counts)
    half = size // 2
    first = np.zeros((n_p, n_i))
    second = np.zeros((n_p, n_i))
    in_first, in_second = rank < half, rank >= size - half
    first[r[order][in_first], c[order][in_first]] = 1
    second[r[order][in_second], c[order][in_second]] = 1

    bins = np.full((n_p, n_i), -1, dtype=np.int64)
    bins[r[has_conf], c[has_conf]] = nearest_bin_index(conf[has_conf])
    in_bin = [(bins == k).astype(float) for k in range(N_BINS)]
    counts = np.hstack(
        [correct * b for b in in_bin] + [has_grid * b for b in in_bin] + [chosen.reshape(n_p, n_i * kmax), answered]
    ).astype(np.float32)
    return ConditionArrays(
        condition=condition,
        participants=participants,
        items=items,
        kmax=kmax,
        answered=answered,
        correct=correct,
        conf=conf_grid,
        has_conf=has_grid,
        first_half=first,
        second_half=second,
        valid_options=valid_options,
        gold=gold[items],
        counts=counts,
        logs=logp.reshape(n_p, n_i * kmax),
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _weighted_sum(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Σ_p weights·values per row (B, P) → (B,), summed in float64. Overwrites `values`.

    In the bootstrap both are float32: the products are rounded once (a relative 2^-24, with the rate's own
    rounding at most 2^-23 in all, i.e. ≤ 1.2e-5 percentage points on an accuracy), and the float64 sum adds no
    rounding that grows with the number of participants — which a float32 sum over a thousand participants did, and
    which showed as 75.24999961 for 75.25. Interval bounds are rounded to 4 decimals (bootstrap.BOUND_DECIMALS),
    above that error."""
    np.multiply(values, weights, out=values)
    return values.sum(1, dtype=np.float64)


def _participant_mean(num: np.ndarray, den: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over participants of num/den, over participants with den > 0. All (B, P); returns (B,).

    `den` holds weighted counts — whole numbers — and num is 0 wherever den is, so num / max(den, 1) is the
    rate where it is defined and 0 elsewhere, and min(den, 1) marks where it is defined: no masks needed
    (this is the hot loop of the bootstrap). Overwrites `den`.
    """
    rate = np.maximum(den, 1.0)
    np.divide(num, rate, out=rate)
    np.minimum(den, 1.0, out=den)
    return _ratio(_weighted_sum(weights, rate), _weighted_sum(weights, den))


def ce_from_bins(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """CE from per-bin (weighted) right/total counts of shape (..., 5): mean |accuracy − centre| over non-empty."""
    ok = den > 0
    accuracy = np.divide(num, den, out=np.zeros_like(num, dtype=float), where=ok)
    errors = np.abs(100 * accuracy - _CENTRES) * ok
    return _ratio(errors.sum(-1), ok.sum(-1).astype(float))


@dataclass
class VoteGrid:
    choice: np.ndarray  # (B, I); -1 where nobody who answered selected an option (no opinion)
    correct: np.ndarray  # (B, I) float; 0 without an opinion
    confidence: np.ndarray  # (B, I); NaN without an opinion
    bin: np.ndarray  # (B, I); -1 without an opinion
    valid: np.ndarray  # (B, I) float: 1 where some drawn participant answered the item
    opinion: np.ndarray  # (B, I) float: 1 where some drawn participant selected an option
    tie_break: np.ndarray  # (B, I) 0 none, 1 plurality, 2 the tie rule


def vote_grid(arr: ConditionArrays, log_products: np.ndarray, plurality: np.ndarray, n_answers: np.ndarray) -> VoteGrid:
    """The vote for every (resample, item) from weighted sums over participants (B, I, K)."""
    s = np.where(arr.valid_options[None], log_products, -np.inf)
    best = s.max(-1, keepdims=True)
    tied = s >= best - TIE_RTOL * np.maximum(1.0, np.abs(best))
    plural = np.where(tied, plurality, -1.0)
    leaders = tied & (plural >= plural.max(-1, keepdims=True))
    # The lowest option among the leaders (argmax returns the first True), or the highest priority among them.
    ranked = leaders if arr.priority is None else np.where(leaders, arr.priority[None], -1.0)
    choice = ranked.argmax(-1)
    n_tied, n_leaders = tied.sum(-1), leaders.sum(-1)
    opinion = plurality.sum(-1) > 0  # some answer selected an option: without one there is nothing to vote on
    tie_break = np.where(opinion & (n_tied > 1), np.where(n_leaders > 1, 2, 1), 0)
    norm = best[..., 0] + np.log(np.exp(s - best).sum(-1))
    confidence = np.where(opinion, np.exp(np.take_along_axis(s, choice[..., None], -1)[..., 0] - norm), np.nan)
    choice = np.where(opinion, choice, -1)
    return VoteGrid(
        choice=choice,
        correct=(opinion & (choice == arr.gold[None, :])).astype(float),
        confidence=confidence,
        bin=np.where(opinion, nearest_bin_index(100 * np.nan_to_num(confidence)), -1),
        valid=(n_answers > 0).astype(float),
        opinion=opinion.astype(float),
        tie_break=tie_break,
    )


def _item_sums(arr: ConditionArrays, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """The item-level sums over participants weighted by `w` (B, P), as (correct per bin, answers per bin,
    log-products, plurality, answers): `w @ arr.counts` and `w @ arr.logs`, split back into their blocks."""
    n_i, kmax = arr.n_items, arr.kmax
    b = w.shape[0]
    counts = (w.astype(np.float32, copy=False) @ arr.counts).astype(np.float64)
    offset = 2 * N_BINS * n_i
    return (
        counts[:, : N_BINS * n_i].reshape(b, N_BINS, n_i),
        counts[:, N_BINS * n_i : offset].reshape(b, N_BINS, n_i),
        (w.astype(np.float64, copy=False) @ arr.logs).reshape(b, n_i, kmax),
        counts[:, offset : offset + n_i * kmax].reshape(b, n_i, kmax),
        counts[:, offset + n_i * kmax :],
    )


def point_vote(arr: ConditionArrays) -> VoteGrid:
    """The vote on every item of the condition with each participant counted once (B = 1)."""
    _cb, _ab, log_products, plurality, n_answers = _item_sums(arr, np.ones((1, len(arr.participants))))
    return vote_grid(arr, log_products, plurality, n_answers)


def condition_series(
    arr: ConditionArrays,
    w: np.ndarray,
    c: np.ndarray,
    scopes: Mapping[str, np.ndarray],
    groups: Mapping[str, np.ndarray],
    *,
    detail: bool = False,
) -> tuple[dict, dict]:
    """Every statistic of one condition for B resamples at once.

    `w` (B, P) and `c` (B, I) are the participants' and items' weights (draw counts); `scopes` maps a scope
    name ("All", a task) to local item columns and gets the full set of statistics; `groups` (subjects,
    difficulty) get mean individual accuracy only. Returns `{(stat, scope): (B,) array}`, in percent, and,
    with `detail`, the point estimate's supporting counts.
    """
    # Participant-side sums may run in float32 (the bootstrap passes float32 weights: they are whole numbers and
    # so are the sums, exactly, up to 2^24); the vote's log-products always run in float64.
    dtype = w.dtype
    correct_in_bin, answers_in_bin, log_products, plurality, n_answers = _item_sums(arr, w)
    vote = vote_grid(arr, log_products, plurality, n_answers)

    out: dict = {}
    details: dict = {}
    for scope, cols in scopes.items():
        cs = c[:, cols]
        grid = arr.gathered(("scope", scope), cols, "correct", "answered", "conf", "has_conf", dtype=dtype)
        sums = cs @ grid.T
        p = len(arr.participants)
        k_, m_, conf_, has_ = sums[:, :p], sums[:, p : 2 * p], sums[:, 2 * p : 3 * p], sums[:, 3 * p :]
        out["accuracy", scope] = 100 * _participant_mean(k_, m_, w)
        out["mean_confidence", scope] = _participant_mean(conf_, has_, w)
        num = (correct_in_bin[:, :, cols] * cs[:, None, :]).sum(-1)
        den = (answers_in_bin[:, :, cols] * cs[:, None, :]).sum(-1)
        out["ce", scope] = ce_from_bins(num, den)

        weight = cs * vote.valid[:, cols]  # items without an opinion stay in: they count as wrong
        v_correct, v_bin = vote.correct[:, cols], vote.bin[:, cols]
        out["vote_accuracy", scope] = 100 * _ratio((weight * v_correct).sum(-1), weight.sum(-1))
        in_bin = np.stack([(v_bin == k) for k in range(N_BINS)], axis=1) * weight[:, None, :]
        v_num = (in_bin * v_correct[:, None, :]).sum(-1)
        v_den = in_bin.sum(-1)
        out["vote_ce", scope] = ce_from_bins(v_num, v_den)
        out["max_confidence_accuracy", scope] = 100 * _ratio(v_num[:, TOP_BIN], v_den[:, TOP_BIN])
        if detail:
            answered = arr.answered[:, cols]
            details[scope] = {
                "n_items": int((answered.sum(0) > 0).sum()),
                "n_participants": int((answered.sum(1) > 0).sum()),
                "n_answers": int(answered.sum()),
                "pooled_accuracy": float(100 * arr.correct[:, cols].sum() / answered.sum()) if answered.sum() else None,
                "bins": _bin_table(num[0], den[0]),
                "vote_bins": _bin_table(v_num[0], v_den[0]),
                "vote_n_items": int(vote.valid[0, cols].sum()),
                "vote_n_no_opinion": int((vote.valid[0, cols] * (1 - vote.opinion[0, cols])).sum()),
                "vote_ties_plurality": int((vote.tie_break[0, cols] == 1).sum()),
                "vote_ties_by_rule": int((vote.tie_break[0, cols] == 2).sum()),
                "max_confidence_n_items": int(v_den[0, TOP_BIN]),
                "vote_mean_confidence": _vote_mean_confidence(vote, cols, weight[0]),
            }

    if groups:
        names = list(groups)
        pieces = [
            c[:, groups[g]] @ arr.gathered(("group", g), groups[g], "correct", "answered", dtype=dtype).T for g in names
        ]
        p = len(arr.participants)
        for name, sums in zip(names, pieces, strict=True):
            out["accuracy", name] = 100 * _participant_mean(sums[:, :p], sums[:, p:], w)
            if detail:
                answered = arr.answered[:, groups[name]]
                details[name] = {
                    "n_items": int((answered.sum(0) > 0).sum()),
                    "n_participants": int((answered.sum(1) > 0).sum()),
                    "n_answers": int(answered.sum()),
                }

    halves_key = ("halves", np.dtype(dtype).str)
    if halves_key not in arr.cache:
        arr.cache[halves_key] = np.vstack(
            [arr.correct * arr.first_half, arr.first_half, arr.correct * arr.second_half, arr.second_half]
        ).astype(dtype)
    sums = c @ arr.cache[halves_key].T
    p = len(arr.participants)
    k1, m1, k2, m2 = sums[:, :p], sums[:, p : 2 * p], sums[:, 2 * p : 3 * p], sums[:, 3 * p :]
    both = (m1 > 0) & (m2 > 0)
    a1 = np.divide(k1, m1, out=np.zeros_like(k1), where=both)
    a2 = np.divide(k2, m2, out=np.zeros_like(k2), where=both)
    wb = w * both
    total = wb.sum(1, dtype=np.float64)
    first_half = 100 * _ratio(_weighted_sum(wb, a1), total)
    second_half = 100 * _ratio(_weighted_sum(wb, a2), total)
    out["learning_first_half", ALL_SCOPE] = first_half
    out["learning_second_half", ALL_SCOPE] = second_half
    out["learning_difference", ALL_SCOPE] = second_half - first_half
    if detail:
        details["learning_n_participants"] = int(both[0].sum())
        change = (a2 - a1)[0][both[0]]
        details["learning_n_improved"] = int((change > 0).sum())
        details["learning_n_unchanged"] = int((change == 0).sum())
        details["learning_n_declined"] = int((change < 0).sum())
    return out, details


def _vote_mean_confidence(vote: VoteGrid, cols: np.ndarray, weight: np.ndarray) -> float | None:
    """Mean confidence of the votes (point estimate) over the items that have one."""
    with_opinion = weight * vote.opinion[0, cols]
    if not with_opinion.sum():
        return None
    return float(100 * (np.nan_to_num(vote.confidence[0, cols]) * with_opinion).sum() / with_opinion.sum())


def _bin_table(num: np.ndarray, den: np.ndarray) -> list[dict]:
    return [
        {"centre": centre, "n": int(round(d)), "accuracy": float(100 * n / d) if d else None}
        for centre, n, d in zip(BIN_CENTRES, num.tolist(), den.tolist(), strict=True)
    ]


@dataclass
class BaselineArrays:
    """One model-alone baseline over the analysis's global items."""

    key: str
    model: ModelMethod
    endpoint: str
    correct: np.ndarray  # (I,) 0/1, 0 where there is no result
    has_result: np.ndarray  # (I,) bool
    bin: np.ndarray  # (I,) bin index of the predicted option's probability; -1 without probabilities
    n_errors: int

    @property
    def method(self) -> str:
        return self.model.method


def build_baseline_arrays(
    key: str, model: ModelMethod, endpoint: str, rows: Sequence[BaselineRow], item_index: Mapping[int, int]
) -> BaselineArrays:
    n = len(item_index)
    correct = np.zeros(n)
    has = np.zeros(n, dtype=bool)
    bins = np.full(n, -1, dtype=np.int64)
    errors = 0
    for row in rows:
        i = item_index.get(row.item_id)
        if i is None:
            continue
        if row.correct is None:
            errors += 1
            continue
        has[i] = True
        correct[i] = float(row.correct)
        if row.probabilities:
            confidence = model_confidence(row.probabilities, row.predicted)
            bins[i] = int(nearest_bin_index(np.asarray([100 * confidence]))[0])
    return BaselineArrays(
        key=key, model=model, endpoint=endpoint, correct=correct, has_result=has, bin=bins, n_errors=errors
    )


def baseline_series(
    base: BaselineArrays, c: np.ndarray, item_sets: Mapping[str, np.ndarray], *, detail: bool = False
) -> tuple[dict, dict]:
    """Model accuracy and CE on each item set (global item indices), for B resamples of item weights `c`."""
    out: dict = {}
    details: dict = {}
    for name, cols in item_sets.items():
        cols = cols[base.has_result[cols]]
        weight = c[:, cols]
        correct = base.correct[cols]
        out["accuracy", name] = 100 * _ratio((weight * correct).sum(-1), weight.sum(-1))
        bins = base.bin[cols]
        in_bin = np.stack([(bins == k) for k in range(N_BINS)])[None] * weight[:, None, :]
        num = (in_bin * correct).sum(-1)
        den = in_bin.sum(-1)
        out["ce", name] = ce_from_bins(num, den)
        if detail:
            details[name] = {"n_items": len(cols), "bins": _bin_table(num[0], den[0])}
    return out, details
