"""The sandwiching report: every metric of RESEARCH.md §5 with bootstrap intervals, as JSON and Markdown.

`build_report(tables, seed=…, resamples=…)` runs the analysis twice — `with_exclusions` (participants with an
active exclusion left out: the primary analysis, as the paper reports it) and `without_exclusions` (every
non-pilot participant) — and returns a `Report`. Pilot participants are never included. Only final
(answered or timed-out) scored trials with a known right answer are analysed.

The report is deterministic: the same tables, seed and number of resamples give byte-identical JSON (there is
no timestamp in it). Its fields are documented in docs/report-schema.md. Numbers are in percent (accuracy,
confidence, shares) or percentage points (CE, differences), unrounded in JSON and rounded in Markdown.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from oversight.analysis import bootstrap
from oversight.analysis.columns import TrialColumns, trial_columns
from oversight.analysis.metrics import (
    ALL_SCOPE,
    LOWEST_OPTION,
    RANDOM,
    TIE_RULES,
    BaselineArrays,
    ConditionArrays,
    baseline_series,
    build_baseline_arrays,
    build_condition_arrays,
    ce_from_bins,
    condition_series,
    point_vote,
    tie_priority,
)
from oversight.analysis.model_judges import model_judge_markdown, model_judge_section
from oversight.analysis.persuasion import persuasion_markdown, persuasion_section
from oversight.analysis.protocols import has_protocols, protocol_markdown, protocol_section, sandwich_only
from oversight.analysis.tables import (
    ASSISTED,
    DISTRIBUTION,
    EXPERT_ACCURACY,
    EXPERT_SOURCE,
    FINAL_STATUSES,
    LIKERT,
    METHODS,
    SCORED,
    SLIDER,
    UNAIDED,
    BaselineRow,
    ConditionRow,
    ModelMethod,
    StudyTables,
    TrialRow,
)

SCHEMA = "oversight.sandwich-report/2"
DEFAULT_SEED = 0
DEFAULT_RESAMPLES = 2000
CHUNK = 500  # resamples per batch: bounds memory at (CHUNK × items × options) floats per condition
ALL = ALL_SCOPE

METHOD_TEXT = {
    "accuracy": "Mean over participants of each participant's accuracy (RESEARCH.md §5); a trial that timed out "
    "with no option selected counts as wrong. `pooled_accuracy` (all answers pooled) is given for contrast only.",
    "vote": "Confidence-weighted majority vote per item over the participants who answered it: each answer gives "
    "its option probability p and every other option (1 - p)/(k - 1); Likert 'Certain (100%)' counts as 0.99. "
    "The vote picks the option with the highest product of these probabilities (computed as a sum of logs).",
    "empty_timeouts": "Our choice (the paper does not say): an answer with no option selected (a timeout with "
    "nothing selected) carries no opinion and adds nothing to the vote. An item where no answer has an option "
    "gets no vote: it counts as wrong in the vote's accuracy, as each of its empty answers does in the "
    "participants' accuracy, and has no confidence (no calibration bin, not in the max-confidence subset). The "
    "tie rule never picks an option for it.",
    "vote_confidence": "Our reading (the paper does not define it): the vote's confidence is the chosen option's "
    "product divided by the sum of the products over the item's options; it is assigned to the nearest bin for "
    "CE, and the max-confidence subset is the items whose vote falls in the top bin (100%).",
    "calibration": "Five bins centred at 25, 42, 60, 80, 100%. A Likert answer sits at its level (top centre 100); "
    "slider and all-options answers, model probabilities and vote confidences go to the nearest centre (exactly "
    "halfway: the lower bin). A model's confidence is the probability of the option it predicted (also for a "
    "chain-of-thought vote, whose predicted option need not be the most probable one; the baseline runs' own "
    "summaries use the same definition). CE = unweighted mean over non-empty bins of |accuracy in bin - centre|, "
    "in percentage points. Human CE pools every answer of the condition.",
    "mean_confidence": "Mean over participants of each participant's mean stated confidence (the level as shown: "
    "'Certain' counts as 100).",
    "learning_effect": "Per participant, their scored items of the condition in the order shown: the first floor(n/2) "
    "are the first half, the last floor(n/2) the second (an odd n's middle item is in neither); accuracy in each "
    "half averaged over the participants with both halves; difference = second - first; and the paper's statistic, "
    "how many of those participants improved (second half more accurate), stayed level or declined.",
    "models": "Each model-alone baseline (method, its shots, N samples and how one answer is chosen among them) "
    "has up to two rows: on the split its run covered (a bank, or one split of it: the paper's number, n = the "
    "split's labelled items the model answered; the interval resamples those items) and on the study's own "
    "analysed items (the paired comparison: the same items as the participants). A split row's cells come from "
    "the latest finished run of that baseline over the task's bank and that split.",
    "expert": "Expert human: the published reference values (MMLU 90.0, QuALITY 93.5; "
    + EXPERT_SOURCE
    + "), for tasks whose bank has that format. No interval: they are not estimated here.",
    "sandwich": "For each assisted condition and each unaided condition, per task: assisted and unaided mean "
    "individual accuracy on their own items (the same items only when `same_items` is true), each model-alone "
    "baseline on the assisted condition's items, and assisted minus the best of the others (unaided or the best "
    "model), the maximum being retaken in every resample.",
    "dialogue": "Per-item means over the condition's answered trials: participant messages (turns), resets, "
    "seconds from showing to submission; quotations in the model's replies and the share verified against the "
    "passage.",
    "inclusion": "Scored trials that are answered or timed out and whose item has a right answer; a trial still "
    "open past its deadline counts as timed out with its last selection, whether or not the server has finalised "
    "it yet. Pilot participants are never included. `with_exclusions` leaves out participants with an active "
    "(unrevoked) exclusion — the primary analysis; `without_exclusions` includes every non-pilot participant.",
    "paired_tests": "Assisted vs each model alone on the items both answered: a sign-flip permutation test on the "
    "item-level differences (share of participants right minus model right; exact up to 16 non-zero differences, "
    "else 10,000 random flips), and an exact McNemar test of the assisted vote against the model. Two-sided.",
    "units": "Percent (accuracy, confidence, shares) and percentage points (CE, differences).",
}

TIE_RULE_TEXT = {
    RANDOM: "then a seeded random draw among the options still tied: each (condition, item, option) gets a priority "
    "from a hash of the report's seed (seed {seed}) and the highest wins, so the same data and seed give the same "
    "report, and no option is favoured",
    LOWEST_OPTION: "then the lowest option index (A before B; this favours A)",
}


def tie_rule_text(rule: str, seed: int) -> str:
    return (
        "Products equal within a relative 1e-9 on the log scale are tied; among tied options the one chosen by the "
        f"most participants wins, {TIE_RULE_TEXT[rule].format(seed=seed)}. Tie rule: {rule}."
    )


FORMAT_TEXT = {
    LIKERT: "Likert 25/42/60/80/100%: p = level/100 in the vote (100% as 0.99); each answer sits at its bin centre.",
    SLIDER: "Slider 5-95%: p = slider/100 in the vote, taken literally (below 1/k it favours the other options); "
    "for CE each answer goes to the nearest bin centre.",
    DISTRIBUTION: "Probability over all options: the vote uses the participant's whole distribution, each option "
    "floored at (1 - 0.99)/(k - 1) and renormalised so no single answer vetoes an option; the chosen option is the "
    "most probable one and its probability goes to the nearest bin for CE and into mean confidence.",
}


@dataclass
class Report:
    data: dict

    def to_dict(self) -> dict:
        return self.data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, ensure_ascii=False, allow_nan=False)

    def to_markdown(self) -> str:
        return render_markdown(self.data)


def analysed_trials(tables: StudyTables, *, apply_exclusions: bool) -> list[TrialRow]:
    return [
        t
        for t in tables.trials
        if t.role == SCORED
        and t.status in FINAL_STATUSES
        and t.correct is not None
        and t.participant_id not in tables.pilots
        and not (apply_exclusions and t.participant_id in tables.excluded)
    ]


def build_report(
    tables: StudyTables, *, seed: int = DEFAULT_SEED, resamples: int = DEFAULT_RESAMPLES, tie_rule: str = RANDOM
) -> Report:
    if resamples < 0:
        raise ValueError("resamples must be ≥ 0")
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {', '.join(TIE_RULES)}")
    # Protocol conditions (consultancy, debate, …) have their own section; Table 1 is the sandwich's.
    full, tables = tables, sandwich_only(tables)
    cols = trial_columns(tables)
    analysed = set(np.unique(cols.participant[cols.analysable & ~cols.pilot]).tolist())
    # One BLAS thread: the bootstrap's products are many and small, so OpenBLAS's threads buy little, and on a
    # busy machine (CI, a worker beside the web processes) their spinning tripled the wall time (bench/README.md,
    # "Analytics"). It also fixes the order of floating-point sums: the report does not depend on the core count.
    with threadpool_limits(limits=1, user_api="blas"):
        primary = analyse(
            tables, apply_exclusions=True, seed=seed, resamples=resamples, columns=cols, tie_rule=tie_rule
        )
        if tables.excluded & analysed:
            everyone = analyse(
                tables, apply_exclusions=False, seed=seed, resamples=resamples, columns=cols, tie_rule=tie_rule
            )
        else:
            everyone = primary  # nobody to exclude: the two variants are the same analysis

    statuses = Counter(tables.participant_status.get(p, "unknown") for p in sorted(analysed))
    screened = sorted(
        p for p in analysed if tables.participant_status.get(p) == "screened_out" and p not in tables.excluded
    )
    data = {
        "schema": SCHEMA,
        "study": {
            "slug": tables.slug,
            "title": tables.title,
            "confidence_format": tables.confidence_format,
            "design": tables.design,
            "order": tables.order,
            "tasks": _task_order(tables, [cols.task_names[k] for k in np.unique(cols.task[cols.analysable])]),
        },
        "method": {
            **METHOD_TEXT,
            "tie_rule": tie_rule,
            "vote_tie_rule": tie_rule_text(tie_rule, seed),
            "confidence_format": FORMAT_TEXT.get(tables.confidence_format, tables.confidence_format),
            "bootstrap": {
                "type": "two-way cluster bootstrap: participants and items resampled independently with "
                "replacement, items within strata of task × the set of conditions that showed them",
                "resamples": resamples,
                "seed": seed,
                "interval": "95% percentile",
                "generator": f"numpy.random.default_rng(seed), numpy {np.__version__}",
            },
        },
        "participants": {
            "pilots_left_out": {
                "n_participants": len(np.unique(cols.participant[cols.pilot])),
                "n_trials": int(cols.pilot.sum()),
            },
            "excluded": sorted(tables.excluded & analysed),
            "status_counts": dict(sorted(statuses.items())),
            "screened_out_not_excluded": screened,
        },
        "with_exclusions": primary,
        "without_exclusions": everyone,
    }
    if has_protocols(full):
        with threadpool_limits(limits=1, user_api="blas"):
            data["protocols"] = protocol_section(full, seed=seed, resamples=resamples)
        data["persuasion"] = persuasion_section(full)
    if full.model_trials:
        # Model judges (issue 17): their own block, never in the people's rows above.
        with threadpool_limits(limits=1, user_api="blas"):
            data["model_judges"] = model_judge_section(full, seed=seed, resamples=resamples)
    return Report(data=_clean(data))


def _task_order(tables: StudyTables, present: Sequence[str]) -> list[str]:
    """The study's order of its scored tasks; tasks it does not list come after, by name."""
    ordered = [t for t in tables.tasks if t in present]
    return ordered + sorted(set(present) - set(ordered))


DIFFICULTY = {-1: "unknown", 0: "not hard", 1: "hard"}


def _model_order(model: ModelMethod, endpoint: str) -> tuple:
    """The paper's row order: zero-shot, few-shot, chain of thought; then by key and endpoint."""
    order = {m: i for i, m in enumerate(METHODS)}
    return order.get(model.method, len(order)), model.key, endpoint


def baseline_groups(rows: Sequence[BaselineRow]) -> dict[tuple[str, ModelMethod], list[BaselineRow]]:
    """Results per (endpoint, model method), one per item: the latest run's result, a successful one first."""
    best: dict[tuple[str, ModelMethod, int], BaselineRow] = {}
    for row in rows:
        key = (row.endpoint, row.model_method, row.item_id)
        current = best.get(key)
        rank = (row.correct is not None, row.run_id or 0)
        if current is None or rank >= (current.correct is not None, current.run_id or 0):
            best[key] = row
    groups: dict[tuple[str, ModelMethod], list[BaselineRow]] = defaultdict(list)
    for (endpoint, model, _item), row in best.items():
        groups[endpoint, model].append(row)
    return dict(sorted(groups.items(), key=lambda kv: _model_order(kv[0][1], kv[0][0])))


def model_key(model: ModelMethod, endpoint: str, single_endpoint: bool) -> str:
    return model.key if single_endpoint else f"{endpoint}:{model.key}"


def single_endpoint_of(tables: StudyTables) -> bool:
    """Whether every model-alone result and run comes from one endpoint (then labels and keys leave it out)."""
    return len({r.endpoint for r in tables.baselines} | {r["endpoint"] for r in tables.baseline_runs}) <= 1


@dataclass
class Layout:
    """What one variant analyses and how it is indexed, fixed before any resampling.

    Participants and items get dense global indices (sorted ids); each condition keeps its own grid
    (`arrays`) and the index sets its estimates are taken over (`scopes`, `groups`, `item_sets`).
    """

    rows: np.ndarray  # the analysed rows of the trial columns
    participants: np.ndarray  # their participant ids, sorted (global participant index → id)
    items: np.ndarray  # their item ids, sorted (global item index → id)
    i_of_row: np.ndarray  # each analysed row's global item index
    item_task: np.ndarray  # per global item: task code, subject code, difficulty code (-1 unknown)
    item_subject: np.ndarray
    item_difficulty: np.ndarray
    tasks: list[str]  # the analysed tasks, in the study's order
    task_code: dict[str, int]
    conditions: list[ConditionRow]  # the analysed conditions, by position
    in_condition: dict[int, np.ndarray]  # condition id → mask over `rows`
    arrays: dict[int, ConditionArrays]
    condition_tasks: dict[int, list[str]]  # condition id → the tasks it showed
    scopes: dict[int, dict]  # condition id → {ALL | ("task", t): local item indices}
    groups: dict[int, dict]  # condition id → {("subject" | "difficulty", name): local item indices}
    item_sets: dict  # the models' item sets: ALL, ("task", t), ("condition", id, scope) → global item indices
    baselines: list[BaselineArrays]
    single_endpoint: bool  # one endpoint: a model's key and label leave the endpoint out
    pairs: list[tuple[ConditionRow, ConditionRow]]  # every (assisted, unaided) pair: one sandwich each
    strata: list[np.ndarray]  # the bootstrap's item strata


@dataclass
class Results:
    """The point estimates (`point`, and per scope the counts and bins in `details`) and the resampled series."""

    point: dict
    details: dict
    replicates: dict

    def estimate(self, key) -> dict:
        """A point estimate with its 95% percentile interval and the number of resamples where it is undefined.
        An undefined estimate (null) has no interval, whatever the resamples gave."""
        value = self.point.get(key)
        value = None if value is None or math.isnan(value[0]) else float(value[0])
        out = {"value": value, "ci95": None, "undefined_resamples": 0}
        if key in self.replicates:
            lo, hi, undefined = bootstrap.interval(np.concatenate(self.replicates[key]))
            out["ci95"] = None if lo is None or value is None else [lo, hi]
            out["undefined_resamples"] = undefined
        return out


def analyse(
    tables: StudyTables,
    *,
    apply_exclusions: bool,
    seed: int,
    resamples: int,
    columns: TrialColumns | None = None,
    tie_rule: str = RANDOM,
) -> dict:
    """One variant of the analysis (see the module docstring): lay out, estimate, resample, assemble."""
    cols = columns if columns is not None else trial_columns(tables)
    layout = lay_out(tables, cols, apply_exclusions=apply_exclusions, seed=seed, tie_rule=tie_rule)
    point, details = compute_series(
        layout, np.ones((1, len(layout.participants))), np.ones((1, len(layout.items))), detail=True
    )
    replicates = resample_series(layout, seed=seed, resamples=resamples)
    results = Results(point=point, details=details, replicates=replicates)
    dialogue = condition_dialogue(cols, layout)
    condition_blocks = [condition_block(layout, results, dialogue, c) for c in layout.conditions]
    baseline_blocks = [baseline_block(tables, layout, results, base) for base in layout.baselines]
    splits = model_split_blocks(tables, layout, seed=seed, resamples=resamples)
    return {
        "n_participants": len(layout.participants),
        "n_items": len(layout.items),
        "n_answers": len(layout.rows),
        "participant_ids": layout.participants.tolist(),
        "tasks": layout.tasks,
        "table": paper_table(layout.conditions, condition_blocks, baseline_blocks, splits, layout.tasks, tables),
        "conditions": condition_blocks,
        "baselines": baseline_blocks,
        "model_splits": splits,
        "sandwich": [sandwich_block(layout, results, a, u, seed) for a, u in layout.pairs],
    }


# --- Lay out: the analysed rows, indexed ---------------------------------------------------------------------


def lay_out(
    tables: StudyTables, cols: TrialColumns, *, apply_exclusions: bool, seed: int = DEFAULT_SEED, tie_rule: str = RANDOM
) -> Layout:
    rows = selected_rows(tables, cols, apply_exclusions=apply_exclusions)
    participants = np.unique(cols.participant[rows])
    items = np.unique(cols.item[rows])
    p_of_row = np.searchsorted(participants, cols.participant[rows])
    i_of_row = np.searchsorted(items, cols.item[rows])
    item_task, item_subject, item_difficulty, gold = item_facts(cols, rows, i_of_row, len(items))
    tasks = _task_order(tables, [cols.task_names[k] for k in np.unique(item_task)])
    task_code = {name: cols.task_names.index(name) for name in tasks}

    conditions = analysed_conditions(tables, cols, rows)
    row_condition = cols.condition[rows]
    in_condition = {c.id: row_condition == c.id for c in conditions}
    arrays = {
        c.id: build_condition_arrays(c, cols, rows[m], p_of_row[m], i_of_row[m], gold, tables.confidence_format)
        for c in conditions
        for m in [in_condition[c.id]]
    }
    if tie_rule == RANDOM:
        for c in conditions:
            arr = arrays[c.id]
            arr.priority = tie_priority(seed, c.id, items[arr.items].tolist(), arr.kmax)
    condition_tasks, scopes, groups = {}, {}, {}
    for c in conditions:
        condition_tasks[c.id], scopes[c.id], groups[c.id] = condition_scopes(
            cols, arrays[c.id], item_task, item_subject, item_difficulty, tasks, task_code
        )
    single_endpoint = single_endpoint_of(tables)
    baselines = baseline_arrays(tables.baselines, {item: i for i, item in enumerate(items.tolist())}, single_endpoint)
    return Layout(
        rows=rows,
        participants=participants,
        items=items,
        i_of_row=i_of_row,
        item_task=item_task,
        item_subject=item_subject,
        item_difficulty=item_difficulty,
        tasks=tasks,
        task_code=task_code,
        conditions=conditions,
        in_condition=in_condition,
        arrays=arrays,
        condition_tasks=condition_tasks,
        scopes=scopes,
        groups=groups,
        item_sets=model_item_sets(conditions, arrays, scopes, condition_tasks, item_task, tasks, task_code),
        baselines=baselines,
        single_endpoint=single_endpoint,
        pairs=[(a, u) for a in conditions if a.kind == ASSISTED for u in conditions if u.kind == UNAIDED],
        strata=bootstrap_strata(conditions, in_condition, i_of_row, item_task, len(rows), len(items)),
    )


def selected_rows(tables: StudyTables, cols: TrialColumns, *, apply_exclusions: bool) -> np.ndarray:
    """The analysable rows of non-pilots, less the excluded participants' when exclusions apply."""
    selected = cols.analysable & ~cols.pilot
    if apply_exclusions and tables.excluded:
        selected &= ~np.isin(cols.participant, np.fromiter(tables.excluded, np.int64))
    return np.flatnonzero(selected)


def item_facts(
    cols: TrialColumns, rows: np.ndarray, i_of_row: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per item (global index): its task, subject, difficulty and right answer (given, else a right answer's option)."""
    first = rows[np.unique(i_of_row, return_index=True)[1]]
    gold = np.full(n_items, -1, dtype=np.int64)
    np.maximum.at(gold, i_of_row, cols.gold[rows])
    inferred = np.full(n_items, -1, dtype=np.int64)
    right = cols.correct[rows] == 1
    np.maximum.at(inferred, i_of_row[right], cols.choice[rows][right])
    return cols.task[first], cols.subject[first], cols.difficult[first], np.where(gold >= 0, gold, inferred)


def analysed_conditions(tables: StudyTables, cols: TrialColumns, rows: np.ndarray) -> list[ConditionRow]:
    """The conditions of the analysed rows, by position; one the tables do not list takes a trial's name and kind."""
    known = {c.id: c for c in tables.conditions}
    present = np.unique(cols.condition[rows]).tolist()
    for cid in present:
        if cid not in known:
            t = next(t for t in tables.trials if t.condition_id == cid)
            known[cid] = ConditionRow(id=cid, kind=t.condition_kind, name=t.condition_name, position=10**6)
    return sorted((known[cid] for cid in present), key=lambda c: (c.position, c.id))


def condition_scopes(
    cols: TrialColumns,
    arr: ConditionArrays,
    item_task: np.ndarray,
    item_subject: np.ndarray,
    item_difficulty: np.ndarray,
    tasks: Sequence[str],
    task_code: dict[str, int],
) -> tuple[list[str], dict, dict]:
    """A condition's tasks, its scopes (all items, per task) and its groups (per subject, per known difficulty),
    each as indices into the condition's own items."""
    local_task = item_task[arr.items]
    condition_tasks = [t for t in tasks if (local_task == task_code[t]).any()]
    scopes = {ALL: np.arange(arr.n_items)} | {
        ("task", t): np.flatnonzero(local_task == task_code[t]) for t in condition_tasks
    }
    groups = {}
    local_subject = item_subject[arr.items]
    for code in np.unique(local_subject).tolist():
        if cols.subject_names[code]:
            groups["subject", cols.subject_names[code]] = np.flatnonzero(local_subject == code)
    local_difficulty = item_difficulty[arr.items]
    if (local_difficulty >= 0).any():
        for code in np.unique(local_difficulty).tolist():
            groups["difficulty", DIFFICULTY[code]] = np.flatnonzero(local_difficulty == code)
    return condition_tasks, scopes, groups


def model_item_sets(
    conditions: Sequence[ConditionRow],
    arrays: dict[int, ConditionArrays],
    scopes: dict[int, dict],
    condition_tasks: dict[int, list[str]],
    item_task: np.ndarray,
    tasks: Sequence[str],
    task_code: dict[str, int],
) -> dict:
    """Item sets for the models: all analysed items, per task, and each condition's own items (per task)."""
    item_sets: dict = {ALL: np.arange(len(item_task))}
    for task in tasks:
        item_sets["task", task] = np.flatnonzero(item_task == task_code[task])
    for c in conditions:
        arr = arrays[c.id]
        item_sets["condition", c.id, ALL] = arr.items
        for task in condition_tasks[c.id]:
            item_sets["condition", c.id, ("task", task)] = arr.items[scopes[c.id]["task", task]]
    return item_sets


def baseline_arrays(
    rows: Sequence[BaselineRow], i_index: dict[int, int], single_endpoint: bool
) -> list[BaselineArrays]:
    """One model per (endpoint, model method), keyed by the method alone when every result comes from one endpoint."""
    return [
        build_baseline_arrays(model_key(model, endpoint, single_endpoint), model, endpoint, results, i_index)
        for (endpoint, model), results in baseline_groups(rows).items()
    ]


def bootstrap_strata(
    conditions: Sequence[ConditionRow],
    in_condition: dict[int, np.ndarray],
    i_of_row: np.ndarray,
    item_task: np.ndarray,
    n_rows: int,
    n_items: int,
) -> list[np.ndarray]:
    """Bootstrap strata: an item's task and the set of conditions that showed it."""
    condition_bit = np.zeros(n_rows, dtype=np.int64)
    for position, c in enumerate(conditions):
        condition_bit[in_condition[c.id]] = 1 << position
    shown_in = np.zeros(n_items, dtype=np.int64)
    np.bitwise_or.at(shown_in, i_of_row, condition_bit)
    strata_of: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(item_task.tolist(), shown_in.tolist(), strict=True)):
        strata_of[key].append(i)
    return [np.asarray(strata_of[k]) for k in sorted(strata_of)]


# --- Estimate: the series for given weights, at the point and over the resamples -----------------------------


def compute_series(layout: Layout, w: np.ndarray, c: np.ndarray, *, detail: bool) -> tuple[dict, dict]:
    """Every estimate for rows of participant weights `w` and item weights `c` (one row per resample; all ones
    for the point estimate), keyed by ("condition" | "model" | "sandwich", …); with `detail`, the counts and bins."""
    series: dict = {}
    details: dict = {}
    for cond in layout.conditions:
        arr = layout.arrays[cond.id]
        s, d = condition_series(
            arr, w[:, arr.participants], c[:, arr.items], layout.scopes[cond.id], layout.groups[cond.id], detail=detail
        )
        series.update({("condition", cond.id, *k): v for k, v in s.items()})
        details["condition", cond.id] = d
    for base in layout.baselines:
        s, d = baseline_series(base, c, layout.item_sets, detail=detail)
        series.update({("model", base.key, *k): v for k, v in s.items()})
        details["model", base.key] = d
    for a, u in layout.pairs:
        for scope in [ALL] + [("task", t) for t in layout.condition_tasks[a.id]]:
            sandwich_series(series, layout, a, u, scope)
    return series, details


def sandwich_series(series: dict, layout: Layout, a: ConditionRow, u: ConditionRow, scope) -> None:
    """Adds the sandwich's gaps for one scope to `series`: assisted minus unaided, minus each model, and minus
    the best of the others, the maximum taken in each resample."""
    assisted = series["condition", a.id, "accuracy", scope]
    others = []
    unaided = series.get(("condition", u.id, "accuracy", scope))
    if unaided is not None:
        series["sandwich", a.id, u.id, scope, "gap_unaided"] = assisted - unaided
        others.append(unaided)
    for base in layout.baselines:
        model = series["model", base.key, "accuracy", ("condition", a.id, scope)]
        series["sandwich", a.id, u.id, scope, "gap_model", base.key] = assisted - model
        others.append(model)
    if others:
        with np.errstate(invalid="ignore"):
            best = np.fmax.reduce(np.vstack(others), axis=0)
        series["sandwich", a.id, u.id, scope, "best_other"] = best
        series["sandwich", a.id, u.id, scope, "gap_best"] = assisted - best


def resample_series(layout: Layout, *, seed: int, resamples: int) -> dict:
    """Each series over the two-way cluster bootstrap, in batches of CHUNK resamples: key → list of arrays."""
    replicates: dict = defaultdict(list)
    if resamples and len(layout.rows):
        w_all, c_all = bootstrap.two_way_weights(
            seed, resamples, len(layout.participants), layout.strata, len(layout.items)
        )
        for start in range(0, resamples, CHUNK):
            # float32 weights (from two_way_weights): exact for draw counts, and half the memory traffic of the
            # participant-side sums.
            w = w_all[start : start + CHUNK]
            c = c_all[start : start + CHUNK]
            series, _ = compute_series(layout, w, c, detail=False)
            for key, values in series.items():
                replicates[key].append(values)
    return replicates


# --- Assemble: the blocks of the JSON ------------------------------------------------------------------------


def condition_dialogue(cols: TrialColumns, layout: Layout) -> dict:
    """`dialogue_stats` per (condition id, scope)."""
    dialogue = {}
    for c in layout.conditions:
        mine = layout.rows[layout.in_condition[c.id]]
        dialogue[c.id, ALL] = dialogue_stats(cols, mine)
        for task in layout.condition_tasks[c.id]:
            dialogue[c.id, ("task", task)] = dialogue_stats(cols, mine[cols.task[mine] == layout.task_code[task]])
    return dialogue


def scope_block(results: Results, dialogue: dict, cond: ConditionRow, scope) -> dict:
    d = results.details["condition", cond.id][scope]
    key = ("condition", cond.id)
    est = results.estimate
    return {
        "n_participants": d["n_participants"],
        "n_items": d["n_items"],
        "n_answers": d["n_answers"],
        "accuracy": est((*key, "accuracy", scope)),
        "pooled_accuracy": d["pooled_accuracy"],
        "mean_confidence": est((*key, "mean_confidence", scope)),
        "calibration": {"ce": est((*key, "ce", scope)), "bins": d["bins"]},
        "vote": {
            "n_items": d["vote_n_items"],
            "n_no_opinion": d["vote_n_no_opinion"],
            "accuracy": est((*key, "vote_accuracy", scope)),
            "mean_confidence": d["vote_mean_confidence"],
            "calibration": {"ce": est((*key, "vote_ce", scope)), "bins": d["vote_bins"]},
            "max_confidence": {
                "accuracy": est((*key, "max_confidence_accuracy", scope)),
                "n_items": d["max_confidence_n_items"],
            },
            "ties": {"plurality": d["vote_ties_plurality"], "by_rule": d["vote_ties_by_rule"]},
        },
        "dialogue": dialogue[cond.id, scope],
    }


def condition_block(layout: Layout, results: Results, dialogue: dict, c: ConditionRow) -> dict:
    key = ("condition", c.id)
    d = results.details[key]
    est = results.estimate
    groups = layout.groups[c.id]
    return {
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "all": scope_block(results, dialogue, c, ALL),
        "by_task": {task: scope_block(results, dialogue, c, ("task", task)) for task in layout.condition_tasks[c.id]},
        "by_subject": {g[1]: {"accuracy": est((*key, "accuracy", g)), **d[g]} for g in groups if g[0] == "subject"},
        "by_difficulty": {
            g[1]: {"accuracy": est((*key, "accuracy", g)), **d[g]} for g in groups if g[0] == "difficulty"
        },
        "learning": {
            "n_participants": d["learning_n_participants"],
            "first_half": est((*key, "learning_first_half", ALL)),
            "second_half": est((*key, "learning_second_half", ALL)),
            "difference": est((*key, "learning_difference", ALL)),
            "n_improved": d["learning_n_improved"],
            "n_unchanged": d["learning_n_unchanged"],
            "n_declined": d["learning_n_declined"],
        },
    }


def model_block(results: Results, base: BaselineArrays, item_set) -> dict:
    d = results.details["model", base.key][item_set]
    return {
        "n_items": d["n_items"],
        "accuracy": results.estimate(("model", base.key, "accuracy", item_set)),
        "ce": results.estimate(("model", base.key, "ce", item_set)),
        "bins": d["bins"],
    }


def _runs_of(tables: StudyTables, model: ModelMethod, endpoint: str, single_endpoint: bool) -> list[dict]:
    return [
        r
        for r in tables.baseline_runs
        if ModelMethod(**r["model"]) == model and (single_endpoint or r["endpoint"] == endpoint)
    ]


def baseline_block(tables: StudyTables, layout: Layout, results: Results, base: BaselineArrays) -> dict:
    single_endpoint = layout.single_endpoint
    return {
        "key": base.key,
        "label": _model_label(base.model, base.endpoint, single_endpoint),
        "method": base.method,
        "method_detail": base.model.to_dict(),
        "endpoint": base.endpoint,
        "n_results": int(base.has_result.sum()),
        "n_errors": base.n_errors,
        "runs": _runs_of(tables, base.model, base.endpoint, single_endpoint),
        "all": model_block(results, base, ALL),
        "by_task": {task: model_block(results, base, ("task", task)) for task in layout.tasks},
    }


def sandwich_block(layout: Layout, results: Results, a: ConditionRow, u: ConditionRow, seed: int) -> dict:
    return {
        "assisted": {"id": a.id, "name": a.name},
        "unaided": {"id": u.id, "name": u.name},
        "all": sandwich_scope(layout, results, a, u, ALL, seed),
        "by_task": {
            task: sandwich_scope(layout, results, a, u, ("task", task), seed) for task in layout.condition_tasks[a.id]
        },
    }


def sandwich_scope(layout: Layout, results: Results, a: ConditionRow, u: ConditionRow, scope, seed: int) -> dict:
    """One sandwich in one scope: assisted, unaided, each model on the assisted items, the gaps, the paired tests."""
    key = ("sandwich", a.id, u.id, scope)
    point, est, baselines = results.point, results.estimate, layout.baselines
    a_items = set(layout.item_sets["condition", a.id, scope].tolist())
    u_set = layout.item_sets.get(("condition", u.id, scope))
    u_items = set(u_set.tolist()) if u_set is not None else set()
    models = {}
    for base in baselines:
        models[base.key] = model_block(results, base, ("condition", a.id, scope))
    others = {}
    if (*key, "gap_unaided") in point:
        others[_condition_label(u, layout.conditions)] = point["condition", u.id, "accuracy", scope][0]
    for base in baselines:
        others[_model_label(base.model, base.endpoint, layout.single_endpoint)] = point[
            "model", base.key, "accuracy", ("condition", a.id, scope)
        ][0]
    defined = {k: v for k, v in others.items() if not math.isnan(v)}
    best_label = max(defined, key=defined.get) if defined else None
    return {
        "same_items": a_items == u_items,
        "n_items_assisted": len(a_items),
        "n_items_unaided": len(u_items),
        "assisted": est(("condition", a.id, "accuracy", scope)),
        "unaided": est(("condition", u.id, "accuracy", scope)) if u_items else None,
        "models": models,
        "best_other": {"label": best_label, "accuracy": est((*key, "best_other"))} if others else None,
        "gaps": {
            "assisted_minus_unaided": est((*key, "gap_unaided")) if u_items else None,
            "assisted_minus_model": {b.key: est((*key, "gap_model", b.key)) for b in baselines},
            "assisted_minus_best_other": est((*key, "gap_best")) if others else None,
        },
        "paired_tests": {
            b.key: paired_tests(layout.arrays[a.id], b, layout.scopes[a.id][scope], seed) for b in baselines
        },
    }


def _condition_label(cond: ConditionRow, conditions: Sequence[ConditionRow]) -> str:
    same_kind = [c for c in conditions if c.kind == cond.kind]
    base = "Assisted" if cond.kind == ASSISTED else "Unaided"
    return base if len(same_kind) == 1 else f"{base}: {cond.name}"


def _model_label(model: ModelMethod, endpoint: str, single_endpoint: bool) -> str:
    return model.label if single_endpoint else f"{model.label}, {endpoint}"


def model_split_blocks(tables: StudyTables, layout: Layout, *, seed: int, resamples: int) -> list[dict]:
    """Each model-alone baseline on the split its runs covered (the paper's number): one block per (endpoint, model
    method), a cell per analysed task from the latest finished run over that task's bank (whichever split)."""
    single = layout.single_endpoint
    chosen: dict[tuple[str, ModelMethod], dict[str, dict]] = defaultdict(dict)
    for run in tables.baseline_runs:
        if run["scope"] != "bank" or not run.get("n_items"):
            continue  # a run over the study's items is the paired row; a run without a summary has no number yet
        for task in run["tasks"]:
            if task not in layout.tasks:
                continue
            runs = chosen[run["endpoint"], ModelMethod(**run["model"])]
            current = runs.get(task)
            if current is None or (run["status"] == "done", run["id"]) > (current["status"] == "done", current["id"]):
                runs[task] = run
    blocks = []
    for (endpoint, model), runs in sorted(chosen.items(), key=lambda kv: _model_order(kv[0][1], kv[0][0])):
        key = model_key(model, endpoint, single)
        blocks.append(
            {
                "key": f"{key}@split",
                "model_key": key,
                "label": f"{_model_label(model, endpoint, single)} on its split",
                "method": model.method,
                "method_detail": model.to_dict(),
                "endpoint": endpoint,
                "by_task": {
                    task: {"split": runs[task]["split"], **split_cell(runs[task], seed=seed, resamples=resamples)}
                    for task in layout.tasks
                    if task in runs
                },
            }
        )
    return blocks


def split_cell(run: dict, *, seed: int, resamples: int) -> dict:
    """A model's accuracy over a run's labelled answers, with the item bootstrap's interval (resampling n items with
    replacement is a binomial draw, made here from `default_rng([seed, run id])`), and its calibration."""
    n, right = int(run["n_items"]), int(run["n_correct"])
    accuracy = {"value": 100 * right / n, "ci95": None, "undefined_resamples": 0}
    if resamples:
        draws = 100 * np.random.default_rng([seed, int(run["id"])]).binomial(n, right / n, size=resamples) / n
        lo, hi, undefined = bootstrap.interval(draws)
        accuracy.update(ci95=[lo, hi], undefined_resamples=undefined)
    bins = run.get("bins") or []
    ce = float(ce_from_bins(np.asarray([b["right"] for b in bins], float), np.asarray([b["n"] for b in bins], float)))
    return {
        "run_id": run["id"],
        "n_items": n,
        "n_correct": right,
        "n_errors": run.get("n_errors"),
        "accuracy": accuracy,
        "ce": {"value": None if math.isnan(ce) else ce, "ci95": None, "undefined_resamples": 0},
        "bins": [
            {"centre": b["centre"], "n": b["n"], "accuracy": 100 * b["right"] / b["n"] if b["n"] else None}
            for b in bins
        ],
    }


EXPERT_LABEL = "Expert human (published)"
NO_ESTIMATE = {"value": None, "ci95": None, "undefined_resamples": 0}


def paper_table(conditions, condition_blocks, baseline_blocks, splits, tasks, tables: StudyTables) -> dict:
    """Table 1 of the paper, a column per task: unaided and its vote; each model on its split and on the study's
    items; assisted and its vote; the experts' published reference."""
    columns = list(tasks) + (["All"] if len(tasks) > 1 else [])
    blocks = {b["id"]: b for b in condition_blocks}

    def scope_of(block, column):
        return block["all"] if column == "All" else block["by_task"].get(column)

    def human_rows(cond):
        block = blocks[cond.id]
        individual, vote = {}, {}
        for column in columns:
            s = scope_of(block, column)
            if s is None:
                continue
            individual[column] = {
                "accuracy": s["accuracy"],
                "ce": s["calibration"]["ce"],
                "n_items": s["n_items"],
                "n_participants": s["n_participants"],
                "n_answers": s["n_answers"],
            }
            vote[column] = {
                "accuracy": s["vote"]["accuracy"],
                "ce": s["vote"]["calibration"]["ce"],
                "n_items": s["vote"]["n_items"],
                "n_participants": s["n_participants"],
                "n_answers": s["n_answers"],
            }
        label = _condition_label(cond, conditions)
        common = {"condition_id": cond.id, "baseline": None, "reference": False}
        return [
            {"key": f"condition:{cond.id}", "label": label, "kind": "individual", **common, "cells": individual},
            {"key": f"condition:{cond.id}:vote", "label": f"{label} vote", "kind": "vote", **common, "cells": vote},
        ]

    def study_items_row(block):
        cells = {}
        for column in columns:
            s = block["all"] if column == "All" else block["by_task"].get(column)
            if s is not None and s["n_items"]:
                cells[column] = {
                    "accuracy": s["accuracy"],
                    "ce": s["ce"],
                    "n_items": s["n_items"],
                    "n_participants": None,
                    "n_answers": s["n_items"],
                }
        return {
            "key": f"model:{block['key']}",
            "label": f"{block['label']} on the study's items",
            "kind": "model",
            "scope": "study_items",
            "method": block["method_detail"],
            "endpoint": block["endpoint"],
            "condition_id": None,
            "baseline": block["key"],
            "reference": False,
            "cells": cells,
        }

    def split_row(split):
        cells = {
            task: {
                "accuracy": c["accuracy"],
                "ce": c["ce"],
                "n_items": c["n_items"],
                "n_participants": None,
                "n_answers": c["n_items"],
                "split": c["split"],
                "run_id": c["run_id"],
            }
            for task, c in split["by_task"].items()
        }
        return {
            "key": f"model-split:{split['key']}",
            "label": split["label"],
            "kind": "model_split",
            "scope": "split",
            "method": split["method_detail"],
            "endpoint": split["endpoint"],
            "condition_id": None,
            "baseline": split["model_key"],
            "reference": False,
            "cells": cells,
        }

    rows = []
    for cond in conditions:
        if cond.kind != ASSISTED:
            rows += human_rows(cond)
    models = {b["key"]: (ModelMethod(**b["method_detail"]), b["endpoint"]) for b in baseline_blocks}
    models.update({s["model_key"]: (ModelMethod(**s["method_detail"]), s["endpoint"]) for s in splits})
    for key in sorted(models, key=lambda k: _model_order(*models[k])):
        rows += [split_row(s) for s in splits if s["model_key"] == key]
        rows += [study_items_row(b) for b in baseline_blocks if b["key"] == key]
    for cond in conditions:
        if cond.kind == ASSISTED:
            rows += human_rows(cond)
    experts = {
        task: {
            "accuracy": {**NO_ESTIMATE, "value": EXPERT_ACCURACY[tables.task_formats[task]]},
            "ce": NO_ESTIMATE,
            "n_items": None,
            "n_participants": None,
            "n_answers": None,
        }
        for task in tasks
        if tables.task_formats.get(task) in EXPERT_ACCURACY
    }
    if experts:
        rows.append(
            {
                "key": "expert",
                "label": EXPERT_LABEL,
                "kind": "expert",
                "source": EXPERT_SOURCE,
                "condition_id": None,
                "baseline": None,
                "reference": True,
                "cells": experts,
            }
        )
    return {"columns": columns, "rows": rows}


def paired_tests(arr, base: BaselineArrays, cols: np.ndarray, seed: int) -> dict:
    """Assisted vs one model on the condition's items (in `cols`) that the model answered."""
    global_items = arr.items[cols]
    keep = base.has_result[global_items]
    cols, global_items = cols[keep], global_items[keep]
    answered = arr.answered[:, cols].sum(0)
    human = arr.correct[:, cols].sum(0) / np.where(answered > 0, answered, 1)
    model = base.correct[global_items]
    individual = bootstrap.sign_flip_test((human - model).tolist(), seed=seed)

    # The vote's right/wrong per item, with every participant counted once (the point estimate's vote).
    vote = point_vote(arr)
    vote_correct = vote.correct[0, cols].astype(bool)
    vote_test = bootstrap.mcnemar_exact(vote_correct.tolist(), model.astype(bool).tolist())
    return {"individual": individual, "vote": vote_test}


def dialogue_stats(cols: TrialColumns, rows: np.ndarray) -> dict:
    """Per-item means over a condition's answered trials (RESEARCH.md §5: turns and resets per item)."""
    n = len(rows)
    seconds = cols.seconds[rows]
    seconds = seconds[~np.isnan(seconds)]
    quotes = int(cols.quotes[rows].sum())
    kinds = np.bincount(cols.submit_kind[rows], minlength=len(cols.submit_kind_names))
    return {
        "n_trials": n,
        "turns_per_item": float(cols.turns[rows].mean()) if n else None,
        "resets_per_item": float(cols.resets[rows].mean()) if n else None,
        "seconds_per_item_mean": float(seconds.mean()) if len(seconds) else None,
        "seconds_per_item_median": float(np.median(seconds)) if len(seconds) else None,
        "quotes_per_item": quotes / n if n else None,
        "items_with_quotes_share": float(100 * (cols.quotes[rows] > 0).mean()) if n else None,
        "quotes_verified_share": 100 * int(cols.quotes_verified[rows].sum()) / quotes if quotes else None,
        "timed_out_share": float(100 * cols.timed_out[rows].mean()) if n else None,
        "submit_kinds": {name: int(k) for name, k in zip(cols.submit_kind_names, kinds, strict=True) if k},
    }


def _clean(value):
    """JSON-safe: NaN/inf → None, numpy scalars → Python, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- Markdown -----------------------------------------------------------------------------------------------


def _num(value, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _est(e: dict | None, sign: bool = False) -> str:
    if not e or e["value"] is None:
        return "–"
    text = _num(e["value"], sign=sign)
    if e.get("ci95"):
        lo, hi = e["ci95"]
        text += f" [{_num(lo, sign=sign)}, {_num(hi, sign=sign)}]"
    return text


def _p(value) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def markdown_table(analysis: dict) -> list[str]:
    table = analysis["table"]
    columns = table["columns"]
    if not columns:
        return ["_No analysed trials._"]
    head = "| | " + " | ".join(f"{c} accuracy [95% CI] | {c} CE | {c} N" for c in columns) + " |"
    align = "|---|" + "|".join("---:|---:|---:" for _ in columns) + "|"
    lines = [head, align]
    for row in table["rows"]:
        cells = []
        for column in columns:
            cell = row["cells"].get(column)
            if cell is None:
                cells += ["–", "–", "–"]
            elif row["reference"]:
                cells += [f"{_num(cell['accuracy']['value'])} (reference)", "–", "–"]
            elif row["kind"] == "model_split":
                split = cell["split"] or "all"
                cells += [_est(cell["accuracy"]), _num(cell["ce"]["value"]), f"{cell['n_items']} ({split})"]
            else:
                cells += [_est(cell["accuracy"]), _num(cell["ce"]["value"]), str(cell["n_items"])]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Accuracy and CE in %; N = items. Individual rows: mean over participants of each participant's "
        "accuracy; vote rows: confidence-weighted majority vote per item (an item nobody selected an option for "
        "counts as wrong). Model rows: the model alone on the split its run covered (the paper's number; N names "
        "the split) and on the study's own items (the paired comparison). Expert human: published reference "
        "values, not measured."
    )
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def markdown_key_numbers(analysis: dict, conditions_label) -> list[str]:
    lines = []
    model_labels = {b["key"]: b["label"] for b in analysis["baselines"]}
    for pair in analysis["sandwich"]:
        scopes = [("All tasks", pair["all"])] if len(pair["by_task"]) != 1 else []
        scopes += list(pair["by_task"].items())
        for name, s in scopes:
            parts = [f"assisted {_est(s['assisted'])}"]
            if s["unaided"]:
                parts.append(f"unaided {_est(s['unaided'])}" + ("" if s["same_items"] else " (other items)"))
            for key, m in s["models"].items():
                parts.append(f"{model_labels[key]} {_est(m['accuracy'])}")
            line = f"- **Sandwich, {name}** ({pair['assisted']['name']} vs {pair['unaided']['name']}): " + "; ".join(
                parts
            )
            if s["best_other"]:
                line += (
                    f". Assisted − best other ({s['best_other']['label']}): "
                    f"{_est(s['gaps']['assisted_minus_best_other'], sign=True)} pp"
                )
            tests = [
                f"{model_labels[key]}: p = {_p(t['individual']['p_value'])} (sign-flip, "
                f"{_count(t['individual']['n_items'], 'item')}), "
                f"vote p = {_p(t['vote']['p_value'])} (McNemar)"
                for key, t in s["paired_tests"].items()
            ]
            if tests:
                line += ". Paired vs model — " + "; ".join(tests)
            lines.append(line + ".")
    for c in analysis["conditions"]:
        label = conditions_label(c)
        a = c["all"]
        lines.append(
            f"- **{label}**: accuracy {_est(a['accuracy'])} (pooled {_num(a['pooled_accuracy'])}); "
            f"mean confidence {_est(a['mean_confidence'])}; CE {_est(a['calibration']['ce'])}; "
            f"vote {_est(a['vote']['accuracy'])}; max-confidence vote subset "
            f"{_est(a['vote']['max_confidence']['accuracy'])} (N = {a['vote']['max_confidence']['n_items']}); "
            f"{_count(a['n_participants'], 'participant')} × {_count(a['n_items'], 'item')}."
        )
        d = a["dialogue"]
        if c["kind"] == ASSISTED:
            verified = d["quotes_verified_share"]
            lines.append(
                f"  Dialogue: {_num(d['turns_per_item'])} turns and {_num(d['resets_per_item'])} resets per "
                f"item; {_num(d['seconds_per_item_mean'], 0)} s per item (median "
                f"{_num(d['seconds_per_item_median'], 0)}); {_num(d['quotes_per_item'], 2)} quotes per item, "
                f"{_num(verified, 0)}% verified."
            )
        else:
            lines.append(
                f"  Time: {_num(d['seconds_per_item_mean'], 0)} s per item (median "
                f"{_num(d['seconds_per_item_median'], 0)})."
            )
        learning = c["learning"]
        lines.append(
            f"  Learning: first half {_est(learning['first_half'])} → second half "
            f"{_est(learning['second_half'])}, difference {_est(learning['difference'], sign=True)} pp "
            f"({_count(learning['n_participants'], 'participant')}: {learning['n_improved']} improved, "
            f"{learning['n_unchanged']} unchanged, {learning['n_declined']} declined)."
        )
    return lines


# The method statement, in the order the Markdown and the console show it.
METHOD_KEYS = (
    "accuracy",
    "vote",
    "empty_timeouts",
    "vote_tie_rule",
    "vote_confidence",
    "calibration",
    "confidence_format",
    "mean_confidence",
    "learning_effect",
    "models",
    "expert",
    "sandwich",
    "dialogue",
    "paired_tests",
    "inclusion",
    "units",
)


def render_markdown(data: dict) -> str:
    study = data["study"]
    method = data["method"]
    boot = method["bootstrap"]
    people = data["participants"]
    primary, everyone = data["with_exclusions"], data["without_exclusions"]

    def label_for(analysis):
        rows = {r["condition_id"]: r["label"] for r in analysis["table"]["rows"] if r["kind"] == "individual"}
        return lambda c: rows.get(c["id"], c["name"])

    excluded = ", ".join(f"P{p}" for p in people["excluded"]) or "none"
    lines = [
        f"# Sandwiching report: {study['title'] or study['slug']} (`{study['slug']}`)",
        "",
        f"Confidence format: {study['confidence_format']}. Pilots left out: "
        f"{people['pilots_left_out']['n_participants']}. Excluded: {excluded}.",
        f"95% intervals: {boot['type']}; {boot['resamples']:,} resamples, seed {boot['seed']}.",
        "",
        f"## Table 1, exclusions applied ({_count(primary['n_participants'], 'participant')}, "
        f"{_count(primary['n_items'], 'item')})",
        "",
        *markdown_table(primary),
        "",
        "## Key numbers (exclusions applied)",
        "",
        *markdown_key_numbers(primary, label_for(primary)),
        "",
        f"## Table 1, without exclusions ({_count(everyone['n_participants'], 'participant')})",
        "",
    ]
    if everyone is primary or everyone == primary:
        lines.append("Nobody was excluded: the same as above.")
    else:
        lines += markdown_table(everyone)
        lines += [
            "",
            *[line for line in markdown_key_numbers(everyone, label_for(everyone)) if line.startswith("- **Sandwich")],
        ]
    if people["screened_out_not_excluded"]:
        lines += [
            "",
            "Screened out but not excluded (included above): "
            + ", ".join(f"P{p}" for p in people["screened_out_not_excluded"])
            + ".",
        ]
    if "protocols" in data:
        lines += ["", *protocol_markdown(data["protocols"])]
    if data.get("persuasion", {}).get("configurations"):
        lines += ["", *persuasion_markdown(data["persuasion"])]
    if "model_judges" in data:
        lines += ["", *model_judge_markdown(data["model_judges"])]
    lines += ["", "## Method", ""]
    for key in METHOD_KEYS:
        lines.append(f"- **{key.replace('_', ' ').capitalize()}.** {method[key]}")
    lines.append(
        f"- **Bootstrap.** {boot['type']}; {boot['interval']} intervals; {boot['resamples']:,} resamples; "
        f"seed {boot['seed']}; {boot['generator']}."
    )
    return "\n".join(lines) + "\n"
