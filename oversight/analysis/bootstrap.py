"""Uncertainty: the two-way cluster bootstrap, percentile intervals and the paired tests.

**Two-way cluster bootstrap.** A resample draws participants with replacement (all of them, across conditions:
a participant is one cluster in every condition they did) and, independently, items with replacement within
strata — an item's stratum is its task together with the set of conditions that showed it, so every resample
keeps each condition's number of items per task. A participant or item drawn m times carries weight m in every
statistic (in the vote, a participant drawn twice votes twice). Resampling both ways lets the intervals reflect
that both the participants and the items are samples (the paper's 5 participants and 100 items per condition).
The interval is the 2.5th–97.5th percentile of the replicates, its bounds rounded to 4 decimals; a replicate where a
statistic is undefined (for instance no drawn participant answered an item of a task) is left out and counted. An
estimate that is itself undefined (null) has no interval.

Resamples are generated from `numpy.random.default_rng(seed)`: participants first, then the strata in sorted
order, so one seed gives the same intervals on any machine with the same numpy.

**Paired tests** (assisted vs a model alone, on the items both answered):

* individual level — a **sign-flip permutation test** on the item-level paired differences d_i = (share of the
  condition's participants who got item i right) − (1 if the model got it right else 0). The statistic is
  the mean of d; under the null of no difference each d_i is symmetric about 0, so its sign is flipped at
  random. Exact (all 2^n sign patterns of the non-zero differences) when there are at most 16 of them; otherwise
  10,000 random sign patterns from `default_rng([seed, 1])`, with p = (1 + #{|T*| ≥ |T|}) / (1 + 10,000).
  Two-sided. Items, not participants, are the unit: it asks whether the gap generalises to other items.
* vote level — an **exact McNemar test** on the assisted vote's and the model's right/wrong per item: the
  two-sided binomial test of the discordant pairs against 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PERMUTATIONS = 10_000
EXACT_MAX = 16
BOUND_DECIMALS = 4  # above the float32 rounding of the resampled statistics (metrics._weighted_sum)


def draw_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """(resamples, n) draw counts of n draws with replacement from n units, as float32 (exact for counts)."""
    if n == 0:
        return np.zeros((resamples, 0), dtype=np.float32)
    draws = rng.integers(0, n, size=(resamples, n))
    draws += (np.arange(resamples) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float32)


def two_way_weights(
    seed: int, resamples: int, n_participants: int, item_strata: Sequence[np.ndarray], n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Participant weights (B, P) and item weights (B, I), items resampled within each stratum."""
    rng = np.random.default_rng(seed)
    w = draw_counts(rng, n_participants, resamples)
    c = np.zeros((resamples, n_items), dtype=np.float32)
    for stratum in item_strata:
        c[:, stratum] = draw_counts(rng, len(stratum), resamples)
    return w, c


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None, int]:
    """Percentile interval of the defined replicates, and how many replicates were undefined."""
    defined = samples[~np.isnan(samples)]
    undefined = int(samples.size - defined.size)
    if defined.size == 0:
        return None, None, undefined
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(defined.astype(np.float64, copy=False), [tail, 100 - tail])
    # Four decimals of a percent: far below any meaningful digit, and above the rounding of the resampled
    # statistics (a bound that is 75.25 reads 75.25, not 75.24999961).
    return round(float(lo), BOUND_DECIMALS), round(float(hi), BOUND_DECIMALS), undefined


def sign_flip_test(differences: Sequence[float], *, seed: int, permutations: int = PERMUTATIONS) -> dict:
    """Two-sided sign-flip permutation test of mean(differences) = 0 (see the module docstring)."""
    d = np.asarray(differences, dtype=float)
    result = {
        "test": "sign-flip permutation",
        "n_items": int(d.size),
        "mean_difference": None,
        "p_value": None,
        "exact": None,
        "permutations": None,
    }
    if d.size == 0:
        return result
    observed = d.mean()
    result["mean_difference"] = float(100 * observed)
    nonzero = d[d != 0]
    if nonzero.size == 0:
        result.update(p_value=1.0, exact=True, permutations=1)
        return result
    # Zero differences do not change under a flip: they contribute a constant, 0, to every permuted sum.
    tolerance = 1e-12 * max(1.0, float(np.abs(nonzero).sum()))
    target = abs(nonzero.sum())
    if nonzero.size <= EXACT_MAX:
        signs = 1 - 2 * ((np.arange(2**nonzero.size)[:, None] >> np.arange(nonzero.size)) & 1)
        sums = np.abs(signs @ nonzero)
        result.update(p_value=float((sums >= target - tolerance).mean()), exact=True, permutations=int(len(sums)))
        return result
    rng = np.random.default_rng([seed, 1])
    hits = 0
    for start in range(0, permutations, 2000):
        n = min(2000, permutations - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, nonzero.size))
        hits += int((np.abs(signs @ nonzero) >= target - tolerance).sum())
    result.update(p_value=(1 + hits) / (1 + permutations), exact=False, permutations=permutations)
    return result


def mcnemar_exact(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> dict:
    """Exact McNemar test: `b` = first right & second wrong, `c` = first wrong & second right."""
    pairs = list(zip(first_correct, second_correct, strict=True))
    b = sum(1 for x, y in pairs if x and not y)
    c = sum(1 for x, y in pairs if y and not x)
    n = b + c
    if n == 0:
        p = 1.0
    else:
        k = min(b, c)
        p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return {
        "test": "exact McNemar",
        "n_items": len(pairs),
        "first_only_correct": b,
        "second_only_correct": c,
        "p_value": p,
    }
