"""The report per item: for each condition × item, the answers, the share right, the confidence-weighted vote,
the gold and each model's answer — what the console's items page lists, beside the report's aggregate numbers."""

from __future__ import annotations

from collections import defaultdict

from oversight.analysis.metrics import RANDOM, answer_probabilities, tie_priority, weighted_vote
from oversight.analysis.report import DEFAULT_SEED, analysed_trials, baseline_groups, model_key, single_endpoint_of
from oversight.analysis.tables import ASSISTED, StudyTables


def item_rows(
    tables: StudyTables,
    *,
    apply_exclusions: bool,
    positions=None,
    info=None,
    seed: int = DEFAULT_SEED,
    tie_rule: str = RANDOM,
) -> list[dict]:
    """Per condition × item: answers, share right, the confidence-weighted vote, the gold and each model's answer.

    Same inclusion rules and vote as the report (`metrics.weighted_vote`, the study's confidence format, the same
    tie rule and seed; an item where nobody selected an option has no vote and counts as wrong). `positions` maps
    (participant, condition, item) to the trial's position (for transcript anchors); `info` maps an item id to its
    `external_id` and `subject`.
    """
    positions = positions or {}
    info = info or {}
    by_key: dict[tuple[int, int], list] = defaultdict(list)
    for t in analysed_trials(tables, apply_exclusions=apply_exclusions):
        by_key[t.condition_id, t.item_id].append(t)
    models: dict[int, dict[str, dict]] = defaultdict(dict)
    single_endpoint = single_endpoint_of(tables)
    for (endpoint, method), results in baseline_groups(tables.baselines).items():
        key = model_key(method, endpoint, single_endpoint)
        for r in results:
            if r.correct is not None and r.predicted is not None:
                models[r.item_id][key] = {"predicted": r.predicted, "correct": bool(r.correct)}
    conditions = {c.id: c for c in tables.conditions}
    order = {c.id: (c.kind == ASSISTED, c.position, c.id) for c in tables.conditions}
    rows = []
    for (cid, item), trials in sorted(by_key.items(), key=lambda kv: (order.get(kv[0][0], (2, 0, 0)), kv[0][1])):
        first = trials[0]
        gold = next((t.gold for t in trials if t.gold is not None and t.gold >= 0), None)
        vote = weighted_vote(
            [
                (
                    t.choice,
                    answer_probabilities(
                        choice=t.choice,
                        confidence=t.confidence,
                        n_options=t.n_options,
                        confidence_format=tables.confidence_format,
                        distribution=t.distribution,
                    ),
                )
                for t in trials
            ],
            first.n_options,
            priority=tie_priority(seed, cid, [item], first.n_options)[0] if tie_rule == RANDOM else None,
        )
        right = sum(bool(t.correct) for t in trials)
        rows.append(
            {
                "condition_id": cid,
                "condition": conditions[cid].name if cid in conditions else first.condition_name,
                "item_id": item,
                "external_id": info.get(item, {}).get("external_id", ""),
                "subject": info.get(item, {}).get("subject", first.subject),
                "task": first.task,
                "gold": gold,
                "n_answers": len(trials),
                "n_right": right,
                "accuracy": 100 * right / len(trials),
                "no_opinion": vote is None,
                "vote": None
                if vote is None
                else {
                    "choice": vote.choice,
                    "confidence": 100 * vote.confidence,
                    "correct": gold is not None and vote.choice == gold,
                    "tie_break": vote.tie_break,
                },
                "models": models.get(item, {}),
                "answers": sorted(
                    (t.participant_id, positions.get((t.participant_id, cid, item)), bool(t.correct)) for t in trials
                ),
            }
        )
    return rows
