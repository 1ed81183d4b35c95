"""The arithmetic of the baselines, on plain values: letters from top tokens, normalisation, ties, the
chain-of-thought aggregation (a `Selector`), calibration error and run summaries.

Conventions (docs/baselines.md):

* A token "is" letter L when its text, without leading spaces (" ", tab, SentencePiece's "▁", GPT-2's "Ġ"),
  is exactly L. All spellings of one letter found at the scored position are merged with logsumexp: a
  tokeniser that offers both "A" and " A" gives A the probability of either.
* Probabilities are a softmax over the options' letters only (the mass on other tokens is dropped).
* Ties go to the lowest letter: the prediction is the first index whose probability equals the maximum.
* Calibration error: the report's definition (`oversight.analysis.metrics`, one for both): the model's confidence
  is the probability of the option it predicted (for a self-consistency vote not necessarily the most probable
  one); it goes to the nearest of the paper's five bins centred at 25, 42, 60, 80 and 100 % (a point exactly
  between two centres goes to the lower one); CE is the unweighted mean over non-empty bins of
  |accuracy − centre|, in percentage points.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from oversight.analysis.metrics import calibration_error, model_confidence, nearest_bin_index
from oversight.analysis.tables import BEST_OF_N, BIN_CENTRES, SELF_CONSISTENCY, SUMMARY_CONFIDENCE

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SPACE_PREFIXES = " \t▁Ġ"


# --------------------------------------------------------------------------------------------------- letters


def letter_of(token_text: str, letters: str) -> str | None:
    """The option letter a token spells ("A", " A", "▁A"), or None."""
    bare = token_text.lstrip(_SPACE_PREFIXES)
    return bare if len(bare) == 1 and bare in letters else None


def logsumexp(values: Iterable[float]) -> float:
    values = list(values)
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def letters_in_top(top: Iterable[tuple[str, float | None]], letters: str) -> tuple[dict[str, float], dict[str, list]]:
    """Merge the top-n alternatives into one log-probability per letter present.

    Returns ({letter: merged logprob}, {letter: [[spelling, logprob], …]}). A spelling listed twice counts once.
    """
    spellings: dict[str, dict[str, float]] = defaultdict(dict)
    for text, logprob in top:
        if logprob is None or not math.isfinite(logprob):
            continue
        letter = letter_of(text, letters)
        if letter is not None:
            spellings[letter].setdefault(text, float(logprob))
    merged = {letter: logsumexp(found.values()) for letter, found in spellings.items()}
    return merged, {letter: [[t, lp] for t, lp in found.items()] for letter, found in spellings.items()}


def spelling_for_missing(spellings: dict[str, list], prompt_ends_with_space: bool) -> str:
    """How to spell a missing letter when scoring it explicitly: like the letters that were found (the
    tokeniser's habit at this position), else with a leading space unless the prompt already ends in one."""
    if prompt_ends_with_space:
        return ""
    spaced = bare = 0.0
    for found in spellings.values():
        for text, logprob in found:
            weight = math.exp(logprob)
            if text[:1] in _SPACE_PREFIXES:
                spaced += weight
            else:
                bare += weight
    return "" if bare > spaced else " "


def normalise(logprobs: Sequence[float]) -> list[float]:
    """Softmax over the options' log-probabilities."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def predict(probabilities: Sequence[float]) -> int:
    """The most probable option; ties go to the lowest letter."""
    best = max(probabilities)
    return next(i for i, p in enumerate(probabilities) if p == best)


# --------------------------------------------------------------------------------------------------- CoT


@dataclass(frozen=True)
class CotSample:
    """One sampled reasoning and the letter distribution scored after it."""

    reasoning: str
    probabilities: list[float]
    predicted: int
    response: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    probabilities: list[float]
    predicted: int
    detail: dict = field(default_factory=dict)


class Selector(Protocol):
    """Turns the N samples of one item into the item's answer. A preference-model selector (the paper's
    best-of-N) scores each sample and keeps the best; see `BestSampleSelector`."""

    name: str

    def select(self, samples: Sequence[CotSample]) -> Selection: ...


class SelfConsistencyVote:
    """Majority vote over the samples' predictions; probabilities are the mean of the samples' distributions.
    A tied vote goes to the option with the higher mean probability, then to the lowest letter."""

    name = SELF_CONSISTENCY

    def select(self, samples: Sequence[CotSample]) -> Selection:
        if not samples:
            raise ValueError("no samples to select from")
        n = len(samples[0].probabilities)
        mean = [sum(s.probabilities[i] for s in samples) / len(samples) for i in range(n)]
        votes = [0] * n
        for s in samples:
            votes[s.predicted] += 1
        best = max(range(n), key=lambda i: (votes[i], mean[i], -i))
        return Selection(mean, best, {"selector": self.name, "votes": votes})


def best_of_n(samples: Sequence[CotSample], scores: Sequence[float], name: str = BEST_OF_N) -> Selection:
    """The paper's selection: the one sample with the highest score (the first on ties), answered with its own
    distribution over the letters."""
    if not samples:
        raise ValueError("no samples to select from")
    best = max(range(len(samples)), key=lambda i: (scores[i], -i))
    chosen = samples[best]
    return Selection(
        list(chosen.probabilities), chosen.predicted, {"selector": name, "chosen": best, "scores": list(scores)}
    )


class BestSampleSelector:
    """Keep the one sample `score` rates highest (first on ties) and answer with its distribution: `best_of_n`
    with the scoring function plugged in (the runner scores samples over HTTP instead: `clients.Scorer`)."""

    def __init__(self, score: Callable[[CotSample], float], name: str = BEST_OF_N):
        self.score = score
        self.name = name

    def select(self, samples: Sequence[CotSample]) -> Selection:
        return best_of_n(samples, [self.score(s) for s in samples], self.name)


SELECTORS: dict[str, Callable[[], Selector]] = {SelfConsistencyVote.name: SelfConsistencyVote}


# --------------------------------------------------------------------------------------------------- summaries


def nearest_bin(percent: float) -> int:
    """Index of the calibration bin whose centre is nearest (the lower one when exactly between two)."""
    return int(nearest_bin_index(percent))


def calibration(pairs: Iterable[tuple[float, bool]]) -> dict:
    """Calibration error over (confidence in [0, 1], correct) pairs — the report's CE — with, per bin, the count,
    the right answers, the accuracy and the mean confidence."""
    pairs = [(100 * confidence, bool(correct)) for confidence, correct in pairs]
    ce, table = calibration_error(pairs)
    conf = [0.0] * len(BIN_CENTRES)
    for percent, _correct in pairs:
        conf[nearest_bin(percent)] += percent
    bins = [{**b, "mean_confidence": conf[i] / b["n"] if b["n"] else None} for i, b in enumerate(table)]
    return {"ce": ce, "bins": bins}


@dataclass(frozen=True)
class ResultRow:
    subject: str
    labelled: bool
    probabilities: list[float] | None
    predicted: int | None
    correct: bool | None
    error_kind: str = ""


def summarise(rows: Iterable[ResultRow]) -> dict:
    """Accuracy (over answered, labelled items; also with errors counted wrong), errors by kind, calibration
    error, mean confidence and accuracy per subject. Percentages are in points."""
    rows = list(rows)
    errors = Counter(r.error_kind for r in rows if r.error_kind)
    answered = [r for r in rows if not r.error_kind and r.probabilities is not None]
    labelled = [r for r in answered if r.labelled and r.correct is not None]
    labelled_all = [r for r in rows if r.labelled]
    n_right = sum(bool(r.correct) for r in labelled)
    per_subject: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in labelled:
        per_subject[r.subject][0] += bool(r.correct)
        per_subject[r.subject][1] += 1
    cal = calibration((model_confidence(r.probabilities, r.predicted), bool(r.correct)) for r in labelled)
    confidences = [model_confidence(r.probabilities, r.predicted) for r in answered]
    return {
        "confidence": SUMMARY_CONFIDENCE,
        "items": len(rows),
        "answered": len(answered),
        "labelled": len(labelled),
        "n_correct": n_right,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(sorted(errors.items())),
        "accuracy": 100 * n_right / len(labelled) if labelled else None,
        "accuracy_errors_as_wrong": 100 * n_right / len(labelled_all) if labelled_all else None,
        "mean_confidence": 100 * sum(confidences) / len(confidences) if confidences else None,
        "calibration_error": cal["ce"],
        "calibration_bins": cal["bins"],
        "accuracy_by_subject": {
            subject: {"accuracy": 100 * right / n, "n": n} for subject, (right, n) in sorted(per_subject.items())
        },
    }
