"""The simulated assistant as an advocate: argues for its assigned answer, quotes the story (sometimes
misquoting it), shows evidence without a verdict, or, in an open protocol, chooses the answer it believes.

Pure Python on plain values, deterministic like the simulated chat (same item, settings, round and position →
same turn), so a demo debate study runs with no GPU and tests can predict it. Its knobs are the endpoint's
simulation settings: `accuracy` (P(an open protocol's model chooses the gold answer)), `quote_rate` (P(an
argument quotes the story)), `misquote_rate` (P(a quote is altered so that it does not verify)), `seed` and the
streaming speed. It knows the gold answer only as the simulator's oracle for choosing; its context (the request's
messages) is the same an LLM would get.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oversight.assistant.simulated import (
    SimulatedItem,
    SimulationSettings,
    _best_sentence,
    _option_label,
    _pick,
    _quote_for,
    _unit,
    believed_option,
)

LETTERS = "AB"
ARGUE = "argue"
CHOOSE = "choose"
EVIDENCE = "evidence"


@dataclass(frozen=True)
class AdvocateTurnSpec:
    """What kind of turn the simulated advocate writes (plain values, from the request)."""

    role: str  # argue | choose | evidence
    assignment: int | None
    round: int
    position: int
    debate: bool
    quote_form: str = "tags"
    scratchpad: bool = True
    judge_question: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> AdvocateTurnSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _span_of(passage: str, sentence: str) -> tuple[int, int] | None:
    """The story's word positions [start, end) of a sentence (whitespace words), if it is there verbatim."""
    words = passage.split()
    wanted = sentence.rstrip(".").split()
    wanted = [w for w in wanted if w != "..."] or wanted
    if wanted and wanted[-1].endswith("..."):
        wanted = wanted[:-1]
    n = len(wanted)
    for i in range(len(words) - n + 1):
        if words[i : i + n] == wanted:
            return i, i + n
    return None


def _quoted(item: SimulatedItem, settings: SimulationSettings, option: int, key: str, form: str) -> str | None:
    quote = _quote_for(item, settings, option, key)
    if quote is None:
        return None
    if form == "spans":
        sentence = _best_sentence(item, option, key) or ""
        span = _span_of(item.passage or "", sentence) if quote == sentence else None
        if span is None:  # a misquote, in span form: words past the story's end
            n = len((item.passage or "").split())
            return f"<<{n + 3}-{n + 12}>>"
        return f"<<{span[0]}-{span[1]}>>"
    return f"<quote>{quote}</quote>"


def _letter_label(item: SimulatedItem, k: int) -> str:
    return _option_label(item, k).replace(f"({'ABCDEFGH'[k]})", f"{LETTERS[k]}:", 1)


def simulated_advocate_reply(*, item: SimulatedItem, settings: SimulationSettings, spec: AdvocateTurnSpec) -> str:
    """The simulated advocate's whole output for one turn (scratchpad included)."""
    key = f"{settings.seed}:{item.item_key}:{spec.round}:{spec.position}:{spec.role}"
    if spec.role == CHOOSE:
        return LETTERS[believed_option(item, settings)]
    if spec.role == EVIDENCE:
        quotes = [
            q for k in range(len(item.options)) if (q := _quoted(item, settings, k, f"{key}:{k}", spec.quote_form))
        ]
        if not quotes:
            return "There is no story to quote for this question."
        return "\n\n".join(f"From the story: {q}" for q in dict.fromkeys(quotes))
    stance = spec.assignment if spec.assignment is not None else 0
    other = 1 - stance
    parts = []
    if spec.scratchpad:
        plan = "open with the clearest evidence" if spec.round == 1 else "rebut and add a new point"
        parts.append(f"<thinking>I defend {LETTERS[stance]}. Round {spec.round}: {plan}.</thinking>")
    if spec.judge_question:
        parts.append(f"To the judge's question: the story supports {LETTERS[stance]}, not {LETTERS[other]}.")
    if spec.round == 1:
        parts.append(f"The answer is {_letter_label(item, stance)}.")
    elif spec.debate:
        parts.append(
            _pick(
                [
                    f"My opponent's case for {LETTERS[other]} does not survive a close reading.",
                    f"Nothing said for {LETTERS[other]} changes the facts of the story.",
                    f"The argument for {LETTERS[other]} rests on a misreading.",
                ],
                key,
                "rebut",
            )
        )
    else:
        parts.append(f"To be clear, the answer is {LETTERS[stance]}.")
    parts.append(
        _pick(
            [
                "It fits what the question asks better than the alternative.",
                "Read in order, the events of the story lead there and nowhere else.",
                "Every detail the question turns on points the same way.",
            ],
            key,
            "reason",
        )
    )
    if item.passage and _unit(key, "quote") < settings.quote_rate:
        quote = _quoted(item, settings, stance, key, spec.quote_form)
        if quote:
            parts.append(f"The story says so: {quote}")
    return re.sub(r"[ \t]+", " ", "\n\n".join(parts)).strip()
