"""HTML to plain text for QuALITY's non-stripped articles, keeping the paragraph structure.

Each block element's text becomes one paragraph, with the source's line wraps inside it kept and its
leading/trailing indentation removed; paragraphs are separated by a blank line and the text ends with one
newline. This is the layout of QuALITY's official htmlstripped files, so a passage reads the same whichever
form it was imported from.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hr",
        "html", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th",
        "thead", "title", "tr", "ul",
    }
)  # fmt: skip
_SKIPPED_TAGS = frozenset({"script", "style"})
# Indentation only: str.strip() would also eat the non-breaking spaces that &nbsp; decodes to.
_INDENT = " \t\r\n\f"
_LOOKS_LIKE_HTML = re.compile(r"<\s*(?:!doctype|html|body|p|div|br|h[1-6])\b", re.IGNORECASE)


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_LIKE_HTML.search(text))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser.end_block()
    return "\n\n".join(parser.blocks) + "\n" if parser.blocks else ""


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._buffer: list[str] = []
        self._skipping = 0

    def end_block(self) -> None:
        text = "".join(self._buffer).strip(_INDENT)
        self._buffer = []
        if text:
            self.blocks.append(text)

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.end_block()
        elif tag == "br":
            self._buffer.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _BLOCK_TAGS:  # <hr/>
            self.end_block()
        elif tag == "br":
            self._buffer.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.end_block()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._buffer.append(data)
