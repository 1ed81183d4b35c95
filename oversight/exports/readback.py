"""Read an export back: its tables as rows, and the analysis's input (`StudyTables`) rebuilt from the files alone.

    from oversight.exports.readback import study_tables
    from oversight.analysis.report import build_report
    report = build_report(study_tables("unzipped/rep-export-20260301T090000Z", fmt="parquet"), seed=0)

gives the same report as `manage.py sandwich_report` on the database the export came from (with the export's
participants: pilots only count toward `pilots_left_out` when the export includes them). Nothing here touches
the database or Django.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from oversight.analysis.protocols import PROTOCOL_KINDS, JudgementRow, ProtocolTables, turn_row
from oversight.analysis.tables import BaselineRow, ConditionRow, StudyTables, TrialRow, baseline_run, model_judge
from oversight.assistant.advocates import speaker_label
from oversight.exports import dictionary
from oversight.exports.writers import EXTENSIONS, read_rows


def read_table(folder: Path | str, table: str, fmt: str = "parquet") -> Iterator[dict]:
    """The rows of one exported table as dicts of Python values."""
    path = Path(folder) / fmt / f"{table}.{EXTENSIONS[fmt]}"
    return read_rows(path, dictionary.table(table).columns, fmt)


def participant_pk(participant_id: str) -> int:
    """`P12` → 12 (the analysis identifies participants by number)."""
    if not participant_id.startswith("P"):
        raise ValueError(f"not a participant id: {participant_id!r}")
    return int(participant_id[1:])


def study_tables(folder: Path | str, fmt: str = "parquet") -> StudyTables:
    folder = Path(folder)
    meta = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    study = meta["study"]

    condition_rows = list(read_table(folder, "conditions", fmt))
    conditions = sorted(
        (
            ConditionRow(id=r["condition_id"], kind=r["kind"], name=r["name"], position=r["position"])
            for r in condition_rows
        ),
        key=lambda c: (c.position, c.id),
    )
    tasks = [
        r["name"]
        for r in sorted(read_table(folder, "tasks", fmt), key=lambda r: (r["position"], r["task_id"]))
        if r["role"] == "scored"
    ]
    items = {r["item_id"]: r for r in read_table(folder, "items", fmt)}

    turns: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # user, reset, quotes, verified
    for m in read_table(folder, "messages", fmt):
        counts = turns[m["trial_id"]]
        if m["role"] == "user":
            counts[0] += 1
        elif m["role"] == "reset":
            counts[1] += 1
        elif m["role"] == "assistant":
            for quote in m["quotes"] or []:
                counts[2] += 1
                counts[3] += bool(isinstance(quote, dict) and quote.get("verified"))

    everyone = sorted(
        read_table(folder, "trials", fmt), key=lambda r: (participant_pk(r["participant_id"]), r["position"])
    )
    # A model judge's trials go to their own rows, as `reports.load.load_tables` keeps them (never pooled).
    raw = [r for r in everyone if r.get("participant_kind", "human") != "model"]
    block_rank: dict[tuple[int, int], int] = defaultdict(int)
    trials, model_trials = [], []
    for r in everyone:
        participant = participant_pk(r["participant_id"])
        item = items[r["item_id"]]
        position = 0
        if r["role"] == "scored":
            position = block_rank[participant, r["condition_id"]]
            block_rank[participant, r["condition_id"]] += 1
        n_turns, n_resets, n_quotes, n_verified = turns.get(r["trial_id"], (0, 0, 0, 0))
        (model_trials if r.get("participant_kind", "human") == "model" else trials).append(
            TrialRow(
                participant_id=participant,
                condition_id=r["condition_id"],
                condition_kind=r["condition_kind"],
                condition_name=r["condition_name"],
                task=r["task"],
                item_id=r["item_id"],
                subject=item["subject"],
                difficult=item["difficult"],
                n_options=item["n_options"],
                gold=item["gold_index"],
                role=r["role"],
                status=r["status"],
                choice=r["choice"],
                confidence=r["confidence"],
                distribution=tuple(r["distribution"]) if r["distribution"] else None,
                correct=r["correct"],
                shown_at=r["shown_at"],
                submitted_at=r["submitted_at"],
                submit_kind=r["submit_kind"],
                turns=n_turns,
                resets=n_resets,
                quotes=n_quotes,
                quotes_verified=n_verified,
                block_position=position,
            )
        )

    shown = {t.item_id for t in trials}
    tasks_of_bank: dict[str, list[str]] = defaultdict(list)
    for r in sorted(read_table(folder, "tasks", fmt), key=lambda r: (r["position"], r["task_id"])):
        if r["role"] == "scored":
            tasks_of_bank[r["bank"]].append(r["name"])
    runs = [
        baseline_run(
            id=r["run_id"],
            method=r["method"],
            endpoint=r["endpoint"],
            split=r["split"],
            scope=r["scope"],
            status=r["status"],
            params=r["params"],
            summary=r["summary"],
            tasks=tasks_of_bank.get(r["bank"], []) if r["scope"] == "bank" else [],
        )
        for r in sorted(read_table(folder, "baseline_runs", fmt), key=lambda r: r["run_id"])
    ]
    model_of_run = {run["id"]: run["model"] for run in runs}
    baselines = [
        BaselineRow(
            **model_of_run[r["run_id"]],
            endpoint=r["endpoint"],
            run_id=r["run_id"],
            item_id=r["item_id"],
            probabilities=tuple(r["probabilities"]) if r["probabilities"] else None,
            predicted=r["predicted"],
            correct=r["correct"],
            error=r["error"],
        )
        for r in sorted(read_table(folder, "baselines", fmt), key=lambda r: (r["run_id"], r["item_id"]))
        if r["item_id"] in shown
    ]

    everybody = list(read_table(folder, "participants", fmt))
    participants = [p for p in everybody if p.get("kind", "human") != "model"]
    models = [p for p in everybody if p.get("kind", "human") == "model"]
    protocols = protocol_tables(folder, fmt, raw=raw, conditions=condition_rows, items=items)
    return StudyTables(
        task_formats=study.get("task_formats", {}),
        slug=study["slug"],
        title=study["title"],
        confidence_format=study["confidence_format"],
        design=study["design"],
        order=study["order"],
        conditions=conditions,
        tasks=tasks,
        trials=trials,
        baselines=baselines,
        baseline_runs=runs,
        excluded=frozenset(
            participant_pk(r["participant_id"])
            for r in read_table(folder, "exclusions", fmt)
            if r["revoked_at"] is None
        ),
        pilots=frozenset(participant_pk(p["participant_id"]) for p in participants if p["is_pilot"]),
        participant_status={participant_pk(p["participant_id"]): p["status"] for p in participants},
        protocols=protocols,
        model_trials=model_trials,
        model_judges={
            participant_pk(p["participant_id"]): model_judge(participant_pk(p["participant_id"]), _record(p["model"]))
            for p in models
        },
    )


def _record(value) -> dict:
    """A model record as read back: JSON text in Parquet and CSV, a dict in JSONL."""
    if isinstance(value, str):
        return json.loads(value or "{}")
    return dict(value or {})


def protocol_tables(
    folder: Path, fmt: str, *, raw: list[dict], conditions: list[dict], items: dict
) -> ProtocolTables | None:
    """The protocols' rows (`analysis.protocols`) from the transcripts and turns an export holds; None for a study
    without protocol conditions, as `reports.protocols.load_protocol_tables` gives."""
    kinds = {c["condition_id"]: c["kind"] for c in conditions}
    if not any(kind in PROTOCOL_KINDS for kind in kinds.values()):
        return None
    budgets = {c["condition_id"]: (c["protocol"] or {}).get("quote_budget", 0) for c in conditions}
    transcripts = {t["transcript_id"]: t for t in read_table(folder, "transcripts", fmt)}
    judgements = [
        JudgementRow(
            participant_id=participant_pk(r["participant_id"]),
            condition_id=r["condition_id"],
            item_id=r["item_id"],
            transcript_id=r["transcript_id"],
            options=tuple(t["options"]),
            argues=tuple(t["argues"]),
            speakers=tuple(t["speakers"]),
            chosen_by_model=t["chosen_by_model"],
            shared=t["shared"],
            ended_by=t["ended_by"],
            rounds_done=t["rounds_done"],
        )
        for r in raw
        if r["transcript_id"] is not None
        for t in [transcripts[r["transcript_id"]]]
    ]
    turns = [
        turn_row(
            transcript_id=turn["transcript_id"],
            condition_id=t["condition_id"],
            round=turn["round"],
            position=turn["position"],
            speaker=speaker_label(t["protocol"], turn["position"]),
            options=t["options"],
            argues=t["argues"],
            gold=items[t["item_id"]]["gold_index"],
            quotes=turn["quotes"] or [],
            words=turn["words"],
            truncated=turn["truncated"],
            budget=budgets[t["condition_id"]],
        )
        for turn in read_table(folder, "transcript_turns", fmt)
        if turn["role"] == "advocate" and turn["status"] == "complete"
        for t in [transcripts[turn["transcript_id"]]]
    ]
    return ProtocolTables(judgements=judgements, turns=turns)
