"""What a protocol trial's judge is shown, and what an AI judge reads: the same view, labelled by position, with
nothing that says which answer is gold; advocates' output sanitised like the chat's."""

import re

import pytest

from oversight.assistant.debate import transcript_advance, transcript_question, turn_finish
from oversight.assistant.models import TranscriptTurn
from oversight.assistant.selfplay import generate_transcript
from oversight.assistant.transcripts import judge_text, judge_view, render_transcript
from oversight.banks.models import Item
from oversight.core.protocols import PROTOCOL_KINDS
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.assistant.test_render import DANGEROUS_LINKS, RAW_HTML, assert_inert, visible_text
from tests.factories import make_protocol_study

pytestmark = pytest.mark.django_db


def judged(kind, *, static=False, **protocol):
    if static:
        protocol["transcripts"] = "static"
    study = make_protocol_study(slug=kind, conditions=((kind, protocol),), n_items=1, simulation={"quote_rate": 1.0})
    trial = participant_join(study=study, params={"pid": "j"}, consent=True).trials.get(transcript__isnull=False)
    trial = trial_show(trial=trial)
    generate_transcript(trial.transcript_id)
    trial.refresh_from_db()
    return trial


def renders(trial):
    view = judge_view(trial.transcript)
    return render_transcript(view), judge_text(view), repr(view.as_dict())


@pytest.mark.parametrize(
    ("kind", "static"), [(k, False) for k in PROTOCOL_KINDS] + [("debate", True), ("consultancy", True)]
)
def test_nothing_the_judge_sees_changes_with_which_of_the_two_answers_is_gold(kind, static):
    trial = judged(kind, static=static)
    first, second = trial.transcript.options
    Item.objects.filter(pk=trial.item_id).update(gold_index=first)
    with_first = renders(trial)
    Item.objects.filter(pk=trial.item_id).update(gold_index=second)
    # If any trace of the gold answer reached the view, changing it would change the page or the text.
    assert renders(trial) == with_first
    html, text, _ = with_first
    for word in ("correct", "gold", "honest", "incorrect", "distractor", "assigned", "<thinking"):
        assert word not in html.lower() and word not in text.lower()


def test_the_view_labels_answers_a_and_b_and_speakers_by_position():
    trial = judged("debate", rounds=1)
    view = judge_view(trial.transcript)
    item = trial.item
    assert [a["text"] for a in view.answers] == [item.options[i] for i in trial.transcript.options]
    assert [t["speaker"] for t in view.turns] == ["Debater A", "Debater B"]
    html = render_transcript(view)
    assert html.count('class="speaker">Debater A<') == 1 and "Round 1" in html
    assert view.story is None and 'class="story"' not in html  # the story stays hidden by default


def test_the_story_is_shown_where_the_condition_lets_the_judge_see_it():
    trial = judged("consultancy", judge_sees_story=True, rounds=1)
    view = judge_view(trial.transcript)
    assert view.story.startswith("The survey ship") and "<summary>The story</summary>" in render_transcript(view)
    assert "<story>\nThe survey ship" in judge_text(view)


def test_an_ai_judge_reads_the_transcript_the_human_page_shows_with_its_quotes_checked():
    trial = judged("debate", rounds=2)
    view = judge_view(trial.transcript)
    text = judge_text(view)
    html_text = visible_text(render_transcript(view))
    for turn in TranscriptTurn.objects.filter(transcript=trial.transcript):
        words = re.sub(r"<[^>]+>|\*\*", "", turn.content).split()  # the page shows neither tags nor bold marks
        assert " ".join(words[:4]) in " ".join(html_text.split())  # the page shows it …
    quotes = [q for t in TranscriptTurn.objects.filter(transcript=trial.transcript) for q in t.quotes]
    assert quotes and all(
        (f"<v_quote>{q['text']}</v_quote>" if q["verified"] else f"<u_quote>{q['text']}</u_quote>") in text
        for q in quotes
    )  # … and the AI judge reads the same quotes, marked as the page marks them
    assert text.startswith(f"Question: {trial.item.text}\n\nAnswers:\nA: ")


def test_the_judges_question_is_a_turn_of_the_transcript():
    study = make_protocol_study(conditions=(("interactive_debate", {"rounds": 2}),), n_items=1)
    trial = trial_show(
        trial=participant_join(study=study, params={"pid": "q"}, consent=True).trials.get(transcript__isnull=False)
    )
    for job in transcript_advance(transcript_id=trial.transcript_id).jobs:
        turn_finish(message_id=job.message_id, text="Opening.", status="complete")
    transcript_question(trial_id=trial.pk, text="<b>Why</b> the ration?")
    view = judge_view(trial.transcript)
    judge = next(t for t in view.turns if t["role"] == "judge")
    assert judge["speaker"] == "Judge" and judge["text"] == "<b>Why</b> the ration?"
    html = render_transcript(view)
    assert "&lt;b&gt;Why&lt;/b&gt; the ration?" in html and "<b>Why" not in html
    assert "Judge: <b>Why</b> the ration?" in judge_text(view)


@pytest.mark.parametrize("payload", [source for source, _visible in RAW_HTML] + DANGEROUS_LINKS)
def test_advocates_output_goes_through_the_chats_sanitiser(payload):
    study = make_protocol_study(conditions=(("debate", {"rounds": 1}),), n_items=1)
    trial = trial_show(
        trial=participant_join(study=study, params={"pid": "x"}, consent=True).trials.get(transcript__isnull=False)
    )
    jobs = transcript_advance(transcript_id=trial.transcript_id).jobs
    turn_finish(
        message_id=jobs[0].message_id, text=f"Before {payload} after <quote>{payload}</quote>", status="complete"
    )
    turn_finish(message_id=jobs[1].message_id, text=f"<thinking>{payload}</thinking>{payload}", status="complete")
    html = render_transcript(judge_view(trial.transcript))
    assert_inert(html)
    for turn in judge_view(trial.transcript).turns:
        assert_inert(turn["html"])
