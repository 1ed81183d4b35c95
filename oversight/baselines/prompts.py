"""Prompt templates for the model-alone baselines: the paper's prompts as defaults, rendered from data.

A template is text with placeholders and (for chat templates) turn markers; see docs/baselines.md.

Placeholders (anything else in braces is left as it is):

* ``{story}``     the QuALITY story as ``Story:\\n<text>\\n\\n``, empty for items without a passage;
* ``{question}``  the question text, verbatim;
* ``{choices}``   one line per option, `` (A) <text>``;
* ``{subject}``   the item's subject with underscores as spaces ("high school physics");
* ``{examples}``  few-shot only: the labelled examples. Everything after ``{examples}`` is the per-question
  body; each example is that body filled in for the example, followed by `` <gold letter>`` and a blank line
  (chat templates: the body's turns, with the gold letter as the final assistant message). A chain of thought
  with shots (MMLU 5-shot CoT) puts its examples before the whole template, each in the zero-shot layout;
* ``{reasoning}`` chain of thought only: where the sampled reasoning goes. The text before it is the prompt
  the reasoning is sampled from; the whole text, with the reasoning in place, is the prompt whose next token
  is scored.

**A story is given once** (QuALITY): with examples, which come from the same story, it opens the first example
and the examples after it and the question itself leave ``{story}`` empty; without examples it opens the question.

Chat templates (``chat=True``) are split into messages at lines starting ``Human:`` (a user message) and
``Assistant:`` (an assistant message); text before the first marker, other than ``{examples}``, becomes a
system message. They must end with an empty ``Assistant:`` turn: that is where the model answers. The text
is split into turns *before* the placeholders are filled, so question text can never open a new turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from .models import Method, PromptTemplate

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FIELD_RE = re.compile(r"\{(question|choices|story|subject)\}")
_TURN_RE = re.compile(r"(?m)^(Human|Assistant):[ \t]?")

# The paper's prompt (RESEARCH.md §4) with Anthropic's HH layout: turns separated by a blank line. The next
# token after "Assistant:" is the letter, which most tokenisers spell " A" (with its space).
_QUESTION = "{story}Question: {question}\n\nChoices:\n{choices}\n\n"
ZERO_SHOT_TEXT = "Human: " + _QUESTION + "Answer:\n\nAssistant:"
FEW_SHOT_TEXT = "{examples}" + ZERO_SHOT_TEXT
COT_TEXT = (
    ZERO_SHOT_TEXT
    + " Let's think step by step.{reasoning}\n\n"
    + "Human: Based on the above, what is the single, most likely answer choice?\n\n"
    + "Assistant: The single, most likely answer choice is"
)
# Chat variants for instruction-tuned models: the same words as messages. A chat API cannot continue a
# half-written assistant turn ("The single, most likely answer choice is"), so the last question asks for the
# letter alone instead.
ZERO_SHOT_CHAT = "Human: " + _QUESTION + "Answer with the letter of the correct choice only.\n\nAssistant:"
FEW_SHOT_CHAT = "{examples}" + ZERO_SHOT_CHAT
COT_CHAT = (
    "Human: " + _QUESTION + "Let's think step by step.\n\n"
    "Assistant:{reasoning}\n\n"
    "Human: Based on the above, what is the single, most likely answer choice? "
    "Answer with the letter of the choice only.\n\n"
    "Assistant:"
)

# The judge that can score chain-of-thought samples for best of N (run parameter scorer="judge"): the question and
# one sampled reasoning, then whether the reasoning is sound, answered with a letter whose log-probability is read
# (A: sound). The score of a sample is log P(A) - log P(B). A run may give its own text (parameter judge_prompt),
# with the same placeholders as a chain-of-thought template.
JUDGE_OPTIONS = ("Yes, it is sound", "No, it is flawed")
JUDGE_TEXT = (
    ZERO_SHOT_TEXT
    + " Let's think step by step.{reasoning}\n\n"
    + "Human: Is the reasoning above sound?\n\nChoices:\n (A) "
    + JUDGE_OPTIONS[0]
    + "\n (B) "
    + JUDGE_OPTIONS[1]
    + "\n\nAnswer:\n\nAssistant:"
)
JUDGE_CHAT = (
    "Human: "
    + _QUESTION
    + "Let's think step by step.\n\nAssistant:{reasoning}\n\n"
    + "Human: Is the reasoning above sound? (A) "
    + JUDGE_OPTIONS[0]
    + " (B) "
    + JUDGE_OPTIONS[1]
    + ". Answer with the letter only.\n\nAssistant:"
)

DEFAULT_TEMPLATES: dict[str, tuple[str, bool, str, str]] = {
    "paper-zero-shot": (Method.ZERO_SHOT, False, ZERO_SHOT_TEXT, "Bowman et al. 2022 §3.3, zero-shot"),
    "paper-few-shot": (Method.FEW_SHOT, False, FEW_SHOT_TEXT, "Bowman et al. 2022 §3.3, 5-shot (MMLU dev)"),
    "paper-cot": (Method.COT, False, COT_TEXT, "Bowman et al. 2022 §3.3, chain of thought and follow-up"),
    "chat-zero-shot": (Method.ZERO_SHOT, True, ZERO_SHOT_CHAT, "Chat messages for instruction-tuned models"),
    "chat-few-shot": (Method.FEW_SHOT, True, FEW_SHOT_CHAT, "Chat messages for instruction-tuned models"),
    "chat-cot": (Method.COT, True, COT_CHAT, "Chat messages for instruction-tuned models"),
}


def judge_template(text: str | None, *, chat: bool) -> Template:
    """The judge's prompt for best of N (scorer "judge"): `text`, or the default for text or chat endpoints. It has
    the placeholders of a chain-of-thought template and asks for (A) sound or (B) flawed."""
    text = text or (JUDGE_CHAT if chat else JUDGE_TEXT)
    return Template.build(name="judge", method=Method.COT, text=text, chat=chat)


def default_template_name(method: str, chat: bool) -> str:
    return f"{'chat' if chat else 'paper'}-{method}"


def ensure_default_templates() -> None:
    """Create the default templates that do not exist yet (an edited row is kept as it is: it is data)."""
    existing = set(PromptTemplate.objects.filter(name__in=DEFAULT_TEMPLATES).values_list("name", flat=True))
    for name, (method, chat, text, description) in DEFAULT_TEMPLATES.items():
        if name in existing:
            continue
        try:
            with transaction.atomic():
                PromptTemplate.objects.create(name=name, method=method, chat=chat, text=text, description=description)
        except IntegrityError:  # created concurrently by another process
            pass


# --------------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class PromptItem:
    """What a prompt needs to know about an item (plain values)."""

    question: str
    options: tuple[str, ...]
    subject: str = ""
    passage: str | None = None
    gold_index: int | None = None

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: a raw text (completion / TGI /generate) or chat messages."""

    text: str | None = None
    messages: tuple[dict, ...] | None = None

    @property
    def chat(self) -> bool:
        return self.messages is not None

    def display(self) -> str:
        if self.messages is None:
            return self.text or ""
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages)


def _choices(options: Sequence[str]) -> str:
    return "\n".join(f" ({LETTERS[i]}) {option}" for i, option in enumerate(options))


def _values(item: PromptItem, *, story: bool = True) -> dict[str, str]:
    return {
        "question": item.question,
        "choices": _choices(item.options),
        "story": f"Story:\n{item.passage}\n\n" if item.passage and story else "",
        "subject": item.subject.replace("_", " "),
    }


def _story_once(item: PromptItem, examples: Sequence[PromptItem]) -> tuple[list[bool], bool]:
    """Which examples, and whether the question, show the story: only the first text that has it."""
    shown = [False] * len(examples)
    for i, ex in enumerate(examples):
        if ex.passage:
            shown[i] = True
            return shown, item.passage is not None and item.passage != ex.passage
    return shown, True


def _fill(text: str, values: dict[str, str]) -> str:
    return _FIELD_RE.sub(lambda m: values[m.group(1)], text)


@dataclass(frozen=True)
class _Turn:
    role: str  # system | user | assistant
    text: str


def _turns(text: str) -> list[_Turn]:
    turns: list[_Turn] = []
    pieces = _TURN_RE.split(text.replace("{examples}", "\n", 1))  # "{examples}Human:" opens a turn too
    preamble = pieces[0]
    if preamble.strip():
        turns.append(_Turn("system", preamble.strip()))
    for marker, body in zip(pieces[1::2], pieces[2::2], strict=True):
        turns.append(_Turn("user" if marker == "Human" else "assistant", body.strip("\n")))
    return turns


def check_template(*, method: str, text: str, chat: bool) -> None:
    """Raise ValueError when a template cannot work for its method."""
    if method not in Method.values:
        raise ValueError(f"unknown method {method!r}")
    if "{question}" not in text or "{choices}" not in text:
        raise ValueError("a template needs {question} and {choices}")
    has_examples, has_reasoning = "{examples}" in text, "{reasoning}" in text
    if has_examples != (method == Method.FEW_SHOT):
        raise ValueError("{examples} belongs in few-shot templates, and they need it")
    if has_reasoning != (method == Method.COT):
        raise ValueError("{reasoning} belongs in chain-of-thought templates, and they need it")
    if has_examples and text.count("{examples}") != 1:
        raise ValueError("{examples} may appear once")
    if has_reasoning and text.count("{reasoning}") != 1:
        raise ValueError("{reasoning} may appear once")
    if chat:
        turns = _turns(text)
        if not turns or turns[-1].role != "assistant" or turns[-1].text.strip():
            raise ValueError("a chat template must end with an empty 'Assistant:' turn (where the model answers)")
        first_turn = _TURN_RE.search(text.replace("{examples}", "\n", 1))
        if has_examples and (first_turn is None or text.index("{examples}") > first_turn.start()):
            raise ValueError("in a chat template, {examples} must come before the first turn")
        if has_reasoning and not any(t.role == "assistant" and "{reasoning}" in t.text for t in turns):
            raise ValueError("in a chat template, {reasoning} must be inside an 'Assistant:' turn")


@dataclass(frozen=True)
class Template:
    """A PromptTemplate row as a plain value (what the runner's event-loop thread renders from)."""

    name: str
    method: str
    text: str
    chat: bool
    content_hash: str = ""
    turns: tuple[_Turn, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_row(cls, row: PromptTemplate) -> Template:
        return cls.build(name=row.name, method=row.method, text=row.text, chat=row.chat, content_hash=row.content_hash)

    @classmethod
    def build(cls, *, name: str, method: str, text: str, chat: bool, content_hash: str = "") -> Template:
        check_template(method=method, text=text, chat=chat)
        return cls(name, method, text, chat, content_hash, tuple(_turns(text)) if chat else ())

    # -- text templates ---------------------------------------------------------------------------------------

    @staticmethod
    def _text_examples(body: str, examples: Sequence[PromptItem], stories: Sequence[bool]) -> str:
        out = []
        for ex, story in zip(examples, stories, strict=True):
            out.append(_fill(body, _values(ex, story=story)) + " " + LETTERS[ex.gold_index] + "\n\n")
        return "".join(out)

    def _example_turns(self) -> list[_Turn]:
        """The turns each example of a chat template is asked in: the body's, or (chain of thought) the zero-shot's."""
        turns = list(self.turns)
        if turns and turns[0].role == "system":
            turns = turns[1:]
        if self.method == Method.COT:
            turns = [t for t in _turns(ZERO_SHOT_CHAT) if t.role != "system"]
        return turns[:-1]

    # -- chat templates ---------------------------------------------------------------------------------------

    def _chat_messages(
        self, item: PromptItem, examples: Sequence[PromptItem], reasoning: str | None, stop_at_reasoning: bool
    ) -> tuple[dict, ...]:
        stories, own_story = _story_once(item, examples)
        values = _values(item, story=own_story)
        messages: list[dict] = []
        turns = list(self.turns)
        if turns and turns[0].role == "system":
            messages.append({"role": "system", "content": _fill(turns[0].text, values)})
            turns = turns[1:]
        example_turns = self._example_turns()
        for ex, story in zip(examples, stories, strict=True):
            ex_values = _values(ex, story=story)
            for turn in example_turns:
                messages.append({"role": turn.role, "content": _fill(turn.text, ex_values)})
            messages.append({"role": "assistant", "content": LETTERS[ex.gold_index]})
        for turn in turns[:-1]:  # the last turn is the empty assistant turn the model answers in
            if "{reasoning}" in turn.text:
                if stop_at_reasoning:
                    break
                before, after = turn.text.split("{reasoning}", 1)
                content = (_fill(before, values) + (reasoning or "") + _fill(after, values)).strip()
            else:
                content = _fill(turn.text, values)
            messages.append({"role": turn.role, "content": content})
        return tuple(messages)

    # -- public -----------------------------------------------------------------------------------------------

    def render(self, item: PromptItem, *, examples: Sequence[PromptItem] = (), reasoning: str | None = None) -> Prompt:
        """The prompt whose next token is scored (for chain of thought: with `reasoning` in place)."""
        if self.method == Method.COT and reasoning is None:
            raise ValueError("a chain-of-thought scoring prompt needs the reasoning")
        if self.chat:
            return Prompt(messages=self._chat_messages(item, examples, reasoning, stop_at_reasoning=False))
        stories, own_story = _story_once(item, examples)
        values = _values(item, story=own_story)
        if self.method == Method.FEW_SHOT:
            head, body = self.text.split("{examples}", 1)
            return Prompt(text=_fill(head, values) + self._text_examples(body, examples, stories) + _fill(body, values))
        if self.method == Method.COT:
            before, after = self.text.split("{reasoning}", 1)
            prefix = self._text_examples(ZERO_SHOT_TEXT, examples, stories)
            return Prompt(text=prefix + _fill(before, values) + reasoning + _fill(after, values))
        return Prompt(text=_fill(self.text, values))

    def reasoning_prompt(self, item: PromptItem, *, examples: Sequence[PromptItem] = ()) -> Prompt:
        """Chain of thought: the prompt the reasoning is sampled from (after the examples, for a CoT with shots)."""
        if self.method != Method.COT:
            raise ValueError("only chain-of-thought templates have a reasoning prompt")
        if self.chat:
            return Prompt(messages=self._chat_messages(item, examples, None, stop_at_reasoning=True))
        stories, own_story = _story_once(item, examples)
        prefix = self._text_examples(ZERO_SHOT_TEXT, examples, stories)
        return Prompt(text=prefix + _fill(self.text.split("{reasoning}", 1)[0], _values(item, story=own_story)))

    @property
    def stop_sequences(self) -> list[str]:
        """Where a sampled reasoning ends: the next turn marker (text templates)."""
        return [] if self.chat else ["\n\nHuman:"]
