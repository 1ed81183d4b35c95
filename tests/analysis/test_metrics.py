"""Calibration error, accuracy and the learning effect, on hand-computed cases; the report's vectorised forms
agree with the reference definitions."""

import random

import pytest

from oversight.analysis.metrics import (
    answer_probabilities,
    calibration_error,
    mean_individual_accuracy,
    nearest_bin,
    pooled_accuracy,
    tie_priority,
    weighted_vote,
)
from oversight.analysis.report import analysed_trials, build_report
from tests.analysis.rows import model, tables, trial


def test_calibration_error_is_the_unweighted_mean_over_non_empty_bins():
    observations = [
        (25, True),
        (25, False),
        (25, False),
        (25, False),  # 25% right in the 25 bin: error 0
        (60, True),
        (60, True),  # 100% in the 60 bin: error 40
        (100, False),
    ]  # 0% in the 100 bin: error 100
    ce, bins = calibration_error(observations)
    assert ce == pytest.approx((0 + 40 + 100) / 3)  # not weighted by the 4, 2 and 1 answers
    assert [b["n"] for b in bins] == [4, 0, 2, 0, 1]
    assert bins[1]["accuracy"] is None


def test_probabilities_go_to_the_nearest_bin_and_exact_midpoints_to_the_lower_one():
    assert [nearest_bin(v) for v in (5, 33.5, 33.6, 51, 51.1, 70, 89.9, 90, 90.1, 95, 99)] == [
        25,
        25,
        42,
        42,
        60,
        60,
        80,
        80,
        100,
        100,
        100,
    ]


def test_the_mean_of_participant_accuracies_is_not_the_pooled_accuracy():
    # P1 answered one item, right (100%); P2 answered three, all wrong (0%): mean 50%, pooled 25%.
    rows = [trial(1, 1, 0), trial(2, 1, 1), trial(2, 2, 1), trial(2, 3, 1)]
    assert mean_individual_accuracy(rows) == 50
    assert pooled_accuracy(rows) == 25
    unaided = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]["conditions"][0]["all"]
    assert unaided["accuracy"]["value"] == pytest.approx(50)
    assert unaided["pooled_accuracy"] == pytest.approx(25)


def test_a_timed_out_trial_without_an_option_counts_as_wrong_and_is_left_out_of_calibration():
    rows = [trial(1, 1, 0, 80), trial(1, 2, None, None, status="timed_out")]
    unaided = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]["conditions"][0]["all"]
    assert unaided["accuracy"]["value"] == pytest.approx(50)
    assert [b["n"] for b in unaided["calibration"]["bins"]] == [0, 0, 0, 1, 0]
    assert unaided["calibration"]["ce"]["value"] == pytest.approx(20)  # 100% right at 80


def test_human_calibration_pools_answers_at_their_likert_level():
    rows = [trial(1, 1, 0, 100), trial(1, 2, 1, 100), trial(2, 1, 0, 42), trial(2, 2, 1, 42)]
    unaided = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]["conditions"][0]["all"]
    # 100 bin: 1 of 2 right → 50 → |50 − 100| = 50; 42 bin: 1 of 2 → |50 − 42| = 8. CE = 29.
    assert unaided["calibration"]["ce"]["value"] == pytest.approx(29)
    assert unaided["mean_confidence"]["value"] == pytest.approx((100 + 42) / 2)


def test_model_calibration_bins_the_predicted_options_probability():
    rows = [trial(1, i, 0) for i in range(1, 5)]
    baselines = [
        model("zero-shot", 1, True, (0.7, 0.1, 0.1, 0.1), 0),  # 70 → 60 bin
        model("zero-shot", 2, False, (0.1, 0.65, 0.15, 0.1), 1),  # 65 → 60 bin
        model("zero-shot", 3, True, (0.97, 0.01, 0.01, 0.01), 0),  # 97 → 100 bin
        model("zero-shot", 4, None),  # an error: left out
    ]
    report = build_report(tables(rows, baselines=baselines), resamples=0).to_dict()["with_exclusions"]
    base = report["baselines"][0]
    assert base["n_errors"] == 1
    assert base["all"]["n_items"] == 3
    assert base["all"]["accuracy"]["value"] == pytest.approx(200 / 3)
    assert base["all"]["ce"]["value"] == pytest.approx((abs(50 - 60) + abs(100 - 100)) / 2)


def test_the_vote_calibration_uses_the_votes_confidence_and_the_max_confidence_subset_its_top_bin():
    rows = [
        # Item 1: three A@80 → A with confidence .512/(.512 + 3 × (.2/3)^3) = 0.9977 → the 100 bin; right.
        trial(1, 1, 0, 80),
        trial(2, 1, 0, 80),
        trial(3, 1, 0, 80),
        # Item 2: a lone B@60 → confidence 0.6 → the 60 bin; wrong.
        trial(1, 2, 1, 60),
    ]
    vote = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]["conditions"][0]["all"]["vote"]
    assert vote["calibration"]["ce"]["value"] == pytest.approx((0 + 60) / 2)
    assert vote["max_confidence"]["n_items"] == 1
    assert vote["max_confidence"]["accuracy"]["value"] == 100


def test_the_learning_effect_compares_the_first_and_second_half_of_each_participants_items():
    # P1 saw five assisted items: wrong, wrong, (middle, ignored), right, right. P2 four: right, wrong | right, right.
    rows = [
        trial(1, i, 0 if ok else 1, assisted=True, block_position=pos)
        for pos, (i, ok) in enumerate([(5, False), (4, False), (3, True), (2, True), (1, True)])
    ]
    rows += [
        trial(2, i, 0 if ok else 1, assisted=True, block_position=pos)
        for pos, (i, ok) in enumerate([(1, True), (2, False), (3, True), (4, True)])
    ]
    learning = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]["conditions"][0]["learning"]
    assert learning["first_half"]["value"] == pytest.approx((0 + 50) / 2)
    assert learning["second_half"]["value"] == pytest.approx(100)
    assert learning["difference"]["value"] == pytest.approx(75)
    assert learning["n_participants"] == 2


def test_the_dialogue_statistics_are_per_item_means():
    rows = [
        trial(1, 1, 0, assisted=True, turns=4, resets=1, quotes=2, quotes_verified=1),
        trial(1, 2, 0, assisted=True, turns=2, resets=0, quotes=0, quotes_verified=0),
    ]
    dialogue = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]["conditions"][0]["all"]["dialogue"]
    assert dialogue["turns_per_item"] == 3
    assert dialogue["resets_per_item"] == 0.5
    assert dialogue["quotes_per_item"] == 1
    assert dialogue["items_with_quotes_share"] == 50
    assert dialogue["quotes_verified_share"] == 50


@pytest.mark.parametrize("fmt", ["likert", "slider"])
def test_the_vectorised_point_estimates_equal_the_reference_definitions(fmt):
    rng = random.Random(3)
    levels = [25, 42, 60, 80, 100] if fmt == "likert" else list(range(5, 96))
    rows = []
    for p in range(1, 9):
        for item in range(1, 13):
            if rng.random() < 0.75:  # not everybody answers everything
                gold = item % 4
                empty = item == 12 or rng.random() < 0.1  # timed out with nothing selected; item 12 always
                rows.append(
                    trial(
                        p,
                        item,
                        None if empty else rng.randrange(4),
                        None if empty else rng.choice(levels),
                        gold=gold,
                        task="A" if item <= 6 else "B",
                        block_position=item,
                        status="timed_out" if empty else "answered",
                    )
                )
    t = tables(rows, confidence_format=fmt)
    report = build_report(t, resamples=0).to_dict()["with_exclusions"]
    unaided = report["conditions"][0]
    analysed = analysed_trials(t, apply_exclusions=True)
    assert unaided["all"]["accuracy"]["value"] == pytest.approx(mean_individual_accuracy(analysed))
    for task in ("A", "B"):
        subset = [r for r in analysed if r.task == task]
        assert unaided["by_task"][task]["accuracy"]["value"] == pytest.approx(mean_individual_accuracy(subset))
    ce, _ = calibration_error((r.confidence, r.correct) for r in analysed if r.choice is not None)
    assert unaided["all"]["calibration"]["ce"]["value"] == pytest.approx(ce)

    votes = []
    for item in sorted({r.item_id for r in analysed}):
        answers = [r for r in analysed if r.item_id == item]
        vote = weighted_vote(
            [
                (
                    r.choice,
                    answer_probabilities(choice=r.choice, confidence=r.confidence, n_options=4, confidence_format=fmt),
                )
                for r in answers
            ],
            4,
            priority=tie_priority(0, 1, [item], 4)[0],  # the report's default: seeded random ties, seed 0
        )
        votes.append((vote, answers[0].gold))
    assert votes[-1][0] is None  # item 12: nobody selected an option, so no vote (and no phantom A)
    accuracy = 100 * sum(v is not None and v.choice == g for v, g in votes) / len(votes)  # no vote: wrong
    assert unaided["all"]["vote"]["accuracy"]["value"] == pytest.approx(accuracy)
    assert unaided["all"]["vote"]["n_no_opinion"] == 1
    vote_ce, _ = calibration_error((100 * v.confidence, v.choice == g) for v, g in votes if v is not None)
    assert unaided["all"]["vote"]["calibration"]["ce"]["value"] == pytest.approx(vote_ce)
