"""The pure pieces of the fake TGI: serde-compatible JSON, the toy tokenizer, replies, scripted logprobs."""

import json

import pytest

from oversight_dev import tgiwire


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (-2.877385, "-2.877385"),  # recorded gpt2 logprob
        (-0.14746094, "-0.14746094"),  # recorded bloom prefill logprob
        (-10.5703125, "-10.5703125"),
        (-1.0, "-1.0"),
        (0.0, "0.0"),
        (-0.1, "-0.1"),
        (1e-7, "1e-7"),
        (-0.000123, "-0.000123"),
        (float("nan"), "null"),
    ],
)
def test_floats_are_written_as_rust_writes_an_f32(value, text):
    assert tgiwire.dumps(value) == text


def test_json_is_compact_keeps_non_ascii_and_does_not_escape_slashes():
    assert tgiwire.dumps({"a": 'dég/é\n"', "b": [1, None, True]}) == '{"a":"dég/é\\n\\"","b":[1,null,true]}'


@pytest.mark.parametrize("text", ["Hello, world!", "  two  spaces\n\nand 42 digits_here", "<|user|>\nHi</s>\n", ""])
def test_the_tokenizer_gives_back_its_input(text):
    tokens = tgiwire.tokenize(text)

    assert "".join(t.text for t in tokens) == text


def test_words_keep_their_leading_space_and_markers_are_special():
    tokens = tgiwire.tokenize("<|user|>\nAnswer: A</s>")

    assert [t.text for t in tokens] == ["<|user|>", "\n", "Answer", ":", " A", "</s>"]
    assert [t.special for t in tokens] == [True, False, False, False, False, True]
    assert tokens[-1] == tgiwire.EOS


def test_a_reply_without_a_passage_has_no_quotes():
    reply = tgiwire.default_reply([{"role": "user", "content": "Is the sky blue?"}])

    assert '"' not in reply and "Is the sky blue" in reply


def test_a_passage_section_is_found_without_tags():
    text = (
        "Passage:\nMaria planted tomatoes in April. The frost came late that year. "
        "Her harvest was small but sweet.\n\nQuestion: When did the frost come?"
    )

    reply = tgiwire.default_reply([{"role": "user", "content": text}])

    assert '"The frost came late that year."' in reply


def test_a_multi_token_candidate_spreads_its_logprob_so_the_sum_is_the_mapped_value():
    tokens = tgiwire.tokenize("Answer: Jupiter is largest")

    values = tgiwire.prefill_logprobs(tokens, {" Jupiter is largest": -0.3, "largest": -5.0})

    assert values[0] is None
    assert values[-3:] == [-0.3, 0.0, 0.0]


def test_exact_keys_win_over_keys_matching_without_the_leading_space():
    tokens = tgiwire.tokenize("Answer: A")

    assert tgiwire.prefill_logprobs(tokens, {"A": -2.0, " A": -0.5})[-1] == -0.5
    assert tgiwire.prefill_logprobs(tokens, {"A": -2.0})[-1] == -2.0
    assert tgiwire.prefill_logprobs(tgiwire.tokenize("A"), {"A": -2.0}) == [None]  # the first token is never scored


def test_a_scored_generation_answers_the_argmax_letter_with_a_truncated_top_list():
    plan = tgiwire.plan_generation(
        "ignored", max_new_tokens=1, stop=[], top_n=2, letter_logprobs={"A": -1.0, "B": -0.2, "C": -0.7}
    )

    assert [g.tok.text for g in plan.tokens] == ["B"]
    assert [(t.text, lp) for t, lp in plan.tokens[0].top] == [("B", -0.2), ("C", -0.7)]
    assert plan.finish_reason == "length"


def test_generation_stops_on_a_stop_sequence():
    plan = tgiwire.plan_generation("one two three four", max_new_tokens=10, stop=[" three"], top_n=0)

    assert (plan.text, plan.finish_reason) == ("one two three", "stop_sequence")


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"{", 400, "Failed to parse the request body as JSON: EOF while parsing an object at line 1 column 1"),
        (b'{"inputs":', 400, "Failed to parse the request body as JSON: EOF while parsing a value at line 1 column 10"),
        (
            b'{"inputs": 3}',
            422,
            "Failed to deserialize the JSON body into the target type: inputs: invalid type: integer `3`, "
            "expected a string at line 1 column 12",
        ),
        (
            b'{"inputs": "x", "parameters": {"stop": null}}',
            422,
            "Failed to deserialize the JSON body into the target type: parameters.stop: invalid type: null, "
            "expected a sequence at line 1 column 43",
        ),
        (
            b"{}",
            422,
            "Failed to deserialize the JSON body into the target type: missing field `inputs` at line 1 column 2",
        ),
    ],
)
def test_bad_bodies_are_rejected_like_axum_and_serde_do(body, status, text):
    with pytest.raises(tgiwire.Rejection) as caught:
        tgiwire.parse_body(body, "application/json", tgiwire.GENERATE_REQUEST)

    assert (caught.value.status, caught.value.text) == (status, text)


def test_a_body_without_json_content_type_is_unsupported_media():
    with pytest.raises(tgiwire.Rejection) as caught:
        tgiwire.parse_body(json.dumps({"inputs": "x"}).encode(), "text/plain", tgiwire.GENERATE_REQUEST)

    assert caught.value.status == 415
