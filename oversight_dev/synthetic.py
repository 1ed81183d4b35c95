"""Synthetic studies with a known truth, for tests and the benchmark (bench/analytics.py).

Every participant p does every condition (within-subject); each condition has its own items (disjoint
samples), split over the tasks. P(correct) = base[condition] + skill[p] + ease[i], with skill ~ U(−s, s) and
ease ~ U(−e, e): the population mean individual accuracy of a condition is exactly `base[condition]` as long as
base ± (s + e) stays within [0, 1]. Wrong answers pick a uniformly random wrong option. Confidence (Likert)
leans high on right answers and low on wrong ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from oversight.analysis.tables import (
    ASSISTED,
    LIKERT_LEVELS,
    METHODS,
    UNAIDED,
    BaselineRow,
    ConditionRow,
    StudyTables,
    TrialRow,
    baseline_run,
)

_START = datetime(2026, 1, 1, tzinfo=UTC)
_CONF_IF_RIGHT = np.array([0.05, 0.10, 0.20, 0.30, 0.35])
_CONF_IF_WRONG = np.array([0.30, 0.30, 0.20, 0.15, 0.05])


def synthetic_tables(
    *,
    n_participants: int = 1000,
    items_per_condition: int = 50,
    tasks: tuple[str, ...] = ("MMLU", "QuALITY"),
    base: dict[str, float] | None = None,
    skill: float = 0.15,
    ease: float = 0.2,
    n_options: int = 4,
    excluded: int = 0,
    pilots: int = 0,
    model_accuracy: dict[str, float] | None = None,
    seed: int = 0,
) -> StudyTables:
    rng = np.random.default_rng(seed)
    base = base or {UNAIDED: 0.55, ASSISTED: 0.75}
    model_accuracy = {"zero-shot": 0.57, "few-shot": 0.62, "cot": 0.66} if model_accuracy is None else model_accuracy
    conditions = [
        ConditionRow(id=1, kind=ASSISTED, name="Assisted", position=0),
        ConditionRow(id=2, kind=UNAIDED, name="Unaided", position=1),
    ]
    n_people = n_participants + pilots
    skills = rng.uniform(-skill, skill, n_people)
    trials: list[TrialRow] = []
    item_ids = {}
    next_item = 1
    for cond in conditions:
        ids = np.arange(next_item, next_item + items_per_condition)
        next_item += items_per_condition
        item_ids[cond.id] = ids
    n_all = next_item - 1
    eases = rng.uniform(-ease, ease, n_all + 1)
    golds = rng.integers(0, n_options, n_all + 1)
    subjects = [f"subject {k % 10}" for k in range(n_all + 1)]
    difficult = rng.random(n_all + 1) < 0.5

    for cond in conditions:
        ids = item_ids[cond.id]
        n = len(ids)
        prob = np.clip(base[cond.kind] + skills[:, None] + eases[ids][None, :], 0, 1)
        right = rng.random((n_people, n)) < prob
        wrong_shift = rng.integers(1, n_options, (n_people, n))
        choice = np.where(right, golds[ids][None, :], (golds[ids][None, :] + wrong_shift) % n_options)
        u = rng.random((n_people, n))
        level_right = np.searchsorted(np.cumsum(_CONF_IF_RIGHT), u)
        level_wrong = np.searchsorted(np.cumsum(_CONF_IF_WRONG), u)
        level = np.asarray(LIKERT_LEVELS)[np.minimum(np.where(right, level_right, level_wrong), 4)]
        order = np.argsort(rng.random((n_people, n)), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(n_people, 0), axis=1)
        seconds = rng.gamma(4, 20, (n_people, n))
        assisted = cond.kind == ASSISTED
        turns = rng.poisson(10, (n_people, n)) if assisted else np.zeros((n_people, n), dtype=int)
        resets = rng.poisson(2, (n_people, n)) if assisted else np.zeros((n_people, n), dtype=int)
        quotes = rng.poisson(0.5, (n_people, n)) if assisted else np.zeros((n_people, n), dtype=int)
        verified = rng.binomial(quotes, 0.8)
        for p in range(n_people):
            for j in range(n):
                item = int(ids[j])
                shown = _START + timedelta(minutes=int(rank[p, j]) * 5)
                trials.append(
                    TrialRow(
                        participant_id=p + 1,
                        condition_id=cond.id,
                        condition_kind=cond.kind,
                        condition_name=cond.name,
                        task=tasks[item % len(tasks)],
                        item_id=item,
                        subject=subjects[item],
                        difficult=bool(difficult[item]),
                        n_options=n_options,
                        gold=int(golds[item]),
                        choice=int(choice[p, j]),
                        confidence=float(level[p, j]),
                        correct=bool(right[p, j]),
                        shown_at=shown,
                        submitted_at=shown + timedelta(seconds=float(seconds[p, j])),
                        submit_kind="manual",
                        turns=int(turns[p, j]),
                        resets=int(resets[p, j]),
                        quotes=int(quotes[p, j]),
                        quotes_verified=int(verified[p, j]),
                        block_position=int(rank[p, j]),
                    )
                )

    baselines = []
    for method, accuracy in model_accuracy.items():
        for item in range(1, n_all + 1):
            right = rng.random() < accuracy
            predicted = int(golds[item]) if right else int((golds[item] + rng.integers(1, n_options)) % n_options)
            probs = rng.dirichlet(np.ones(n_options))
            top = rng.uniform(0.3, 0.99)
            probs = probs / probs.sum() * (1 - top)
            probs[predicted] = top
            probs = probs / probs.sum()
            baselines.append(
                BaselineRow(
                    method=method,
                    item_id=item,
                    probabilities=tuple(float(x) for x in probs),
                    predicted=predicted,
                    correct=right,
                    endpoint="synthetic",
                    run_id=1,
                )
            )
    people = range(1, n_people + 1)
    pilot_ids = frozenset(range(n_participants + 1, n_people + 1))
    return StudyTables(
        slug="synthetic",
        title="Synthetic study",
        conditions=conditions,
        trials=trials,
        tasks=list(tasks),
        baselines=baselines,
        baseline_runs=[
            baseline_run(
                id=1,
                method=m,
                endpoint="synthetic",
                split="",
                scope="study",
                status="done",
                params={},
                summary=None,
                tasks=[],
            )
            for m in model_accuracy
            if m in METHODS
        ],
        excluded=frozenset(range(1, excluded + 1)),
        pilots=pilot_ids,
        participant_status={p: "completed" for p in people},
    )
