"""Acceptance (b) of issue 17: hybrid verdicts against a hand-computed fixture; the threshold is never fitted on the
items it scores; and on a synthetic study where the model is accurate only when confident, deferral beats both
people and model, and the report shows it."""

import math
import random

import pytest

from oversight.analysis.hybrid import (
    HybridItem,
    best_threshold,
    cross_validated,
    deferred,
    humans_pooled,
    hybrid_analysis,
    log_linear_pool,
    outcome,
)
from oversight.analysis.report import build_report
from oversight.analysis.tables import ConditionRow, StudyTables, TrialRow, model_judge

PEOPLE = ({0: 0.8, 1: 0.2}, {0: 0.6, 1: 0.4})  # two people, both for answer 0
MODEL = {0: 0.3, 1: 0.7}  # the model, fairly sure of answer 1


def test_people_pool_as_the_normalised_product_of_their_answers():
    pooled = humans_pooled(PEOPLE, (0, 1))
    # 0.8 × 0.6 = 0.48 against 0.2 × 0.4 = 0.08.
    assert pooled[0] == pytest.approx(0.48 / 0.56) and pooled[1] == pytest.approx(0.08 / 0.56)


def test_an_answer_of_certainty_is_floored_so_it_cannot_veto_the_other_side():
    pooled = humans_pooled(({0: 1.0, 1: 0.0}, {0: 0.0, 1: 1.0}), (0, 1))
    assert pooled == {0: pytest.approx(0.5), 1: pytest.approx(0.5)}
    assert outcome(pooled, 1)[0] is False  # a tie goes to the lowest option


def test_the_log_linear_pool_by_hand():
    h = humans_pooled(PEOPLE, (0, 1))  # 6/7, 1/7
    half = log_linear_pool(h, MODEL, 0.5)
    a, b = math.sqrt(6 / 7 * 0.3), math.sqrt(1 / 7 * 0.7)
    assert half[0] == pytest.approx(a / (a + b))  # 0.6159…
    assert log_linear_pool(h, MODEL, 0.0) == pytest.approx(h)
    assert log_linear_pool(h, MODEL, 1.0) == pytest.approx(MODEL)
    right, p_gold, brier, confidence = outcome(half, 0)
    assert right and p_gold == pytest.approx(a / (a + b)) and confidence == p_gold
    assert brier == pytest.approx(2 * (1 - a / (a + b)) ** 2)


def test_deferral_takes_the_model_only_at_or_above_the_threshold():
    h = humans_pooled(PEOPLE, (0, 1))
    assert deferred(h, MODEL, 0.7) is MODEL
    assert deferred(h, MODEL, 0.75) is h


def item(i, *, model_right, model_p, people_right=True):
    gold = 0
    model = {0: model_p, 1: 1 - model_p} if model_right else {0: 1 - model_p, 1: model_p}
    people = ({0: 0.7, 1: 0.3},) if people_right else ({0: 0.3, 1: 0.7},)
    return HybridItem(item_id=i, gold=gold, options=(0, 1), human=people, model=model)


def test_each_item_is_scored_with_a_threshold_fitted_on_the_other_items_only():
    items = [
        item(1, model_right=True, model_p=0.8, people_right=False),
        item(2, model_right=True, model_p=0.8, people_right=False),
        item(3, model_right=False, model_p=0.8),
        item(4, model_right=False, model_p=0.6),
    ]
    # Fitted on all four, 0.8 would defer items 1-3 and score 3 of 4 …
    assert best_threshold(items) == 0.8
    results, used = cross_validated(items, seed=0, k=4)
    for fold in used:
        (left_out,) = fold["item_ids"]
        assert fold["threshold"] == best_threshold([x for x in items if x.item_id != left_out])
    # … but item 1, left out, is scored with the threshold the other three choose (never defer: a tie, the larger),
    # so the people's wrong answer stands: the rule does not get to see the item it scores.
    fold_1 = next(f for f in used if f["item_ids"] == [1])
    assert fold_1["threshold"] == 1.01
    assert results["deferral"][0][0] == 0.0


def synthetic_study(n_items=80, people=3, seed=11):
    """People right 70% of the time at 80% confidence; the model right on the items it is sure of (95%) and
    mostly wrong on the others, where it says 55%."""
    rng = random.Random(seed)
    trials, model_trials = [], []
    for item_id in range(1, n_items + 1):
        gold = rng.randrange(4)
        wrong = [o for o in range(4) if o != gold]
        for p in range(1, people + 1):
            choice = gold if rng.random() < 0.7 else rng.choice(wrong)
            trials.append(
                TrialRow(p, 1, item_id, choice, 80.0, choice == gold, gold=gold, condition_kind="unaided", task="T")
            )
        confident = item_id % 2 == 0
        top = gold if confident or rng.random() < 0.2 else rng.choice(wrong)
        p_top = 0.95 if confident else 0.55
        distribution = [100 * (p_top if o == top else (1 - p_top) / 3) for o in range(4)]
        model_trials.append(
            TrialRow(
                100,
                1,
                item_id,
                top,
                100 * p_top,
                top == gold,
                gold=gold,
                condition_kind="unaided",
                task="T",
                distribution=tuple(distribution),
                submit_kind="model",
            )
        )
    return StudyTables(
        slug="synthetic",
        conditions=[ConditionRow(1, "unaided", "Unaided")],
        trials=trials,
        confidence_format="slider",
        model_trials=model_trials,
        model_judges={100: model_judge(100, {"model_id": "weak", "mode": "replay", "judge_run": 7})},
    )


def test_on_a_model_accurate_only_when_confident_deferral_beats_people_and_model_and_the_report_says_so():
    report = build_report(synthetic_study(), resamples=500)
    data = report.to_dict()
    (row,) = data["model_judges"]["judges"]
    rules = row["hybrid"]["rules"]
    deferral = rules["deferral"]["accuracy"]["value"]
    assert deferral > rules["humans"]["accuracy"]["value"] and deferral > rules["model"]["accuracy"]["value"]
    assert row["hybrid"]["differences"]["deferral_minus_model"]["ci95"][0] > 0
    assert row["hybrid"]["differences"]["deferral_minus_humans"]["ci95"][0] > 0
    assert all(0.55 < f["threshold"] <= 0.95 for f in row["hybrid"]["folds"])  # between the two confidences
    # Never pooled: the people's Table 1 counts three participants, not four.
    people = data["with_exclusions"]["conditions"][0]["all"]
    assert people["n_participants"] == 3 and people["n_answers"] == 3 * 80
    markdown = report.to_markdown()
    assert "## Model judges (analysed apart from people)" in markdown
    assert "| Deferral (model when confident, else humans) |" in markdown
    assert "cross-validation over items" in markdown and "never with a value fitted on the item itself" in markdown
    assert row["label"] == "Model judge: weak (replay)"


def test_no_model_judge_no_block():
    tables = synthetic_study()
    tables.model_trials = []
    assert "model_judges" not in build_report(tables, resamples=50).to_dict()


def test_the_hybrid_analysis_of_no_items_is_empty_not_an_error():
    assert hybrid_analysis([], seed=0, resamples=10)["n_items"] == 0
