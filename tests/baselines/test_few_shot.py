"""Few-shot: k labelled examples of the item's subject, from the same bank's dev split, before the question."""

import re

import pytest

from oversight.baselines.models import BaselineResult
from tests.baselines.conftest import generation_requests, make_items

pytestmark = pytest.mark.django_db


def examples_in(prompt: str) -> list[str]:
    """The questions of the answered examples in a prompt (the last question is the item itself)."""
    return re.findall(r"Question: (Question \S+): which is right\?", prompt)[:-1]


def test_the_prompt_holds_exactly_five_dev_examples_of_the_items_subject_each_with_its_gold_letter(
    bank, endpoint, tgi, run_baseline
):
    make_items(bank, 12, subjects=("physics",), split="dev", prefix="physdev")  # more than 5: the first 5 count
    make_items(bank, 5, subjects=("chemistry",), split="dev", prefix="chemdev")
    physics = make_items(bank, 2, subjects=("physics",), split="test", prefix="phys")
    chemistry = make_items(bank, 1, subjects=("chemistry",), split="test", prefix="chem")
    run = run_baseline(endpoint=endpoint, bank=bank, split="test", method="few-shot")

    assert run.status == "done" and run.total == 3 and run.params["shots"] == 5
    for item in physics:
        prompt = BaselineResult.objects.get(run=run, item=item).prompt
        # In the dev file's row order (natural order of external ids), not physdev10 before physdev2.
        assert examples_in(prompt) == [f"Question physdev{i}" for i in range(5)]
        assert prompt.count("Human: ") == 6 and prompt.count("\nAssistant:") == 6
        assert prompt.endswith(
            f"Question: Question {item.external_id}: which is right?\n\nChoices:\n"
            f" (A) first {item.external_id[4:]}\n (B) second {item.external_id[4:]}\n"
            f" (C) third {item.external_id[4:]}\n (D) fourth {item.external_id[4:]}\n\n"
            "Answer:\n\nAssistant:"
        )
    chem_prompt = BaselineResult.objects.get(run=run, item=chemistry[0]).prompt
    assert examples_in(chem_prompt) == [f"Question chemdev{i}" for i in range(5)]
    # Each example is answered with its gold letter (gold_index = i % 4 in make_items).
    answers = re.findall(r"Assistant: ([A-D])\n\nHuman:", chem_prompt)
    assert answers == ["A", "B", "C", "D", "A"]
    assert len(generation_requests(tgi)) == 3


def test_the_number_of_shots_is_a_parameter(bank, endpoint, run_baseline):
    make_items(bank, 5, subjects=("physics",), split="dev", prefix="physdev")
    (item,) = make_items(bank, 1, subjects=("physics",), split="val", prefix="phys")
    run = run_baseline(endpoint=endpoint, bank=bank, split="val", method="few-shot", params={"shots": 2})

    assert examples_in(BaselineResult.objects.get(run=run, item=item).prompt) == [
        "Question physdev0",
        "Question physdev1",
    ]


def test_an_item_whose_subject_has_too_few_dev_examples_is_recorded_as_an_error_and_the_run_goes_on(
    bank, endpoint, tgi, run_baseline
):
    make_items(bank, 5, subjects=("physics",), split="dev", prefix="physdev")
    make_items(bank, 3, subjects=("law",), split="dev", prefix="lawdev")
    make_items(bank, 1, subjects=("physics",), split="test", prefix="phys")
    (law,) = make_items(bank, 1, subjects=("law",), split="test", prefix="law")
    run = run_baseline(endpoint=endpoint, bank=bank, split="test", method="few-shot")

    assert run.status == "done" and run.done == 2 and run.errors == 1
    result = BaselineResult.objects.get(run=run, item=law)
    assert result.error_kind == "no_examples" and "only 3" in result.error and result.probabilities is None
    assert run.summary["errors_by_kind"] == {"no_examples": 1}
    assert len(generation_requests(tgi)) == 1
