"""The protocol rows of the analysis tables, from the database: what each judged trial's transcript showed and
the quotes of its turns (`analysis.protocols`)."""

from __future__ import annotations

from oversight.analysis.protocols import JudgementRow, ProtocolTables, TurnRow
from oversight.assistant.advocates import speaker_label
from oversight.assistant.models import TranscriptTurn
from oversight.core.models import Study, Transcript, Trial
from oversight.core.protocols import PROTOCOL_KINDS, ProtocolSettings


def load_protocol_tables(study: Study) -> ProtocolTables | None:
    """None for a study without protocol conditions."""
    if not study.conditions.filter(kind__in=PROTOCOL_KINDS).exists():
        return None
    transcripts = {
        t.pk: t
        for t in Transcript.objects.filter(study=study).select_related("condition", "item").only(
            "pk", "options", "argues", "speakers", "chosen_by_model", "shared", "ended_by", "rounds_done",
            "protocol", "condition__kind", "condition__protocol", "item__gold_index",
        )
    }  # fmt: skip
    judgements = [
        JudgementRow(
            participant_id=participant_id,
            condition_id=condition_id,
            item_id=item_id,
            transcript_id=transcript_id,
            options=tuple(t.options),
            argues=tuple(t.argues),
            speakers=tuple(t.speakers),
            chosen_by_model=t.chosen_by_model,
            shared=t.shared,
            ended_by=t.ended_by,
            rounds_done=t.rounds_done,
        )
        for participant_id, condition_id, item_id, transcript_id in Trial.objects.filter(
            participant__study=study, transcript__isnull=False
        ).values_list("participant_id", "condition_id", "item_id", "transcript_id")
        for t in [transcripts[transcript_id]]
    ]
    budgets = {}
    turns = []
    for turn in TranscriptTurn.objects.filter(
        transcript__study=study, role=TranscriptTurn.Role.ADVOCATE, status=TranscriptTurn.Status.COMPLETE
    ).only("transcript_id", "round", "position", "quotes", "words", "truncated"):
        t = transcripts[turn.transcript_id]
        if t.condition_id not in budgets:
            budgets[t.condition_id] = ProtocolSettings.for_kind(t.condition.kind, t.condition.protocol).quote_budget
        if t.argues and turn.position is not None:
            side = "correct" if t.options[t.argues[turn.position]] == t.item.gold_index else "incorrect"
        else:
            side = "none"
        quotes = turn.quotes or []
        turns.append(
            TurnRow(
                transcript_id=turn.transcript_id,
                condition_id=t.condition_id,
                round=turn.round,
                position=turn.position or 0,
                speaker=speaker_label(t.protocol, turn.position),
                side=side,
                quotes=len(quotes),
                verified=sum(bool(q.get("verified")) for q in quotes),
                over_budget=sum(bool(q.get("over_budget")) for q in quotes),
                quoted_words=sum(int(q.get("words") or 0) for q in quotes if not q.get("over_budget")),
                budget=budgets[t.condition_id],
                words=turn.words,
                truncated=turn.truncated,
            )
        )
    return ProtocolTables(judgements=judgements, turns=turns)
