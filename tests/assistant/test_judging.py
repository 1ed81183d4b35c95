"""A live protocol transcript as its judge's page gets it: turns generated, persisted and streamed the way chat
replies are, both sides of a simultaneous round in parallel, resumable after a refresh, questions between
rounds, and a dead process's turn written again."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from oversight.assistant.debate import transcript_group
from oversight.assistant.judging import judge_act, judge_resume, judge_trial
from oversight.assistant.models import TranscriptTurn
from oversight.core.models import Event, Transcript
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.factories import make_protocol_study

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _setup(kind, protocol, tokens_per_s):
    study = make_protocol_study(
        conditions=((kind, protocol),), n_items=1, simulation={"tokens_per_s": tokens_per_s, "quote_rate": 1.0}
    )
    participant = participant_join(study=study, params={"pid": "judge"}, consent=True)
    trial = trial_show(trial=participant.trials.get(transcript__isnull=False))
    return participant.token, trial.position


async def setup(kind="debate", protocol=None, tokens_per_s=300):
    token, position = await sync_to_async(_setup)(kind, protocol or {}, tokens_per_s)
    trial = await judge_trial(token=token, position=position)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(transcript_group(transcript_id=trial.transcript_id, trial_id=trial.pk), channel)
    return trial, layer, channel


class Page:
    """What a judge's page keeps: each turn's text rebuilt from the frames (offsets applied), its final form."""

    def __init__(self, history=None):
        self.text: dict[str, str] = {}
        self.final: dict[str, dict] = {}
        self.deltas: list[str] = []  # turn ids, in the order their frames arrived
        self.state = None
        for turn in (history or {}).get("turns", []):
            self.take_message(turn)

    def take_message(self, turn):
        if turn["status"] == "streaming":
            self.text.setdefault(turn["id"], turn.get("text", ""))
        elif turn["role"] == "advocate":
            self.final[turn["id"]] = turn

    def take(self, frame):
        if frame["type"] == "chat.delta":
            text = self.text.setdefault(frame["id"], "")
            assert frame["offset"] <= len(text), "a gap in the stream"
            self.text[frame["id"]] = text + frame["text"][len(text) - frame["offset"] :]
            self.deltas.append(frame["id"])
        elif frame["type"] == "chat.message":
            self.take_message(frame["message"])
        elif frame["type"] == "debate.state":
            self.state = frame["state"]


async def until(layer, channel, page, done, timeout=15):
    async with asyncio.timeout(timeout):
        while not done(page):
            page.take(await layer.receive(channel))


def finished(page):
    return page.state is not None and page.state["status"] in {"complete", "failed"}


async def stored(trial):
    return await sync_to_async(
        lambda: {f"turn-{t.pk}": t for t in TranscriptTurn.objects.filter(transcript_id=trial.transcript_id)}
    )()


async def test_a_judge_follows_a_three_round_simultaneous_debate_streamed_and_stored():
    trial, layer, channel = await setup()
    history = await judge_resume(trial=trial, reconnect=False)
    assert history["transcript"]["turns"] == [] and [a["letter"] for a in history["transcript"]["answers"]] == [
        "A",
        "B",
    ]
    page = Page()
    await until(layer, channel, page, finished)
    turns = await stored(trial)
    assert page.state["rounds_done"] == 3 and page.state["ended_by"] == "rounds"
    assert len(page.final) == len(turns) == 6
    for key, turn in turns.items():
        assert page.text[key].rstrip() == turn.content  # every character streamed arrived, in order
        assert "<thinking" not in page.text[key] and turn.private.startswith("<thinking>")
        assert page.final[key]["speaker"] == ("Debater A" if turn.position == 0 else "Debater B")
    # The two sides of a round were written at the same time: their frames interleave.
    first_round = [k for k, t in turns.items() if t.round == 1]
    order = [k for k in page.deltas if k in first_round]
    assert order.index(first_round[1]) < len(order) - 1 - order[::-1].index(first_round[0])


async def test_a_refresh_mid_stream_shows_what_was_said_and_the_stream_goes_on_without_loss():
    trial, layer, channel = await setup(tokens_per_s=120)
    await judge_resume(trial=trial, reconnect=False)
    before = Page()
    await until(layer, channel, before, lambda p: sum(len(t) for t in p.text.values()) > 60)
    # The page is reloaded: a new socket joins the group first, then asks for the history.
    channel2 = await layer.new_channel()
    await layer.group_add(transcript_group(transcript_id=trial.transcript_id, trial_id=trial.pk), channel2)
    history = await judge_resume(trial=trial, reconnect=True)
    streaming = [t for t in history["transcript"]["turns"] if t["status"] == "streaming"]
    assert streaming and all(before.text[t["id"]].startswith(t["text"][: len(before.text[t["id"]])]) for t in streaming)
    after = Page(history["transcript"])
    await until(layer, channel2, after, finished)
    for key, turn in (await stored(trial)).items():
        assert after.final[key]["status"] == "complete"
        if key in after.text:  # streaming when the page came back, or started since: rebuilt without loss
            assert after.text[key] == turn.content
    assert await sync_to_async(Event.objects.filter(kind=Event.Kind.RECONNECT).count)() == 1
    assert await sync_to_async(TranscriptTurn.objects.count)() == 6  # the refresh started nothing twice


async def test_the_judges_question_between_rounds_reaches_both_advocates():
    trial, layer, channel = await setup("interactive_debate", {"rounds": 2})
    await judge_resume(trial=trial, reconnect=False)
    page = Page()
    await until(layer, channel, page, lambda p: p.state is not None and p.state["waiting_for_judge"])
    await judge_act(trial_id=trial.pk, transcript_id=trial.transcript_id, action="question", text="Who found them?")
    await until(layer, channel, page, finished)
    turns = await stored(trial)
    judge = next(t for t in turns.values() if t.role == "judge")
    second = [t for t in turns.values() if t.round == 2 and t.role == "advocate"]
    assert len(second) == 2 and all(judge.pk in t.context["turn_ids"] for t in second)
    assert all("judge's question" in t.content for t in second)  # the simulated advocates answered it


async def test_the_judge_ends_the_debate_and_the_running_turns_stop():
    trial, layer, channel = await setup(tokens_per_s=20)
    await judge_resume(trial=trial, reconnect=False)
    page = Page()
    await until(layer, channel, page, lambda p: len(p.deltas) >= 2)
    await judge_act(trial_id=trial.pk, transcript_id=trial.transcript_id, action="end")
    await until(layer, channel, page, lambda p: len(p.final) == 2)
    transcript = await sync_to_async(Transcript.objects.get)(pk=trial.transcript_id)
    assert transcript.ended_by == "judge"
    assert {t.status for t in (await stored(trial)).values()} == {"cancelled"}
    assert all(f["notice"] == "This turn was stopped when the debate ended." for f in page.final.values())


async def test_after_a_web_process_died_mid_turn_the_judges_next_visit_writes_the_turn_again():
    trial, layer, channel = await setup(tokens_per_s=300)

    def a_dead_process_left_a_turn_streaming():
        from oversight.assistant.debate import transcript_advance

        jobs = transcript_advance(transcript_id=trial.transcript_id).jobs
        TranscriptTurn.objects.filter(pk__in=[j.message_id for j in jobs]).update(
            raw="<thinking>x</thinking>Half", heartbeat_at=timezone.now() - timedelta(seconds=60)
        )

    await sync_to_async(a_dead_process_left_a_turn_streaming)()
    history = await judge_resume(trial=trial, reconnect=True)
    assert [t["status"] for t in history["transcript"]["turns"]] == ["interrupted", "interrupted"]
    assert [t["html"] for t in history["transcript"]["turns"]] == ["<p>Half</p>\n", "<p>Half</p>\n"]
    page = Page()
    await until(layer, channel, page, finished)
    statuses = sorted(t.status for t in (await stored(trial)).values())
    assert statuses == ["complete"] * 6 + ["interrupted"] * 2


async def test_advocates_served_by_a_wire_exact_fake_tgi_debate_with_verified_quotes():
    from oversight.core.models import ModelEndpoint
    from oversight_dev.faketgi import AsyncFakeTGI

    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=500, max_input_tokens=8000, max_total_tokens=10000) as tgi:
        trial, layer, channel = await setup(protocol={"rounds": 1})
        await sync_to_async(
            lambda: ModelEndpoint.objects.update(kind="tgi", base_url=tgi.url, model_label="tgi", request_timeout_s=5)
        )()
        await judge_resume(trial=trial, reconnect=False)
        page = Page()
        await until(layer, channel, page, finished)
        turns = sorted((await stored(trial)).values(), key=lambda t: t.position)
        assert [t.status for t in turns] == ["complete", "complete"]
        assert [t.content.split(",")[0] for t in turns] == ["The answer is A", "The answer is B"]
        assert all(t.quotes and t.quotes[0]["verified"] and t.private.startswith("<thinking>") for t in turns)
        assert all(t.model_id and t.completion_tokens for t in turns)
        requests = [r.json for r in tgi.requests if r.path == "/v1/chat/completions"]
        assert len(requests) == 2 and all(r["messages"][0]["role"] == "system" for r in requests)
