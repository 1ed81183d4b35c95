"""Protocols beyond sandwiching (RESEARCH.md §9): the condition kinds where models argue and a judge decides,
and their settings.

A protocol condition shows the judge a question reduced to two answers (the gold one and the best distractor)
and a transcript written by one or two *advocates* (`core.Advocate`): a consultant assigned one answer, two
debaters assigned one each, or an evidence finder that only quotes the story. The settings of a condition are
one JSON object (`Condition.protocol`) validated by the frozen dataclass `ProtocolSettings` below, rather than a
dozen model columns, because:

* which settings matter depends on the kind (a consultant's probability of being assigned the right answer means
  nothing in debate), and unaided and assisted conditions need none of them;
* one validator serves the console form, the launch rules and the self-play job, so a design is refused in the
  same words wherever it is checked;
* the manifest freezes the settings verbatim, with every default filled in (`as_dict`), so a paper can cite them;
* a new knob needs no migration.

The advocates themselves are rows (`core.Advocate`), not JSON: they point at model endpoints, and a foreign key
keeps an endpoint in use from being deleted. Pure Python on plain values; no ORM.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

CONSULTANCY = "consultancy"
DEBATE = "debate"
OPEN_CONSULTANCY = "open_consultancy"
OPEN_DEBATE = "open_debate"
INTERACTIVE_DEBATE = "interactive_debate"
EVIDENCE_ONLY = "evidence_only"

PROTOCOL_KINDS = (CONSULTANCY, DEBATE, OPEN_CONSULTANCY, OPEN_DEBATE, INTERACTIVE_DEBATE, EVIDENCE_ONLY)
DEBATE_KINDS = frozenset({DEBATE, OPEN_DEBATE, INTERACTIVE_DEBATE})
CONSULTANCY_KINDS = frozenset({CONSULTANCY, OPEN_CONSULTANCY})
# The model chooses the answer it argues for (Kenton et al. 2024); the choice is recorded on the transcript.
OPEN_KINDS = frozenset({OPEN_CONSULTANCY, OPEN_DEBATE})

LABELS = {
    CONSULTANCY: "Consultancy",
    DEBATE: "Debate",
    OPEN_CONSULTANCY: "Open consultancy",
    OPEN_DEBATE: "Open debate",
    INTERACTIVE_DEBATE: "Interactive debate",
    EVIDENCE_ONLY: "Evidence only",
}

SIMULTANEOUS = "simultaneous"
SEQUENTIAL = "sequential"
LIVE = "live"
STATIC = "static"
TAGS = "tags"
SPANS = "spans"

# The two-option reduction: how the distractor shown beside the gold answer is chosen.
BY_VALIDATION = "validation"  # QuALITY's untimed annotators' best distractor (the fallback when there is none)
BY_SPEED_VALIDATION = "speed_validation"  # the wrong answer chosen most by QuALITY's 45-second validators
BY_SEED = "seeded"  # a wrong option drawn at random, seeded by the study and item
FIRST_WRONG = "first_wrong"  # the lowest-numbered wrong option
LOWEST = "lowest"  # tie rule: the lowest-numbered of the tied options
DISTRACTOR_RULES = (BY_VALIDATION, BY_SPEED_VALIDATION, BY_SEED, FIRST_WRONG)
FALLBACK_RULES = (BY_SPEED_VALIDATION, BY_SEED, FIRST_WRONG)
TIE_RULES = (BY_SPEED_VALIDATION, LOWEST)

MAX_ROUNDS = 10
MAX_WORDS = 2000


def is_protocol(kind: str) -> bool:
    return kind in PROTOCOL_KINDS


def advocates_needed(kind: str) -> int:
    """How many advocates a protocol has: two debaters, else one (consultant or evidence finder)."""
    return 2 if kind in DEBATE_KINDS else 1


class ProtocolSettingsError(ValueError):
    """Settings a protocol cannot run with; the message says which and why."""


def _number(name: str, value, *, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolSettingsError(f"“{name}” must be a number, not {value!r}.")
    if integer:
        if value != int(value):
            raise ProtocolSettingsError(f"“{name}” must be a whole number, not {value!r}.")
        return int(value)
    return float(value)


def _between(name: str, value, low, high, *, integer: bool = True):
    value = _number(name, value, integer=integer)
    if not low <= value <= high:
        raise ProtocolSettingsError(f"“{name}” must be between {low} and {high}, not {value}.")
    return value


def _one_of(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ProtocolSettingsError(f"“{name}” must be one of {', '.join(allowed)}, not {value!r}.")
    return value


@dataclass(frozen=True)
class ProtocolSettings:
    """One protocol condition's settings. Defaults follow Khan et al. 2024's human-judge conditions (3 rounds,
    simultaneous, 150 words per argument, a 50-word quote budget, the story hidden from the judge)."""

    rounds: int = 3
    # Simultaneous: each round's arguments are written without seeing the other side's argument of that round.
    turn_order: str = SIMULTANEOUS
    word_limit: int = 150  # words per argument; the judge never sees more (the rest is kept, flagged truncated)
    quote_budget: int = 50  # words of quotation per argument; quotes past it are shown flagged, not verified
    # Live: generated per trial while the judge watches. Static: generated once per item by self-play before
    # launch and frozen in the manifest, so every judge of an item reads the same transcript.
    transcripts: str = LIVE
    judge_questions: bool = False  # the judge may question the advocates between rounds
    question_every: int = 1  # … after every this many rounds
    judge_may_end: bool = True  # the judge may end the debate early (recorded)
    judge_sees_story: bool = False
    consultant_correct_p: float = 0.5  # consultancy: P(the consultant is assigned the gold answer)
    distractor: str = BY_VALIDATION
    distractor_tie: str = BY_SPEED_VALIDATION
    distractor_fallback: str = BY_SPEED_VALIDATION
    scratchpad: bool = True  # advocates may think in <thinking> tags: stored, never shown to anyone
    quote_form: str = TAGS  # how the prompt asks advocates to quote; both forms are always parsed

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "rounds", _between("rounds", self.rounds, 1, MAX_ROUNDS))
        set_(self, "turn_order", _one_of("turn_order", self.turn_order, (SIMULTANEOUS, SEQUENTIAL)))
        set_(self, "word_limit", _between("word_limit", self.word_limit, 10, MAX_WORDS))
        set_(self, "quote_budget", _between("quote_budget", self.quote_budget, 0, MAX_WORDS))
        set_(self, "transcripts", _one_of("transcripts", self.transcripts, (LIVE, STATIC)))
        set_(self, "question_every", _between("question_every", self.question_every, 1, MAX_ROUNDS))
        set_(
            self,
            "consultant_correct_p",
            _between("consultant_correct_p", self.consultant_correct_p, 0, 1, integer=False),
        )
        set_(self, "distractor", _one_of("distractor", self.distractor, DISTRACTOR_RULES))
        set_(self, "distractor_tie", _one_of("distractor_tie", self.distractor_tie, TIE_RULES))
        set_(self, "distractor_fallback", _one_of("distractor_fallback", self.distractor_fallback, FALLBACK_RULES))
        set_(self, "quote_form", _one_of("quote_form", self.quote_form, (TAGS, SPANS)))
        for name in ("judge_questions", "judge_may_end", "judge_sees_story", "scratchpad"):
            if not isinstance(getattr(self, name), bool):
                raise ProtocolSettingsError(f"“{name}” must be true or false, not {getattr(self, name)!r}.")
        if self.judge_questions and self.transcripts == STATIC:
            raise ProtocolSettingsError(
                "A static (pre-generated) transcript cannot answer the judge's questions: use live transcripts "
                "or turn the judge's questions off."
            )

    @classmethod
    def for_kind(cls, kind: str, data: dict | None = None) -> ProtocolSettings:
        """The settings of a condition of `kind` from its stored JSON: missing keys take the kind's defaults;
        unknown keys are refused (a typo would otherwise run a study with a default nobody chose)."""
        if not is_protocol(kind):
            raise ProtocolSettingsError(f"{kind!r} is not a protocol.")
        data = data or {}
        if not isinstance(data, dict):
            raise ProtocolSettingsError("The protocol settings must be an object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProtocolSettingsError(
                f"Unknown protocol setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}."
            )
        settings = {**KIND_DEFAULTS.get(kind, {}), **{k: v for k, v in data.items() if v is not None}}
        settings = cls(**settings)
        if kind == INTERACTIVE_DEBATE and not settings.judge_questions:
            raise ProtocolSettingsError("An interactive debate needs the judge's questions on.")
        return settings

    def as_dict(self) -> dict:
        return asdict(self)

    def question_after(self, round_number: int) -> bool:
        """Whether the judge may ask a question after round `round_number` (1-based), before the next one."""
        return self.judge_questions and round_number < self.rounds and round_number % self.question_every == 0


KIND_DEFAULTS: dict[str, dict] = {
    INTERACTIVE_DEBATE: {"judge_questions": True},
    # Evidence only: one turn of quotes, no argument to rebut.
    EVIDENCE_ONLY: {"rounds": 1},
}


def settings_hash(kind: str, settings: ProtocolSettings, advocates: list[dict]) -> str:
    """A fingerprint of everything that shapes a transcript: a shared transcript made under other settings or
    advocates is not reused at launch."""
    blob = json.dumps(
        {"kind": kind, "settings": settings.as_dict(), "advocates": advocates},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()
