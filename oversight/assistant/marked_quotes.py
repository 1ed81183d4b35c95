"""Quotes an advocate marks in its turn, verified against the story and counted against the quote budget.

Three forms are recognised, in reading order:

* **tags** (Khan et al. 2024): ``<quote>words of the story</quote>``; ``<v_quote>``/``<u_quote>`` (the
  checked form an advocate sees of earlier turns, and may copy) are read as plain ``<quote>``. An unclosed tag
  at the end of a turn (a turn cut at the word limit) quotes to the end. Verified by `quotes.py`'s normalised
  match (case, curly/straight quotes, punctuation and whitespace folded, whole words, "…" as a gap); any length.
* **spans** (the NYU debate platform, Michael et al. 2023): ``<<start-end>>`` names the story's words from
  ``start`` up to, not including, ``end``, counting whitespace-separated words from 0. A span inside the story is
  verified by construction and shows the story's own words; one outside it is unverified.
* **plain** quotation marks, as the chat reads them (at least four words inside "…" or “…”), unless the quoted
  text is part of the question or an answer (an advocate restating its answer is not quoting the story).

**Budget.** Quotes are counted in reading order by their words (the story's words, for a span); a quote that
would take the turn's total past the budget is not checked at all: it is shown flagged as over the budget
(``over_budget``) and counts as unverified. A budget of 0 allows no quotes.

Each quote is a dict: ``form``, ``text`` (the quoted words as shown), ``verified``, ``over_budget``, ``words``,
``start``/``end`` (offsets in the story, when verified), and ``at``/``until`` (offsets of the whole markup in the
turn's text), so the turn can be shown with its quotes in place (`display_text`, `checked_text`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from oversight.assistant.quotes import (
    find_quotes,
    normalise,
    normalise_passage,
    quote_fragments,
)

TAG = "tag"
SPAN = "span"
PLAIN = "plain"

_TAG_RE = re.compile(r"<(?:[vu]_)?quote>(.*?)(?:</(?:[vu]_)?quote>|\Z)", re.DOTALL | re.IGNORECASE)
_SPAN_RE = re.compile(r"<<\s*(\d{1,7})\s*-\s*(\d{1,7})\s*>>")
_WORD_RE = re.compile(r"\S+")


def _story_words(passage: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD_RE.finditer(passage)]


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def find_marked_quotes(
    text: str, passage: str | None, *, budget: int | None, exclude: Iterable[str] = ()
) -> list[dict]:
    """Every quote in an advocate's `text` (see the module docstring), checked against `passage`.

    Without a story (an MMLU item) nothing can be checked: marked quotes are returned unverified and plain
    quotation marks are not read as quotes at all (as the chat does).
    """
    if not text:
        return []
    found: list[dict] = []
    taken: list[tuple[int, int]] = []
    prepared = normalise_passage(passage) if passage else None
    for m in _TAG_RE.finditer(text):
        inner = m.group(1).strip()
        if not inner:
            continue
        fragments = quote_fragments(inner)
        span = prepared.locate(fragments) if prepared is not None and prepared.text else None
        found.append(_quote(TAG, inner, span, sum(len(f.split(" ")) for f in fragments), m.start(), m.end()))
        taken.append((m.start(), m.end()))
    words = _story_words(passage) if passage else []
    for m in _SPAN_RE.finditer(text):
        if _overlaps((m.start(), m.end()), taken):
            continue
        first, last = int(m.group(1)), int(m.group(2))
        if words and 0 <= first < last <= len(words):
            start, end = words[first][0], words[last - 1][1]
            found.append(_quote(SPAN, passage[start:end], (start, end), last - first, m.start(), m.end()))
        else:
            found.append(_quote(SPAN, m.group(0), None, max(0, last - first), m.start(), m.end()))
        taken.append((m.start(), m.end()))
    if passage:
        excluded = [normalise(e) for e in exclude if e]
        for plain in find_quotes(text, passage):
            inner = plain["text"]
            at = _locate_plain(text, inner, taken)
            if at is None:
                continue
            if any(normalise(inner) in e for e in excluded):
                continue  # the advocate restating the question or an answer
            span = (plain["start"], plain["end"]) if plain["verified"] else None
            found.append(_quote(PLAIN, inner, span, len(normalise(inner).split(" ")), *at))
            taken.append(at)
    found.sort(key=lambda q: q["at"])
    return _apply_budget(found, budget)


def _locate_plain(text: str, inner: str, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The offsets of a plain quote's marks around `inner`, outside the tagged and span quotes."""
    pos = 0
    while (at := text.find(inner, pos)) >= 0:
        span = (max(0, at - 1), min(len(text), at + len(inner) + 1))
        if not _overlaps(span, taken):
            return span
        pos = at + 1
    return None


def _quote(form: str, text: str, span, words: int, at: int, until: int) -> dict:
    return {
        "form": form,
        "text": text,
        "verified": span is not None,
        "over_budget": False,
        "words": words,
        "start": span[0] if span else None,
        "end": span[1] if span else None,
        "at": at,
        "until": until,
    }


def _apply_budget(quotes: list[dict], budget: int | None) -> list[dict]:
    if budget is None:
        return quotes
    used = 0
    for quote in quotes:
        if used + quote["words"] > budget:
            quote.update(over_budget=True, verified=False, start=None, end=None)
        else:
            used += quote["words"]
    return quotes


def budget_used(quotes: list[dict]) -> int:
    """Words of quotation counted against the budget (over-budget quotes were not counted)."""
    return sum(q["words"] for q in quotes if not q.get("over_budget"))


def _replaced(text: str, quotes: list[dict], show) -> str:
    out, last = [], 0
    for quote in sorted(quotes, key=lambda q: q["at"]):
        out += [text[last : quote["at"]], show(quote)]
        last = quote["until"]
    out.append(text[last:])
    return "".join(out)


def display_text(text: str, quotes: list[dict]) -> str:
    """The turn as the judge's page renders it: every quote as “the quoted words”, in curly quotes, so the chat's
    Markdown renderer can mark it verified or not (`render.render_markdown(…, quotes=…)`)."""
    return _replaced(text, quotes, lambda q: f"\u201c{q['text']}\u201d")


def checked_text(text: str, quotes: list[dict]) -> str:
    """The turn as text, with Khan et al.'s checked tags: <v_quote>…</v_quote> for a verified quote,
    <u_quote>…</u_quote> for any other. What the advocates read of earlier turns, and what an AI judge reads."""
    return _replaced(
        text,
        quotes,
        lambda q: f"<v_quote>{q['text']}</v_quote>" if q["verified"] else f"<u_quote>{q['text']}</u_quote>",
    )
