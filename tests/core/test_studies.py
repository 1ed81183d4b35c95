import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from oversight.core.models import Condition, Study, Task
from oversight.core.services.studies import (
    StudyDesignError,
    manifest_hash,
    study_clone,
    study_close,
    study_design_problems,
    study_design_problems_added,
    study_launch,
)
from tests.factories import make_study

pytestmark = pytest.mark.django_db


def test_it_explains_a_sample_larger_than_the_bank():
    study = make_study(n_items=7, launch=False)  # 2 conditions × 7 disjoint > 14 items? the bank holds 14
    study.tasks.update(sample_size=8)
    problems = study_design_problems(study)
    assert any("2 disjoint samples of 8 need 16 items but the bank has 14" in p for p in problems)
    with pytest.raises(StudyDesignError, match="need 16 items"):
        study_launch(study=study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_it_requires_an_endpoint_for_an_assisted_condition():
    study = make_study(launch=False, endpoint=False)
    assert "The assisted condition “Assisted” needs a model endpoint." in study_design_problems(study)


def added_without_writing(study: Study, change) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        problems = study_design_problems_added(study=study, change=change)
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == [], "checking a change wrote to the database"
    return problems


def test_a_new_condition_that_leaves_too_few_items_adds_a_problem_without_being_saved():
    study = make_study(n_items=5, launch=False)  # 2 conditions × 5 of 12 items: fine
    third = Condition(study=study, kind=Condition.Kind.UNAIDED, name="Third", position=2)
    assert added_without_writing(study, third) == [
        "Task “Main”: 3 disjoint samples of 5 need 15 items but the bank has 12 matching items."
    ]
    assert study.conditions.count() == 2 and study_design_problems(study) == []


def test_an_edited_task_is_checked_in_place_of_the_stored_one():
    study = make_study(n_items=5, launch=False)
    task = study.tasks.get()
    edited = copy.copy(task)
    edited.sample_size = 7
    assert added_without_writing(study, edited) == [
        "Task “Main”: 2 disjoint samples of 7 need 14 items but the bank has 12 matching items."
    ]
    assert Task.objects.get(pk=task.pk).sample_size == 5


def test_an_edited_study_is_checked_with_its_own_settings():
    study = make_study(n_items=7, launch=False, disjoint_samples=False)
    study.tasks.update(sample_size=8)  # 8 of the bank's 14 items, shared by both conditions: fine
    disjoint = copy.copy(study)
    disjoint.disjoint_samples = True
    assert added_without_writing(study, disjoint) == [
        "Task “Main”: 2 disjoint samples of 8 need 16 items but the bank has 14 matching items."
    ]
    assert not Study.objects.get(pk=study.pk).disjoint_samples


def test_only_problems_the_change_adds_count():
    study = make_study(n_items=7, launch=False, endpoint=False)
    study.tasks.update(sample_size=8)
    assert len(study_design_problems(study)) == 2  # 2 × 8 items of 14, and no endpoint
    smaller = copy.copy(study.tasks.get())
    smaller.sample_size = 3
    assert added_without_writing(study, smaller) == []  # fixes one, adds none
    renamed = Condition.objects.get(study=study, name="Unaided")
    renamed.kind, renamed.name = Condition.Kind.ASSISTED, "Also assisted"
    assert added_without_writing(study, renamed) == ["The assisted condition “Also assisted” needs a model endpoint."]


def test_the_same_seed_draws_the_same_samples():
    a = make_study(slug="a", launch=True)
    b_items = [ci.item.external_id.split(":")[1] for ci in a.condition_items.select_related("item")]
    c = make_study(slug="c", launch=True)
    c_items = [ci.item.external_id.split(":")[1] for ci in c.condition_items.select_related("item")]
    assert b_items == c_items


def test_the_manifest_hash_is_the_hash_of_the_frozen_manifest():
    study = make_study()
    assert study.manifest_hash == manifest_hash(study.manifest)
    conditions = study.manifest["conditions"]
    assert [c["kind"] for c in conditions] == ["assisted", "unaided"]
    assert conditions[0]["endpoint"]["kind"] == "simulated"
    assert sum(len(v) for v in study.manifest["items"].values()) == 6


def test_a_live_study_cannot_be_launched_again_but_can_be_closed_and_cloned():
    study = make_study()
    with pytest.raises(StudyDesignError, match="Only a draft"):
        study_launch(study=study)
    study_close(study=study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED
    clone = study_clone(study=study, slug="unit-2")
    assert clone.status == Study.Status.DRAFT and clone.manifest is None
    assert clone.conditions.count() == 2 and clone.tasks.count() == 1
    assert Condition.objects.filter(study=study).count() == 2


def test_cloning_leaves_the_caller_s_study_object_as_the_original():
    study = make_study()
    clone = study_clone(study=study, slug="unit-2")
    assert (study.pk, study.slug, study.status) != (clone.pk, clone.slug, clone.status)
    assert study.slug == "unit" and study.status == Study.Status.LIVE and study.manifest_hash


def story_study(stories: int, per_story: int = 4, **task_fields) -> Study:
    """A draft whose only task draws from a bank of `stories` passages with `per_story` items each."""
    from oversight.banks.models import Bank, Item, Passage

    study = make_study(slug=f"stories-{stories}", launch=False)
    bank = Bank.objects.create(name=f"Stories {stories}")
    for s in range(stories):
        passage = Passage.objects.create(bank=bank, external_id=f"S{s}", title=f"S{s}", text="…", content_hash=str(s))
        for q in range(per_story):
            Item.objects.create(
                bank=bank, external_id=f"S{s}_{q}", text="Q", options=["a", "b", "c", "d"], gold_index=q % 4,
                passage=passage, content_hash=f"{s}{q}",
            )  # fmt: skip
    study.tasks.update(bank=bank, **task_fields)
    return study


def test_separate_stories_give_each_condition_its_own_stories():
    study = study_launch(study=story_study(2, sample_size=2, separate_stories=True))
    stories = {
        c.name: set(c.condition_items.values_list("item__passage__external_id", flat=True))
        for c in study.conditions.all()
    }
    assert len(stories["Assisted"]) == len(stories["Unaided"]) == 1 and not stories["Assisted"] & stories["Unaided"]
    assert study.manifest["tasks"][0]["separate_stories"] is True


def test_too_few_stories_to_keep_apart_is_a_launch_problem_in_words():
    study = story_study(1, per_story=8, sample_size=2, separate_stories=True)
    (problem,) = study_design_problems(study)
    assert problem.startswith("Task “Main”: keeping each story in one condition, 2 samples of 2 cannot be drawn")
    with pytest.raises(StudyDesignError, match="keeping each story in one condition"):
        study_launch(study=study)
    Task.objects.filter(study=study).update(separate_stories=False)
    assert study_design_problems(study) == []  # items alone would do
