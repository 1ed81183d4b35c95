"""The demo study `make run` seeds: what a new user meets first."""

import io

import pytest
from django.core.management import call_command

from oversight.core.models import Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo() -> Study:
    call_command("seed_demo", stdout=io.StringIO())
    return Study.objects.get(slug="demo")


def test_the_demo_gives_each_condition_its_own_story(demo):
    assisted, unaided = (
        set(demo.conditions.get(name=name).condition_items.values_list("item__passage__title", flat=True)) - {None}
        for name in ("Assisted", "Unaided")
    )
    assert len(assisted) == len(unaided) == 1
    assert assisted | unaided == {"The Fifth Share", "The Keeper's Arithmetic"}


def test_seeding_twice_changes_nothing(demo):
    before = demo.manifest_hash
    call_command("seed_demo", stdout=io.StringIO())
    assert Study.objects.get(slug="demo").manifest_hash == before and Study.objects.count() == 1
