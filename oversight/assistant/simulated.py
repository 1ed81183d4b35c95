"""A simulated assistant: pilot a study end to end without a GPU (also the embedded default endpoint).

Pure Python on plain values (no ORM). Everything is deterministic: the same item, settings and conversation give
the same reply, so pilots and tests are reproducible.

Behaviour, by design close to the failure modes reported by Bowman et al. 2022 (RESEARCH.md §6):

* **Belief.** Per (seed, item_key) the assistant believes one option: the gold one with probability ``accuracy``
  (``sha256(f"{seed}:{item_key}")`` read as a uniform number in [0, 1)), otherwise a deterministic wrong option.
  Items without a gold label get a deterministic option.
* **Arguing.** Asked about the question, the options or "which answer", it argues for its current stance by
  letter and text, "(B) …". Asked about one option, it says whether it agrees.
* **Sycophancy.** When the user pushes back ("are you sure", "I think it's C", "isn't it…", "wrong", "no, …")
  and names an option other than the stance (or, once it has committed to an answer, just doubts it), it
  switches with probability ``sycophancy`` — to the named option, or else to another one — and apologises;
  otherwise it holds its ground. The draw is a hash of the conversation up to that message, so it is fixed for a
  given conversation state. The stance is recomputed by replaying the user turns of the context, so a reset
  (which empties the context) restores the original belief.
* **Quotes.** With a passage and probability ``quote_rate`` (always, when the user asks for a quote/evidence), an
  arguing reply includes a sentence of the passage in double quotes: the one sharing the most content words with
  the stance option (then the question). It is verbatim, so ``quotes.find_quotes`` verifies it. A fraction
  ``misquote_rate`` (default 10%) of quoting replies alter it slightly (a synonym, a dropped word) so that it does NOT
  verify: real models misquote, and researchers should see unverified quotes in pilots.
* Greetings, thanks and unrelated messages get a short, helpful reply. The reply never mentions a gold label.

The story is injected as the body of the first user turn (RESEARCH.md §3); when a user message contains the
passage, only the text after it is read as what the user said.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

from oversight.assistant.quotes import normalise, normalise_passage, quote_fragments

MISQUOTE_RATE = 0.1
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Quoted sentences are between these many words (longer ones are cut, with "...", at QUOTE_CUT_WORDS).
QUOTE_MIN_WORDS = 6
QUOTE_MAX_WORDS = 45
QUOTE_CUT_WORDS = 30
MAX_TTFT_MS = 120_000
MAX_TOKENS_PER_S = 10_000


# --------------------------------------------------------------------------------------------------- settings


def _number(name: str, value, *, integer: bool = False) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"simulation setting {name!r} must be a number, not {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"simulation setting {name!r} must be a number, got {value!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"simulation setting {name!r} must be a finite number, got {value!r}")
    if integer:
        if value != int(value):
            raise ValueError(f"simulation setting {name!r} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class SimulationSettings:
    """The simulated assistant's knobs (``ModelEndpoint.simulation``)."""

    accuracy: float = 0.7  # P(believed option == gold)
    seed: int = 0
    ttft_ms: int = 400  # time to first token
    tokens_per_s: float = 40  # 0 = stream without delay
    sycophancy: float = 0.3  # P(switch) when the user pushes back
    quote_rate: float = 0.7  # P(an arguing reply quotes the passage)
    misquote_rate: float = MISQUOTE_RATE  # P(a quote is altered so that it does not verify)

    def __post_init__(self) -> None:
        for name in ("accuracy", "sycophancy", "quote_rate", "misquote_rate"):
            value = _number(name, getattr(self, name))
            if not 0 <= value <= 1:
                raise ValueError(f"simulation setting {name!r} must be between 0 and 1, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "seed", _number("seed", self.seed, integer=True))
        ttft = _number("ttft_ms", self.ttft_ms, integer=True)
        if not 0 <= ttft <= MAX_TTFT_MS:
            raise ValueError(f"simulation setting 'ttft_ms' must be between 0 and {MAX_TTFT_MS}, got {ttft}")
        object.__setattr__(self, "ttft_ms", ttft)
        rate = _number("tokens_per_s", self.tokens_per_s)
        if not 0 <= rate <= MAX_TOKENS_PER_S:
            raise ValueError(
                f"simulation setting 'tokens_per_s' must be between 0 (no delay) and {MAX_TOKENS_PER_S}, got {rate}"
            )
        object.__setattr__(self, "tokens_per_s", rate)

    @classmethod
    def from_dict(cls, d: dict | None) -> SimulationSettings:
        """Build from ``ModelEndpoint.simulation``: missing (or null) keys take defaults; unknown keys are an
        error (a typo such as "sycophany" would otherwise silently run a study with the default)."""
        d = d or {}
        if not isinstance(d, dict):
            raise ValueError(f"simulation settings must be an object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown simulation setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in d.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimulatedItem:
    """What the simulated assistant may know about an item (plain values, built by the caller)."""

    item_key: str  # stable id, e.g. f"{bank_id}:{external_id}"; the belief depends on it
    question: str
    options: list[str]
    gold_index: int | None
    passage: str | None

    def __post_init__(self) -> None:
        if len(self.options) > len(LETTERS):
            raise ValueError(f"at most {len(LETTERS)} options are supported")
        if self.gold_index is not None and not 0 <= self.gold_index < len(self.options):
            raise ValueError(f"gold_index {self.gold_index} is out of range for {len(self.options)} options")


# --------------------------------------------------------------------------------------------------- hashing


def _unit(*parts) -> float:
    """A deterministic uniform number in [0, 1) from `parts`."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(choices, *parts):
    return choices[int(_unit(*parts) * len(choices))]


def _conversation_digest(conversation: list[dict]) -> str:
    blob = json.dumps([[m.get("role"), str(m.get("content") or "")] for m in conversation], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def believed_option(item: SimulatedItem, settings: SimulationSettings) -> int:
    """The option the assistant believes, fixed per (item_key, seed): gold with probability `accuracy`."""
    n = len(item.options)
    if n == 0:
        raise ValueError("the item has no options")
    if item.gold_index is None:
        return int(_unit(settings.seed, item.item_key, "unlabelled") * n)
    if n == 1 or _unit(f"{settings.seed}:{item.item_key}") < settings.accuracy:
        return item.gold_index
    wrong = [i for i in range(n) if i != item.gold_index]
    return wrong[int(_unit(settings.seed, item.item_key, "wrong") * len(wrong))]


# --------------------------------------------------------------------------------------------------- reading the user

_GREETING_RE = re.compile(r"^(hi|hello|hey|hiya|good (morning|afternoon|evening)|greetings)\b")
_THANKS_RE = re.compile(r"\b(thanks|thank you|thx|cheers|great|perfect|got it|ok|okay)\b")
_DOUBT_RE = re.compile(
    r"are you sure|you sure|really\?|isn'?t it|is it not|\bwrong\b|incorrect|not right|disagree|^no\b|\bnope\b"
    r"|mistake|don'?t think so|\bdoubt|why not|\bactually\b|that can'?t be|i don'?t buy"
)
_ASSERT_RE = re.compile(
    r"\bi think\b|\bi believe\b|\bi'?d say\b|\bi would say\b|pretty sure|\bsurely\b|should be|must be|\bit'?s\b"
    r"|\bit is\b|the answer is|i'?d go with|i'?m going with|i chose|i picked"
)
_QUESTION_RE = re.compile(
    r"\banswer|\boption|\bchoice|\bcorrect|\bright\b|\bwhich\b|\bquestion|\bchoose|\bpick\b|what do you think"
    r"|\bhelp\b|\btrue\b|\bfalse\b|\bbest\b|\blikely\b"
)
_EXPLAIN_RE = re.compile(r"\bwhy\b|\bexplain|\breason|\bhow (come|do you know)|\bjustify|\bsure\b|step by step")
_EVIDENCE_RE = re.compile(
    r"\bquote|\bevidence|\bpassage|\bstory|\barticle|\btext\b|where does it say|which (part|line|sentence)"
    r"|\bcite\b|\bsource\b"
)
_LETTER_EXPLICIT_RES = (
    re.compile(r"\(([A-Za-z])\)"),
    re.compile(r"\b(?:option|answer|choice|letter)\s*\(?([A-Za-z])\)?(?![\w'’])", re.IGNORECASE),
    re.compile(
        r"(?i:\bit'?s|\bit is|\bisn'?t it|\bis it|\bgo with|\bpick|\bchoose|\bchose|\bsay|\bnot|\bmaybe)"
        r"\s+\(?([A-Z])\)?(?![\w'’])"
    ),
)
_LETTER_BARE_RE = re.compile(r"(?<![\w'’])([B-HJ-Z])(?![\w'’])")  # bare capitals, except "A" and "I"

_STOPWORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as",
        "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "he", "she",
        "they", "them", "his", "her", "their", "we", "you", "your", "i", "me", "my", "our", "not", "no", "do", "does",
        "did", "so", "than", "then", "there", "which", "what", "who", "whom", "when", "where", "why", "how", "all",
        "any", "some", "one", "two", "would", "could", "should", "will", "can", "may", "might", "must", "has", "have",
        "had", "about", "into", "over", "after", "before", "up", "down", "out", "just", "also", "very", "more", "most",
        "other", "such", "only", "own", "same",
    }
)  # fmt: skip


def _content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split(" ") if len(w) > 2 and w not in _STOPWORDS}


def _user_text(content: str, passage: str | None) -> str:
    """What the user said in a message, without an injected passage (the text after it, if any)."""
    if passage and len(passage.strip()) > 40:
        story = passage.strip()
        at = content.rfind(story)
        if at >= 0:
            return content[at + len(story) :].strip()
    return content.strip()


def _named_options(message: str, item: SimulatedItem) -> set[int]:
    """Options the message refers to: explicit letters first, then option texts, then bare capital letters."""
    n = len(item.options)
    found: set[int] = set()
    for pattern in _LETTER_EXPLICIT_RES:
        for m in pattern.finditer(message):
            k = LETTERS.find(m.group(1).upper())
            if 0 <= k < n:
                found.add(k)
    if found:
        return found
    norm = f" {normalise(message)} "
    for k, option in enumerate(item.options):
        text = normalise(option)
        if len(text) >= 3 and f" {text} " in norm:
            found.add(k)
    if found:
        return found
    for m in _LETTER_BARE_RE.finditer(message):
        k = LETTERS.find(m.group(1))
        if 0 <= k < n:
            found.add(k)
    return found


@dataclass(frozen=True)
class _Turn:
    kind: str  # greeting | thanks | story | pushback | option | evidence | explain | inquiry | unrelated
    target: int | None = None  # the option named (pushback, option)
    outcome: str | None = None  # pushback: switched | held | agreed


_ARGUING = frozenset({"pushback", "option", "evidence", "explain", "inquiry"})


def _classify(message: str, item: SimulatedItem, committed: bool) -> _Turn:
    if not message:
        return _Turn("story")
    low = message.lower().replace("’", "'").replace("‘", "'")
    words = low.split()
    named = _named_options(message, item) if item.options else set()
    # The question (and options) pasted in: several options named, or the question's wording without any option.
    pasted = len(named) >= 2 or (not named and len(_content_words(message) & _content_words(item.question)) >= 3)
    if len(words) <= 6 and not named and not _QUESTION_RE.search(low):
        if _GREETING_RE.search(low):
            return _Turn("greeting")
        if _THANKS_RE.search(low):
            return _Turn("thanks")
    if not item.options:
        return _Turn("inquiry" if (pasted or _QUESTION_RE.search(low)) else "unrelated")
    if pasted:
        return _Turn("inquiry")
    target = next(iter(named)) if len(named) == 1 else None
    if target is not None and (_DOUBT_RE.search(low) or _ASSERT_RE.search(low)):
        return _Turn("pushback", target)
    if target is None and committed and _DOUBT_RE.search(low):
        return _Turn("pushback")
    if target is not None:
        return _Turn("option", target)
    if _EVIDENCE_RE.search(low):
        return _Turn("evidence")
    if _QUESTION_RE.search(low):
        return _Turn("inquiry")
    if committed and _EXPLAIN_RE.search(low):
        return _Turn("explain")
    return _Turn("unrelated")


def _replay(
    item: SimulatedItem, settings: SimulationSettings, conversation: list[dict]
) -> tuple[int | None, _Turn, bool]:
    """Walk the user turns of the context: the stance the next reply argues for, the last turn, and whether an
    answer had already been given before that turn."""
    stance = believed_option(item, settings) if item.options else None
    committed = was_committed = False
    last = _Turn("story")
    for i, message in enumerate(conversation):
        if message.get("role") != "user":
            continue
        turn = _classify(_user_text(str(message.get("content") or ""), item.passage), item, committed)
        if turn.kind == "pushback" and stance is not None:
            if turn.target == stance:
                turn = _Turn("pushback", turn.target, "agreed")
            elif _unit(settings.seed, item.item_key, "sycophancy", _conversation_digest(conversation[: i + 1])) < (
                settings.sycophancy
            ):
                if turn.target is not None:
                    stance = turn.target
                else:
                    others = [k for k in range(len(item.options)) if k != stance]
                    stance = _pick(others, settings.seed, item.item_key, "switch", i)
                turn = _Turn("pushback", turn.target, "switched")
            else:
                turn = _Turn("pushback", turn.target, "held")
        was_committed = committed
        if turn.kind in _ARGUING:
            committed = True
        last = turn
    return stance, last, was_committed


def assistant_stance(*, item: SimulatedItem, settings: SimulationSettings, conversation: list[dict]) -> int | None:
    """The option the simulated assistant argues for in its reply to `conversation` (None without options)."""
    return _replay(item, settings, conversation)[0]


# --------------------------------------------------------------------------------------------------- quoting

_PARAGRAPH_RE = re.compile(r"\n\s*\n")
_SENTENCE_RE = re.compile(r"[^.!?]+(?:[.!?]+|$)")
_SYNONYMS = {
    "said": "told", "big": "large", "large": "big", "small": "little", "little": "small", "walked": "went",
    "looked": "stared", "quickly": "rapidly", "began": "started", "started": "began", "house": "home",
    "ship": "vessel", "man": "person", "woman": "lady", "old": "ancient", "never": "not", "always": "often",
    "very": "really", "felt": "seemed", "knew": "realised", "thought": "believed", "asked": "wondered",
}  # fmt: skip


@lru_cache(maxsize=32)
def _passage_sentences(passage: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Candidate quotes with their content words: the passage's sentences (within a paragraph; hard line wraps
    joined), without dialogue marks, which would break the quote's own marks. Whitespace is collapsed, which quote
    verification ignores; everything else is verbatim."""
    out = []
    for paragraph in _PARAGRAPH_RE.split(passage):
        for m in _SENTENCE_RE.finditer(paragraph):
            words = m.group(0).split()
            if any(c in m.group(0) for c in '"“”„') or len(words) < QUOTE_MIN_WORDS:
                continue
            if len(words) > QUOTE_MAX_WORDS:
                words = words[:QUOTE_CUT_WORDS]
                words[-1] = words[-1].rstrip(",;:") + "..."
            sentence = " ".join(words)
            out.append((sentence, frozenset(_content_words(sentence))))
    return tuple(out)


def _best_sentence(item: SimulatedItem, option: int, key: str) -> str | None:
    """The sentence sharing the most content words with the option (counted twice) and the question."""
    sentences = _passage_sentences(item.passage or "")
    if not sentences:
        return None
    option_words = _content_words(item.options[option]) if item.options else set()
    question_words = _content_words(item.question)
    best, best_score = None, 0
    for sentence, words in sentences:
        score = 2 * len(words & option_words) + len(words & question_words)
        if score > best_score:
            best, best_score = sentence, score
    return best or _pick(sentences, key, "any-sentence")[0]


def _verifies(quote: str, passage: str) -> bool:
    return normalise_passage(passage).locate(quote_fragments(quote)) is not None


def _misquote(sentence: str, passage: str, key: str) -> str:
    """A plausible misquotation that does not verify: a synonym swapped in, else a word dropped or added."""
    words = sentence.split()
    attempts = []
    for i, word in enumerate(words):
        bare = word.lower().strip(",.;:!?")
        if bare in _SYNONYMS:
            attempts.append(words[:i] + [word.lower().replace(bare, _SYNONYMS[bare])] + words[i + 1 :])
    middle = [i for i in range(1, len(words) - 1) if len(words[i].strip(",.;:!?")) >= 4]
    if middle:
        drop = _pick(middle, key, "drop")
        attempts.append(words[:drop] + words[drop + 1 :])
    attempts.append(words[:1] + ["clearly"] + words[1:])
    for attempt in attempts:
        candidate = " ".join(attempt)
        if not _verifies(candidate, passage):
            return candidate
    return "It was clearly never about " + " ".join(words[-3:])  # practically unreachable


def _quote_for(item: SimulatedItem, settings: SimulationSettings, option: int, key: str) -> str | None:
    sentence = _best_sentence(item, option, key)
    if sentence is None:
        return None
    if _unit(settings.seed, key, "misquote") < settings.misquote_rate:
        return _misquote(sentence, item.passage or "", key)
    return sentence


# --------------------------------------------------------------------------------------------------- replies


_MARKDOWN_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>#|~])")


def _option_label(item: SimulatedItem, k: int) -> str:
    """ "**(B) The option's text**", in bold, as a model would write it. A full stop that ends the option is left
    out (the sentence around the label has its own); Markdown's own characters in the text are escaped."""
    text = " ".join(str(item.options[k]).split()).replace('"', "'").replace("“", "'").replace("”", "'")
    if len(text) > 160:
        text = text[:157].rstrip() + "…"
    text = _MARKDOWN_SPECIAL_RE.sub(r"\\\1", text.rstrip(" ."))
    return f"**({LETTERS[k]}) {text}**"


REASONS = (
    "It fits what the question is asking better than the alternatives.",
    "When I check each option against the question, that one holds up best.",
    "The other options each have a problem that this one doesn't.",
    "It's the most consistent with the details in the question.",
)


def _tempting(item: SimulatedItem, stance: int, key: str) -> str | None:
    others = [k for k in range(len(item.options)) if k != stance]
    if not others:
        return None
    return f"{_option_label(item, _pick(others, key, 'other'))} is tempting, but it doesn't match as well."


def _argument(item: SimulatedItem, stance: int, key: str) -> str:
    tempting = _tempting(item, stance, key)
    return _pick([*REASONS, *([tempting] if tempting else [])], key, "reason")


def _reasons_list(item: SimulatedItem, stance: int, key: str) -> str:
    """The argument as a short Markdown list: why this option, and which other one is tempting."""
    reasons = [_pick(REASONS, key, "reason"), _tempting(item, stance, key)]
    return "\n".join(f"- {reason}" for reason in reasons if reason)


def _quote_block(quote: str, key: str) -> str:
    """An introduction, then the quote as a Markdown block quote (still in double quotes, which is what quote
    verification looks for)."""
    intro = _pick(
        ["The passage supports this:", "The story says:", "For example, the text says:", "Here is the relevant line:"],
        key,
        "quote-template",
    )
    return f'{intro}\n\n> "{quote}"'


def _closer(key: str) -> str:
    return _pick(
        [
            "I'm fairly confident, but it's worth double-checking.",
            "Let me know if you'd like me to go through the other options.",
            "Happy to explain further if anything is unclear.",
            "",
            "",
        ],
        key,
        "closer",
    )


def _opener(item: SimulatedItem, stance: int, turn: _Turn, key: str) -> list[str]:
    label = _option_label(item, stance)
    if turn.kind == "pushback" and turn.outcome == "switched":
        return [
            _pick(
                [
                    "You're right, I apologise — I made a mistake.",
                    "I'm sorry, you're right to push back on that.",
                    "Apologies, I think I got that wrong.",
                ],
                key,
                "apology",
            ),
            f"The answer is more likely {label}.",
        ]
    if turn.kind == "pushback" and turn.outcome == "held":
        if turn.target is not None:
            held = f"{_option_label(item, turn.target)} is a reasonable thought, but I still think it's {label}."
        else:
            held = f"Still, I think the answer is {label}."
        hedge = _pick(
            ["I understand the doubt.", "I see why you might think so.", "I've thought it over."], key, "hold"
        )
        return [hedge, held]
    if turn.kind == "pushback":  # agreed: the user named the stance
        return [f"Yes, I agree — {label} looks right to me."]
    if turn.kind == "option":
        if turn.target == stance:
            return [f"Yes, I think {label} is the right choice."]
        return [f"I don't think {_option_label(item, turn.target)} is the best choice.", f"I'd go with {label}."]
    if turn.kind == "explain":
        return [f"Sure. I chose {label}."]
    return [
        _pick(
            [
                f"I'd go with {label}.",
                f"My best guess is {label}.",
                f"I think the answer is {label}.",
                f"Looking at the options, {label} seems most likely.",
            ],
            key,
            "opener",
        )
    ]


def simulated_reply(*, item: SimulatedItem, settings: SimulationSettings, conversation: list[dict]) -> str:
    """The simulated assistant's reply to the last user message of `conversation` (its context)."""
    stance, turn, answered_before = _replay(item, settings, conversation)
    key = f"{settings.seed}:{item.item_key}:{_conversation_digest(conversation)}"
    if turn.kind == "story":
        return "Thanks, I've read the story. What would you like to know about it?"
    if turn.kind == "greeting":
        return _pick(
            [
                "Hello! I'm happy to help. Paste the question and its options and I'll tell you what I think.",
                "Hi! Share the question you're working on, with the options, and we can go through it together.",
            ],
            key,
            "greeting",
        )
    if turn.kind == "thanks":
        said = next((str(m.get("content") or "") for m in reversed(conversation) if m.get("role") == "user"), "")
        if re.search(r"thank|thx|cheers", said, re.IGNORECASE):
            return "You're welcome! Let me know if there's anything else I can help with."
        return "Sounds good. Let me know if you'd like to go over anything else."
    if (turn.kind == "unrelated" or stance is None) and answered_before:
        return _pick(
            [
                "I'm not sure that's related to the question. I'm happy to go through the options again if it helps.",
                "That seems to be outside the question we're looking at. Is there an option you'd like me to check?",
            ],
            key,
            "unrelated-after",
        )
    if turn.kind == "unrelated" or stance is None:
        return _pick(
            [
                "I'm not sure how that relates to the question. If you share the question and its options, "
                "I can help you reason through them.",
                "I can best help with the question you're working on. Could you paste it along with the options?",
            ],
            key,
            "unrelated",
        )
    # Markdown, as served models write it: the option in bold, a list of reasons when asked for an answer or an
    # explanation, the story quoted as a block quote.
    opener = _opener(item, stance, turn, key)
    n_sentences = len(opener) + 1
    if turn.kind in {"inquiry", "explain"}:
        paragraphs = [" ".join(opener), _reasons_list(item, stance, key)]
    else:
        paragraphs = [" ".join([*opener, _argument(item, stance, key)])]
    wants_quote = turn.kind == "evidence"
    if item.passage and (wants_quote or _unit(key, "quote") < settings.quote_rate):
        quote = _quote_for(item, settings, stance, key)
        if quote:
            paragraphs.append(_quote_block(quote, key))
            n_sentences += 1
    elif wants_quote:
        paragraphs.append("There's no passage for this question, so I can't quote one.")
        n_sentences += 1
    closer = _closer(key)
    if closer and n_sentences < 5:
        paragraphs.append(closer)
    return "\n\n".join(paragraphs)


# --------------------------------------------------------------------------------------------------- streaming


def split_tokens(text: str) -> list[str]:
    """Words with their leading whitespace; joined, they give `text` back."""
    tokens = re.findall(r"\s*\S+", text)
    tail = text[len("".join(tokens)) :]
    if tail and tokens:
        tokens[-1] += tail
    elif tail:
        tokens = [tail]
    return tokens


async def stream_simulated(
    *,
    item: SimulatedItem,
    settings: SimulationSettings,
    conversation: list[dict],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[str]:
    """Stream `simulated_reply` like a served model: wait ttft_ms, then one word every 1/tokens_per_s seconds."""
    reply = simulated_reply(item=item, settings=settings, conversation=conversation)
    async for token in stream_text(reply, settings=settings, sleep=sleep):
        yield token


async def stream_text(
    reply: str, *, settings: SimulationSettings, sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
) -> AsyncIterator[str]:
    """Stream a finished text like a served model: wait ttft_ms, then one word every 1/tokens_per_s seconds."""
    if settings.ttft_ms > 0:
        await sleep(settings.ttft_ms / 1000)
    delay = 1 / settings.tokens_per_s if settings.tokens_per_s > 0 else 0.0
    for i, token in enumerate(split_tokens(reply)):
        if i and delay:
            await sleep(delay)
        yield token
