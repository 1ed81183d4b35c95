"""Chain of thought: N sampled reasonings, the paper's follow-up scored after each, and a Selector on top."""

import re

import pytest

from oversight.baselines.runner import RunError, create_run
from oversight.baselines.scoring import BestSampleSelector, CotSample, SelfConsistencyVote
from oversight.core.models import ModelEndpoint
from oversight_dev.faketgi import FakeTGI
from tests.baselines.conftest import SCRIPTED, generation_requests, make_items, softmax


def sample(probabilities, predicted=None, reasoning=""):
    predicted = max(range(len(probabilities)), key=lambda i: (probabilities[i], -i)) if predicted is None else predicted
    return CotSample(reasoning=reasoning, probabilities=probabilities, predicted=predicted)


def test_the_vote_is_the_majority_and_the_probabilities_are_the_mean_of_the_samples():
    samples = [sample([0.1, 0.6, 0.2, 0.1]), sample([0.5, 0.3, 0.1, 0.1]), sample([0.2, 0.5, 0.2, 0.1])]
    selection = SelfConsistencyVote().select(samples)

    assert selection.predicted == 1
    assert selection.probabilities == pytest.approx([0.8 / 3, 1.4 / 3, 0.5 / 3, 0.3 / 3])
    assert selection.detail == {"selector": "self-consistency", "votes": [1, 2, 0, 0]}


def test_a_tied_vote_goes_to_the_option_with_the_higher_mean_probability():
    samples = [
        sample([0.1, 0.0, 0.5, 0.4]),
        sample([0.0, 0.1, 0.45, 0.45], predicted=2),
        sample([0.0, 0.0, 0.3, 0.7]),
        sample([0.0, 0.0, 0.4, 0.6]),
    ]
    selection = SelfConsistencyVote().select(samples)

    assert selection.detail["votes"] == [0, 0, 2, 2]
    assert selection.predicted == 3  # D: mean 0.5375 beats C's 0.4125


def test_a_tie_in_votes_and_mean_probability_goes_to_the_lowest_letter():
    samples = [sample([0.5, 0.5, 0.0, 0.0], predicted=0), sample([0.5, 0.5, 0.0, 0.0], predicted=1)]
    assert SelfConsistencyVote().select(samples).predicted == 0


def test_a_preference_model_plugs_in_as_a_selector_that_keeps_the_best_sample():
    samples = [
        sample([0.1, 0.7, 0.1, 0.1], reasoning="short"),
        sample([0.6, 0.2, 0.1, 0.1], reasoning="a careful, longer argument"),
    ]
    selection = BestSampleSelector(lambda s: len(s.reasoning)).select(samples)

    assert selection.predicted == 0 and selection.probabilities == [0.6, 0.2, 0.1, 0.1]
    assert selection.detail["chosen"] == 1


@pytest.mark.django_db
def test_each_item_samples_n_reasonings_then_scores_the_papers_follow_up_after_each(bank, run_baseline):
    (item,) = make_items(bank, 1)

    def reasoning(ctx):
        seed = ctx.body["parameters"]["seed"]
        return f" Option B fits, says sample {seed}.\n\nHuman: and more"

    with FakeTGI(letter_logprobs=SCRIPTED, reply_fn=reasoning) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(endpoint=endpoint, bank=bank, method="cot", params={"samples": 3, "temperature": 0.9})
        requests = generation_requests(tgi)

    assert run.status == "done", run.message
    sampling = [r.json for r in requests if "top_n_tokens" not in r.json["parameters"]]
    scoring = [r.json for r in requests if "top_n_tokens" in r.json["parameters"]]
    assert len(sampling) == 3 and len(scoring) == 3
    result = run.results.get(item=item)
    reasoning_prompt = result.prompt
    assert reasoning_prompt.endswith("Answer:\n\nAssistant: Let's think step by step.")
    seeds = set()
    for body in sampling:
        p = body["parameters"]
        assert body["inputs"] == reasoning_prompt
        assert p["do_sample"] is True and p["temperature"] == 0.9 and p["stop"] == ["\n\nHuman:"]
        assert p["max_new_tokens"] == 256
        seeds.add(p["seed"])
    assert len(seeds) == 3  # one seed per sample, fixed per (run seed, item, sample)
    follow_ups = sorted(body["inputs"] for body in scoring)
    expected = sorted(
        f"{reasoning_prompt} Option B fits, says sample {seed}.\n\n"
        "Human: Based on the above, what is the single, most likely answer choice?\n\n"
        "Assistant: The single, most likely answer choice is"
        for seed in seeds
    )
    assert follow_ups == expected
    scripted = softmax([SCRIPTED[" A"], SCRIPTED[" B"], SCRIPTED[" C"], SCRIPTED[" D"]])
    assert result.probabilities == pytest.approx(scripted, abs=1e-12)
    assert result.predicted == 1
    assert result.response["votes"] == [0, 3, 0, 0]
    # The stop sequence the server includes is cut off; the rest of the reasoning is kept verbatim.
    assert sorted(s["reasoning"] for s in result.response["samples"]) == sorted(
        f" Option B fits, says sample {seed}." for seed in seeds
    )


@pytest.mark.django_db
def test_a_failed_sample_is_left_out_of_the_vote_and_recorded(bank, run_baseline):
    make_items(bank, 1)
    with FakeTGI(letter_logprobs=SCRIPTED, reply="Because.", http_status=424, fault_times=1) as tgi:
        endpoint = ModelEndpoint.objects.create(
            name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5, max_concurrency=1
        )
        run = run_baseline(endpoint=endpoint, bank=bank, method="cot", params={"samples": 3})

    result = run.results.get()
    assert result.error_kind == "" and result.predicted == 1
    assert len(result.response["samples"]) == 2
    assert [f["kind"] for f in result.response["failed_samples"]] == ["generation"]


@pytest.mark.django_db
def test_the_simulated_endpoint_votes_for_its_belief(bank, run_baseline):
    make_items(bank, 8)
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 0.5, "seed": 3})
    zero = run_baseline(endpoint=endpoint, bank=bank)
    cot = run_baseline(endpoint=endpoint, bank=bank, method="cot", params={"samples": 5})

    for z, c in zip(zero.results.order_by("item"), cot.results.order_by("item"), strict=True):
        assert c.predicted == z.predicted
        assert c.response["votes"][c.predicted] == 5
        assert len({tuple(s["probabilities"]) for s in c.response["samples"]}) == 5  # each sample differs


def pick_from_reasoning(ctx):
    """Letter logprobs for the follow-up: the letter the sampled reasoning ends on ("… so C") wins."""
    last = ctx.prompt.rsplit("so ", 1)[-1][:1] if "so " in ctx.prompt else "B"
    return {f" {letter}": (-0.2 if letter == last else -2.0) for letter in "ABCD"}


REASONINGS = [" It is B, so B.", " It is B, so B.", " Checking the units, so C."]


def reasoning_by_sample():
    """A reply_fn giving the first sample (by its seed) REASONINGS[0], the second REASONINGS[1], …"""
    seeds: dict[int, int] = {}

    def reply(ctx):
        seed = ctx.body["parameters"]["seed"]
        return REASONINGS[seeds.setdefault(seed, len(seeds)) % len(REASONINGS)]

    return reply


@pytest.mark.django_db
def test_best_of_n_keeps_the_sample_the_reward_model_scores_highest_and_scores_the_papers_follow_up(bank, run_baseline):
    """The paper's chain of thought (RESEARCH.md §4): N samples, the best by a preference model, then the letters."""
    (item,) = make_items(bank, 1)

    def reward(inputs):
        prompt, reasoning_text = inputs  # a (prompt, response) pair, as reward models take them
        assert prompt.endswith("Let's think step by step.")
        return 3.0 if "units" in reasoning_text else 0.5

    with FakeTGI(reply_fn=reasoning_by_sample(), logprobs_fn=pick_from_reasoning, reward_fn=reward) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        ModelEndpoint.objects.create(name="reward", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        params = {"samples": 3, "selector": "best-of-n", "scorer": "reward", "scorer_endpoint": "reward"}
        run = run_baseline(endpoint=endpoint, bank=bank, method="cot", params=params)
        predict = [r.json for r in tgi.requests if r.path == "/predict"]

    assert run.status == "done", run.message
    result = run.results.get(item=item)
    # Self-consistency would say B (two of three); the reward model prefers the third sample, which says C.
    assert result.predicted == 2
    assert result.response["selector"] == "best-of-n" and sorted(result.response["scores"]) == [0.5, 0.5, 3.0]
    assert result.response["samples"][result.response["chosen"]]["reasoning"] == " Checking the units, so C."
    assert len(predict) == 3 and all(body["raw_scores"] is True and body["truncate"] is True for body in predict)
    assert run.params["scorer"] == "reward" and run.summary["accuracy"] is not None


@pytest.mark.django_db
def test_a_judge_prompt_scored_by_log_probability_can_be_the_scorer(bank, run_baseline):
    (item,) = make_items(bank, 1)

    def letters(ctx):
        if "Is the reasoning above sound" in ctx.prompt:  # the judge: (A) sound, (B) not
            sound = "units" in ctx.prompt.split("Let's think step by step.")[-1]
            return {" A": -0.1 if sound else -3.0, " B": -3.0 if sound else -0.1}
        return pick_from_reasoning(ctx)

    with FakeTGI(reply_fn=reasoning_by_sample(), logprobs_fn=letters) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_baseline(
            endpoint=endpoint,
            bank=bank,
            method="cot",
            params={"samples": 3, "selector": "best-of-n", "scorer": "judge"},
        )
        judged = [
            r.json["inputs"] for r in tgi.requests if "Is the reasoning above sound" in (r.json or {}).get("inputs", "")
        ]

    result = run.results.get(item=item)
    assert len(judged) == 3 and all(text.startswith("Human: Question: Question q0") for text in judged)
    assert result.response["scorer"] == "judge" and result.predicted == 2
    # The score is log P(sound) − log P(not sound), from the judge's letters.
    assert max(result.response["scores"]) == pytest.approx(2.9)


@pytest.mark.django_db
def test_best_of_n_needs_a_scorer_and_a_reward_model_needs_its_endpoint(bank, endpoint):
    make_items(bank, 1)
    with pytest.raises(RunError, match="scorer"):
        create_run(endpoint=endpoint, bank=bank, method="cot", params={"selector": "best-of-n"})
    with pytest.raises(RunError, match="scorer_endpoint"):
        create_run(endpoint=endpoint, bank=bank, method="cot", params={"selector": "best-of-n", "scorer": "reward"})
    with pytest.raises(RunError, match="no endpoint named"):
        create_run(
            endpoint=endpoint,
            bank=bank,
            method="cot",
            params={"selector": "best-of-n", "scorer": "reward", "scorer_endpoint": "nowhere"},
        )


@pytest.mark.django_db
def test_mmlu_five_shot_chain_of_thought_puts_the_dev_examples_before_the_reasoning_prompt(bank, run_baseline):
    make_items(bank, 5, split="dev", prefix="dev")
    (item,) = make_items(bank, 1, split="val", prefix="val")
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 1.0, "seed": 1})
    run = run_baseline(endpoint=endpoint, bank=bank, split="val", method="cot", params={"samples": 2, "shots": 5})

    prompt = run.results.get(item=item).prompt
    assert prompt.count("Question: Question dev") == 5
    assert prompt.count("Let's think step by step.") == 1 and prompt.endswith("Assistant: Let's think step by step.")
    assert re.findall(r"Answer:\n\nAssistant: ([A-D])\n\n", prompt) == ["A", "B", "C", "D", "A"]
    assert run.params["shots"] == 5


@pytest.mark.django_db
def test_the_simulated_endpoint_is_its_own_scorer(bank, run_baseline):
    make_items(bank, 4)
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 0.5, "seed": 3})
    params = {"samples": 4, "selector": "best-of-n", "scorer": "reward", "scorer_endpoint": "sim"}
    run = run_baseline(endpoint=endpoint, bank=bank, method="cot", params=params)
    for result in run.results.all():
        scores = result.response["scores"]
        assert len(set(scores)) == 4 and result.response["chosen"] == scores.index(max(scores))
