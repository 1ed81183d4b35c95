"""The report's model-judge block (issue 17): each model judge's rows beside the people's, labelled as such, and
the hybrid verdicts of people and model on the items both judged.

Model judges' trials arrive apart (`StudyTables.model_trials`): nothing else in the report reads them, so no
people's row ever pools a model's answers. Here, per model judge (one judge run: its label names the model and the
mode) and condition:

* **alone**: accuracy (mean over items of the share of its answers that were right: a replay judges an item once
  per person who judged it), mean p(correct), Brier score, over the answers at stake (the two a protocol showed,
  else every option), with 95 % intervals from the bootstrap over items;
* **people on the same items** (exclusions applied, pilots never): the same numbers for the people's answers to the
  items the model judged: the paired comparison;
* **hybrid verdicts** (`analysis.hybrid`): humans, model, deferral and the log-linear pool, with the threshold and
  the weight chosen by cross-validation over items.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .bootstrap import draw_counts, interval
from .hybrid import HybridItem, hybrid_analysis, restricted
from .protocols import answer_probabilities_at_stake
from .tables import FINAL_STATUSES, SCORED, StudyTables, TrialRow

METHOD = (
    "Model judges are participants of kind `model` made by a judge run; their answers are analysed here only, never "
    "pooled with people's. Replay: the model judged exactly the material each person judged (the text of the page "
    "they saw); live: it took the judge's seat itself. A model's probability for an item is the mean of its answers' "
    "probabilities over the answers at stake."
)


def _judgements(tables: StudyTables) -> dict[tuple[int, int], tuple[int, ...]]:
    """(condition, item) → the answers a protocol showed for it (the first person's order)."""
    shown: dict[tuple[int, int], tuple[int, ...]] = {}
    if tables.protocols is not None:
        for j in tables.protocols.judgements:
            shown.setdefault((j.condition_id, j.item_id), tuple(sorted(j.options)))
    return shown


def _judgement_of(tables: StudyTables):
    rows = {}
    if tables.protocols is not None:
        rows = {(j.participant_id, j.condition_id, j.item_id): j for j in tables.protocols.judgements}
    return rows


def _final(trial: TrialRow) -> bool:
    return trial.role == SCORED and trial.status in FINAL_STATUSES and trial.gold is not None


def _model_vector(trial: TrialRow, options: Sequence[int]) -> dict[int, float]:
    if trial.distribution:
        return restricted(dict(enumerate(trial.distribution)), options)
    if trial.choice is None or trial.confidence is None:
        return {o: 1 / len(options) for o in options}
    p = min(max(trial.confidence / 100, 0.0), 1.0)
    rest = (1 - p) / max(len(options) - 1, 1)
    return {o: p if o == trial.choice else rest for o in options}


def _estimate(point: float, replicates: np.ndarray) -> dict:
    lo, hi, undefined = interval(replicates)
    return {"value": round(float(point), 4), "ci95": [lo, hi], "undefined": undefined}


def _scores(vectors: dict[int, list[dict[int, float]]], gold: dict[int, int], items: list[int], seed, resamples):
    """Accuracy, p(correct) and Brier over `items` (each item the mean over its answers), with intervals."""
    right, p_gold, brier = [], [], []
    for item in items:
        answers = vectors[item]
        right.append(np.mean([max(v, key=lambda o: (v[o], -o)) == gold[item] for v in answers]))
        p_gold.append(np.mean([v.get(gold[item], 0.0) for v in answers]))
        brier.append(np.mean([sum((p - (o == gold[item])) ** 2 for o, p in v.items()) for v in answers]))
    n = len(items)
    counts = draw_counts(np.random.default_rng([seed, 23]), n, resamples).astype(np.float64)
    size = counts.sum(axis=1)
    out = {"n_items": n, "n_answers": sum(len(vectors[i]) for i in items)}
    for name, values, scale in (("accuracy", right, 100), ("p_correct", p_gold, 100), ("brier", brier, 1)):
        v = np.asarray(values, dtype=float)
        out[name] = _estimate(scale * v.mean() if n else float("nan"), scale * (counts @ v) / size)
    return out


def model_judge_section(tables: StudyTables, *, seed: int, resamples: int) -> dict:
    shown = _judgements(tables)
    judgement_of = _judgement_of(tables)
    names = {c.id: (c.name, c.kind) for c in tables.conditions}
    by_judge: dict[tuple, list[TrialRow]] = defaultdict(list)
    for t in tables.model_trials:
        if _final(t) and t.participant_id not in tables.excluded:  # a researcher may exclude a model judge too
            info = tables.model_judges.get(t.participant_id, {})
            key = (info.get("run_id") or f"p{t.participant_id}", t.condition_id)
            by_judge[key].append(t)
    people = [
        t
        for t in tables.trials
        if _final(t) and t.participant_id not in tables.pilots and t.participant_id not in tables.excluded
    ]
    rows = []
    for (_run, condition_id), trials in sorted(by_judge.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        info = tables.model_judges.get(trials[0].participant_id, {})
        gold = {t.item_id: t.gold for t in trials}
        options = {t.item_id: shown.get((condition_id, t.item_id), tuple(range(t.n_options))) for t in trials}
        model_vectors: dict[int, list[dict[int, float]]] = defaultdict(list)
        for t in trials:
            model_vectors[t.item_id].append(_model_vector(t, options[t.item_id]))
        human_vectors: dict[int, list[dict[int, float]]] = defaultdict(list)
        for t in people:
            if t.condition_id == condition_id and t.item_id in gold:
                judgement = judgement_of.get((t.participant_id, condition_id, t.item_id))
                at_stake = answer_probabilities_at_stake(t, judgement, tables.confidence_format)
                if at_stake is not None:
                    human_vectors[t.item_id].append(restricted(at_stake, options[t.item_id]))
        items = sorted(model_vectors)
        both = [i for i in items if human_vectors.get(i)]
        hybrid_items = [
            HybridItem(
                item_id=i,
                gold=gold[i],
                options=options[i],
                human=tuple(human_vectors[i]),
                model={o: float(np.mean([v[o] for v in model_vectors[i]])) for o in options[i]},
            )
            for i in both
        ]
        name, kind = names.get(condition_id, ("", ""))
        rows.append(
            {
                "label": info.get("label", "Model judge"),
                "run_id": info.get("run_id"),
                "mode": info.get("mode", ""),
                "method": info.get("method", ""),
                "condition_id": condition_id,
                "condition_name": name,
                "condition_kind": kind,
                "model": _scores(model_vectors, gold, items, seed, resamples),
                "people_same_items": _scores(human_vectors, gold, both, seed, resamples) if both else None,
                "hybrid": hybrid_analysis(hybrid_items, seed=seed, resamples=resamples),
            }
        )
    return {"method": METHOD, "judges": rows}


def _fmt(e: dict | None, digits: int = 1) -> str:
    if not e or e.get("value") is None:
        return "–"
    lo, hi = e.get("ci95") or (None, None)
    text = f"{e['value']:.{digits}f}"
    return text + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else "")


def model_judge_markdown(section: dict) -> list[str]:
    """The block as Markdown lines: each model judge's rows beside the people's, then its hybrid verdicts."""
    lines = [
        "## Model judges (analysed apart from people)",
        "",
        section["method"],
        "",
        "| Judge | Condition | Who | Accuracy [95% CI] | p(correct) | Brier | Items | Answers |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in section["judges"]:
        for who, s in (("model", row["model"]), ("people, same items", row["people_same_items"])):
            if s:
                lines.append(
                    f"| {row['label']} | {row['condition_name']} | {who} | {_fmt(s['accuracy'])} | "
                    f"{_fmt(s['p_correct'])} | {_fmt(s['brier'], 3)} | {s['n_items']} | {s['n_answers']} |"
                )
    for row in section["judges"]:
        hybrid = row["hybrid"]
        if not hybrid["n_items"]:
            continue
        lines += [
            "",
            f"### Hybrid verdicts: {row['label']}, {row['condition_name']} ({hybrid['n_items']} items)",
            "",
            hybrid["method"],
            "",
            "| Rule | Accuracy [95% CI] | p(correct) | Brier | ECE |",
            "|---|---:|---:|---:|---:|",
        ]
        for rule in hybrid["rules"].values():
            lines.append(
                f"| {rule['label']} | {_fmt(rule['accuracy'])} | {_fmt(rule['p_correct'])} | "
                f"{_fmt(rule['brier'], 3)} | {_fmt(rule['ece'])} |"
            )
        lines.append("")
        for key, d in hybrid["differences"].items():
            lines.append(f"- {key.replace('_', ' ')}: {_fmt(d)} points.")
        thresholds = ", ".join(f"{f['threshold']:g}" for f in hybrid["folds"])
        weights = ", ".join(f"{f['weight']:g}" for f in hybrid["folds"])
        lines.append(f"- Thresholds used per fold: {thresholds}; pool weights per fold: {weights}.")
    return lines
