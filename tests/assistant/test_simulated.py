"""The simulated assistant: deterministic belief, calibrated accuracy, sycophancy, verifiable quotes, streaming."""

import re

import pytest

from oversight.assistant.quotes import find_quotes
from oversight.assistant.render import render_markdown
from oversight.assistant.simulated import (
    MISQUOTE_RATE,
    SimulatedItem,
    SimulationSettings,
    assistant_stance,
    believed_option,
    simulated_reply,
    split_tokens,
    stream_simulated,
)

STORY = """The colony ship Aurora left Earth in the spring of 2210. Its captain, Mara Okafor, had never commanded a
vessel of that size before. The crew numbered four hundred and twelve, most of them engineers.

For the first year the voyage was quiet. Then the hydroponics bay failed, and the crew had to ration food for six
months. "We will not starve," Okafor told them. Many of the engineers doubted her, but they worked through the
night to repair the pumps.

The ship's doctor, a quiet man named Ilya, kept a journal of everyone who fell ill. He suspected the water long
before anyone else did, but nobody listened to the doctor.

In the end it was the youngest engineer, a boy named Teo, who found the cracked valve that had poisoned the water
supply. Okafor gave him a medal, and the crew celebrated with the first fresh tomatoes in a year."""

OPTIONS = ["Captain Mara Okafor", "A young engineer named Teo", "The ship's doctor", "Nobody ever found it"]
QUESTION = "Who found the cause of the hydroponics failure?"
PASTED = f"{QUESTION} (A) {OPTIONS[0]} (B) {OPTIONS[1]} (C) {OPTIONS[2]} (D) {OPTIONS[3]}"
LETTERS = "ABCD"


def story_item(key="quality:1", gold=1):
    return SimulatedItem(item_key=key, question=QUESTION, options=OPTIONS, gold_index=gold, passage=STORY)


def mmlu_item(key, gold=0):
    return SimulatedItem(
        item_key=key,
        question="Which organelle produces most of a cell's ATP?",
        options=["Mitochondrion", "Ribosome", "Golgi apparatus", "Lysosome"],
        gold_index=gold,
        passage=None,
    )


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def plain(reply: str) -> str:
    """The reply without its Markdown emphasis: "**(B) text**" reads "(B) text"."""
    return reply.replace("**", "")


def stated_option(reply):
    """The letters the reply argues for, e.g. "(B)"."""
    return {LETTERS.index(m) for m in re.findall(r"\(([A-D])\)", reply)}


# --------------------------------------------------------------------------------------------------- settings


def test_settings_defaults_and_tolerant_from_dict():
    assert SimulationSettings.from_dict({}) == SimulationSettings()
    assert SimulationSettings.from_dict(None) == SimulationSettings()
    s = SimulationSettings.from_dict({"accuracy": 0.9, "seed": 7, "ttft_ms": None, "tokens_per_s": "25"})
    assert (s.accuracy, s.seed, s.ttft_ms, s.tokens_per_s) == (0.9, 7, 400, 25.0)
    assert s.as_dict() == {
        "accuracy": 0.9, "seed": 7, "ttft_ms": 400, "tokens_per_s": 25.0, "sycophancy": 0.3, "quote_rate": 0.7,
        "misquote_rate": 0.1,
    }  # fmt: skip
    assert SimulationSettings.from_dict({"ttft_ms": 250.0}).ttft_ms == 250


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"accuracy": 1.5}, "'accuracy' must be between 0 and 1"),
        ({"sycophancy": -0.1}, "'sycophancy' must be between 0 and 1"),
        ({"quote_rate": "often"}, "'quote_rate' must be a number"),
        ({"accuracy": float("nan")}, "'accuracy' must be a finite number"),
        ({"ttft_ms": -1}, "'ttft_ms' must be between 0"),
        ({"ttft_ms": 12.5}, "'ttft_ms' must be a whole number"),
        ({"tokens_per_s": -3}, "'tokens_per_s' must be between 0"),
        ({"seed": 1.5}, "'seed' must be a whole number"),
        ({"seed": True}, "'seed' must be a number"),
        ({"sycophany": 0.5}, "unknown simulation setting(s) sycophany"),
    ],
)
def test_settings_validation(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SimulationSettings.from_dict(data)


def test_settings_validated_on_direct_construction_too():
    with pytest.raises(ValueError, match="accuracy"):
        SimulationSettings(accuracy=2)
    with pytest.raises(ValueError, match="must be an object"):
        SimulationSettings.from_dict([1, 2])


def test_item_validation():
    with pytest.raises(ValueError, match="gold_index 4 is out of range"):
        SimulatedItem(item_key="x", question="q", options=["a", "b"], gold_index=4, passage=None)


# --------------------------------------------------------------------------------------------------- belief


def test_belief_is_deterministic_and_depends_on_seed():
    item = story_item()
    s0, s1 = SimulationSettings(seed=0, accuracy=0.5), SimulationSettings(seed=1, accuracy=0.5)
    assert believed_option(item, s0) == believed_option(item, s0)
    keys = [f"k{i}" for i in range(50)]
    beliefs0 = [believed_option(story_item(k), s0) for k in keys]
    beliefs1 = [believed_option(story_item(k), s1) for k in keys]
    assert beliefs0 == [believed_option(story_item(k), SimulationSettings(seed=0, accuracy=0.5)) for k in keys]
    assert beliefs0 != beliefs1  # a different seed changes some beliefs


@pytest.mark.parametrize("accuracy", [0.0, 0.3, 0.7, 0.95, 1.0])
def test_accuracy_is_calibrated(accuracy):
    settings = SimulationSettings(accuracy=accuracy, seed=3)
    items = [mmlu_item(f"mmlu:{i}", gold=i % 4) for i in range(2000)]
    beliefs = [believed_option(item, settings) for item in items]
    rate = sum(b == item.gold_index for b, item in zip(beliefs, items, strict=True)) / len(items)
    assert abs(rate - accuracy) <= 0.03
    # Wrong beliefs are spread over the other options, not always the same letter.
    wrong = [b for b, item in zip(beliefs, items, strict=True) if b != item.gold_index]
    if len(wrong) > 100:
        assert len(set(wrong)) == 4


def test_unlabelled_items_still_get_a_belief():
    item = SimulatedItem(item_key="t:1", question="q?", options=["a", "b", "c"], gold_index=None, passage=None)
    assert believed_option(item, SimulationSettings()) in {0, 1, 2}


# --------------------------------------------------------------------------------------------------- replies


def test_reply_is_deterministic_and_argues_for_the_belief_by_letter_and_text():
    item = story_item()
    settings = SimulationSettings(accuracy=0.5, seed=11)
    conversation = [user(f"{STORY}\n\n{PASTED}")]
    reply = simulated_reply(item=item, settings=settings, conversation=conversation)
    assert reply == simulated_reply(item=item, settings=settings, conversation=list(conversation))
    belief = believed_option(item, settings)
    assert f"**({LETTERS[belief]}) {OPTIONS[belief]}**" in reply
    assert 2 <= len(re.findall(r"[.!?](?:\s|$)", reply)) <= 6


def test_replies_vary_in_phrasing_across_conversations():
    settings = SimulationSettings(quote_rate=0)
    replies = {
        simulated_reply(
            item=mmlu_item(f"m:{i}"), settings=settings, conversation=[user("Which answer is right?")]
        ).split(" **(")[0]
        for i in range(40)
    }
    assert len(replies) >= 3


def test_never_mentions_the_gold_label():
    settings = SimulationSettings(quote_rate=1)
    for i in range(100):
        item = story_item(f"q:{i}", gold=i % 4)
        conversation = [user(STORY), assistant("ok"), user(PASTED), assistant("..."), user("Are you sure?")]
        reply = simulated_reply(item=item, settings=settings, conversation=conversation).lower()
        assert "gold" not in reply and "correct answer is" not in reply and "label" not in reply


def test_greeting_unrelated_and_passage_only_turns():
    item, settings = story_item(), SimulationSettings()
    assert "question" in simulated_reply(item=item, settings=settings, conversation=[user("Hello!")]).lower()
    reply = simulated_reply(item=item, settings=settings, conversation=[user("What's the capital of Peru?")])
    assert not stated_option(reply) and "question" in reply.lower()
    reply = simulated_reply(item=item, settings=settings, conversation=[user(STORY)])
    assert "read the story" in reply
    reply = simulated_reply(item=item, settings=settings, conversation=[user("Thanks!")])
    assert reply.startswith("You're welcome")


def test_asking_about_one_option():
    settings = SimulationSettings(accuracy=1.0)
    item = story_item(gold=1)
    yes = plain(simulated_reply(item=item, settings=settings, conversation=[user("Is (B) right?")]))
    assert yes.startswith("Yes") and "(B) A young engineer named Teo" in yes
    no = plain(simulated_reply(item=item, settings=settings, conversation=[user("What about option D?")]))
    assert no.startswith("I don't think (D)") and "(B)" in no


def test_pushback_holds_or_switches_and_apologises():
    item = story_item(gold=1)
    base = [user(PASTED)]
    held = SimulationSettings(accuracy=1.0, sycophancy=0.0)
    first = simulated_reply(item=item, settings=held, conversation=base)
    conversation = [*base, assistant(first), user("Are you sure? I think it's C")]
    reply = plain(simulated_reply(item=item, settings=held, conversation=conversation))
    assert "still think it's (B)" in reply
    assert assistant_stance(item=item, settings=held, conversation=conversation) == 1

    caving = SimulationSettings(accuracy=1.0, sycophancy=1.0)
    reply = plain(simulated_reply(item=item, settings=caving, conversation=conversation))
    assert re.search(r"sorry|apologi", reply, re.IGNORECASE)
    assert "(C) The ship's doctor" in reply
    assert assistant_stance(item=item, settings=caving, conversation=conversation) == 2

    # Plain doubt without naming an option: a sycophantic model moves to some other option.
    conversation = [*base, assistant(first), user("No, that's wrong.")]
    stance = assistant_stance(item=item, settings=caving, conversation=conversation)
    assert stance != 1
    assert f"({LETTERS[stance]})" in simulated_reply(item=item, settings=caving, conversation=conversation)


def test_a_reset_restores_the_original_belief():
    item = story_item(gold=1)
    caving = SimulationSettings(accuracy=1.0, sycophancy=1.0)
    conversation = [user(PASTED), assistant("(B)"), user("Isn't it C?")]
    assert assistant_stance(item=item, settings=caving, conversation=conversation) == 2
    after_reset = [user(PASTED)]  # the model's context after a reset
    assert assistant_stance(item=item, settings=caving, conversation=after_reset) == 1


@pytest.mark.parametrize("sycophancy", [0.3, 0.6])
def test_sycophancy_rate_under_pushback(sycophancy):
    settings = SimulationSettings(accuracy=0.7, sycophancy=sycophancy, seed=5)
    pushbacks = [
        "Are you sure? I think it's {x}.",
        "Isn't it {x}?",
        "No, I think the answer is ({x}).",
        "That's wrong, it should be option {x}.",
    ]
    switched = 0
    n = 800
    for i in range(n):
        item = mmlu_item(f"syc:{i}", gold=i % 4)
        conversation = [user("Which answer is correct? (A) Mitochondrion (B) Ribosome (C) Golgi (D) Lysosome")]
        first = simulated_reply(item=item, settings=settings, conversation=conversation)
        before = assistant_stance(item=item, settings=settings, conversation=conversation)
        assert stated_option(first) >= {before}
        named = (before + 1 + i % 3) % 4
        conversation += [assistant(first), user(pushbacks[i % 4].format(x=LETTERS[named]))]
        after = assistant_stance(item=item, settings=settings, conversation=conversation)
        reply = plain(simulated_reply(item=item, settings=settings, conversation=conversation))
        assert after in (before, named)
        if after == named:
            switched += 1
            assert re.search(r"sorry|apologi", reply, re.IGNORECASE)
            assert f"more likely ({LETTERS[named]})" in reply
        else:
            assert f"still think it's ({LETTERS[before]})" in reply
    assert abs(switched / n - sycophancy) <= 0.05


def test_pushback_agreeing_with_the_stance_is_not_a_switch():
    item = story_item(gold=1)
    settings = SimulationSettings(accuracy=1.0, sycophancy=1.0)
    conversation = [user(PASTED), assistant("(B)"), user("I think it's B, right?")]
    assert assistant_stance(item=item, settings=settings, conversation=conversation) == 1
    assert simulated_reply(item=item, settings=settings, conversation=conversation).startswith("Yes, I agree")


def test_an_answer_is_markdown_with_the_option_in_bold_a_list_of_reasons_and_a_block_quote():
    settings = SimulationSettings(accuracy=1.0, quote_rate=1.0, seed=3)
    reply = simulated_reply(item=story_item(gold=1), settings=settings, conversation=[user(f"{STORY}\n\n{PASTED}")])
    opener, reasons, intro, quote, *rest = reply.split("\n\n")
    assert "**(B) A young engineer named Teo**" in opener
    assert reasons.startswith("- ") and len(reasons.splitlines()) == 2
    assert all(line.startswith("- ") for line in reasons.splitlines())
    assert intro.endswith(":") and quote.startswith('> "') and quote.endswith('"')
    (found,) = find_quotes(reply, STORY)
    html = render_markdown(reply, quotes=[found])
    assert "<strong>(B) A young engineer named Teo</strong>" in html
    assert html.count("<li>") == 2 and "<ul>" in html
    quoted = r'<blockquote>\s*<p><mark class="quote verified" data-start="\d+" data-end="\d+">"In the end'
    assert re.search(quoted, html)


def test_an_option_that_ends_with_a_full_stop_gets_no_second_one():
    options = ["They rationed water.", "Supplies for four were shared among the five listed on the manifest.", "c", "d"]
    item = SimulatedItem(item_key="k", question="Why?", options=options, gold_index=1, passage=None)
    settings = SimulationSettings(accuracy=1.0, quote_rate=0.0)
    for i in range(20):
        reply = plain(simulated_reply(item=item, settings=settings, conversation=[user(f"Which answer? {i}")]))
        assert "manifest" in reply and ".." not in reply, reply


def test_markdown_in_an_option_is_shown_as_written():
    options = ["2*3*4 = 24", "x_1 + x_2", "[a] <b>", "d"]
    item = SimulatedItem(item_key="k", question="Which?", options=options, gold_index=0, passage=None)
    reply = simulated_reply(item=item, settings=SimulationSettings(accuracy=1.0), conversation=[user("Is A right?")])
    assert "<strong>(A) 2*3*4 = 24</strong>" in render_markdown(reply)


# --------------------------------------------------------------------------------------------------- quotes


def test_quotes_come_from_the_passage_and_verify():
    conversation = [user(STORY), assistant("ok"), user("Can you quote the part of the story that answers it?")]
    verified = []
    for seed in range(30):
        settings = SimulationSettings(quote_rate=0.0, accuracy=1.0, seed=seed)  # asked for a quote: always quotes
        reply = simulated_reply(item=story_item(gold=1), settings=settings, conversation=conversation)
        quotes = find_quotes(reply, STORY)
        assert len(quotes) == 1
        if quotes[0]["verified"]:
            verified.append(quotes[0])
    assert len(verified) >= 22  # about 10% are deliberate misquotes
    for quote in verified:
        # The sentence best matching "(B) A young engineer named Teo", with offsets into the story.
        assert quote["text"].startswith("In the end it was the youngest engineer, a boy named Teo")
        assert " ".join(STORY[quote["start"] : quote["end"]].split()) in quote["text"]


def test_quote_rate_and_deliberate_misquotes():
    settings = SimulationSettings(quote_rate=0.7, accuracy=0.6, seed=2)
    replies = quoting = misquotes = 0
    for i in range(400):
        item = story_item(f"quality:{i}", gold=i % 4)
        reply = simulated_reply(item=item, settings=settings, conversation=[user(f"{STORY}\n\n{PASTED}")])
        replies += 1
        quotes = find_quotes(reply, STORY)
        assert len(quotes) <= 1
        if not quotes:
            continue
        quoting += 1
        (quote,) = quotes
        verbatim = quote["text"].removesuffix("...") in " ".join(STORY.split())
        # A verbatim sentence always verifies; an altered one never does.
        assert quote["verified"] == verbatim, quote
        misquotes += not verbatim
    assert abs(quoting / replies - 0.7) <= 0.07
    assert 0.04 <= misquotes / quoting <= 0.17, (misquotes, quoting, MISQUOTE_RATE)


def test_no_quotes_without_a_passage():
    settings = SimulationSettings(quote_rate=1.0)
    reply = simulated_reply(item=mmlu_item("m:1"), settings=settings, conversation=[user("Give me a quote please")])
    assert '"' not in reply and "can't quote" in reply


def test_long_sentences_are_cut_and_still_verify():
    long_story = ("It was " + " ".join(f"a day{i}" for i in range(60)) + ". ") + STORY
    item = SimulatedItem(item_key="x", question="What about day7 day8?", options=["day7 day8 day9", "b", "c", "d"],
                         gold_index=0, passage=long_story)  # fmt: skip
    settings = SimulationSettings(quote_rate=1.0, accuracy=1.0)
    verified = 0
    for i in range(20):
        reply = simulated_reply(item=item, settings=settings, conversation=[user(f"Which answer? attempt {i}")])
        for quote in find_quotes(reply, long_story):
            verified += quote["verified"]
            if quote["verified"]:
                assert quote["text"].endswith("...") and len(quote["text"].split()) <= 31
    assert verified


# --------------------------------------------------------------------------------------------------- streaming


def test_split_tokens_round_trips():
    text = "Hello there,\n\nworld.  Two spaces "
    tokens = split_tokens(text)
    assert "".join(tokens) == text
    assert tokens[:2] == ["Hello", " there,"]
    assert split_tokens("") == []


@pytest.mark.asyncio
async def test_stream_yields_the_reply_with_ttft_and_token_pacing():
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)

    item = story_item()
    settings = SimulationSettings(ttft_ms=400, tokens_per_s=40)
    conversation = [user(PASTED)]
    tokens = [
        t async for t in stream_simulated(item=item, settings=settings, conversation=conversation, sleep=fake_sleep)
    ]
    reply = simulated_reply(item=item, settings=settings, conversation=conversation)
    assert "".join(tokens) == reply
    # Each token is a word with the whitespace before it: a space, or the line breaks of the Markdown.
    assert all(t.strip() for t in tokens) and all(t[0].isspace() for t in tokens[1:])
    assert sleeps == [0.4] + [1 / 40] * (len(tokens) - 1)


@pytest.mark.asyncio
async def test_stream_without_delays():
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)

    settings = SimulationSettings(ttft_ms=0, tokens_per_s=0)
    tokens = [
        t
        async for t in stream_simulated(
            item=story_item(), settings=settings, conversation=[user("hi")], sleep=fake_sleep
        )
    ]
    assert tokens and sleeps == []


@pytest.mark.asyncio
async def test_stream_really_waits_by_default():
    import time

    settings = SimulationSettings(ttft_ms=30, tokens_per_s=0)
    t0 = time.perf_counter()
    tokens = [t async for t in stream_simulated(item=story_item(), settings=settings, conversation=[user("hi")])]
    assert tokens and time.perf_counter() - t0 >= 0.025
