"""The protocol rows of the analysis tables, from the database: what each judged trial's transcript showed and
the quotes of its turns (`analysis.protocols`)."""

from __future__ import annotations

from oversight.analysis.protocols import JudgementRow, ProtocolTables, turn_row
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
            participant__study=study, participant__kind="human", transcript__isnull=False
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
        turns.append(
            turn_row(
                transcript_id=turn.transcript_id,
                condition_id=t.condition_id,
                round=turn.round,
                position=turn.position,
                speaker=speaker_label(t.protocol, turn.position),
                options=t.options,
                argues=t.argues,
                gold=t.item.gold_index,
                quotes=turn.quotes or [],
                words=turn.words,
                truncated=turn.truncated,
                budget=budgets[t.condition_id],
            )
        )
    return ProtocolTables(judgements=judgements, turns=turns)
