"""Zero-shot letter scoring against the fake TGI over a real socket, with scripted letter log-probabilities."""

import math

import pytest

from oversight.baselines.models import BaselineResult
from oversight.core.models import ModelEndpoint
from oversight_dev.faketgi import FakeTGI
from tests.baselines.conftest import SCRIPTED, generation_requests, make_items, softmax

pytestmark = pytest.mark.django_db


def test_the_prediction_and_probabilities_are_exactly_those_implied_by_the_scripted_logprobs(
    bank, endpoint, tgi, run_baseline
):
    items = make_items(bank, 4)
    run = run_baseline(endpoint=endpoint, bank=bank)

    assert run.status == "done" and run.done == 4 and run.errors == 0
    expected = softmax([SCRIPTED[" A"], SCRIPTED[" B"], SCRIPTED[" C"], SCRIPTED[" D"]])
    # By hand: exp(-1.2), exp(-0.4), exp(-2.5), exp(-0.9) over their sum.
    by_hand = [math.exp(x) / sum(math.exp(y) for y in (-1.2, -0.4, -2.5, -0.9)) for x in (-1.2, -0.4, -2.5, -0.9)]
    assert expected == pytest.approx(by_hand, abs=1e-15)
    for item in items:
        result = BaselineResult.objects.get(run=run, item=item)
        assert result.probabilities == pytest.approx(expected, abs=1e-12)
        assert result.predicted == 1  # B
        assert result.correct is (item.gold_index == 1)
        assert result.missing_letters == [] and result.error_kind == ""
        assert result.response["top_tokens"][0] == [" B", -0.4]
        assert result.latency_ms > 0
    assert run.summary["accuracy"] == 25.0


def test_each_item_is_one_greedy_one_token_request_for_the_top_tokens(bank, endpoint, tgi, run_baseline):
    make_items(bank, 3)
    run_baseline(endpoint=endpoint, bank=bank)

    requests = generation_requests(tgi)
    assert len(requests) == 3
    for request in requests:
        assert request.path == "/generate"
        assert request.json["parameters"] == {
            "details": True,
            "do_sample": False,
            "max_new_tokens": 1,
            "top_n_tokens": 5,
        }


def test_the_prompt_is_the_papers_human_assistant_prompt(bank, endpoint, run_baseline):
    (item,) = make_items(bank, 1)
    run = run_baseline(endpoint=endpoint, bank=bank)

    assert run.results.get(item=item).prompt == (
        "Human: Question: Question q0: which is right?\n\n"
        "Choices:\n (A) first 0\n (B) second 0\n (C) third 0\n (D) fourth 0\n\n"
        "Answer:\n\nAssistant:"
    )
    assert run.template.name == "paper-zero-shot" and run.template_hash == run.template.content_hash


def test_a_quality_story_comes_first_inside_the_human_turn(bank, endpoint, run_baseline):
    (item,) = make_items(bank, 1, passage="It was a dark night. The ship drifted.")
    run = run_baseline(endpoint=endpoint, bank=bank)

    assert run.results.get(item=item).prompt.startswith(
        "Human: Story:\nIt was a dark night. The ship drifted.\n\nQuestion: Question q0: which is right?\n\n"
    )


def test_a_letter_missing_from_the_top_tokens_is_scored_explicitly_and_recorded(bank, run_baseline):
    # Two non-letters outrank D, so the top 5 stop before it: D must be scored with its own prefill request.
    scripted = {" A": -0.3, "\n": -0.5, " The": -0.9, " B": -1.0, " C": -1.5, " D": -4.0}
    (item,) = make_items(bank, 1)
    with FakeTGI(letter_logprobs=scripted) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(endpoint=endpoint, bank=bank)
        requests = generation_requests(tgi)

    result = run.results.get(item=item)
    assert result.probabilities == pytest.approx(softmax([-0.3, -1.0, -1.5, -4.0]), abs=1e-12)
    assert result.predicted == 0
    (missing,) = result.missing_letters
    assert missing["letter"] == "D" and missing["method"] == "prefill" and missing["scored"] == " D"
    assert missing["logprob"] == -4.0 and missing["exact"] is True
    assert missing["top_n_cutoff"] == -1.5  # the lowest of the top 5: D was below it
    assert len(requests) == 2
    prefill = requests[1].json
    assert prefill["inputs"] == result.prompt + " D"
    assert prefill["parameters"]["decoder_input_details"] is True


def test_no_letter_at_all_in_the_top_tokens_scores_every_letter_explicitly(bank, run_baseline):
    scripted = {
        "\n": -0.1,
        " The": -0.2,
        " I": -0.3,
        " It": -0.4,
        " So": -0.5,
        " A": -3.0,
        " B": -2.0,
        " C": -5.0,
        " D": -2.5,
    }
    make_items(bank, 1)
    with FakeTGI(letter_logprobs=scripted) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(endpoint=endpoint, bank=bank)
        assert len(generation_requests(tgi)) == 5

    result = run.results.get()
    assert [m["letter"] for m in result.missing_letters] == ["A", "B", "C", "D"]
    assert result.probabilities == pytest.approx(softmax([-3.0, -2.0, -5.0, -2.5]), abs=1e-12)
    assert result.predicted == 1


def test_tied_letters_go_to_the_lowest_letter(bank, run_baseline):
    make_items(bank, 1)
    with FakeTGI(letter_logprobs={" A": -2.0, " C": -0.7, " B": -0.7, " D": -1.0}) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(endpoint=endpoint, bank=bank)

    result = run.results.get()
    assert result.probabilities[1] == result.probabilities[2]
    assert result.predicted == 1  # B, not C, although the server listed C first


def test_a_tokeniser_that_spells_a_letter_with_and_without_its_space_gets_both_merged(bank, run_baseline):
    scripted = {"A": -1.0, " A": -2.0, " B": -0.9, "C": -3.0, " D": -2.2}
    make_items(bank, 1)
    with FakeTGI(letter_logprobs=scripted) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(endpoint=endpoint, bank=bank)

    result = run.results.get()
    merged_a = math.log(math.exp(-1.0) + math.exp(-2.0))
    assert result.response["logprobs"][0] == pytest.approx(merged_a, abs=1e-12)
    assert result.probabilities == pytest.approx(softmax([merged_a, -0.9, -3.0, -2.2]), abs=1e-12)
    assert result.predicted == 0  # A wins only because its two spellings are added up
    assert result.response["letters"]["A"] == [["A", -1.0], [" A", -2.0]]


def test_an_openai_compatible_endpoint_is_scored_from_chat_top_logprobs(bank, run_baseline):
    make_items(bank, 2)
    with FakeTGI(letter_logprobs={"A": -1.2, "B": -0.4, "C": -2.5, "D": -0.9}) as tgi:
        endpoint = ModelEndpoint.objects.create(
            name="o", kind="openai", base_url=tgi.url, model_label="m", request_timeout_s=5
        )
        run = run_baseline(endpoint=endpoint, bank=bank)
        requests = generation_requests(tgi)

    assert run.template.name == "chat-zero-shot"
    assert {r.path for r in requests} == {"/v1/chat/completions"}
    body = requests[0].json
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    assert body["temperature"] == 0 and body["model"] == "m"
    assert body["messages"][0]["role"] == "user"
    assert body["messages"][0]["content"].endswith("Answer with the letter of the correct choice only.")
    result = run.results.first()
    assert result.probabilities == pytest.approx(softmax([-1.2, -0.4, -2.5, -0.9]), abs=1e-12)


def test_a_letter_missing_from_chat_top_logprobs_gets_a_recorded_upper_bound(bank, run_baseline):
    scripted = {"A": -0.35, "The": -2.0, "I": -2.5, "B": -3.0, "C": -3.7, "D": -6.0}
    make_items(bank, 1)
    with FakeTGI(letter_logprobs=scripted) as tgi:
        endpoint = ModelEndpoint.objects.create(name="o", kind="openai", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(endpoint=endpoint, bank=bank)
        assert len(generation_requests(tgi)) == 1  # the chat API has no prompt logprobs: no second request

    result = run.results.get()
    (missing,) = result.missing_letters
    listed = [-0.35, -2.0, -2.5, -3.0, -3.7]
    unlisted = 1 - sum(math.exp(x) for x in listed)  # the mass the top 5 leave for everything else
    assert missing["letter"] == "D" and missing["method"] == "upper_bound"
    assert missing["logprob"] == pytest.approx(math.log(unlisted), abs=1e-9)
    assert -6.0 < missing["logprob"] < -3.7  # above the truth, below the cutoff: an upper bound, not zero
    assert result.probabilities == pytest.approx(softmax([-0.35, -3.0, -3.7, missing["logprob"]]), abs=1e-12)


@pytest.mark.parametrize(("pool_accessor", "route"), [(True, "/generate"), (False, "/")])
def test_through_huggingface_hub_the_results_are_the_same(
    bank, endpoint, tgi, run_baseline, monkeypatch, pool_accessor, route
):
    # transport="httpx": the AsyncInferenceClient's own pool, or its public text_generation (the "/" route) when
    # this huggingface_hub has no pool accessor.
    from oversight.baselines.clients import HTTPBackend

    if not pool_accessor:

        async def no_pool(self):
            return None

        monkeypatch.setattr(HTTPBackend, "_pool", no_pool)
    make_items(bank, 2)
    run = run_baseline(endpoint=endpoint, bank=bank, params={"transport": "httpx"})

    assert {r.path for r in generation_requests(tgi)} == {route}
    expected = softmax([SCRIPTED[" A"], SCRIPTED[" B"], SCRIPTED[" C"], SCRIPTED[" D"]])
    for result in run.results.all():
        assert result.probabilities == pytest.approx(expected, abs=1e-12) and result.predicted == 1


def test_a_chat_template_on_a_tgi_endpoint_goes_through_the_messages_api(bank, endpoint, tgi, run_baseline):
    make_items(bank, 1)
    run = run_baseline(endpoint=endpoint, bank=bank, template="chat-zero-shot")

    (request,) = generation_requests(tgi)
    assert request.path == "/v1/chat/completions" and request.json["top_logprobs"] == 5
    assert run.results.get().probabilities == pytest.approx(
        softmax([SCRIPTED[" A"], SCRIPTED[" B"], SCRIPTED[" C"], SCRIPTED[" D"]]), abs=1e-12
    )
