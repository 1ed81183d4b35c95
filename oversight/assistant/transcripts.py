"""What a judge of a protocol trial is shown, built once and rendered two ways: as HTML by the judge's page
(`render_transcript`, the partial templates/protocols/_transcript.html) and as text for an AI judge
(`judge_text`, issue 17), so a model in the judge's seat reads exactly what a human judge read.

Nothing here says which side is right: answers are labelled A and B in the order shown, speakers by position
("Debater A", "Debater B", "Consultant", "Evidence"), and no field carries the gold answer, the assignment's
correctness, a scratchpad, a choice turn or the raw output. `tests/assistant/test_transcripts.py` scans both
renderings of every protocol for the gold answer the way the participant pages are scanned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.template.loader import render_to_string

from oversight.assistant.advocates import LETTERS, transcript_text
from oversight.assistant.debate import live_texts, public_turn, public_turns, transcript_state, turn_payload
from oversight.assistant.models import TranscriptTurn
from oversight.core import protocols
from oversight.core.models import Transcript


@dataclass(frozen=True)
class JudgeView:
    protocol: str
    protocol_label: str
    question: str
    answers: tuple[dict, ...]  # ({"letter": "A", "text": …}, {"letter": "B", "text": …})
    turns: tuple[dict, ...]  # `debate.turn_payload`s, in order
    state: dict
    story: str | None = None  # only when the condition lets the judge see it
    text_turns: tuple = field(default=(), repr=False)  # the finished public turns, for `judge_text`

    def as_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "protocol_label": self.protocol_label,
            "question": self.question,
            "answers": list(self.answers),
            "story": self.story,
            "turns": list(self.turns),
            "state": self.state,
        }


def judge_view(transcript: Transcript, *, with_live_text: bool = True) -> JudgeView:
    """The judge's view of a transcript now (a streaming turn with its text so far)."""
    transcript = Transcript.objects.select_related("condition", "item__passage").get(pk=transcript.pk)
    turns = public_turns(transcript)
    for turn in turns:
        turn.transcript = transcript  # what the payload reads of it, without a query per turn
    texts = live_texts(turns) if with_live_text else {}
    settings = transcript.condition.protocol_settings()
    item = transcript.item
    return JudgeView(
        protocol=transcript.protocol,
        protocol_label=protocols.LABELS.get(transcript.protocol, transcript.protocol),
        question=item.text,
        answers=tuple({"letter": LETTERS[k], "text": item.options[i]} for k, i in enumerate(transcript.options)),
        turns=tuple(turn_payload(t, transcript.protocol, live_text=texts.get(t.pk)) for t in turns),
        state=transcript_state(transcript, turns),
        story=item.passage.text if settings.judge_sees_story and item.passage_id else None,
        text_turns=tuple(public_turn(t) for t in turns if t.status == TranscriptTurn.Status.COMPLETE),
    )


def judge_text(view: JudgeView) -> str:
    """The view as text: question, the two answers, the story where the judge sees it, and the transcript with
    quotes in checked tags (<v_quote>verified</v_quote>, <u_quote>not verified</u_quote>)."""
    answers = "\n".join(f"{a['letter']}: {a['text']}" for a in view.answers)
    parts = [f"Question: {view.question}", f"Answers:\n{answers}"]
    if view.story:
        parts.append(f"<story>\n{view.story.strip()}\n</story>")
    transcript = transcript_text(view.protocol, list(view.text_turns))
    parts.append(f"<transcript>\n{transcript}\n</transcript>" if transcript else "The transcript is empty.")
    return "\n\n".join(parts)


def render_transcript(view: JudgeView) -> str:
    """The view as the judge's page's HTML (the partial templates/protocols/_transcript.html)."""
    return render_to_string("protocols/_transcript.html", {"view": view})
