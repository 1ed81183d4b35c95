"""Quote verification: is what the model presents as a quotation really in the story?

Follows Khan et al. 2024 (RESEARCH.md §7): a quote is *verified* when its normalised text is a substring of the
normalised passage. Normalisation here:

* Unicode compatibility-decomposed (NFKD), accents and other combining marks dropped, lower-cased;
* apostrophes (``'`` ``’`` ``‘`` ``ʼ`` `````) removed, so "don't" == "dont";
* every other character that is not a letter or digit (punctuation, straight/curly double quotes, dashes,
  symbols) becomes a space, then whitespace runs collapse to one space. Turning punctuation into a space rather
  than deleting it keeps "well-known" == "well known" and "word—word" == "word — word", which models rewrite
  freely, while still ignoring all punctuation.

Matching is a substring match on *word boundaries* (slightly stricter than a raw substring: "he went home" does not
verify against "she went homeward"). An ellipsis ("...", ". . ." or "…") inside a quote is a gap: each fragment must
match, in order; the reported span runs from the first fragment's start to the last fragment's end.

What counts as a quotation in the model's text: a span inside straight double quotes "…", curly double quotes “…”
(or „…“), or curly single quotes ‘…’ (the opening ‘ must not follow a letter and the closing ’ must not precede one,
so apostrophes such as "don’t" are not mistaken for closing quotes), each within one paragraph of the reply (a
quote never runs over a blank line, so a stray mark cannot swallow the paragraphs after it). Straight single quotes
are not considered: they are indistinguishable from apostrophes. A span must hold at least ``min_words`` words (default
``MIN_QUOTE_WORDS`` = 4): shorter ones ("weightless", "the right thing") are scare quotes or titles, not claims that
the story says so. A quote nested inside another quote is not reported separately.

Without a passage (MMLU items) there is nothing to verify against, and marking every quoted phrase "unverified"
would wrongly suggest the model misquoted a story, so ``find_quotes`` returns ``[]``.

Offsets (``start``/``end``) index the ORIGINAL passage string, so ``passage[start:end]`` is the matched span (from
the first letter/digit of the match to the last) and a UI can scroll to and highlight it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

MIN_QUOTE_WORDS = 4

_APOSTROPHES = frozenset("'`\u2018\u2019\u02bc\u00b4\u2032")

# A quote in the model's text never runs over a blank line, so one stray quote mark cannot pair with a mark
# paragraphs later and swallow everything in between.
_NO_BLANK_LINE = r"(?!\n[ \t]*\n)"
# Double quotes: “…”, „…“, "…" and mixtures of them (models are not consistent). A closing mark may also be an
# opening-style mark because some texts use “…“.
_DOUBLE_QUOTE_RE = re.compile(f'["\u201c\u201e\u201d]((?:{_NO_BLANK_LINE}[^"\u201c\u201d\u201e])*)["\u201d\u201c]')
# Curly single quotes ‘…’, not apostrophes: no letter/digit just before ‘ or just after ’.
_SINGLE_QUOTE_RE = re.compile(f"(?<![\\w\u2019])\u2018((?:{_NO_BLANK_LINE}[^\u2018])+?)\u2019(?![\\w])")
# "...", ". . ." or "…" inside a quote marks an omission.
_ELLIPSIS_RE = re.compile(r"\.\s*\.\s*\.|\u2026")


def _ascii_fold_table() -> tuple[str, ...]:
    table = []
    for code in range(128):
        ch = chr(code)
        if ch.isalnum():
            table.append(ch.lower())
        elif ch in _APOSTROPHES:
            table.append("")
        else:
            table.append(" ")
    return tuple(table)


_ASCII_FOLD = _ascii_fold_table()


@lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    """The normalised form of one non-ASCII character: "" (dropped), " " (a separator) or letters/digits."""
    if ch in _APOSTROPHES:
        return ""
    out = []
    for c in unicodedata.normalize("NFKD", ch.lower()):
        if unicodedata.category(c).startswith("M"):
            continue  # combining accents: "é" == "e"
        out.append(c if c.isalnum() else " ")
    return "".join(out)


def _normalise_with_map(text: str) -> tuple[str, list[int]]:
    """Normalise `text`; also return, for each normalised character, the index of the original character."""
    out: list[str] = []
    index: list[int] = []
    pending_space = -1  # original index of the first separator since the last kept character, or -1
    ascii_fold = _ASCII_FOLD
    for i, ch in enumerate(text):
        code = ord(ch)
        folded = ascii_fold[code] if code < 128 else _fold_char(ch)
        for c in folded:
            if c == " ":
                if pending_space < 0:
                    pending_space = i
                continue
            if pending_space >= 0:
                if out:  # no leading space
                    out.append(" ")
                    index.append(pending_space)
                pending_space = -1
            out.append(c)
            index.append(i)
    return "".join(out), index


def normalise(text: str) -> str:
    """The normalised form of `text` (see the module docstring); used for both quotes and passages."""
    return _normalise_with_map(text)[0]


@dataclass(frozen=True)
class NormalisedPassage:
    """A passage prepared once for many quote look-ups: its normalised text and a map back to the original."""

    original: str
    text: str
    index_map: tuple[int, ...] = field(repr=False)
    # " " + text + " ", so that a word-boundary search is one `str.find`.
    _padded: str = field(repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_padded", f" {self.text} ")

    def find(self, needle: str, start: int = 0) -> int:
        """Index in `text` of the first whole-word occurrence of the normalised `needle` at or after `start`."""
        if not needle:
            return -1
        # In the padded string the occurrence starts one character later; its leading space sits at index `start`.
        return self._padded.find(f" {needle} ", start)

    def original_span(self, norm_start: int, norm_end: int) -> tuple[int, int]:
        """Original-string offsets for the normalised span [norm_start, norm_end)."""
        return self.index_map[norm_start], self.index_map[norm_end - 1] + 1

    def locate(self, fragments: list[str]) -> tuple[int, int] | None:
        """Match normalised `fragments` in order; return the original (start, end) of the whole match, or None."""
        if not fragments:
            return None
        pos = 0
        first = last_end = None
        for fragment in fragments:
            hit = self.find(fragment, pos)
            if hit < 0:
                return None
            if first is None:
                first = hit
            last_end = hit + len(fragment)
            pos = last_end  # the next fragment starts at or after the space following this one
        return self.original_span(first, last_end)


@lru_cache(maxsize=64)
def normalise_passage(passage: str) -> NormalisedPassage:
    """Prepare `passage` for `find_quotes`. Cached by content, so repeated calls with the same story are free."""
    text, index = _normalise_with_map(passage)
    return NormalisedPassage(original=passage, text=text, index_map=tuple(index))


def quote_fragments(quote: str) -> list[str]:
    """The normalised, non-empty pieces of a quote between ellipses."""
    return [frag for frag in (normalise(piece) for piece in _ELLIPSIS_RE.split(quote)) if frag]


def _candidate_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, inner text) of every quoted span, outermost only, in reading order."""
    spans = [(m.start(1), m.end(1), m.group(1)) for m in _DOUBLE_QUOTE_RE.finditer(text)]
    spans += [(m.start(1), m.end(1), m.group(1)) for m in _SINGLE_QUOTE_RE.finditer(text)]
    spans.sort(key=lambda s: (s[0], -s[1]))
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if kept and span[0] < kept[-1][1]:
            continue  # nested in (or overlapping) a quote already kept
        kept.append(span)
    return kept


def find_quotes(text: str, passage: str | NormalisedPassage | None, *, min_words: int = MIN_QUOTE_WORDS) -> list[dict]:
    """Quotations in the model's `text`, each checked against `passage`.

    Returns, in reading order, ``{"text": the quote as written (without its quote marks), "verified": bool,
    "start": int | None, "end": int | None}`` where start/end are offsets into the original passage. Returns ``[]``
    when there is no passage (None, empty or only punctuation/whitespace).
    """
    if min_words < 1:
        raise ValueError("min_words must be at least 1")
    if passage is None or not text:
        return []
    prepared = passage if isinstance(passage, NormalisedPassage) else normalise_passage(passage)
    if not prepared.text:
        return []
    found = []
    for _start, _end, inner in _candidate_spans(text):
        fragments = quote_fragments(inner)
        if sum(len(f.split(" ")) for f in fragments) < min_words:
            continue
        span = prepared.locate(fragments)
        found.append(
            {
                "text": inner,
                "verified": span is not None,
                "start": span[0] if span else None,
                "end": span[1] if span else None,
            }
        )
    return found
