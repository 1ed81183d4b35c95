"""Protocols beyond sandwiching (RESEARCH.md §9): judge accuracy and calibration by protocol, the splits the
papers report, quote statistics per side and paired comparisons between protocols. Pure functions over plain
rows (no ORM); `reports.protocols` loads the rows. docs/protocols.md explains each number.

Definitions (the platform's, where the papers differ or are silent):

* **A judgement** is one scored, final trial of a condition; every condition of the study is analysed here
  (unaided and assisted too, as the "no help" and "chat" protocols), each with its own items and answer options:
  a protocol judge chooses between two answers, an unaided participant among all of the item's.
* **Accuracy** is the mean over judges of each judge's accuracy, a timed-out trial with nothing selected counting
  as wrong: the definition of RESEARCH.md §5, so protocols and the sandwich are comparable.
* **p(correct)**: the probability the judge gave the correct answer. A protocol judge's probability for the
  chosen answer is its stated confidence (a 5-point level or the slider, in percent; "probability over all
  options" uses the probability of each of the two answers, renormalised over the two), and the other answer
  gets the rest; other conditions use the vote's reading of an answer (`metrics.answer_probabilities`, so a
  Likert "Certain" is 0.99). Nothing selected: uninformative (1/k). Reported as its mean, the **Brier score**
  (mean (1 − p)², lower is better) and the **log score** (mean log₂ p with p clipped to [0.01, 0.99], as judges
  are scored in Michael et al. 2023; higher is better), all averaged over judges like accuracy.
* **Calibration**: the probability of the *chosen* answer, in ten 10-point bins; per bin the share of those
  answers that were right. ECE = Σ_bins (n_bin / n) · |share right − mean probability|, in percentage points,
  pooling every judgement of the condition (unanswered ones left out). The reliability diagram draws the bins.
* **Splits** (accuracy within a subset of a condition's judgements): consultancy by whether the consultant argued
  for the correct answer; debate by the correct debater's position (the correct answer shown first: Debater A, or
  second: Debater B); open protocols by whether the model chose the correct answer; interactive protocols by
  whether the judge ended the debate early.
* **Intervals**: the report's two-way cluster bootstrap (participants, and items within strata of task × the set
  of conditions that showed them), 95% percentile; a split or a pair with no judgement in a resample is undefined
  there and counted.
* **Paired comparisons** between two conditions on the items both showed (only when conditions share items, i.e.
  the study's samples are not disjoint): the difference in mean-over-judges accuracy on those items with its
  bootstrap interval, and the sign-flip permutation test on the per-item differences in share right.
* **Quote statistics** are per transcript turn (a shared transcript counts once however many judged it), per
  speaking position and per side (the side arguing the correct answer or the other).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from oversight.analysis import bootstrap
from oversight.analysis.metrics import answer_probabilities
from oversight.analysis.tables import DISTRIBUTION, FINAL_STATUSES, SCORED, StudyTables, TrialRow

PROTOCOL_KINDS = (
    "consultancy",
    "debate",
    "open_consultancy",
    "open_debate",
    "interactive_debate",
    "evidence_only",
)
KIND_LABELS = {
    "unaided": "Unaided",
    "assisted": "Assisted (chat)",
    "consultancy": "Consultancy",
    "debate": "Debate",
    "open_consultancy": "Open consultancy",
    "open_debate": "Open debate",
    "interactive_debate": "Interactive debate",
    "evidence_only": "Evidence only",
}
DEBATES = frozenset({"debate", "open_debate", "interactive_debate"})
CONSULTANCIES = frozenset({"consultancy", "open_consultancy"})
OPEN = frozenset({"open_consultancy", "open_debate"})
N_CAL_BINS = 10
LOG_CLIP = (0.01, 0.99)
CHUNK = 500


@dataclass(frozen=True)
class JudgementRow:
    """What a protocol trial showed its judge (one per trial with a transcript)."""

    participant_id: int
    condition_id: int
    item_id: int
    transcript_id: int
    options: tuple[int, ...]  # the two answers (option indices of the item) in the order shown
    argues: tuple[int, ...] = ()  # per speaking position: the index into `options` it argued for
    speakers: tuple[int, ...] = ()  # per speaking position: the advocate configuration that spoke there
    chosen_by_model: bool = False
    shared: bool = False
    ended_by: str = ""
    rounds_done: int = 0


@dataclass(frozen=True)
class TurnRow:
    """One finished advocate turn of a transcript some analysed trial showed: its quotes and words."""

    transcript_id: int
    condition_id: int
    round: int
    position: int
    speaker: str  # "Debater A", "Debater B", "Consultant", "Evidence"
    side: str  # "correct" (argued the correct answer), "incorrect", or "none" (evidence only)
    quotes: int
    verified: int
    over_budget: int
    quoted_words: int  # counted against the budget
    budget: int
    words: int
    truncated: bool = False


def turn_row(
    *,
    transcript_id: int,
    condition_id: int,
    round: int,
    position: int | None,
    speaker: str,
    options: Sequence[int],
    argues: Sequence[int],
    gold: int | None,
    quotes: Sequence[dict],
    words: int,
    truncated: bool,
    budget: int,
) -> TurnRow:
    """A finished advocate turn as the analysis counts it, from its stored quotes (the database's or an export's)."""
    if argues and position is not None and position < len(argues):
        side = "correct" if options[argues[position]] == gold else "incorrect"
    else:
        side = "none"
    return TurnRow(
        transcript_id=transcript_id,
        condition_id=condition_id,
        round=round,
        position=position or 0,
        speaker=speaker,
        side=side,
        quotes=len(quotes),
        verified=sum(bool(q.get("verified")) for q in quotes),
        over_budget=sum(bool(q.get("over_budget")) for q in quotes),
        quoted_words=sum(int(q.get("words") or 0) for q in quotes if not q.get("over_budget")),
        budget=budget,
        words=words,
        truncated=truncated,
    )


@dataclass
class ProtocolTables:
    judgements: list[JudgementRow] = field(default_factory=list)
    turns: list[TurnRow] = field(default_factory=list)


# --- Per judgement ---------------------------------------------------------------------------------------


def answer_probabilities_at_stake(
    trial: TrialRow, judgement: JudgementRow | None, confidence_format: str
) -> dict[int, float] | None:
    """The judge's probability for each answer at stake, by option index: the two a protocol judge was shown, every
    option otherwise (see the module docstring). None when nothing was chosen, or nothing said how sure."""
    if trial.choice is None:
        return None
    if judgement is not None and len(judgement.options) == 2:
        if confidence_format == DISTRIBUTION and trial.distribution:
            d = trial.distribution
            mass = [float(d[o]) if o < len(d) else 0.0 for o in judgement.options]
            if sum(mass) > 0:
                return {o: m / sum(mass) for o, m in zip(judgement.options, mass, strict=True)}
        if trial.confidence is None:
            return None
        chosen = min(max(trial.confidence / 100, 0.0), 1.0)
        return {o: chosen if o == trial.choice else 1 - chosen for o in judgement.options}
    probabilities = answer_probabilities(
        choice=trial.choice,
        confidence=trial.confidence,
        n_options=trial.n_options,
        confidence_format=confidence_format,
        distribution=trial.distribution,
    )
    return None if probabilities is None else dict(enumerate(probabilities))


def p_correct(trial: TrialRow, judgement: JudgementRow | None, confidence_format: str) -> float:
    """The probability the judge gave the correct answer; uninformative (1/k) when nothing was said."""
    at_stake = answer_probabilities_at_stake(trial, judgement, confidence_format)
    if at_stake is None:
        k = 2 if judgement is not None and len(judgement.options) == 2 else max(trial.n_options, 1)
        return 1 / k
    return at_stake.get(trial.gold, 0.0)


def p_chosen(trial: TrialRow, judgement: JudgementRow | None, confidence_format: str) -> float | None:
    """The probability of the answer the judge chose; None when nothing was chosen (or said how sure)."""
    at_stake = answer_probabilities_at_stake(trial, judgement, confidence_format)
    return None if at_stake is None else at_stake.get(trial.choice)


def split_keys(kind: str, trial: TrialRow, judgement: JudgementRow | None) -> list[str]:
    """The splits a judgement belongs to (see the module docstring)."""
    if judgement is None or len(judgement.options) != 2:
        return []
    keys = []
    gold_at = judgement.options.index(trial.gold) if trial.gold in judgement.options else None
    if kind in DEBATES:
        keys.append("correct_first" if gold_at == 0 else "correct_second")
    if kind in CONSULTANCIES and judgement.argues:
        keys.append("consultant_correct" if judgement.argues[0] == gold_at else "consultant_incorrect")
    if kind in OPEN and judgement.argues:
        protagonist = judgement.speakers.index(0) if 0 in judgement.speakers else 0
        chose = judgement.argues[protagonist]
        keys.append("model_chose_correct" if chose == gold_at else "model_chose_incorrect")
    if judgement.ended_by == "judge":
        keys.append("ended_early")
    return keys


SPLIT_LABELS = {
    "correct_first": "correct answer shown first (Debater A right)",
    "correct_second": "correct answer shown second (Debater B right)",
    "consultant_correct": "consultant argued for the correct answer",
    "consultant_incorrect": "consultant argued for the incorrect answer",
    "model_chose_correct": "the model chose the correct answer",
    "model_chose_incorrect": "the model chose the incorrect answer",
    "ended_early": "the judge ended the debate early",
}


# --- Layout ----------------------------------------------------------------------------------------------


@dataclass
class Grid:
    """One condition's judgements on a participant × item grid (its own participants and items)."""

    condition_id: int
    name: str
    kind: str
    participants: np.ndarray  # global participant indices
    items: np.ndarray  # global item indices
    answered: np.ndarray  # (P, I)
    correct: np.ndarray
    p_correct: np.ndarray
    brier: np.ndarray
    log_score: np.ndarray
    chosen: np.ndarray  # (P, I) probability of the chosen answer; NaN where nothing was chosen
    splits: dict[str, np.ndarray]  # split key → (P, I) mask
    item_ids: np.ndarray


def _analysed(tables: StudyTables, *, apply_exclusions: bool) -> list[TrialRow]:
    return [
        t
        for t in tables.trials
        if t.role == SCORED
        and t.status in FINAL_STATUSES
        and t.correct is not None
        and t.gold is not None
        and t.participant_id not in tables.pilots
        and not (apply_exclusions and t.participant_id in tables.excluded)
    ]


def _grids(tables: StudyTables, trials: list[TrialRow], judgements: dict) -> tuple[list[Grid], np.ndarray, np.ndarray]:
    participants = np.unique([t.participant_id for t in trials]) if trials else np.zeros(0, dtype=np.int64)
    items = np.unique([t.item_id for t in trials]) if trials else np.zeros(0, dtype=np.int64)
    by_condition: dict[int, list[TrialRow]] = defaultdict(list)
    for t in trials:
        by_condition[t.condition_id].append(t)
    order = {c.id: (c.position, c.id) for c in tables.conditions}
    names = {c.id: c.name for c in tables.conditions}
    grids = []
    for cid in sorted(by_condition, key=lambda c: order.get(c, (10**6, c))):
        rows = by_condition[cid]
        kind = rows[0].condition_kind
        p_global = np.searchsorted(participants, [t.participant_id for t in rows])
        i_global = np.searchsorted(items, [t.item_id for t in rows])
        mine_p, mine_i = np.unique(p_global), np.unique(i_global)
        r, c = np.searchsorted(mine_p, p_global), np.searchsorted(mine_i, i_global)
        shape = (len(mine_p), len(mine_i))
        grid = {name: np.zeros(shape) for name in ("answered", "correct", "p_correct", "brier", "log_score")}
        chosen = np.full(shape, np.nan)
        splits: dict[str, np.ndarray] = {}
        for k, t in enumerate(rows):
            judgement = judgements.get((t.participant_id, t.condition_id, t.item_id))
            p = p_correct(t, judgement, tables.confidence_format)
            grid["answered"][r[k], c[k]] = 1
            grid["correct"][r[k], c[k]] = float(bool(t.correct))
            grid["p_correct"][r[k], c[k]] = p
            grid["brier"][r[k], c[k]] = (1 - p) ** 2
            grid["log_score"][r[k], c[k]] = math.log2(min(max(p, LOG_CLIP[0]), LOG_CLIP[1]))
            pc = p_chosen(t, judgement, tables.confidence_format)
            if pc is not None:
                chosen[r[k], c[k]] = pc
            for key in split_keys(kind, t, judgement):
                splits.setdefault(key, np.zeros(shape))[r[k], c[k]] = 1
        grids.append(
            Grid(
                condition_id=cid,
                name=names.get(cid, rows[0].condition_name),
                kind=kind,
                participants=mine_p,
                items=mine_i,
                chosen=chosen,
                splits=splits,
                item_ids=items[mine_i],
                **grid,
            )
        )
    return grids, participants, items


def _strata(trials: list[TrialRow], grids: list[Grid], items: np.ndarray) -> list[np.ndarray]:
    """Bootstrap strata as the report's: an item's task and the set of conditions that showed it."""
    shown_in = np.zeros(len(items), dtype=np.int64)
    for position, g in enumerate(grids):
        shown_in[g.items] |= 1 << position
    task = {t.item_id: t.task for t in trials}
    keys = [(task.get(int(i), ""), int(s)) for i, s in zip(items.tolist(), shown_in.tolist(), strict=True)]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key].append(index)
    return [np.asarray(groups[k]) for k in sorted(groups)]


# --- Estimates for given weights -------------------------------------------------------------------------------


def participant_mean(values: np.ndarray, mask: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Mean over participants (weights w, (B, P)) of each participant's mean of `values` over the masked items
    (weights c, (B, I)); (B,), NaN where no weighted participant has a masked item."""
    num = c @ (values * mask).T
    den = c @ mask.T
    defined = den > 0
    rate = np.divide(num, den, out=np.zeros_like(num), where=defined)
    total = (w * defined).sum(1)
    out = np.full(len(w), np.nan)
    np.divide((w * rate * defined).sum(1), total, out=out, where=total > 0)
    return out


def calibration_bins(chosen: np.ndarray, correct: np.ndarray, w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per bin of the chosen answer's probability: weighted count, right and probability sums, each (B, bins)."""
    has = ~np.isnan(chosen)
    index = np.where(has, np.minimum((np.nan_to_num(chosen) * N_CAL_BINS).astype(int), N_CAL_BINS - 1), -1)
    n, right, prob = [], [], []
    for b in range(N_CAL_BINS):
        in_bin = (index == b).astype(float)
        n.append(np.einsum("bi,bi->b", w @ in_bin, c))
        right.append(np.einsum("bi,bi->b", w @ (in_bin * correct), c))
        prob.append(np.einsum("bi,bi->b", w @ (in_bin * np.nan_to_num(chosen)), c))
    return np.stack(n, 1), np.stack(right, 1), np.stack(prob, 1)


def ece(n: np.ndarray, right: np.ndarray, prob: np.ndarray) -> np.ndarray:
    total = n.sum(-1)
    safe = np.where(n > 0, n, 1)
    gap = np.abs(right / safe - prob / safe) * (n > 0)
    out = np.full(total.shape, np.nan)
    np.divide(100 * (gap * n).sum(-1), total, out=out, where=total > 0)
    return out


def grid_series(g: Grid, w: np.ndarray, c: np.ndarray) -> dict:
    """Every resampled statistic of one condition: `w` (B, P) and `c` (B, I) over its own participants and items."""
    out = {
        "accuracy": 100 * participant_mean(g.correct, g.answered, w, c),
        "p_correct": 100 * participant_mean(g.p_correct, g.answered, w, c),
        "brier": participant_mean(g.brier, g.answered, w, c),
        "log_score": participant_mean(g.log_score, g.answered, w, c),
        "ece": ece(*calibration_bins(g.chosen, g.correct, w, c)),
    }
    for key, mask in g.splits.items():
        out["split", key] = 100 * participant_mean(g.correct, mask, w, c)
    return out


def pair_series(a: Grid, b: Grid, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Accuracy of `a` minus `b` on the items both showed, for global weights w (B, P_all) and c (B, I_all)."""
    shared = np.intersect1d(a.items, b.items)

    def on_shared(g: Grid) -> np.ndarray:
        cols = np.searchsorted(g.items, shared)
        mask = np.zeros_like(g.answered)
        mask[:, cols] = g.answered[:, cols]
        return 100 * participant_mean(g.correct, mask, w[:, g.participants], c[:, g.items])

    return on_shared(a) - on_shared(b)


# --- The analysis ------------------------------------------------------------------------------------------


def _estimate(point: np.ndarray, replicates: list[np.ndarray]) -> dict:
    value = float(point[0])
    out = {"value": None if math.isnan(value) else value, "ci95": None, "undefined_resamples": 0}
    if replicates:
        lo, hi, undefined = bootstrap.interval(np.concatenate(replicates))
        out["ci95"] = None if lo is None or out["value"] is None else [lo, hi]
        out["undefined_resamples"] = undefined
    return out


def protocol_analysis(
    tables: StudyTables, protocols: ProtocolTables | None, *, apply_exclusions: bool, seed: int, resamples: int
) -> dict:
    """Every condition's judges, as protocols: accuracy, p(correct), Brier and log scores, calibration, splits,
    quote statistics and paired comparisons, with the two-way bootstrap's intervals."""
    protocols = protocols or ProtocolTables()
    judgements = {(j.participant_id, j.condition_id, j.item_id): j for j in protocols.judgements}
    trials = _analysed(tables, apply_exclusions=apply_exclusions)
    grids, participants, items = _grids(tables, trials, judgements)
    pairs = [(a, b) for k, a in enumerate(grids) for b in grids[k + 1 :] if len(np.intersect1d(a.items, b.items))]

    def series(w: np.ndarray, c: np.ndarray) -> dict:
        out = {}
        for g in grids:
            for key, values in grid_series(g, w[:, g.participants], c[:, g.items]).items():
                out[(g.condition_id, key) if isinstance(key, str) else (g.condition_id, *key)] = values
        for a, b in pairs:
            out["pair", a.condition_id, b.condition_id] = pair_series(a, b, w, c)
        return out

    point = series(np.ones((1, len(participants))), np.ones((1, len(items))))
    replicates: dict = defaultdict(list)
    if resamples and trials:
        w_all, c_all = bootstrap.two_way_weights(
            seed, resamples, len(participants), _strata(trials, grids, items), len(items)
        )
        for start in range(0, resamples, CHUNK):
            for key, values in series(w_all[start : start + CHUNK], c_all[start : start + CHUNK]).items():
                replicates[key].append(values)

    def est(key) -> dict:
        return _estimate(point[key], replicates.get(key, []))

    conditions = []
    for g in grids:
        n, right, prob = calibration_bins(
            g.chosen, g.correct, np.ones((1, len(g.participants))), np.ones((1, len(g.items)))
        )
        conditions.append(
            {
                "id": g.condition_id,
                "name": g.name,
                "kind": g.kind,
                "kind_label": KIND_LABELS.get(g.kind, g.kind),
                "n_participants": int((g.answered.sum(1) > 0).sum()),
                "n_items": int((g.answered.sum(0) > 0).sum()),
                "n_answers": int(g.answered.sum()),
                "accuracy": est((g.condition_id, "accuracy")),
                "pooled_accuracy": float(100 * g.correct.sum() / g.answered.sum()) if g.answered.sum() else None,
                "p_correct": est((g.condition_id, "p_correct")),
                "brier": est((g.condition_id, "brier")),
                "log_score": est((g.condition_id, "log_score")),
                "calibration": {
                    "ece": est((g.condition_id, "ece")),
                    "bins": [
                        {
                            "low": 100 * b / N_CAL_BINS,
                            "high": 100 * (b + 1) / N_CAL_BINS,
                            "n": int(n[0, b]),
                            "accuracy": float(100 * right[0, b] / n[0, b]) if n[0, b] else None,
                            "mean_probability": float(100 * prob[0, b] / n[0, b]) if n[0, b] else None,
                        }
                        for b in range(N_CAL_BINS)
                    ],
                },
                "splits": {
                    key: {
                        "label": SPLIT_LABELS[key],
                        "n_answers": int(mask.sum()),
                        "accuracy": est((g.condition_id, "split", key)),
                    }
                    for key, mask in sorted(g.splits.items())
                },
                **_transcript_stats(g, trials, judgements, protocols.turns),
            }
        )
    paired = []
    names = {g.condition_id: g.name for g in grids}
    for a, b in pairs:
        shared = np.intersect1d(a.items, b.items)
        paired.append(
            {
                "first": {"id": a.condition_id, "name": names[a.condition_id], "kind": a.kind},
                "second": {"id": b.condition_id, "name": names[b.condition_id], "kind": b.kind},
                "n_items": len(shared),
                "difference": est(("pair", a.condition_id, b.condition_id)),
                "test": bootstrap.sign_flip_test(_item_differences(a, b, shared).tolist(), seed=seed),
            }
        )
    return {
        "n_participants": len(participants),
        "n_items": len(items),
        "conditions": conditions,
        "paired": paired,
        "shared_items": bool(pairs),
    }


def _item_differences(a: Grid, b: Grid, shared: np.ndarray) -> np.ndarray:
    def share_right(g: Grid) -> np.ndarray:
        cols = np.searchsorted(g.items, shared)
        return g.correct[:, cols].sum(0) / np.maximum(g.answered[:, cols].sum(0), 1)

    return share_right(a) - share_right(b)


def _transcript_stats(g: Grid, trials: list[TrialRow], judgements: dict, turns: Sequence[TurnRow]) -> dict:
    """The model's choices (open protocols) and quote statistics, over the transcripts this condition's analysed
    judgements showed, each once."""
    shown = {
        j.transcript_id: (j, t.gold)
        for t in trials
        if t.condition_id == g.condition_id and (j := judgements.get((t.participant_id, t.condition_id, t.item_id)))
    }
    if not shown:
        return {}
    out: dict = {"n_transcripts": len(shown)}
    if g.kind in OPEN:
        chose_right = []
        for j, gold in shown.values():
            if j.argues and len(j.options) == 2:
                protagonist = j.speakers.index(0) if 0 in j.speakers else 0
                chose_right.append(j.options[j.argues[protagonist]] == gold)
        out["model_choice"] = {
            "n_transcripts": len(chose_right),
            "correct_share": 100 * sum(chose_right) / len(chose_right) if chose_right else None,
        }
    mine = [t for t in turns if t.transcript_id in shown]
    out["quotes"] = {
        "by_position": _quote_table(mine, lambda t: t.speaker),
        "by_side": _quote_table(mine, lambda t: t.side),
    }
    return out


def _quote_table(turns: Sequence[TurnRow], key) -> dict:
    groups: dict[str, list[TurnRow]] = defaultdict(list)
    # In a fixed order, so the sums (floats) are the same whichever loader built the rows.
    for t in sorted(turns, key=lambda t: (t.transcript_id, t.round, t.position)):
        groups[key(t)].append(t)
    table = {}
    for name, rows in sorted(groups.items()):
        quotes = sum(r.quotes for r in rows)
        verified = sum(r.verified for r in rows)
        over = sum(r.over_budget for r in rows)
        budgeted = [r for r in rows if r.budget > 0]
        table[name] = {
            "turns": len(rows),
            "quotes": quotes,
            "verified": verified,
            "unverified": quotes - verified - over,
            "over_budget": over,
            "verified_share": 100 * verified / quotes if quotes else None,
            "quotes_per_turn": quotes / len(rows),
            "quoted_words_per_turn": sum(r.quoted_words for r in rows) / len(rows),
            "budget_used_share": 100 * sum(r.quoted_words / r.budget for r in budgeted) / len(budgeted)
            if budgeted
            else None,
            "words_per_turn": sum(r.words for r in rows) / len(rows),
            "truncated_turns": sum(r.truncated for r in rows),
        }
    return table


# --- In the report ------------------------------------------------------------------------------------------


def has_protocols(tables: StudyTables) -> bool:
    return any(c.kind in PROTOCOL_KINDS for c in tables.conditions)


def sandwich_only(tables: StudyTables) -> StudyTables:
    """The tables without the protocol conditions: the sandwich's Table 1 is about unaided and assisted only."""
    if not has_protocols(tables):
        return tables
    from dataclasses import replace

    return replace(
        tables,
        conditions=[c for c in tables.conditions if c.kind not in PROTOCOL_KINDS],
        trials=[t for t in tables.trials if t.condition_kind not in PROTOCOL_KINDS],
    )


METHOD = (
    "Every condition's judges: accuracy as mean over judges (a timeout with nothing selected is wrong); p(correct), "
    "the probability given to the correct answer (a protocol judge's confidence in the chosen answer of the two, "
    "the rest to the other), with the Brier score (mean (1 - p)^2) and the log score (mean log2 p, p clipped to "
    "[0.01, 0.99]); calibration over ten 10-point bins of the chosen answer's probability, ECE weighted by bin "
    "size; splits by the consultant's assignment, the correct debater's position, the open protocol's choice and "
    "early ends; paired comparisons on shared items. Intervals: the report's two-way cluster bootstrap."
)


def protocol_section(tables: StudyTables, *, seed: int, resamples: int) -> dict:
    """The report's `protocols` block: both variants (exclusions applied, and not) and the method."""
    primary = protocol_analysis(tables, tables.protocols, apply_exclusions=True, seed=seed, resamples=resamples)
    if tables.excluded:
        everyone = protocol_analysis(tables, tables.protocols, apply_exclusions=False, seed=seed, resamples=resamples)
    else:
        everyone = primary
    return {"method": METHOD, "with_exclusions": primary, "without_exclusions": everyone}


def _fmt(e: dict | None, digits: int = 1) -> str:
    if not e or e.get("value") is None:
        return "–"
    text = f"{e['value']:.{digits}f}"
    if e.get("ci95"):
        text += f" [{e['ci95'][0]:.{digits}f}, {e['ci95'][1]:.{digits}f}]"
    return text


def protocol_markdown(section: dict) -> list[str]:
    """The protocols block as Markdown lines (exclusions applied)."""
    analysis = section["with_exclusions"]
    lines = [
        "## Protocols: judge accuracy by protocol (exclusions applied)",
        "",
        "| Condition | Protocol | Accuracy [95% CI] | p(correct) | Brier | Log score | ECE | Judges | Items |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in analysis["conditions"]:
        lines.append(
            f"| {c['name']} | {c['kind_label']} | {_fmt(c['accuracy'])} | {_fmt(c['p_correct'])} | "
            f"{_fmt(c['brier'], 3)} | {_fmt(c['log_score'], 3)} | {_fmt(c['calibration']['ece'])} | "
            f"{c['n_participants']} | {c['n_items']} |"
        )
    lines.append("")
    for c in analysis["conditions"]:
        for split in c["splits"].values():
            lines.append(
                f"- **{c['name']}**, {split['label']}: {_fmt(split['accuracy'])} ({split['n_answers']} answers)."
            )
        if "model_choice" in c and c["model_choice"]["correct_share"] is not None:
            lines.append(
                f"- **{c['name']}**: the model chose the correct answer in {c['model_choice']['correct_share']:.0f}% "
                f"of {c['model_choice']['n_transcripts']} transcripts."
            )
        for side, q in c.get("quotes", {}).get("by_side", {}).items():
            share = "–" if q["verified_share"] is None else f"{q['verified_share']:.0f}%"
            lines.append(
                f"- **{c['name']}**, {side} side: {q['quotes']} quotes in {q['turns']} turns, {share} verified, "
                f"{q['over_budget']} over the budget."
            )
    if analysis["paired"]:
        lines += ["", "Paired comparisons on shared items (first minus second, percentage points):", ""]
        for pair in analysis["paired"]:
            p = pair["test"]["p_value"]
            lines.append(
                f"- {pair['first']['name']} − {pair['second']['name']}: {_fmt(pair['difference'])} on "
                f"{pair['n_items']} items; sign-flip p = {'–' if p is None else f'{p:.3f}'}."
            )
    elif len(analysis["conditions"]) > 1:
        lines += ["", "No paired comparisons: the conditions showed no items in common (disjoint samples)."]
    lines += ["", f"Method: {section['method']}"]
    return lines
