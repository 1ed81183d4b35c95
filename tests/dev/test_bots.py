"""The participant bots: their decision rules, their chat client, and bots through the real server (daphne,
subprocess): 50 through the whole demo study, and a few chatting with the simulated assistant."""

import asyncio
import json
import random
import time

import pytest

from oversight_dev.bots import (
    CHAT_MESSAGES,
    BotConfig,
    ChatStream,
    Slot,
    TrialInfo,
    chat_messages,
    decide,
    distribution_for,
    parse_page,
    ws_url,
)
from tests.live_server import live_server

LIKERT = [25.0, 42.0, 60.0, 80.0, 100.0]
ITEM = TrialInfo(item_id=7, gold_index=2, n_options=4, is_catch=False, time_limit_s=20, condition_kind="unaided")


def _decisions(info=ITEM, n=4000, seed=0, **kwargs):
    args = {
        "accuracy": 0.6,
        "timeout_rate": 0.05,
        "confidence_levels": LIKERT,
        "slider": None,
        "has_deadline": True,
        **kwargs,
    }
    return [decide(rng=random.Random(f"{seed}:{i}"), info=info, **args) for i in range(n)]


def test_bots_answer_at_the_chosen_accuracy_with_confidence_higher_when_right():
    decisions = _decisions()
    right = [d for d in decisions if d.choice == ITEM.gold_index]
    assert abs(len(right) / len(decisions) - 0.6) < 0.03
    assert all(d.intended_correct == (d.choice == ITEM.gold_index) for d in decisions)
    assert {d.choice for d in decisions} == {0, 1, 2, 3}
    wrong = [d for d in decisions if d.choice != ITEM.gold_index]
    assert sum(d.confidence for d in right) / len(right) > sum(d.confidence for d in wrong) / len(wrong) + 10
    assert {d.confidence for d in decisions} <= set(LIKERT)
    assert abs(sum(d.time_out for d in decisions) / len(decisions) - 0.05) < 0.015


def test_bots_always_answer_attention_checks_correctly_and_never_let_them_run_out():
    catch = TrialInfo(item_id=1, gold_index=1, n_options=4, is_catch=True, time_limit_s=20, condition_kind="x")
    decisions = _decisions(info=catch, accuracy=0.0, timeout_rate=1.0)
    assert all(d.choice == 1 and d.intended_correct and not d.time_out for d in decisions)


def test_bots_only_time_out_on_items_with_a_deadline():
    assert not any(d.time_out for d in _decisions(timeout_rate=1.0, has_deadline=False))


def test_bot_decisions_are_deterministic_under_a_seed():
    assert _decisions(n=50, seed=3) == _decisions(n=50, seed=3)
    assert _decisions(n=50, seed=3) != _decisions(n=50, seed=4)


def test_slider_and_distribution_formats_get_valid_values():
    for d in _decisions(n=200, confidence_levels=None, slider=(5.0, 95.0)):
        assert 5 <= d.confidence <= 95
    for choice, confidence in [(0, 25.0), (3, 100.0), (1, 60.0), (2, 10.0)]:
        dist = distribution_for(choice, confidence, 4)
        values = {k: int(v) for k, v in dist.items()}
        assert sum(values.values()) == 100 and set(values) == {"p0", "p1", "p2", "p3"}
        assert max(values, key=values.get) == f"p{choice}"


def test_the_page_reader_finds_the_consent_form_and_the_answer_form():
    page = parse_page(
        '<form method="post" action="/s/demo/"><input type="hidden" name="csrfmiddlewaretoken" value="tok">'
        '<input type="hidden" name="PROLIFIC_PID" value="bot-1-0"><button name="consent" value="yes"></button>'
        '</form><form id="answer-form" data-seconds-left="19.500" action="/x/submit">'
        '<input type="radio" name="choice" value="0"><input type="radio" name="choice" value="1" checked>'
        '<input type="radio" name="confidence" value="25"></form><a id="next" href="/s/p/t/">Next</a>'
    )
    consent, answer = page.forms
    assert consent.hidden() == {"csrfmiddlewaretoken": "tok", "PROLIFIC_PID": "bot-1-0"}
    assert answer.attrs["data-seconds-left"] == "19.500"
    assert answer.values("choice") == ["0", "1"] and answer.input("choice").checked is False
    assert page.ids["next"]["href"] == "/s/p/t/"


def test_a_bot_waiting_out_a_deadline_gives_its_slot_to_another_bot():
    async def scenario():
        semaphore = asyncio.Semaphore(1)
        order = []

        async def waiting():
            async with Slot(semaphore) as slot:
                order.append("waiting starts")
                await slot.idle(0.2)
                order.append("waiting resumes")

        async def working():
            await asyncio.sleep(0.05)
            async with Slot(semaphore):
                order.append("working")

        await asyncio.gather(waiting(), working())
        return order

    assert asyncio.run(scenario()) == ["waiting starts", "working", "waiting resumes"]


def test_bot_ids_carry_the_seed():
    assert BotConfig(slug="demo", participants=1, seed=7).pid(3) == "bot-7-3"


def test_chat_frames_are_applied_at_their_offsets_as_the_page_does():
    stream = ChatStream()
    stream.snapshot({"id": 5, "role": "assistant", "status": "streaming", "text": ""})
    assert stream.delta({"id": 5, "offset": 0, "text": "Hello"}, now=1.0)
    assert stream.delta({"id": 5, "offset": 3, "text": "lo, wor"}, now=2.0)  # overlap: dropped, not doubled
    assert stream.text[5] == "Hello, wor" and stream.first_delta[5] == 1.0
    stream.snapshot({"id": 5, "role": "assistant", "status": "streaming", "text": "Hel"})  # older: ignored
    assert stream.text[5] == "Hello, wor"
    assert not stream.delta({"id": 5, "offset": 12, "text": "d!"}, now=3.0)  # a gap: counted, not applied
    assert stream.gaps[5] == 1 and stream.gap_chars[5] == 2 and stream.text[5] == "Hello, wor"
    stream.snapshot({"id": 5, "role": "assistant", "status": "streaming", "text": "Hello, world"})  # resync
    assert stream.delta({"id": 5, "offset": 12, "text": "!"}, now=4.0)
    assert stream.text[5] == "Hello, world!"


def test_chat_messages_are_deterministic_distinct_and_seeded():
    a = chat_messages(seed=1, bot=3, item_id=9, n=3)
    assert a == chat_messages(seed=1, bot=3, item_id=9, n=3)
    assert len(set(a)) == 3 and set(a) <= set(CHAT_MESSAGES)
    assert [chat_messages(seed=s, bot=3, item_id=9, n=3) for s in range(5)].count(a) < 5
    many = chat_messages(seed=1, bot=3, item_id=9, n=len(CHAT_MESSAGES) + 2)
    assert len(set(many)) == len(many)  # the server matches a bot's message to its echo by text
    assert chat_messages(seed=1, bot=3, item_id=9, n=0) == []


def test_the_chat_websocket_url_follows_the_base_url():
    assert ws_url("http://127.0.0.1:8000", "/ws/chat/t/0/") == "ws://127.0.0.1:8000/ws/chat/t/0/"
    assert ws_url("https://study.example.org", "/ws/chat/t/3/") == "wss://study.example.org/ws/chat/t/3/"


# --- Against the real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(
        tmp_path_factory.mktemp("bots-server"), seed_args=("--mmlu-time-limit", "20", "--quality-time-limit", "20")
    ) as s:
        yield s


@pytest.mark.slow
def test_fifty_bots_complete_the_demo_study_through_the_real_server(server, tmp_path):
    summary_path = tmp_path / "summary.json"
    start = time.monotonic()
    proc = server.manage(
        "run_bots",
        "demo",
        "--participants",
        "50",
        "--concurrency",
        "10",
        "--seed",
        "1",
        "--base-url",
        server.base_url,
        "--summary-json",
        str(summary_path),
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}\n--- daphne\n{server.log_tail()}"
    summary = json.loads(summary_path.read_text())
    assert summary["errors"] == 0, summary["error_details"]
    assert summary["bots"] == summary["finished"] == 50
    assert summary["check"]["ok"], summary["check"]["problems"]
    statuses = summary["check"]["statuses"]
    assert statuses.get("completed", 0) + statuses.get("screened_out", 0) == 50
    assert statuses.get("screened_out", 0) == 0  # attentive bots pass every attention check
    assert summary["answers"] + summary["timeouts"] == summary["check"]["trials"] == 50 * 11
    assert summary["timeouts"] > 0  # the deadline path ran, and the server finalised those trials
    assert "participants completed: 50/50" in proc.stdout
    chat = summary["chat"]  # one message on every assisted item (the default)
    assert chat["replies"] >= 50 * 5 and chat["failed_replies"] == 0 and chat["lost_chars"] == 0, chat
    print(f"\nrun_bots: {elapsed:.1f} s\n{proc.stdout}")

    # Independently of the bots' own check: the database as the researcher would see it.
    db = server.query(
        "from collections import Counter\n"
        "from oversight.core.models import Participant, Trial\n"
        "ps = Participant.objects.filter(study__slug='demo', external_id__startswith='prolific:bot-1-')\n"
        "ts = Trial.objects.filter(participant__in=ps)\n"
        "result = {'participants': ps.count(), 'statuses': dict(Counter(ps.values_list('status', flat=True))),\n"
        "  'trials': dict(Counter(ts.values_list('status', flat=True))),\n"
        "  'kinds': dict(Counter(ts.values_list('submit_kind', flat=True))),\n"
        "  'correct': ts.filter(correct=True, role='scored').count(), 'scored': ts.filter(role='scored').count(),\n"
        "  'catch_right': ts.filter(role='catch', correct=True).count()}"
    )
    assert db["participants"] == 50 and db["statuses"] == {"completed": 50}
    assert db["trials"] == {"answered": summary["answers"], "timed_out": summary["timeouts"]}
    assert db["kinds"].get("manual") == summary["answers"]
    assert db["catch_right"] == 50
    assert 0.5 < db["correct"] / db["scored"] < 0.7  # --accuracy 0.6 (timeouts keep the bot's selection)


@pytest.mark.slow
def test_bots_chat_with_the_simulated_assistant_on_assisted_items(server, tmp_path):
    """Five bots, two messages on every assisted item, over the trial's real websocket (the simulated assistant
    streams at the demo endpoint's 400 ms / 40 tokens per second); every reply arrives whole and is stored."""
    summary_path = tmp_path / "summary.json"
    proc = server.manage(
        "run_bots",
        "demo",
        "--participants",
        "5",
        "--concurrency",
        "5",
        "--seed",
        "2",
        "--timeout-rate",
        "0",
        "--messages-per-item",
        "2",
        "--base-url",
        server.base_url,
        "--summary-json",
        str(summary_path),
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}\n--- daphne\n{server.log_tail()}"
    summary = json.loads(summary_path.read_text())
    assert summary["errors"] == 0, summary["error_details"]
    assert summary["check"]["ok"], summary["check"]["problems"]
    chat = summary["chat"]
    print(f"\n{proc.stdout}")

    db = server.query(
        "from collections import Counter\n"
        "from oversight.assistant.models import ChatMessage\n"
        "from oversight.core.models import Trial\n"
        "ts = Trial.objects.filter(participant__study__slug='demo',\n"
        "                          participant__external_id__startswith='prolific:bot-2-')\n"
        "ms = ChatMessage.objects.filter(trial__in=ts)\n"
        "result = {'assisted': ts.filter(condition__kind='assisted').count(),\n"
        "  'chatted_trials': ms.values('trial').distinct().count(),\n"
        "  'users': ms.filter(role='user').count(),\n"
        "  'client_ids': ms.filter(role='user').values('client_id').distinct().count(),\n"
        "  'replies': dict(Counter(ms.filter(role='assistant').values_list('status', flat=True))),\n"
        "  'unaided_chats': ms.exclude(trial__condition__kind='assisted').count(),\n"
        "  'with_metrics': ms.filter(role='assistant', ttft_ms__isnull=False, total_ms__isnull=False,\n"
        "                            completion_tokens__gt=0).count()}"
    )
    expected = db["assisted"] * 2
    assert db["assisted"] >= 5 * 5  # the demo's assisted condition: 5 scored items each (+ the catch item)
    assert chat["replies"] == expected and chat["failed_replies"] == 0, chat
    assert chat["lost_chars"] == 0 and chat["gaps"] == 0 and chat["mismatched_replies"] == 0
    assert chat["chars"] > 0 and chat["ttft_ms"]["p50"] >= 400  # the endpoint's simulated time to first token
    assert db["chatted_trials"] == db["assisted"] and db["unaided_chats"] == 0
    assert db["users"] == db["client_ids"] == expected  # each message stored once
    assert db["replies"] == {"complete": expected}  # all final, none left streaming
    assert db["with_metrics"] == expected
    assert summary["check"]["chat_messages"] == 2 * expected
    assert "chat: " in proc.stdout and "lost 0 (0 gaps, 0 replies differ" in proc.stdout
