"""What an advocate is given: exactly the story, its assignment and the public transcript. Never the other side's
prompt or scratchpad, never which answer is right."""

import pytest

from oversight.assistant.advocates import parse_choice, split_output, visible_so_far
from oversight.assistant.debate import transcript_advance, turn_finish
from oversight.assistant.models import TranscriptTurn
from oversight.banks.models import Item
from oversight.core.models import Advocate, Condition
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.factories import STORY, make_protocol_study

pytestmark = pytest.mark.django_db

PROMPT_A = "You are {name}, facing {opponent}. SECRET-PROMPT-OF-A. {word_limit} words, {rounds} rounds."
PROMPT_B = "You are {name}. SECRET-PROMPT-OF-B. Quote rule: {quote_rule}"


def debate_trial(**protocol):
    study = make_protocol_study(conditions=(("debate", protocol),), n_items=1, launch=False)
    Advocate.objects.filter(position=0).update(system_prompt=PROMPT_A)
    Advocate.objects.filter(position=1).update(system_prompt=PROMPT_B)
    from tests.factories import prepare_and_launch

    study = prepare_and_launch(study)
    participant = participant_join(study=study, params={"pid": "judge"}, consent=True)
    trial = participant.trials.get(transcript__isnull=False)
    return trial_show(trial=trial)


def finish(job, text):
    return turn_finish(message_id=job.message_id, text=text, status=TranscriptTurn.Status.COMPLETE)


def expected_context(item, transcript, *, letter, answer, transcript_text=None):
    a, b = (item.options[i] for i in transcript.options)
    said = (
        f"The transcript so far:\n<transcript>\n{transcript_text}\n</transcript>"
        if transcript_text
        else "Nothing has been said yet."
    )
    step = (
        "your opening argument"
        if transcript_text is None
        else ("your next argument: answer the other side's points and strengthen your own")
    )
    round_ = 1 if transcript_text is None else 2
    return (
        f"The question: {item.text}\n\n"
        f"The two answers:\nA: {a}\nB: {b}\n\n"
        f"You argue that the answer is {letter}: {answer}\n\n"
        f"<story>\n{STORY.strip()}\n</story>\n\n"
        f"{said}\n\n"
        f"It is round {round_} of 3. Write {step} (at most 150 words)."
    )


def test_an_advocates_context_is_exactly_its_prompt_the_story_its_assignment_and_the_public_transcript():
    trial = debate_trial()
    transcript, item = trial.transcript, trial.item
    a_text, b_text = (item.options[i] for i in transcript.options)

    first = transcript_advance(transcript_id=transcript.pk)
    job_a, job_b = first.jobs
    system_a, user_a = job_a.request.messages
    system_b, user_b = job_b.request.messages
    assert system_a == {
        "role": "system",
        "content": "You are Debater A, facing Debater B. SECRET-PROMPT-OF-A. 150 words, 3 rounds.",
    }
    assert system_b["content"].startswith("You are Debater B. SECRET-PROMPT-OF-B. Quote rule: Quote the story word")
    assert user_a == {"role": "user", "content": expected_context(item, transcript, letter="A", answer=a_text)}
    assert user_b == {"role": "user", "content": expected_context(item, transcript, letter="B", answer=b_text)}

    finish(
        job_a,
        "<thinking>PRIVATE-PLAN-OF-A</thinking>A's opening. <quote>Prudence had counted a fifth passenger who had "
        "come aboard hidden in the cargo hold.</quote>",
    )
    finish(job_b, "<thinking>PRIVATE-PLAN-OF-B</thinking>B's opening, <quote>the captain never slept</quote>.")
    second = transcript_advance(transcript_id=transcript.pk)
    round_two = {job.request.messages[1]["content"] for job in second.jobs}
    shown = (
        "Round 1\n\n"
        "Debater A: A's opening. <v_quote>Prudence had counted a fifth passenger who had come aboard hidden in the "
        "cargo hold.</v_quote>\n\n"
        "Debater B: B's opening, <u_quote>the captain never slept</u_quote>."
    )
    assert round_two == {
        expected_context(item, transcript, letter="A", answer=a_text, transcript_text=shown),
        expected_context(item, transcript, letter="B", answer=b_text, transcript_text=shown),
    }
    everything = " ".join(m["content"] for job in second.jobs for m in job.request.messages)
    for secret in ("PRIVATE-PLAN-OF-A", "PRIVATE-PLAN-OF-B", "<thinking"):
        assert secret not in everything
    a_messages, b_messages = (" ".join(m["content"] for m in job.request.messages) for job in second.jobs)
    assert "SECRET-PROMPT-OF-B" not in a_messages and "SECRET-PROMPT-OF-A" not in b_messages


def test_nothing_in_an_advocates_context_depends_on_which_answer_is_gold():
    trial = debate_trial()
    transcript = trial.transcript

    def contexts():
        jobs = transcript_advance(transcript_id=transcript.pk).jobs
        TranscriptTurn.objects.filter(transcript=transcript).delete()  # as if never asked
        return [job.request.messages for job in jobs], [job.request.advocate for job in jobs]

    gold, other = transcript.options[0], transcript.options[1]
    Item.objects.filter(pk=trial.item_id).update(gold_index=gold)
    as_is = contexts()
    Item.objects.filter(pk=trial.item_id).update(gold_index=other)
    swapped = contexts()
    assert as_is == swapped


def test_in_a_simultaneous_round_neither_side_sees_the_others_argument_of_that_round():
    trial = debate_trial(rounds=2)
    first = transcript_advance(transcript_id=trial.transcript_id)
    job_a, job_b = first.jobs
    finish(job_a, "A-ROUND-ONE")
    # B is still writing round one: nothing new starts, and B's request (already built) never saw A's turn.
    assert transcript_advance(transcript_id=trial.transcript_id).jobs == []
    assert "A-ROUND-ONE" not in job_b.request.messages[1]["content"]
    finish(job_b, "B-ROUND-ONE")
    second = transcript_advance(transcript_id=trial.transcript_id)
    assert all("A-ROUND-ONE" in j.request.messages[1]["content"] for j in second.jobs)


def test_in_a_sequential_round_the_second_debater_answers_the_first():
    trial = debate_trial(turn_order="sequential")
    (job_a,) = transcript_advance(transcript_id=trial.transcript_id).jobs
    finish(job_a, "A-GOES-FIRST")
    (job_b,) = transcript_advance(transcript_id=trial.transcript_id).jobs
    assert job_b.request.messages[1]["content"].count("A-GOES-FIRST") == 1
    assert "Debater A: A-GOES-FIRST" in job_b.request.messages[1]["content"]


def test_the_judges_question_reaches_both_advocates_next_round():
    study = make_protocol_study(conditions=(("interactive_debate", {"rounds": 2}),), n_items=1)
    participant = participant_join(study=study, params={"pid": "asker"}, consent=True)
    trial = trial_show(trial=participant.trials.get(transcript__isnull=False))
    from oversight.assistant.debate import transcript_question

    for job in transcript_advance(transcript_id=trial.transcript_id).jobs:
        finish(job, f"opening of {job.request.advocate['position']}")
    asked = transcript_question(trial_id=trial.pk, text="Where in the story is the stowaway found?")
    assert len(asked.jobs) == 2
    for job in asked.jobs:
        context = job.request.messages[1]["content"]
        assert "Round 2\n\nJudge: Where in the story is the stowaway found?" in context
        assert context.endswith("Answer the judge's question first.")


def test_a_consultants_context_names_only_its_own_assignment():
    study = make_protocol_study(conditions=(("consultancy", {}),), n_items=1)
    trial = trial_show(
        trial=participant_join(study=study, params={"pid": "c"}, consent=True).trials.get(transcript__isnull=False)
    )
    transcript = trial.transcript
    (job,) = transcript_advance(transcript_id=transcript.pk).jobs
    letter = "AB"[transcript.argues[0]]
    answer = trial.item.options[transcript.options[transcript.argues[0]]]
    assert f"You argue that the answer is {letter}: {answer}" in job.request.messages[1]["content"]
    assert job.request.messages[0]["content"].startswith("You are Consultant, a consultant")
    assert Condition.objects.get(pk=trial.condition_id).kind == "consultancy"


# --- The output: public and private parts ------------------------------------------------------------------


def test_the_scratchpad_is_private_and_the_public_part_is_cut_at_the_word_limit():
    raw = "<thinking>my plan</thinking>" + " ".join(f"w{i}" for i in range(20)) + "<thinking>more"
    out = split_output(raw, word_limit=12, scratchpad=True)
    assert out.public == " ".join(f"w{i}" for i in range(12)) and out.words == 12 and out.truncated
    assert out.private == "<thinking>my plan</thinking>\n\n<thinking>more"
    plain = split_output("<thinking>shown</thinking> rest", word_limit=50, scratchpad=False)
    assert plain.public == "<thinking>shown</thinking> rest" and plain.private == ""


def test_what_streams_is_the_public_part_and_only_ever_grows():
    raw = "Opening words <thinking>secret plan</thinking> then the argument goes on and on"
    shown = [visible_so_far(raw[:n], word_limit=8, scratchpad=True) for n in range(len(raw) + 1)]
    for before, after in zip(shown, shown[1:], strict=False):
        assert after.startswith(before)
    assert all("secret" not in s and "<thi" not in s for s in shown)
    assert shown[-1] == "Opening words  then the argument goes on and"


@pytest.mark.parametrize(
    ("reply", "choice"),
    [
        ("A", 0),
        ("B", 1),
        ("(B)", 1),
        ("Answer: A", 0),
        ("<thinking>A or B?</thinking>B", 1),
        ("A or B", None),
        ("neither", None),
    ],
)
def test_an_open_protocols_choice_is_read_from_its_reply(reply, choice):
    assert parse_choice(reply) == choice
