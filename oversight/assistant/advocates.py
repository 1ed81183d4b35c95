"""What an advocate is given, and what of its output anyone else sees. Pure Python on plain values.

**The context** of an advocate's turn is exactly: its system prompt (the condition's, or the protocol's default,
with its name, word limit, quote budget and rounds filled in), then one user message holding the question, the two
answers, its assignment (which answer it defends — never which answer is right), the story, the public transcript
so far and the request for this turn. The public transcript is every finished turn the advocate is allowed to see,
in the checked form the judge saw (quotes as <v_quote>/<u_quote>): in a simultaneous round not the other side's
argument of the same round, and never anybody's scratchpad, choice turn or failed reply.

**The output**: with a scratchpad, anything inside <thinking>…</thinking> (or after an unclosed <thinking>) is
private: stored, shown to nobody. The rest is the turn, cut after `word_limit` whitespace-separated words; the
judge never sees more, the full output is kept. While a turn streams, `visible_so_far` shows the same public
part of the text so far, and only ever grows: a trailing "<thi…" that may open a scratchpad is held back.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from oversight.core import protocols
from oversight.core.protocol_prompts import QUOTE_RULE_SPANS, QUOTE_RULE_TAGS, fill, system_prompt_for
from oversight.core.protocols import ProtocolSettings

LETTERS = "AB"
JUDGE = "Judge"

_THINKING_OPEN = "<thinking>"
_THINKING_RE = re.compile(r"<thinking>.*?(?:</thinking>|\Z)", re.DOTALL | re.IGNORECASE)
_WORD_END_RE = re.compile(r"\S+")
_CHOICE_RE = re.compile(r"\b(?:answer\s*)?\(?([AB])\)?\b")


def speaker_label(kind: str, position: int | None) -> str:
    """How a speaking position is named to everyone: by position, never by correctness."""
    if position is None:
        return JUDGE
    if kind in protocols.DEBATE_KINDS:
        return f"Debater {LETTERS[position]}"
    if kind == protocols.EVIDENCE_ONLY:
        return "Evidence"
    return "Consultant"


@dataclass(frozen=True)
class PublicTurn:
    """A finished turn as every party may see it: `text` is its public part in the checked form."""

    id: int
    round: int
    role: str  # "advocate" | "judge"
    position: int | None
    text: str


@dataclass(frozen=True)
class Brief:
    """Everything an advocate's context is built from, and nothing more."""

    kind: str
    settings: ProtocolSettings
    position: int  # the speaking position (0: Debater A or the consultant)
    question: str
    answers: tuple[str, str]  # the two answers in the order shown
    assignment: int | None  # the index into `answers` it defends; None: evidence only, or before choosing
    story: str | None
    round: int
    transcript: tuple[PublicTurn, ...] = ()
    system_prompt: str = ""  # the condition's own; empty: the protocol's default
    choosing: bool = False  # an open protocol's first step: say which answer to argue for

    @property
    def name(self) -> str:
        return speaker_label(self.kind, self.position)

    @property
    def opponent(self) -> str:
        return speaker_label(self.kind, 1 - self.position) if self.kind in protocols.DEBATE_KINDS else JUDGE


def transcript_text(kind: str, turns: list[PublicTurn] | tuple[PublicTurn, ...]) -> str:
    """The public transcript as text, round by round: what advocates read of earlier turns, and what an AI judge
    reads (`transcripts.judge_text`)."""
    lines: list[str] = []
    current = None
    for turn in turns:
        if turn.role == "judge" and not turn.text.strip():
            continue  # the judge let the debate go on without a question
        if turn.round != current:
            current = turn.round
            lines.append(f"Round {turn.round}")
        lines.append(f"{speaker_label(kind, turn.position)}: {turn.text.strip()}")
    return "\n\n".join(lines)


def system_prompt(brief: Brief) -> str:
    settings = brief.settings
    rule = QUOTE_RULE_SPANS if settings.quote_form == protocols.SPANS else QUOTE_RULE_TAGS
    template = fill(brief.system_prompt or system_prompt_for(brief.kind), {"quote_rule": rule})
    return fill(
        template,
        {
            "name": brief.name,
            "opponent": brief.opponent,
            "word_limit": settings.word_limit,
            "quote_budget": settings.quote_budget,
            "rounds": settings.rounds,
        },
    )


def _request(brief: Brief) -> str:
    settings = brief.settings
    if brief.choosing:
        return (
            "Before the debate starts, decide which of the two answers you believe is correct: you will argue for it. "
            "Reply with the letter A or B only."
        )
    limit = f"at most {settings.word_limit} words"
    if brief.kind == protocols.EVIDENCE_ONLY:
        return f"Now write your turn: the quotes that bear most on the choice between A and B ({limit})."
    last = brief.transcript[-1] if brief.transcript else None
    asked = last is not None and last.role == "judge" and last.text.strip() and last.round == brief.round
    round_text = f"round {brief.round} of {settings.rounds}"
    if brief.round == 1:
        step = "your opening argument"
    elif brief.kind in protocols.DEBATE_KINDS:
        step = "your next argument: answer the other side's points and strengthen your own"
    else:
        step = "your next argument"
    text = f"It is {round_text}. Write {step} ({limit})."
    if asked:
        text += " Answer the judge's question first."
    return text


def context_message(brief: Brief) -> str:
    """The one user message of the advocate's context (see the module docstring)."""
    answers = "\n".join(f"{LETTERS[i]}: {text}" for i, text in enumerate(brief.answers))
    parts = [f"The question: {brief.question}", f"The two answers:\n{answers}"]
    if brief.assignment is not None:
        letter = LETTERS[brief.assignment]
        parts.append(f"You argue that the answer is {letter}: {brief.answers[brief.assignment]}")
    elif brief.kind == protocols.EVIDENCE_ONLY:
        parts.append("You argue for neither answer: you show evidence only.")
    if brief.story:
        parts.append(f"<story>\n{brief.story.strip()}\n</story>")
    if not brief.choosing:
        if brief.transcript:
            parts.append(
                f"The transcript so far:\n<transcript>\n{transcript_text(brief.kind, brief.transcript)}\n</transcript>"
            )
        else:
            parts.append("Nothing has been said yet.")
    parts.append(_request(brief))
    return "\n\n".join(parts)


def advocate_messages(brief: Brief) -> list[dict]:
    """The advocate's whole context, as chat messages."""
    return [{"role": "system", "content": system_prompt(brief)}, {"role": "user", "content": context_message(brief)}]


def prompt_hash(messages: list[dict]) -> str:
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_choice(text: str) -> int | None:
    """The answer an open protocol's model chose (0 for A, 1 for B), or None when its reply names neither or
    both."""
    public = _THINKING_RE.sub(" ", text or "")
    letters = {m.group(1).upper() for m in _CHOICE_RE.finditer(public)}
    return LETTERS.index(letters.pop()) if len(letters) == 1 else None


@dataclass(frozen=True)
class Output:
    public: str
    private: str
    words: int
    truncated: bool
    extra: dict = field(default_factory=dict)


def _cut(text: str, word_limit: int) -> tuple[str, int, bool]:
    ends = [m.end() for m in _WORD_END_RE.finditer(text)]
    if len(ends) <= word_limit:
        return text, len(ends), False
    return text[: ends[word_limit - 1]], word_limit, True


def split_output(raw: str, *, word_limit: int, scratchpad: bool) -> Output:
    """A finished turn's public part (scratchpad removed, cut at the word limit) and its private part."""
    if scratchpad:
        private = "\n\n".join(m.group(0) for m in _THINKING_RE.finditer(raw or "")).strip()
        public = _THINKING_RE.sub("", raw or "")
    else:
        private, public = "", raw or ""
    public, words, truncated = _cut(public.strip(), word_limit)
    return Output(public=public, private=private, words=words, truncated=truncated)


def visible_so_far(raw: str, *, word_limit: int, scratchpad: bool) -> str:
    """The public part of a turn still streaming; each call's result extends the previous one's."""
    text = raw or ""
    if scratchpad:
        text = _THINKING_RE.sub("", text)
        lowered = text.lower()
        for k in range(min(len(_THINKING_OPEN) - 1, len(text)), 0, -1):
            if _THINKING_OPEN.startswith(lowered[-k:]):
                text = text[:-k]  # maybe the start of a scratchpad: hold it back until it is clear
                break
    # Whitespace after the last word waits for the next word: the word limit may cut there.
    return _cut(text.lstrip(), word_limit)[0].rstrip()
