"""The report per item: each condition × item with its answers, vote, gold and the models' answers."""

import dataclasses

import pytest

from oversight.analysis.report import build_report
from oversight.reports.items import item_rows
from tests.analysis.rows import ASSISTED_ID, UNAIDED_ID, model, tables, trial


def study(**fields):
    return tables(
        [
            trial(1, 10, 0, 80),  # unaided, item 10: right at 80%
            trial(2, 10, 1, 60),  # wrong at 60%
            trial(3, 10, 1, 100),  # wrong and certain, but excluded
            trial(1, 20, 0, 60, assisted=True),
            trial(2, 20, 0, 80, assisted=True),
        ],
        excluded={3},
        **fields,
    )


def test_it_lists_unaided_items_first_with_the_share_right_and_the_vote():
    rows = item_rows(study(), apply_exclusions=True, positions={(1, UNAIDED_ID, 10): 4})
    assert [(r["condition_id"], r["item_id"]) for r in rows] == [(UNAIDED_ID, 10), (ASSISTED_ID, 20)]
    unaided = rows[0]
    assert (unaided["n_answers"], unaided["n_right"], unaided["accuracy"], unaided["gold"]) == (2, 1, 50, 0)
    # 0.8 × (0.4 / 3) for A beats (0.2 / 3) × 0.6 for B: the vote follows the more confident answer.
    assert unaided["vote"]["choice"] == 0 and unaided["vote"]["correct"] and not unaided["vote"]["tie_break"]
    assert unaided["answers"] == [(1, 4, True), (2, None, False)]


def test_an_excluded_participant_counts_only_without_exclusions():
    unaided = item_rows(study(), apply_exclusions=False)[0]
    assert (unaided["n_answers"], unaided["n_right"]) == (3, 1)
    assert unaided["vote"]["choice"] == 1 and not unaided["vote"]["correct"]  # the certain wrong answer tips it


def test_each_models_answer_is_keyed_by_method_and_by_endpoint_only_when_there_are_several():
    one = study(baselines=[model("zero-shot", 10, True, predicted=0), model("cot", 10, None, predicted=None)])
    assert item_rows(one, apply_exclusions=True)[0]["models"] == {"zero-shot": {"predicted": 0, "correct": True}}
    other = dataclasses.replace(model("zero-shot", 10, False, predicted=2), endpoint="big")
    two = study(baselines=[model("zero-shot", 10, True, predicted=0), other])
    assert item_rows(two, apply_exclusions=True)[0]["models"] == {
        "sim:zero-shot": {"predicted": 0, "correct": True},
        "big:zero-shot": {"predicted": 2, "correct": False},
    }


def test_an_item_nobody_selected_an_option_for_has_no_vote_and_it_counts_as_wrong():
    empty = tables([trial(p, 10, None, None, status="timed_out") for p in (1, 2)])  # gold A: a phantom A was right
    (row,) = item_rows(empty, apply_exclusions=True)
    assert row["vote"] is None and row["no_opinion"] is True
    assert (row["n_answers"], row["n_right"]) == (2, 0)


def test_a_tie_is_broken_as_the_report_breaks_it():
    tied = tables(
        [trial(1, i, 0, 60, gold=1) for i in range(1, 31)] + [trial(2, i, 1, 60, gold=1) for i in range(1, 31)]
    )
    lowest = item_rows(tied, apply_exclusions=True, tie_rule="lowest_option")
    assert {r["vote"]["choice"] for r in lowest} == {0}
    rows = item_rows(tied, apply_exclusions=True, seed=4)
    assert {r["vote"]["choice"] for r in rows} == {0, 1} and {r["vote"]["tie_break"] for r in rows} == {"random"}
    report = build_report(tied, seed=4, resamples=0).to_dict()["with_exclusions"]["conditions"][0]["all"]["vote"]
    assert report["accuracy"]["value"] == pytest.approx(100 * sum(r["vote"]["correct"] for r in rows) / 30)
