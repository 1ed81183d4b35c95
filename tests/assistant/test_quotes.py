"""Quote verification (Khan et al. 2024 normalised matching) with offsets back into the original passage."""

import time

import pytest

from oversight.assistant.quotes import MIN_QUOTE_WORDS, find_quotes, normalise, normalise_passage

PASSAGE = (
    "The colony ship \u201cAurora\u201d left Earth in the spring of 2210. Its captain, Mara Okafor, had never "
    "commanded a vessel of that size before.\n\n"
    "For the first year the voyage was quiet. Then the hydroponics bay failed,\nand the crew had to ration food "
    'for six months. "We won\'t starve," Okafor told them \u2014 but many doubted her.\n\n'
    "In the end it was the youngest engineer, a boy named T\u00e9o, who found the cracked valve."
)


def one(text, passage=PASSAGE, **kwargs):
    quotes = find_quotes(text, passage, **kwargs)
    assert len(quotes) == 1, quotes
    return quotes[0]


def assert_span_matches(quote):
    """The reported offsets cover text of the ORIGINAL passage that normalises to the quote."""
    assert quote["verified"]
    span = PASSAGE[quote["start"] : quote["end"]]
    assert normalise(span) == normalise(quote["text"])


def test_exact_quote_verifies_with_offsets():
    q = one('The story says: "For the first year the voyage was quiet." So yes.')
    assert q["text"] == "For the first year the voyage was quiet."
    assert q["verified"] is True
    assert PASSAGE[q["start"] : q["end"]] == "For the first year the voyage was quiet"
    assert_span_matches(q)
    assert set(q) == {"text", "verified", "start", "end"}


def test_case_quotes_punctuation_and_line_breaks_are_normalised():
    # Different case, curly quote marks, a straight apostrophe for a curly one and vice versa, no comma, the
    # passage's line break inside the quote, an em dash written as a hyphen.
    q = one("It says \u201cthe HYDROPONICS bay failed and the crew had to ration food\u201d.")
    assert_span_matches(q)
    assert "\n" in PASSAGE[q["start"] : q["end"]]
    q = one('Okafor said "We won\u2019t starve, Okafor told them - but many doubted her"')
    assert_span_matches(q)
    q = one('"the colony ship Aurora left Earth in the spring"')
    assert_span_matches(q)
    assert PASSAGE[q["start"] : q["end"]].startswith("The colony ship \u201cAurora\u201d")


def test_accents_fold():
    q = one('"a boy named Teo, who found the cracked valve"')
    assert_span_matches(q)
    assert PASSAGE[q["start"] : q["end"]].endswith("T\u00e9o, who found the cracked valve")


def test_fabricated_quote_is_unverified():
    q = one('As the story puts it, "the captain had commanded many large vessels before".')
    assert q == {
        "text": "the captain had commanded many large vessels before",
        "verified": False,
        "start": None,
        "end": None,
    }


def test_partial_words_do_not_verify():
    # A raw substring would match ("he voyage was quiet" is inside "the voyage was quiet"); word boundaries don't.
    assert one('"he voyage was quiet"')["verified"] is False
    assert one('"first year the voyage was qui"')["verified"] is False


def test_quote_spanning_a_paragraph_break():
    q = one('"had never commanded a vessel of that size before. For the first year"')
    assert_span_matches(q)
    assert "\n\n" in PASSAGE[q["start"] : q["end"]]


@pytest.mark.parametrize("ellipsis", ["...", "\u2026", ". . ."])
def test_ellipsis_is_a_gap_with_fragments_in_order(ellipsis):
    q = one(f'"Its captain, Mara Okafor {ellipsis} the voyage was quiet"')
    assert q["verified"] is True
    assert PASSAGE[q["start"] : q["end"]].startswith("Its captain, Mara Okafor")
    assert PASSAGE[q["start"] : q["end"]].endswith("the voyage was quiet")
    # Fragments out of order do not verify.
    assert one(f'"the voyage was quiet {ellipsis} Its captain, Mara Okafor"')["verified"] is False
    # Nor does a fragment that is not in the passage.
    assert one(f'"Its captain, Mara Okafor {ellipsis} the voyage was stormy"')["verified"] is False


def test_leading_and_trailing_ellipses():
    q = one('"...the youngest engineer, a boy named T\u00e9o..."')
    assert q["verified"] is True
    assert PASSAGE[q["start"] : q["end"]] == "the youngest engineer, a boy named T\u00e9o"


def test_short_scare_quotes_are_ignored():
    assert MIN_QUOTE_WORDS == 4
    assert find_quotes('The ship was "weightless" and the crew "the best crew" ever.', PASSAGE) == []
    # Three words is below the threshold; four is a quote.
    assert find_quotes('"the voyage was"', PASSAGE) == []
    assert one('"the voyage was quiet"')["verified"] is True
    assert one('"the voyage was"', min_words=3)["verified"] is True


def test_single_curly_quotes_and_apostrophes():
    text = "It doesn\u2019t say that; it says \u2018Then the hydroponics bay failed\u2019 and that\u2019s all."
    q = one(text)
    assert q["text"] == "Then the hydroponics bay failed"
    assert_span_matches(q)
    # Apostrophes alone never open or close a quote; straight single quotes are not quotes at all.
    assert find_quotes("That\u2019s the captain\u2019s ship, isn\u2019t it?", PASSAGE) == []
    assert find_quotes("'For the first year the voyage was quiet'", PASSAGE) == []


def test_nested_quote_is_reported_once():
    quotes = find_quotes("\u201cShe said \u2018For the first year the voyage was quiet\u2019 to me\u201d", PASSAGE)
    assert len(quotes) == 1
    assert quotes[0]["verified"] is False  # the outer quote is what the model claims


def test_multiple_quotes_in_reading_order():
    text = (
        'First, "For the first year the voyage was quiet." Then \u201cthe crew mutinied against the captain\u201d. '
        'Finally "who found the cracked valve".'
    )
    quotes = find_quotes(text, PASSAGE)
    assert [q["verified"] for q in quotes] == [True, False, True]
    assert quotes[0]["start"] < quotes[2]["start"]
    for q in (quotes[0], quotes[2]):
        assert_span_matches(q)


def test_no_passage_returns_empty():
    text = 'The textbook says "mitochondria are the powerhouse of the cell".'
    assert find_quotes(text, None) == []
    assert find_quotes(text, "") == []
    assert find_quotes(text, " \n ... ") == []
    assert find_quotes("", PASSAGE) == []


def test_normalised_passage_can_be_passed_in_and_is_cached():
    prepared = normalise_passage(PASSAGE)
    assert normalise_passage(PASSAGE) is prepared
    assert find_quotes('"For the first year the voyage was quiet"', prepared) == find_quotes(
        '"For the first year the voyage was quiet"', PASSAGE
    )
    assert prepared.text.startswith("the colony ship aurora left earth")


def test_min_words_must_be_positive():
    with pytest.raises(ValueError):
        find_quotes('"a b c d"', PASSAGE, min_words=0)


def test_fast_for_a_long_passage_and_reply():
    words = [f"word{i % 997}" for i in range(5500)]
    passage = " ".join(words)  # ~50k characters
    assert len(passage) > 30_000
    real = " ".join(words[4000:4012])
    reply = (f'It says "{real}" and also "word1 word2 word3 word999 nonsense here". ' * 12)[:2000]
    t0 = time.perf_counter()
    prepared = normalise_passage(passage)
    quotes = find_quotes(reply, prepared)
    elapsed = time.perf_counter() - t0
    assert quotes and quotes[0]["verified"] and not quotes[1]["verified"]
    assert passage[quotes[0]["start"] : quotes[0]["end"]] == real
    assert elapsed < 0.5
    t0 = time.perf_counter()
    for _ in range(20):
        find_quotes(reply, passage)  # cached preparation: just the look-ups
    assert time.perf_counter() - t0 < 0.2


def test_a_stray_quote_mark_does_not_swallow_later_paragraphs():
    text = 'The screen is 5" wide, as far as I know.\n\nThe story says "For the first year the voyage was quiet".'
    quotes = find_quotes(text, PASSAGE)
    assert [(q["text"], q["verified"]) for q in quotes] == [("For the first year the voyage was quiet", True)]
    # Within a paragraph a quote may still wrap onto the next line.
    assert one('"For the first year\nthe voyage was quiet"')["verified"] is True
