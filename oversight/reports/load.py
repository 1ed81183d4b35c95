"""Build the analysis tables from the database: a study → the plain rows of `oversight.analysis.tables`.

Everything in `oversight.analysis` works on those rows, so it can be tested and benchmarked without a database;
this module is the one that reads them out of the ORM. The model-alone baselines are read in `load_baselines`.

**The report does not depend on when the deadline sweeper last ran.** A trial still shown past its deadline is read
as the sweeper would finalise it: timed out, with its last selection as the answer. And a trial the sweeper did
finalise counts as submitted at its deadline, not at the moment the sweeper got to it, so the time spent on an item
(and everything else in the report) is the same before and after the sweep.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone

from oversight.analysis.tables import BaselineRow, ConditionRow, StudyTables, TrialRow, baseline_run, model_judge
from oversight.assistant.models import ChatMessage
from oversight.banks.models import Item
from oversight.baselines.models import BaselineResult
from oversight.baselines.services import runs_for_study
from oversight.core.models import ConditionItem, Exclusion, Participant, Study, Trial
from oversight.reports.protocols import load_protocol_tables


def as_analysed(row: dict, gold: int | None, now: datetime) -> dict:
    """A trial's values as the analysis sees them at `now` (see the module docstring): past its deadline, a trial
    still shown is timed out with its last selection; a finalised one was submitted by its deadline at the latest."""
    deadline = row["deadline_at"]
    if deadline is None:
        return row
    if row["status"] == Trial.Status.SHOWN and now >= deadline:
        choice = row["selected_choice"]
        return {
            **row,
            "status": Trial.Status.TIMED_OUT,
            "choice": choice,
            "confidence": row["selected_confidence"] if choice is not None else None,
            "correct": None if gold is None else choice is not None and choice == gold,
            "submitted_at": deadline,
            "submit_kind": Trial.SubmitKind.SERVER,
        }
    if row["status"] == Trial.Status.TIMED_OUT and row["submitted_at"] and row["submitted_at"] > deadline:
        return {**row, "submitted_at": deadline}
    return row


def load_tables(study: Study, *, now: datetime | None = None) -> StudyTables:
    """The study's tables. The existing rows (trials, participants, Table 1, protocols) hold people only; a model
    judge's trials (`Participant.kind == "model"`, issue 17) go to `model_trials`, labelled by `model_judges`, so
    no table pools the two kinds without saying so."""
    now = now or timezone.now()
    conditions = [
        ConditionRow(id=c.pk, kind=c.kind, name=c.name, position=c.position)
        for c in study.conditions.order_by("position", "id")
    ]
    by_id = {c.id: c for c in conditions}
    tasks = list(study.tasks.filter(role="scored").order_by("position", "id").values_list("name", flat=True))

    # The task an item belongs to: scored items per condition, practice and catch items per study.
    task_of = {
        (row["condition_id"], row["item_id"], row["role"]): row["task__name"]
        for row in ConditionItem.objects.filter(study=study).values("condition_id", "item_id", "role", "task__name")
    }

    chat = {
        row["trial_id"]: (row["turns"], row["resets"])
        for row in ChatMessage.objects.filter(trial__participant__study=study)
        .values("trial_id")
        .annotate(
            turns=Count("id", filter=Q(role=ChatMessage.Role.USER)),
            resets=Count("id", filter=Q(role=ChatMessage.Role.RESET)),
        )
    }
    quotes: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    replies = ChatMessage.objects.filter(trial__participant__study=study, role=ChatMessage.Role.ASSISTANT)
    for trial_id, found in replies.values_list("trial_id", "quotes"):
        for quote in found or []:
            quotes[trial_id][0] += 1
            quotes[trial_id][1] += bool(isinstance(quote, dict) and quote.get("verified"))

    raw = list(
        Trial.objects.filter(participant__study=study)
        .order_by("participant_id", "position")
        .values(
            "id",
            "participant_id",
            "participant__kind",
            "condition_id",
            "item_id",
            "role",
            "position",
            "status",
            "choice",
            "confidence",
            "distribution",
            "correct",
            "shown_at",
            "submitted_at",
            "submit_kind",
            "deadline_at",
            "selected_choice",
            "selected_confidence",
        )
    )
    items = {
        row["id"]: row
        for row in Item.objects.filter(pk__in={r["item_id"] for r in raw}).values(
            "id", "options", "gold_index", "subject", "difficult"
        )
    }

    block_rank: dict[tuple[int, int], int] = defaultdict(int)
    trials, model_trials = [], []
    for row in raw:
        item = items[row["item_id"]]
        row = as_analysed(row, item["gold_index"], now)
        condition = by_id.get(row["condition_id"])
        scored = row["role"] == "scored"
        key = (row["condition_id"] if scored else None, row["item_id"], row["role"])
        position = 0
        if scored:
            position = block_rank[row["participant_id"], row["condition_id"]]
            block_rank[row["participant_id"], row["condition_id"]] += 1
        turns, resets = chat.get(row["id"], (0, 0))
        n_quotes, n_verified = quotes.get(row["id"], (0, 0))
        (model_trials if row["participant__kind"] == Participant.Kind.MODEL else trials).append(
            TrialRow(
                participant_id=row["participant_id"],
                condition_id=row["condition_id"],
                condition_kind=condition.kind if condition else "",
                condition_name=condition.name if condition else "",
                task=task_of.get(key, ""),
                item_id=row["item_id"],
                subject=item["subject"],
                difficult=item["difficult"],
                n_options=len(item["options"]),
                gold=item["gold_index"],
                role=row["role"],
                status=row["status"],
                choice=row["choice"],
                confidence=row["confidence"],
                distribution=tuple(row["distribution"]) if row["distribution"] else None,
                correct=row["correct"],
                shown_at=row["shown_at"],
                submitted_at=row["submitted_at"],
                submit_kind=row["submit_kind"],
                turns=turns,
                resets=resets,
                quotes=n_quotes,
                quotes_verified=n_verified,
                block_position=position,
            )
        )

    participants = Participant.objects.filter(study=study, kind=Participant.Kind.HUMAN)
    models = Participant.objects.filter(study=study, kind=Participant.Kind.MODEL).order_by("pk")
    baselines, runs = load_baselines(study, item_ids=set(items))
    return StudyTables(
        task_formats=dict(study.tasks.filter(role="scored").values_list("name", "bank__format")),
        slug=study.slug,
        title=study.title,
        confidence_format=study.confidence_format,
        design=study.design,
        order=study.order,
        conditions=conditions,
        tasks=tasks,
        trials=trials,
        baselines=baselines,
        baseline_runs=runs,
        excluded=frozenset(
            Exclusion.objects.filter(participant__study=study, revoked_at__isnull=True).values_list(
                "participant_id", flat=True
            )
        ),
        model_trials=model_trials,
        model_judges={pk: model_judge(pk, record) for pk, record in models.values_list("pk", "model")},
        pilots=frozenset(participants.filter(is_pilot=True).values_list("id", flat=True)),
        participant_status=dict(participants.values_list("id", "status")),
        protocols=load_protocol_tables(study),
    )


def load_baselines(study: Study, *, item_ids: set[int]) -> tuple[list[BaselineRow], list[dict]]:
    """The model-alone results for the study's items, as `(rows, runs)`.

    Runs made for this study count, and so do runs over one of its banks that belong to no study (the same
    selection as the baselines exporters, so a report recomputed from an export matches). Every result is
    returned (`analysis.report` keeps, per baseline and item, the latest run's successful result).
    """
    tasks_of_bank: dict[int, list[str]] = defaultdict(list)
    for bank_id, name in study.tasks.filter(role="scored").order_by("position", "id").values_list("bank_id", "name"):
        tasks_of_bank[bank_id].append(name)
    info = {}
    for run in runs_for_study(study).select_related("endpoint").order_by("pk"):
        info[run.pk] = baseline_run(
            id=run.pk,
            method=run.method,
            endpoint=run.endpoint.name or str(run.endpoint),
            split=run.split,
            scope="study" if run.study_id else "bank",
            status=run.status,
            params=run.params,
            summary=run.summary,
            tasks=tasks_of_bank.get(run.bank_id, []) if not run.study_id else [],
        )
    rows = []
    results = BaselineResult.objects.filter(run_id__in=list(info), item_id__in=item_ids).order_by("run_id", "item_id")
    for run_id, item_id, probabilities, predicted, correct, error in results.values_list(
        "run_id", "item_id", "probabilities", "predicted", "correct", "error"
    ):
        run = info[run_id]
        rows.append(
            BaselineRow(
                **run["model"],
                endpoint=run["endpoint"],
                run_id=run_id,
                item_id=item_id,
                probabilities=tuple(probabilities) if probabilities else None,
                predicted=predicted,
                correct=correct,
                error=error or "",
            )
        )
    return rows, list(info.values())
