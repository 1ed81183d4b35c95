"""Quotes an advocate marks: Khan et al.'s tags, the NYU span form and plain quotation marks, each verified
against the story, counted against the quote budget, and shown in place."""

from oversight.assistant.marked_quotes import budget_used, checked_text, display_text, find_marked_quotes
from oversight.assistant.render import render_markdown
from tests.factories import STORY

SENTENCE = "Prudence had counted a fifth passenger who had come aboard hidden in the cargo hold."


def summary(quotes):
    return [(q["form"], q["text"], q["verified"], q["over_budget"], q["words"]) for q in quotes]


def test_a_tagged_quote_is_verified_against_the_story_with_its_place_in_it():
    (quote,) = find_marked_quotes(f"Look: <quote>{SENTENCE}</quote> See?", STORY, budget=50)
    assert quote["form"] == "tag" and quote["verified"] and quote["words"] == 15
    assert STORY[quote["start"] : quote["end"]] == SENTENCE.rstrip(".")


def test_a_misquote_in_tags_is_unverified_and_checked_forms_copied_from_earlier_turns_are_read_as_quotes():
    text = "<quote>Prudence counted a sixth passenger</quote> and <v_quote>the engineer found the tank whole</v_quote>"
    assert summary(find_marked_quotes(text, STORY, budget=50)) == [
        ("tag", "Prudence counted a sixth passenger", False, False, 5),
        ("tag", "the engineer found the tank whole", True, False, 6),
    ]


def test_a_quote_left_open_at_the_word_limit_runs_to_the_end():
    (quote,) = find_marked_quotes("It says <quote>the captain suspected a leak in the", STORY, budget=50)
    assert quote["verified"] and quote["text"] == "the captain suspected a leak in the"


def test_a_span_shows_the_storys_own_words_and_one_outside_the_story_is_unverified():
    words = STORY.split()
    quotes = find_marked_quotes("First <<0-5>>, then <<9999-10005>>.", STORY, budget=50)
    assert summary(quotes) == [
        ("span", " ".join(words[0:5]), True, False, 5),
        ("span", "<<9999-10005>>", False, False, 6),
    ]
    assert display_text("First <<0-5>>, then x.", quotes[:1]) == f"First “{' '.join(words[0:5])}”, then x."


def test_plain_quotation_marks_count_but_not_when_they_restate_the_question_or_an_answer():
    answer = "the quartermaster machine cut the water ration"
    text = f'I say "{answer}". The story: "When the stowaway was found, the ration went back".'
    quotes = find_marked_quotes(text, STORY, budget=50, exclude=[answer])
    assert summary(quotes) == [("plain", "When the stowaway was found, the ration went back", True, False, 9)]


def test_quotes_past_the_budget_are_flagged_and_not_checked():
    text = (
        f"<quote>{SENTENCE}</quote> <quote>The captain suspected a leak in the forward tank</quote> "
        "<quote>the engineer found the tank whole and dry</quote>"
    )
    quotes = find_marked_quotes(text, STORY, budget=25)
    assert summary(quotes) == [
        ("tag", SENTENCE, True, False, 15),
        ("tag", "The captain suspected a leak in the forward tank", True, False, 9),
        ("tag", "the engineer found the tank whole and dry", False, True, 8),
    ]
    assert budget_used(quotes) == 24
    assert all(q["over_budget"] for q in find_marked_quotes(f"<quote>{SENTENCE}</quote>", STORY, budget=0))


def test_without_a_story_marked_quotes_cannot_be_verified_and_plain_marks_are_not_quotes():
    quotes = find_marked_quotes('<quote>four crew</quote> and "some words in plain quotes here"', None, budget=50)
    assert summary(quotes) == [("tag", "four crew", False, False, 2)]


def test_the_checked_form_marks_each_quote_as_the_advocates_and_an_ai_judge_read_it():
    text = f"A <quote>{SENTENCE}</quote> B <quote>made up words here</quote> C"
    quotes = find_marked_quotes(text, STORY, budget=50)
    assert checked_text(text, quotes) == f"A <v_quote>{SENTENCE}</v_quote> B <u_quote>made up words here</u_quote> C"


def test_on_the_page_verified_unverified_and_over_budget_quotes_are_marked_differently():
    text = f"<quote>{SENTENCE}</quote> <quote>nobody said this</quote> <quote>the engineer found the tank whole</quote>"
    quotes = find_marked_quotes(text, STORY, budget=20)
    html = render_markdown(display_text(text, quotes), quotes=quotes)
    assert '<mark class="quote verified" data-start=' in html
    assert '<mark class="quote unverified">“nobody said this”</mark>' in html
    assert '<mark class="quote unverified over-budget">“the engineer found the tank whole”</mark>' in html
