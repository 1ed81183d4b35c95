"""The edge-case study of issue 14 (tests/analysis/edge_case.py), its report computed by hand.

Likert answers give their option p and each other option (1 − p)/3; "Certain" counts as 0.99. The vote multiplies
these over the item's answers. An answer with no option carries no opinion; an item where nobody selected an option
has no vote and counts as wrong in the vote's accuracy (docs/report.md, "Choices that are ours").
"""

import math

import pytest

from oversight.analysis.metrics import tie_priority
from oversight.analysis.report import build_report
from tests.analysis.edge_case import TABLE_1_LABELS, A, B, edge_case_tables

# Item 2's vote: A at 60% (P1) against B at 60% (P2). Products A = .6 × .4/3 = .08 = B; C = D = (.4/3)².
ITEM_2_CONFIDENCE = 0.08 / (0.08 + 0.08 + 2 * (0.4 / 3) ** 2)  # 40.9% → the 42% bin
# Item 4: D at "Certain" (.99) against A at 42%. D = .99 × .58/3; A = .01/3 × .42; B = C = .01/3 × .58/3.
ITEM_4_PRODUCTS = (0.01 / 3 * 0.42, 0.01 / 3 * 0.58 / 3, 0.01 / 3 * 0.58 / 3, 0.99 * 0.58 / 3)
ITEM_4_CONFIDENCE = ITEM_4_PRODUCTS[3] / sum(ITEM_4_PRODUCTS)  # 98.6% → the 100% bin


def analysis(resamples=0, **kwargs):
    return build_report(edge_case_tables(), resamples=resamples, **kwargs).to_dict()["with_exclusions"]


def block(data, kind):
    return next(c for c in data["conditions"] if c["kind"] == kind)["all"]


def test_the_unaided_participants_accuracy_counts_an_empty_timeout_as_wrong():
    unaided = block(analysis(), "unaided")
    # P1: items 1 ✗ (nothing selected), 2 ✗, 3 ✓, 4 ✓ → 50%. P2: 1 ✗, 2 ✓, 4 ✗ (item 3 not final) → 33.3%.
    assert unaided["accuracy"]["value"] == pytest.approx((50 + 100 / 3) / 2)
    assert unaided["n_answers"] == 7 and unaided["n_items"] == 4
    # CE over the answers with a confidence: 42 bin [✗] → 42; 60 [✗, ✓] → 10; 80 [✓] → 20; 100 [✓] → 0.
    assert unaided["calibration"]["ce"]["value"] == pytest.approx((42 + 10 + 20 + 0) / 4)
    # Mean confidence: P1 (60 + 80 + 100) / 3 = 80, P2 (60 + 42) / 2 = 51.
    assert unaided["mean_confidence"]["value"] == pytest.approx((80 + 51) / 2)


def test_an_item_nobody_answered_gets_no_phantom_vote_and_counts_as_wrong():
    vote = block(analysis(tie_rule="lowest_option"), "unaided")["vote"]
    # Item 1: no opinion → wrong (it used to get A by the tie rule, which is its gold). Item 2: the tie goes to A
    # under the lowest-option rule → wrong. Item 3: C alone → right. Item 4: D → right. 2 of 4.
    assert vote["accuracy"]["value"] == 50
    assert vote["n_items"] == 4 and vote["n_no_opinion"] == 1
    assert vote["ties"] == {"plurality": 0, "by_rule": 1}
    # Bins of the items with a vote: 42 [item 2 ✗] → 42; 80 [item 3 ✓] → 20; 100 [item 4 ✓] → 0.
    assert vote["calibration"]["ce"]["value"] == pytest.approx((42 + 20 + 0) / 3)
    assert vote["max_confidence"]["n_items"] == 1 and vote["max_confidence"]["accuracy"]["value"] == 100
    assert vote["mean_confidence"] == pytest.approx(100 * (ITEM_2_CONFIDENCE + 0.8 + ITEM_4_CONFIDENCE) / 3)


def test_a_one_participant_conditions_vote_is_that_participant():
    assisted = block(analysis(), "assisted")
    # P3: item 5 ✓, items 6 and 7 timed out with nothing selected ✗ → 33.3%. The vote agrees: item 7's gold is A,
    # which the lowest-option rule used to hand it (66.7%).
    assert assisted["accuracy"]["value"] == pytest.approx(100 / 3)
    assert assisted["vote"]["accuracy"]["value"] == pytest.approx(100 / 3)
    assert assisted["vote"]["n_no_opinion"] == 2
    assert assisted["vote"]["calibration"]["ce"]["value"] == pytest.approx(20)  # item 5 at 80%, right


def test_the_default_tie_break_is_seeded_random_and_stated():
    data = build_report(edge_case_tables(), resamples=0, seed=0).to_dict()
    vote = block(data["with_exclusions"], "unaided")["vote"]
    # Item 2 (condition 1) ties A and B: the option with the higher priority for (seed 0, condition 1, item 2) wins.
    priority = tie_priority(0, 1, [2], 4)[0]
    winner = A if priority[A] > priority[B] else B
    assert vote["accuracy"]["value"] == (75 if winner == B else 50)
    assert data["method"]["tie_rule"] == "random"
    assert "seeded" in data["method"]["vote_tie_rule"] and "seed 0" in data["method"]["vote_tie_rule"]


def test_the_learning_statistic_counts_who_improved():
    data = analysis()
    unaided = next(c for c in data["conditions"] if c["kind"] == "unaided")["learning"]
    # P1: first half (items 1, 2) 0%, second (3, 4) 100% → improved. P2: items 1 | 2 | 4 → first 0%, second 0%.
    assert unaided["first_half"]["value"] == 0 and unaided["second_half"]["value"] == 50
    assert (unaided["n_improved"], unaided["n_unchanged"], unaided["n_declined"]) == (1, 1, 0)
    assisted = next(c for c in data["conditions"] if c["kind"] == "assisted")["learning"]
    assert (assisted["n_improved"], assisted["n_unchanged"], assisted["n_declined"]) == (0, 0, 1)  # 100% → 0%


def test_table_1_has_the_papers_rows_with_the_model_on_its_split_and_on_the_studys_items():
    table = analysis()["table"]
    assert [r["label"] for r in table["rows"]] == TABLE_1_LABELS
    cells = {r["label"]: r["cells"]["MMLU"] for r in table["rows"]}
    split = cells["Model (zero-shot) on its split"]
    assert split["accuracy"]["value"] == 25 and split["n_items"] == 100 and split["split"] == "val"
    assert split["ce"]["value"] == 0  # all 100 in the 25% bin, 25% right
    study = cells["Model (zero-shot) on the study's items"]
    assert study["accuracy"]["value"] == pytest.approx(300 / 7) and study["n_items"] == 7  # items 1, 2, 5 of 7
    expert = next(r for r in table["rows"] if r["kind"] == "expert")
    assert expert["reference"] is True and expert["cells"]["MMLU"]["accuracy"] == {
        "value": 90.0,
        "ci95": None,
        "undefined_resamples": 0,
    }
    model_rows = [r for r in table["rows"] if r["kind"].startswith("model")]
    assert {r["method"]["method"] for r in model_rows} == {"zero-shot"}
    assert [r["scope"] for r in model_rows] == ["split", "study_items"]


def test_a_null_estimate_carries_no_interval_and_bounds_carry_no_float32_noise():
    data = analysis(resamples=300)
    assisted = block(data, "assisted")
    # P3's lone 80% vote is never in the top bin, but a resample that draws P3 twice doubles it (98.5%): the replicates
    # are defined there, the estimate is not, and a null estimate gets no interval.
    max_confidence = assisted["vote"]["max_confidence"]["accuracy"]
    assert max_confidence["value"] is None and max_confidence["ci95"] is None
    assert 0 < max_confidence["undefined_resamples"] < 300
    unaided = block(data, "unaided")
    # Every participant's accuracy is a multiple of 1/12 (of 3 or 4 items): so is every resampled mean of two.
    for bound in unaided["accuracy"]["ci95"]:
        assert bound == round(bound, 9)
    lo, hi = data["table"]["rows"][2]["cells"]["MMLU"]["accuracy"]["ci95"]  # the split row: 25 of 100
    assert lo < 25 < hi and all(math.isfinite(b) for b in (lo, hi))


def test_the_markdown_table_lays_out_the_same_rows():
    text = build_report(edge_case_tables(), resamples=0).to_markdown()
    table = text.split("## Table 1, exclusions applied")[1].split("## Key numbers")[0]
    labels = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert labels[1:] == TABLE_1_LABELS
    assert "| Expert human (published) | 90.0 (reference) |" in table
    assert "Tie rule" in text and "no option selected" in text
