"""What a model judge reads for a trial: exactly what the person's page shows, as text, and nothing more.

* Protocol trials (consultancy, debate, …): `assistant.transcripts.judge_text(judge_view(transcript))`, the very
  code the judge's page renders its HTML from (`render_transcript` of the same view): the question, answers A and
  B in the order shown, the story only where the condition shows it, the turns labelled by position.
* Unaided and assisted trials: what templates/participant/trial.html shows: the question, every option under its
  letter, the item's story (the page shows it whenever the item has one) and, for assisted, the chat: each
  finished message of the participant and the assistant, in order, as the page lists them (a reset ends the
  chat shown before it; stopped or failed replies show what the person saw of them).

The gold answer, the assignment of advocates to answers, scratchpads and the model's context never appear:
`tests/judges/test_material.py` changes the gold answer and requires the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

from oversight.assistant.models import ChatMessage
from oversight.assistant.transcripts import judge_text, judge_view
from oversight.core.models import Trial

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPEAKERS = {ChatMessage.Role.USER: "Participant", ChatMessage.Role.ASSISTANT: "Assistant"}


@dataclass(frozen=True)
class Material:
    """A trial's material as text, and which of the item's options its letters stand for (A → options[0] for an
    item page; A → the first answer shown for a protocol)."""

    text: str
    options: tuple[int, ...]  # item option index per letter, in letter order
    answers: tuple[str, ...]  # the answers' texts, in letter order

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]


def chat_text(messages) -> str:
    """The chat as the page shows it: the messages since the last reset, each under its speaker."""
    shown: list[str] = []
    for message in messages:
        if message.role == ChatMessage.Role.RESET:
            shown = []
            continue
        if message.role in SPEAKERS and message.content.strip():
            shown.append(f"{SPEAKERS[message.role]}: {message.content.strip()}")
    return "\n\n".join(shown)


def item_text(trial: Trial, *, chat: str | None = None) -> str:
    """An unaided or assisted item's page as text."""
    item = trial.item
    answers = "\n".join(f"{letter}: {text}" for letter, text in zip(item.letters, item.options, strict=True))
    parts = [f"Question: {item.text}", f"Answers:\n{answers}"]
    if item.passage_id:
        parts.append(f"<story>\n{item.passage.text.strip()}\n</story>")
    if chat is not None:
        parts.append(f"<chat>\n{chat}\n</chat>" if chat else "The chat with the assistant is empty.")
    return "\n\n".join(parts)


def material_for(trial: Trial) -> Material:
    """The material of `trial` (a person's, for replay; the model's own, live)."""
    item = trial.item
    if trial.transcript_id:
        view = judge_view(trial.transcript, with_live_text=False)
        options = tuple(trial.transcript.options)
        return Material(judge_text(view), options, tuple(a["text"] for a in view.answers))
    chat = None
    if trial.condition.kind == trial.condition.Kind.ASSISTED:
        chat = chat_text(trial.messages.order_by("seq"))
    return Material(item_text(trial, chat=chat), tuple(range(len(item.options))), tuple(item.options))
