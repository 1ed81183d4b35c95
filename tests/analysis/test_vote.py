"""The confidence-weighted majority vote, against RESEARCH.md §5's definition and hand-computed products."""

import pytest

from oversight.analysis.metrics import (
    answer_probabilities,
    floored_distribution,
    likert_probability,
    nearest_bin,
    tie_priority,
    weighted_vote,
)
from oversight.analysis.report import build_report
from tests.analysis.rows import tables, trial


def likert(choice, level, k=4):
    return choice, answer_probabilities(choice=choice, confidence=level, n_options=k)


def test_the_papers_example_b_at_60_percent_gives_133_60_133_133():
    assert answer_probabilities(choice=1, confidence=60, n_options=4) == pytest.approx([0.4 / 3, 0.6, 0.4 / 3, 0.4 / 3])
    assert [round(p, 3) for p in answer_probabilities(choice=1, confidence=60, n_options=4)] == [
        0.133,
        0.6,
        0.133,
        0.133,
    ]


def test_certain_100_percent_is_scored_as_99_percent():
    assert likert_probability(100) == 0.99
    assert answer_probabilities(choice=0, confidence=100, n_options=4) == pytest.approx(
        [0.99, 0.01 / 3, 0.01 / 3, 0.01 / 3]
    )


def test_a_certain_answer_does_not_veto_the_others_because_it_counts_as_99_percent():
    # A at 100% against three B at 80%: A = .99 × (.2/3)^3 = 2.93e-4 < B = (.01/3) × .8^3 = 1.71e-3. Were 100%
    # scored as 1.0, B's product would be 0 and A would win.
    vote = weighted_vote([likert(0, 100), likert(1, 80), likert(1, 80), likert(1, 80)], 4)
    assert vote.choice == 1
    assert vote.products[0] == pytest.approx(0.99 * (0.2 / 3) ** 3)
    assert vote.products[1] == pytest.approx(0.01 / 3 * 0.8**3)


def test_a_25_percent_answer_is_uninformative_and_leaves_the_vote_unchanged():
    before = weighted_vote([likert(0, 60), likert(2, 42)], 4)
    after = weighted_vote([likert(0, 60), likert(2, 42), likert(3, 25)], 4)
    assert answer_probabilities(choice=3, confidence=25, n_options=4) == [0.25] * 4
    assert before.choice == after.choice == 0
    assert after.confidence == pytest.approx(before.confidence)
    assert after.products == pytest.approx(tuple(p * 0.25 for p in before.products))


def test_the_vote_picks_the_highest_product_not_the_most_votes():
    # Two lukewarm B (42%) against one confident A (80%): A = .8 × (.58/3)^2 = .0299; B = (.2/3) × .42^2 = .0118.
    vote = weighted_vote([likert(0, 80), likert(1, 42), likert(1, 42)], 4)
    assert vote.choice == 0
    assert vote.products[0] == pytest.approx(0.8 * (0.58 / 3) ** 2)


def test_the_votes_confidence_is_the_chosen_product_over_the_sum_of_products():
    vote = weighted_vote([likert(0, 60), likert(0, 60)], 4)
    products = [0.36] + [(0.4 / 3) ** 2] * 3
    assert vote.confidence == pytest.approx(0.36 / sum(products))
    assert nearest_bin(100 * vote.confidence) == 80  # 87.1% is nearer 80 than 100


def test_a_lone_answer_gives_the_vote_its_own_confidence():
    assert weighted_vote([likert(2, 42)], 4).confidence == pytest.approx(0.42)


def test_a_tie_in_products_goes_to_the_option_most_participants_chose():
    # A at 60 and B at 60 tie; a 25% answer for B adds nothing to the products but makes B the plurality.
    vote = weighted_vote([likert(0, 60), likert(1, 60), likert(1, 25)], 4)
    assert vote.choice == 1
    assert vote.tie_break == "plurality"


def test_a_tie_in_products_and_in_votes_goes_to_the_lowest_option_whatever_the_order():
    for answers in ([likert(2, 60), likert(1, 60)], [likert(1, 60), likert(2, 60)]):
        vote = weighted_vote(answers, 4)
        assert vote.choice == 1
        assert vote.tie_break == "lowest_option"
    assert weighted_vote([likert(3, 25)], 4).choice == 3  # all uniform: the plurality decides
    assert weighted_vote([likert(0, 60)], 4).tie_break == ""


def test_an_item_where_nobody_selected_an_option_has_no_vote_rather_than_a_phantom_one():
    assert weighted_vote([(None, None), (None, None)], 4) is None
    assert weighted_vote([(None, None)], 4, priority=[0.9, 0.1, 0.2, 0.3]) is None
    # One answer with an option is an opinion; the empty one adds nothing.
    assert weighted_vote([(None, None), likert(2, 42)], 4).choice == 2


def test_the_random_tie_rule_is_a_fair_draw_fixed_by_the_seed():
    items = list(range(1, 2001))
    tied = [likert(0, 60), likert(1, 60)]  # A and B tie in products and in votes

    def choices(seed):
        priority = tie_priority(seed, 1, items, 4)
        return [weighted_vote(tied, 4, priority=priority[i]).choice for i in range(len(items))]

    first = choices(0)
    assert set(first) == {0, 1}  # never C or D: only the tied options are drawn
    assert 0.45 < first.count(0) / len(first) < 0.55  # not always A, as the lowest-option rule would
    assert choices(0) == first  # the same seed, the same draws
    assert choices(1) != first
    assert weighted_vote(tied, 4, priority=tie_priority(0, 1, [1], 4)[0]).tie_break == "random"
    # The priority of an item does not depend on the other items it is computed with.
    assert tie_priority(0, 1, [7], 4)[0].tolist() == tie_priority(0, 1, [3, 7, 9], 4)[1].tolist()


def test_the_reports_tie_rule_can_stay_the_lowest_option():
    rows = [trial(p, i, p - 1, 60, gold=1) for i in range(1, 41) for p in (1, 2)]  # 40 items: A@60 vs B@60
    lowest = build_report(tables(rows), resamples=0, tie_rule="lowest_option").to_dict()
    assert lowest["with_exclusions"]["conditions"][0]["all"]["vote"]["accuracy"]["value"] == 0  # always A
    assert "lowest option index" in lowest["method"]["vote_tie_rule"]
    random_rule = build_report(tables(rows), resamples=0).to_dict()
    assert 0 < random_rule["with_exclusions"]["conditions"][0]["all"]["vote"]["accuracy"]["value"] < 100
    with pytest.raises(ValueError):
        build_report(tables(rows), resamples=0, tie_rule="coin")


def test_an_answer_without_a_confidence_or_option_is_uninformative():
    assert answer_probabilities(choice=None, confidence=80, n_options=4) is None
    assert answer_probabilities(choice=1, confidence=None, n_options=4) is None
    vote = weighted_vote([likert(2, 42), (1, None)], 4)
    assert vote.confidence == pytest.approx(0.42)


def test_the_slider_is_taken_literally_and_five_percent_favours_the_other_options():
    assert answer_probabilities(choice=0, confidence=5, n_options=4, confidence_format="slider") == pytest.approx(
        [0.05, 0.95 / 3, 0.95 / 3, 0.95 / 3]
    )
    assert answer_probabilities(choice=0, confidence=95, n_options=4, confidence_format="slider")[0] == 0.95


def test_an_all_options_answer_is_floored_so_no_single_answer_vetoes_an_option():
    probs = floored_distribution([100, 0, 0, 0], 4)
    assert probs[0] == pytest.approx(1 / 1.01)
    assert probs[1] == pytest.approx((0.01 / 3) / 1.01)
    assert sum(probs) == pytest.approx(1)
    assert floored_distribution([40, 30, 20, 10], 4) == pytest.approx([0.4, 0.3, 0.2, 0.1])
    # Three options at 90/5/5 outvote one certain answer elsewhere.
    vote = weighted_vote(
        [
            (0, floored_distribution([100, 0, 0], 3)),
            (1, floored_distribution([5, 90, 5], 3)),
            (1, floored_distribution([5, 90, 5], 3)),
        ],
        3,
    )
    assert vote.choice == 1


def test_the_reports_vote_is_the_reference_vote_on_every_item():
    # Item 1: A@60 + B@60 (tie → A, lowest); item 2: B@60, B@25, A@60 (tie → B, plurality); item 3: C@100 vs D@80 ×3.
    rows = [
        trial(1, 1, 0, 60, gold=1),
        trial(2, 1, 1, 60, gold=1),
        trial(1, 2, 1, 60, gold=1),
        trial(2, 2, 1, 25, gold=1),
        trial(3, 2, 0, 60, gold=1),
        trial(1, 3, 2, 100, gold=3),
        trial(2, 3, 3, 80, gold=3),
        trial(3, 3, 3, 80, gold=3),
        trial(4, 3, 3, 80, gold=3),
    ]
    report = build_report(tables(rows), resamples=0, tie_rule="lowest_option").to_dict()
    unaided = report["with_exclusions"]["conditions"][0]["all"]
    # Votes: item 1 → A (wrong), item 2 → B (right), item 3 → D (right).
    assert unaided["vote"]["accuracy"]["value"] == pytest.approx(200 / 3)
    assert unaided["vote"]["ties"] == {"plurality": 1, "by_rule": 1}
    assert unaided["vote"]["n_items"] == 3


def test_with_the_all_options_format_the_vote_uses_each_whole_distribution():
    # P1 60/40/0/0 (chooses A), P2 0/40/0/60 (chooses D): B, which nobody chose, has the highest product.
    rows = [
        trial(1, 1, 0, 60, gold=1, distribution=(60, 40, 0, 0)),
        trial(2, 1, 3, 60, gold=1, distribution=(0, 40, 0, 60)),
    ]
    report = build_report(tables(rows, confidence_format="distribution"), resamples=0).to_dict()
    unaided = report["with_exclusions"]["conditions"][0]["all"]
    assert unaided["vote"]["accuracy"]["value"] == 100
    reference = weighted_vote(
        [(0, floored_distribution((60, 40, 0, 0), 4)), (3, floored_distribution((0, 40, 0, 60), 4))], 4
    )
    assert reference.choice == 1
    assert unaided["vote"]["mean_confidence"] == pytest.approx(100 * reference.confidence)
    assert [b["n"] for b in unaided["calibration"]["bins"]] == [0, 0, 2, 0, 0]  # each stated 60% for its choice
    assert "floored" in report["method"]["confidence_format"]


def test_with_the_slider_answers_go_to_the_nearest_bin_and_enter_the_vote_literally():
    rows = [trial(1, 1, 0, 70, gold=0), trial(2, 1, 1, 95, gold=0), trial(3, 2, 2, 51, gold=2)]
    unaided = build_report(tables(rows, confidence_format="slider"), resamples=0).to_dict()["with_exclusions"][
        "conditions"
    ][0]["all"]
    # 70 → 60 (halfway, lower bin), 95 → 100, 51 → 42 (halfway).
    assert [b["n"] for b in unaided["calibration"]["bins"]] == [0, 1, 1, 0, 1]
    # Item 1: A at .70 vs B at .95 → B = .95 × .1 = .095 beats A = .7 × (.05/3) = .0117: the vote is wrong.
    assert unaided["vote"]["accuracy"]["value"] == 50
