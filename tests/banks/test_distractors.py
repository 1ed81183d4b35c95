"""The two-option reduction: the gold answer plus the best distractor, from QuALITY's validation when it has
some, with a stated tie rule, else a configurable fallback."""

import json
from pathlib import Path

import pytest

from oversight.banks.distractors import best_distractor

DEMO = Path(__file__).resolve().parents[2] / "oversight/banks/demo/quality/demo.htmlstripped.jsonl"


def votes(*distractors, speed=()):
    return {
        "validation": [{"untimed_best_distractor": d} for d in distractors],
        "speed_validation": [{"speed_answer": a} for a in speed],
    }


def test_the_annotators_most_named_distractor_wins():
    assert best_distractor(n_options=4, gold_index=0, metadata=votes(3, 3, 2)) == (2, "validation")


def test_votes_for_the_gold_answer_are_ignored():
    # Annotators named the gold option (1-based 1) twice; it is never the distractor.
    assert best_distractor(n_options=4, gold_index=0, metadata=votes(1, 1, 4)) == (3, "validation")


def test_a_tie_goes_to_the_option_speed_validators_fell_for_most():
    metadata = votes(2, 4, speed=[4, 4, 2, 1])
    assert best_distractor(n_options=4, gold_index=0, metadata=metadata) == (3, "validation, tie: speed_validation")


def test_a_tie_with_the_lowest_rule_takes_the_lowest_numbered_option():
    metadata = votes(2, 4, speed=[4, 4, 2])
    assert best_distractor(n_options=4, gold_index=0, metadata=metadata, tie="lowest") == (
        1,
        "validation, tie: lowest",
    )


def test_a_tie_no_speed_validator_broke_falls_back_to_the_lowest_numbered():
    metadata = votes(4, 3, speed=[1, 1])  # speed validators chose gold only
    assert best_distractor(n_options=4, gold_index=0, metadata=metadata) == (2, "validation, tie: lowest")


def test_without_validation_the_fallback_rule_decides():
    speed_only = {"speed_validation": [{"speed_answer": 3}, {"speed_answer": 3}, {"speed_answer": 2}]}
    assert best_distractor(n_options=4, gold_index=0, metadata=speed_only) == (2, "fallback: speed_validation")
    assert best_distractor(n_options=4, gold_index=1, metadata={}, fallback="first_wrong") == (
        0,
        "fallback: first_wrong",
    )
    assert best_distractor(n_options=4, gold_index=0, metadata={}) == (
        1,
        "fallback: speed_validation (none recorded): first_wrong",
    )


def test_the_seeded_rule_draws_a_wrong_option_reproducibly_and_spreads_over_them():
    draws = {
        best_distractor(n_options=4, gold_index=2, metadata={}, fallback="seeded", seed_key=f"k{i}")[0]
        for i in range(40)
    }
    assert draws == {0, 1, 3}
    again = best_distractor(n_options=4, gold_index=2, metadata={}, fallback="seeded", seed_key="k7")
    assert again == best_distractor(n_options=4, gold_index=2, metadata={}, fallback="seeded", seed_key="k7")


def test_a_custom_bank_may_name_its_best_distractor_as_a_letter_or_a_number():
    assert best_distractor(n_options=4, gold_index=0, metadata={"best_distractor": "C", **votes(2)}) == (2, "metadata")
    assert best_distractor(n_options=4, gold_index=0, metadata={"best_distractor": 4}) == (3, "metadata")
    # One naming the gold answer is ignored.
    assert best_distractor(n_options=4, gold_index=0, metadata={"best_distractor": "A", **votes(2)})[0] == 1


def test_malformed_validation_records_are_skipped():
    metadata = {"validation": [{"untimed_best_distractor": "x"}, "junk", {"untimed_best_distractor": 9}, {}]}
    assert best_distractor(n_options=4, gold_index=0, metadata=metadata, fallback="first_wrong") == (
        1,
        "fallback: first_wrong",
    )


def test_it_needs_a_gold_answer_and_another_option():
    with pytest.raises(ValueError):
        best_distractor(n_options=1, gold_index=0, metadata={})


def test_on_the_demo_story_a_tied_question_is_decided_by_the_speed_validators():
    questions = [q for line in DEMO.read_text().splitlines() for q in json.loads(line)["questions"]]
    fourth = questions[3]  # gold 3; annotators named 2 and 1; speed validators chose 2 twice, 1 once
    picked = best_distractor(n_options=4, gold_index=fourth["gold_label"] - 1, metadata=fourth)
    assert picked == (1, "validation, tie: speed_validation")
    first = questions[0]  # gold 2; both annotators named option 1
    assert best_distractor(n_options=4, gold_index=first["gold_label"] - 1, metadata=first) == (0, "validation")
