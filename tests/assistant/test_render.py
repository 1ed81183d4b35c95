"""Safe Markdown rendering of model replies, and quote highlighting."""

from html.parser import HTMLParser

import pytest

from oversight.assistant.quotes import find_quotes
from oversight.assistant.render import render_markdown

FORBIDDEN_TAGS = {"script", "img", "iframe", "style", "object", "embed", "svg", "math", "form", "input", "link", "meta"}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []  # (tag, attrs dict)
        self.text = []
        self.marks = []  # (attrs, text)
        self._mark_depth = 0

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "mark":
            self._mark_depth += 1
            self.marks.append([dict(attrs), ""])

    def handle_endtag(self, tag):
        if tag == "mark":
            self._mark_depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._mark_depth:
            self.marks[-1][1] += data


def parse(html):
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


def assert_inert(html):
    """No active content: no dangerous elements, no event handlers or styles, no script URLs in attributes."""
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "<iframe" not in html.lower()
    doc = parse(html)
    for tag, attrs in doc.elements:
        assert tag not in FORBIDDEN_TAGS
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in {"style", "src", "srcdoc", "formaction"}, (tag, name)
            assert "javascript:" not in (value or "").lower().replace(" ", ""), (tag, name, value)
            assert "data:" not in (value or "").lower(), (tag, name, value)
    return doc


def visible_text(html):
    return "".join(parse(html).text)


# The XSS corpus: what a model may write, and what the participant must see of it (shown as text, never run).
# tests/assistant/test_transcripts.py puts the same corpus through a protocol advocate's turn.
RAW_HTML = [
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
    ('<a href="https://example.org" onclick="alert(1)">hi</a>', 'onclick="alert(1)"'),
    ("<iframe src='https://evil.example'></iframe>", "<iframe src='https://evil.example'></iframe>"),
    ("<div>\n<script>alert(1)</script>\n</div>", "<script>alert(1)</script>"),  # a raw HTML block
    ('<p style="position:fixed;top:0">cover</p>', 'style="position:fixed;top:0"'),
    ("<svg onload=alert(1)>", "<svg onload=alert(1)>"),
    ("<!-- comment --><style>body{display:none}</style>", "<style>body{display:none}</style>"),
]
DANGEROUS_LINKS = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![i](javascript:alert(1))",
    "![i](https://tracker.example/pixel.png)",
    "<javascript:alert(1)>",
    '[x](https://ok.example "title" onmouseover=alert(1))',
]


@pytest.mark.parametrize(("source", "visible"), RAW_HTML)
def test_raw_html_is_shown_as_text_not_executed(source, visible):
    html = render_markdown(f"Before {source} after")
    assert_inert(html)
    assert visible in visible_text(html)  # the participant still sees exactly what the model wrote
    assert "&lt;" in html


@pytest.mark.parametrize("source", DANGEROUS_LINKS)
def test_dangerous_links_and_images_are_inert(source):
    html = render_markdown(f"See {source} now")
    doc = assert_inert(html)
    for tag, attrs in doc.elements:
        if tag == "a" and "href" in attrs:
            assert attrs["href"].startswith(("http://", "https://", "mailto:"))
    assert "See" in visible_text(html) and "now" in visible_text(html)


def test_normal_markdown_renders():
    html = render_markdown(
        "# Heading\n\nSome **bold**, *italic* and `code`.\n\n- one\n- two\n\n3. three\n4. four\n\n"
        "```python\nprint('<hi>')\n```\n\n> a quote block\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "[a link](https://example.org/page) and ~~struck~~\n\n---"
    )
    assert_inert(html)
    assert "<h4>Heading</h4>" in html  # downgraded so replies don't outshout the page
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html and "<code>code</code>" in html
    assert "<ul>" in html and "<li>one</li>" in html
    assert '<ol start="3">' in html
    assert "<pre><code>print('&lt;hi&gt;')" in html
    assert "<blockquote>" in html and "<table>" in html and "<td>1</td>" in html
    assert "<s>struck</s>" in html and "<hr>" in html
    doc = parse(html)
    links = [attrs for tag, attrs in doc.elements if tag == "a"]
    assert links == [{"href": "https://example.org/page", "target": "_blank", "rel": "noopener noreferrer nofollow"}]


def test_relative_links_are_dropped():
    html = render_markdown("[admin](/console/studies/1/delete)")
    assert "href" not in html and "admin" in html


def test_private_use_sentinels_in_model_text_cannot_forge_marks():
    text = 'Evil \ue000\ue001 text "For the first year the voyage was quiet" \ue001more\ue000'
    html = render_markdown(text, quotes=[{"text": "x y z w", "verified": True, "start": 1, "end": 2}])
    assert "<mark" not in html
    assert "\ue000" not in html and "\ue001" not in html


PASSAGE = "Its captain had never commanded a ship. For the first year the voyage was quiet.\n\nThen the bay failed."


def test_quote_marks_wrap_the_right_text_with_offsets():
    reply = (
        'I think **(B)**. The story says "For the first year the voyage was quiet" and later '
        "\u201cthe crew mutinied against the captain\u201d."
    )
    quotes = find_quotes(reply, PASSAGE)
    html = render_markdown(reply, quotes=quotes)
    assert_inert(html)
    doc = parse(html)
    assert len(doc.marks) == 2
    (verified_attrs, verified_text), (unverified_attrs, unverified_text) = doc.marks
    assert verified_attrs == {"class": "quote verified", "data-start": str(quotes[0]["start"]),
                              "data-end": str(quotes[0]["end"])}  # fmt: skip
    assert verified_text == '"For the first year the voyage was quiet"'
    assert PASSAGE[int(verified_attrs["data-start"]) : int(verified_attrs["data-end"])] == (
        "For the first year the voyage was quiet"
    )
    assert unverified_attrs == {"class": "quote unverified"}
    assert unverified_text == "\u201cthe crew mutinied against the captain\u201d"
    assert "<strong>(B)</strong>" in html


def test_quote_with_markup_inside_stays_well_nested():
    reply = '"For the first year\n\nthe *voyage* was quiet" indeed'
    quotes = [{"text": "For the first year\n\nthe *voyage* was quiet", "verified": True, "start": 40, "end": 79}]
    html = render_markdown(reply, quotes=quotes)
    assert html == (
        '<p><mark class="quote verified" data-start="40" data-end="79">"For the first year</mark></p>\n'
        '<p><mark class="quote verified" data-start="40" data-end="79">the </mark><em>'
        '<mark class="quote verified" data-start="40" data-end="79">voyage</mark></em>'
        '<mark class="quote verified" data-start="40" data-end="79"> was quiet"</mark> indeed</p>\n'
    )


def test_quote_text_with_html_is_escaped_inside_the_mark():
    reply = '"the voyage <script>alert(1)</script> was quiet"'
    quotes = find_quotes(reply, PASSAGE)
    html = render_markdown(reply, quotes=quotes)
    assert_inert(html)
    assert parse(html).marks[0][1] == '"the voyage <script>alert(1)</script> was quiet"'


def test_bogus_quote_data_cannot_inject_attributes():
    reply = 'It says "For the first year the voyage was quiet".'
    evil = {"text": "For the first year the voyage was quiet", "verified": True, "start": '1" onclick="x', "end": 3}
    html = render_markdown(reply, quotes=[evil])
    assert_inert(html)
    assert parse(html).marks[0][0] == {"class": "quote verified"}


def test_quotes_not_in_the_text_are_skipped_and_repeated_quotes_each_marked():
    reply = 'Twice: "For the first year the voyage was quiet" and "For the first year the voyage was quiet".'
    quotes = find_quotes(reply, PASSAGE) + [{"text": "not in the reply at all", "verified": False}]
    html = render_markdown(reply, quotes=quotes)
    assert [attrs["class"] for attrs, _ in parse(html).marks] == ["quote verified", "quote verified"]


def test_quote_inside_a_link_url_is_not_broken():
    reply = 'See [the line](https://example.org/"For-the-first-year-was") and "For the first year the voyage was quiet"'
    quotes = find_quotes(reply, PASSAGE)
    html = render_markdown(reply, quotes=quotes)
    assert_inert(html)
    assert "\ue000" not in html and "\ue001" not in html
    doc = parse(html)
    assert [attrs["href"] for tag, attrs in doc.elements if tag == "a"] == [
        "https://example.org/%22For-the-first-year-was%22"
    ]
    assert [attrs["class"] for attrs, _ in doc.marks] == ["quote verified"]


def test_empty_text():
    assert render_markdown("") == ""
    assert render_markdown("", quotes=[]) == ""


def test_script_looking_text_is_displayed_but_absent_from_the_source():
    source = (
        'Look: <img src=x onerror="alert(2)"> and [x](javascript:alert(3)) `VBScript:run` [t](https://a.b "onclick=1")'
    )
    html = render_markdown(source)
    assert_inert(html)
    lowered = html.lower()
    assert "onerror" not in lowered and "javascript:" not in lowered and "vbscript:" not in lowered
    assert "onclick" not in lowered and "title=" not in lowered  # no generic attributes such as title
    text = visible_text(html)
    assert 'onerror="alert(2)"' in text and "javascript:alert(3)" in text and "VBScript:run" in text
