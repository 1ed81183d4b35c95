import pytest

from oversight.core.models import Condition, Study
from oversight.core.services.studies import (
    StudyDesignError,
    manifest_hash,
    study_clone,
    study_close,
    study_design_problems,
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
