"""A protocol trial's judge socket (/ws/judge/<token>/<position>/): it finds the live transcript, starts it on
hello, relays the advocates' turns, the deltas and the debate's state, and passes on the judge's question or end.
No frame says which answer is gold or which side argued it."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.testing import WebsocketCommunicator

from oversight.assistant.models import TranscriptTurn
from oversight.core.models import Event, Transcript
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.assistant.test_chat import APP
from tests.factories import make_protocol_study

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ORIGIN = [(b"origin", b"http://localhost")]


def _judged(kind, protocol, tokens_per_s):
    study = make_protocol_study(
        conditions=((kind, protocol), ("unaided", {})),
        n_items=1,
        time_limit_s=600,
        simulation={"tokens_per_s": tokens_per_s, "quote_rate": 1.0},
    )
    participant = participant_join(study=study, params={"pid": "judge"}, consent=True)
    trial = trial_show(trial=participant.trials.get(transcript__isnull=False))
    return participant, trial


async def judged(kind="debate", protocol=None, tokens_per_s=300):
    return await sync_to_async(_judged)(kind, protocol or {}, tokens_per_s)


async def connect(participant, trial, reconnect=False):
    ws = WebsocketCommunicator(APP, f"/ws/judge/{participant.token}/{trial.position}/", headers=ORIGIN)
    connected, code = await ws.connect()
    assert connected, code
    await ws.send_json_to({"type": "hello", "reconnect": reconnect})
    history = await ws.receive_json_from(timeout=5)
    assert history["type"] == "history"
    return ws, history


async def frames_until(ws, done, frames=None, timeout=15):
    frames = [] if frames is None else frames
    while not done(frames):
        frames.append(await ws.receive_json_from(timeout=timeout))
    return frames


def over(frames):
    return any(f["type"] == "state" and f["state"]["status"] in {"complete", "failed"} for f in frames)


def waiting(frames):
    return any(f["type"] == "state" and f["state"]["may_question"] for f in frames)


async def test_only_a_live_protocol_trial_of_this_participant_has_a_judge_socket():
    participant, trial = await judged()
    for path in (f"/ws/judge/nope/{trial.position}/", f"/ws/judge/{participant.token}/{1 - trial.position}/"):
        ws = WebsocketCommunicator(APP, path, headers=ORIGIN)  # an unknown token; the unaided trial
        connected, code = await ws.connect()
        assert not connected and code == 4404


async def test_a_static_transcript_has_no_socket_its_page_shows_it_whole():
    def static():
        study = make_protocol_study(slug="static", conditions=(("debate", {"transcripts": "static"}),), n_items=1)
        participant = participant_join(study=study, params={"pid": "s"}, consent=True)
        return participant, trial_show(trial=participant.trials.get())

    participant, trial = await sync_to_async(static)()
    ws = WebsocketCommunicator(APP, f"/ws/judge/{participant.token}/{trial.position}/", headers=ORIGIN)
    connected, code = await ws.connect()
    assert not connected and code == 4404


async def test_hello_starts_the_debate_and_the_page_receives_every_turn_its_text_and_the_state():
    participant, trial = await judged()
    ws, history = await connect(participant, trial)
    assert history["transcript"]["turns"] == [] and history["state_text"] == "Round 1 of 3."
    frames = await frames_until(ws, over)
    texts: dict[str, str] = {}
    for frame in frames:
        if frame["type"] == "delta":
            text = texts.setdefault(frame["id"], "")
            assert frame["offset"] <= len(text), "a gap in the stream"
            texts[frame["id"]] = text + frame["text"][len(text) - frame["offset"] :]
    stored = await sync_to_async(lambda: {f"turn-{t.pk}": t.content for t in TranscriptTurn.objects.all()})()
    assert len(stored) == 6 and {k: v.rstrip() for k, v in texts.items()} == stored
    final = [f["message"] for f in frames if f["type"] == "message" and f["message"]["status"] == "complete"]
    assert sorted(m["id"] for m in final) == sorted(stored)
    assert frames[-1]["text"] == "The debate is over (3 rounds). Please give your answer."
    await ws.disconnect()


async def test_no_frame_says_which_answer_is_gold_or_which_side_argued_it():
    participant, trial = await judged("consultancy", {"rounds": 2})
    ws, history = await connect(participant, trial)
    frames = [history, *await frames_until(ws, over)]
    blob = json.dumps(frames).lower()
    item = await sync_to_async(lambda: trial.item)()
    transcript = await sync_to_async(Transcript.objects.get)(pk=trial.transcript_id)
    for i, option in enumerate(item.options):
        assert (option.lower() in blob) == (i in transcript.options)  # never the other two options
    for word in ("gold", "correct", "argues", "assignment", "private", "thinking", "scratchpad", '"raw"', "prompt"):
        assert word not in blob
    await ws.disconnect()


async def test_the_judges_question_reaches_both_debaters():
    participant, trial = await judged("interactive_debate", {"rounds": 2})
    ws, _ = await connect(participant, trial)
    frames = await frames_until(ws, waiting)
    assert frames[-1]["text"] == "Round 1 of 2 is over."
    await ws.send_json_to({"type": "question", "text": "Who found the stowaway?", "client_id": "q1"})
    frames = await frames_until(ws, over)
    asked = next(f["message"] for f in frames if f["type"] == "message" and f["message"]["role"] == "judge")
    assert asked["text"] == "Who found the stowaway?" and asked["speaker"] == "Judge"

    def second_round():
        judge = TranscriptTurn.objects.get(role="judge")
        return judge.pk, list(TranscriptTurn.objects.filter(round=2, role="advocate"))

    judge_id, second = await sync_to_async(second_round)()
    assert sorted(t.position for t in second) == [0, 1] and all(judge_id in t.context["turn_ids"] for t in second)
    assert await sync_to_async(Event.objects.filter(kind=Event.Kind.JUDGE_QUESTION).count)() == 1
    await ws.disconnect()


async def test_a_question_out_of_turn_is_refused_to_the_judge_alone():
    participant, trial = await judged("interactive_debate", {"rounds": 2}, tokens_per_s=20)
    ws, _ = await connect(participant, trial)
    await ws.send_json_to({"type": "question", "text": "Too early?"})
    frames = await frames_until(ws, lambda fs: any(f["type"] == "error" for f in fs))
    assert frames[-1]["message"] == "You can ask a question when the current round is over."
    await ws.disconnect()


async def test_the_judge_ends_the_debate_and_it_is_recorded():
    participant, trial = await judged(tokens_per_s=20)
    ws, _ = await connect(participant, trial)
    await frames_until(ws, lambda fs: sum(f["type"] == "delta" for f in fs) >= 2)
    await ws.send_json_to({"type": "end"})
    frames = await frames_until(ws, over)
    assert frames[-1]["state"]["ended_by"] == "judge" and frames[-1]["text"].startswith("You ended the debate")
    transcript = await sync_to_async(Transcript.objects.get)(pk=trial.transcript_id)
    assert transcript.ended_by == "judge"
    assert await sync_to_async(Event.objects.filter(kind=Event.Kind.DEBATE_ENDED).count)() == 1
    # The turns the end interrupted are finalised too (a moment after the state says so: their generation
    # writes its last flush), and none is left streaming.
    streaming = TranscriptTurn.objects.filter(transcript_id=trial.transcript_id, status=TranscriptTurn.Status.STREAMING)
    for _ in range(100):
        if not await sync_to_async(streaming.exists)():
            break
        await asyncio.sleep(0.1)
    assert not await sync_to_async(streaming.exists)()
    await ws.disconnect()


@pytest.mark.parametrize("frame", ['{"type": "dance"}', "not json", '["hello"]'])
async def test_a_frame_it_does_not_understand_is_answered_with_an_error_and_the_socket_stays(frame):
    participant, trial = await judged()
    ws, _ = await connect(participant, trial)
    await ws.send_to(text_data=frame)
    error = await frames_until(ws, lambda fs: any(f["type"] == "error" for f in fs))
    assert error[-1]["type"] == "error"
    await frames_until(ws, over)  # the debate goes on
    await ws.disconnect()
