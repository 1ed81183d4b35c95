"""Few-shot: k labelled examples of the item's subject, from the same bank's dev split, before the question."""

import re

import pytest

from oversight.banks.models import Bank, Item, Passage
from oversight.baselines.models import BaselineResult
from oversight.baselines.runner import RunError, create_run
from oversight.core.models import ConditionItem, ModelEndpoint
from tests.baselines.conftest import generation_requests, make_items
from tests.factories import make_study

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


def test_examples_never_come_from_the_studys_items(run_baseline):
    """Issue 14.5: a study on dev items must not see its own items, with their gold letters, as examples."""
    study = make_study(slug="leak", n_items=2)  # a bank of 12 "val" items, physics and history; 4 in the study
    studied = set(ConditionItem.objects.filter(study=study).values_list("item_id", flat=True))
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 0.7, "seed": 2})
    run = run_baseline(endpoint=endpoint, study=study, method="few-shot", params={"shots": 3, "examples_split": "val"})

    assert run.status == "done" and run.errors == 0
    texts = dict(Item.objects.filter(bank=study.tasks.get().bank).values_list("text", "pk"))
    for result in run.results.all():
        shown = {texts[q] for q in re.findall(r"Question: (.*?)\n\nChoices", result.prompt)}
        examples = shown - {result.item_id}
        assert len(examples) == 3 and not examples & studied


def test_a_runs_own_items_are_never_its_examples(bank, endpoint, run_baseline):
    make_items(bank, 6, subjects=("physics",), split="dev", prefix="physdev")
    run = run_baseline(endpoint=endpoint, bank=bank, split="dev", method="few-shot", params={"shots": 5})
    # Every dev item is scored by this run, so none may serve as another's example: all lack examples.
    assert run.errors == 6 and set(run.results.values_list("error_kind", flat=True)) == {"no_examples"}


def story_items(bank, story, n, *, split, prefix):
    passage = Passage.objects.create(
        bank=bank, external_id=f"{prefix}-story", title="T", text=story, content_hash=prefix
    )
    return [
        Item.objects.create(
            bank=bank,
            external_id=f"{prefix}{i}",
            subject="A story",
            split=split,
            text=f"Question {prefix}{i}?",
            options=["w", "x", "y", "z"],
            gold_index=i % 4,
            passage=passage,
            content_hash=f"{prefix}{i}",
        )
        for i in range(n)
    ]


def test_quality_few_shot_is_off_unless_asked_and_then_the_story_is_given_once(run_baseline):
    bank = Bank.objects.create(name="Unit QuALITY", format=Bank.Format.QUALITY)
    story = "Once upon a time. " * 50
    examples = story_items(bank, story, 3, split="dev", prefix="ex")
    passage = examples[0].passage
    (item,) = Item.objects.bulk_create(
        [
            Item(
                bank=bank,
                external_id="q",
                subject="A story",
                split="test",
                text="Question q?",
                options=["a", "b", "c", "d"],
                gold_index=1,
                passage=passage,
                content_hash="q",
            )
        ]
    )
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 0.7, "seed": 2})
    with pytest.raises(RunError, match="passage_examples"):
        create_run(endpoint=endpoint, bank=bank, split="test", method="few-shot")

    run = run_baseline(
        endpoint=endpoint, bank=bank, split="test", method="few-shot", params={"shots": 3, "passage_examples": True}
    )
    prompt = BaselineResult.objects.get(run=run, item=item).prompt
    assert prompt.count("Once upon a time.") == 50  # the story once, not once per example
    assert prompt.startswith("Human: Story:\n" + story)
    assert re.findall(r"Question: (Question \S+)\?", prompt) == [
        "Question ex0",
        "Question ex1",
        "Question ex2",
        "Question q",
    ]
