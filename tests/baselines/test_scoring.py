"""The arithmetic: letter spellings, normalisation, ties, calibration bins and run summaries."""

import math

import pytest

from oversight.analysis.metrics import calibration_error
from oversight.baselines.scoring import (
    ResultRow,
    calibration,
    letter_of,
    letters_in_top,
    nearest_bin,
    normalise,
    predict,
    spelling_for_missing,
    summarise,
)


def test_a_letter_is_recognised_with_or_without_its_leading_space_but_nothing_else():
    assert [letter_of(t, "ABCD") for t in ("A", " B", "▁C", "ĠD", "\tA")] == ["A", "B", "C", "D", "A"]
    assert [letter_of(t, "ABCD") for t in ("E", " a", "A.", "(A", " AB", "\nA", "")] == [None] * 7


def test_spellings_of_one_letter_are_merged_and_a_repeated_spelling_counts_once():
    merged, spellings = letters_in_top([(" A", -1.0), ("A", -2.0), (" A", -5.0), ("\n", -0.5), (" B", -3.0)], "ABCD")
    assert merged["A"] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0)))
    assert merged["B"] == -3.0 and "C" not in merged
    assert spellings["A"] == [[" A", -1.0], ["A", -2.0]]


def test_a_missing_letter_is_spelled_the_way_the_found_letters_were():
    assert spelling_for_missing({"A": [[" A", -1.0]]}, prompt_ends_with_space=False) == " "
    assert spelling_for_missing({"A": [["A", -1.0]], "B": [[" B", -3.0]]}, prompt_ends_with_space=False) == ""
    assert spelling_for_missing({}, prompt_ends_with_space=False) == " "
    assert spelling_for_missing({"A": [[" A", -1.0]]}, prompt_ends_with_space=True) == ""


def test_probabilities_are_a_softmax_and_ties_go_to_the_lowest_letter():
    assert normalise([0.0, 0.0]) == [0.5, 0.5]
    assert normalise([-1000.0, -1001.0]) == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])
    assert predict([0.2, 0.4, 0.4, 0.0]) == 1
    assert predict([0.25, 0.25, 0.25, 0.25]) == 0


def test_confidence_goes_to_the_nearest_of_the_papers_five_bins_and_a_midpoint_to_the_lower():
    percents = (25, 33.4, 33.5, 33.6, 51, 51.1, 70, 70.1, 90, 99)
    assert [nearest_bin(p) for p in percents] == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4]


def test_calibration_error_is_the_unweighted_mean_gap_over_the_non_empty_bins():
    pairs = [
        (0.3, True),
        (0.3, False),
        (0.3, False),
        (0.3, False),  # bin 25: 25% right, gap 0
        (0.95, True),
        (0.95, True),
        (0.95, True),
        (0.95, False),
    ]  # bin 100: 75% right, gap 25
    result = calibration(pairs)
    assert result["ce"] == pytest.approx(12.5)
    assert [b["n"] for b in result["bins"]] == [4, 0, 0, 0, 4]
    assert result["bins"][4]["accuracy"] == 75.0 and result["bins"][4]["mean_confidence"] == pytest.approx(95.0)


def test_a_summary_counts_errors_separately_and_as_wrong():
    rows = [
        ResultRow("physics", True, [0.7, 0.1, 0.1, 0.1], 0, True),
        ResultRow("physics", True, [0.1, 0.6, 0.2, 0.1], 1, False),
        ResultRow("law", True, [0.1, 0.1, 0.1, 0.7], 3, True),
        ResultRow("law", True, None, None, None, "too_long"),
        ResultRow("law", False, [0.4, 0.3, 0.2, 0.1], 0, None),  # unlabelled: answered but not scored
    ]
    s = summarise(rows)
    assert (s["items"], s["answered"], s["labelled"], s["errors"]) == (5, 4, 3, 1)
    assert s["accuracy"] == pytest.approx(200 / 3) and s["accuracy_errors_as_wrong"] == 50.0
    assert s["errors_by_kind"] == {"too_long": 1}
    assert s["accuracy_by_subject"] == {"law": {"accuracy": 100.0, "n": 1}, "physics": {"accuracy": 50.0, "n": 2}}
    assert s["mean_confidence"] == pytest.approx(100 * (0.7 + 0.6 + 0.7 + 0.4) / 4)


def test_a_summary_bins_the_predicted_options_probability_as_the_report_does():
    """Issue 14.6: one calibration definition. A self-consistency vote can predict an option that is not the most
    probable in the mean distribution; its confidence is the predicted option's probability, not the maximum."""
    rows = [
        ResultRow("physics", True, [0.5, 0.3, 0.1, 0.1], 1, True),  # voted B: 30% → the 25 bin (the max, 50%, is 42)
        ResultRow("physics", True, [0.1, 0.1, 0.2, 0.6], 3, False),  # 60% → the 60 bin
    ]
    s = summarise(rows)
    assert [b["n"] for b in s["calibration_bins"]] == [1, 0, 1, 0, 0]
    assert [b["right"] for b in s["calibration_bins"]] == [1, 0, 0, 0, 0]
    assert s["calibration_error"] == pytest.approx((abs(100 - 25) + abs(0 - 60)) / 2)
    assert s["mean_confidence"] == pytest.approx(100 * (0.3 + 0.6) / 2)
    assert s["n_correct"] == 1 and s["confidence"] == "probability of the predicted option"
    report_ce, _ = calibration_error([(30, True), (60, False)])  # the report's definition, on the same answers
    assert s["calibration_error"] == pytest.approx(report_ce)
