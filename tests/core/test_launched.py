"""The launched study's frozen parts are read once per process and kept under the study's launch."""

import pytest

from oversight.banks.models import Item
from oversight.core import launched
from oversight.core.launched import forget_launched_studies, launched_study
from oversight.core.models import Study
from oversight.core.services.studies import study_clone, study_close, study_launch
from tests.factories import make_study
from tests.participant.helpers import enrol, item_url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty():
    forget_launched_studies()
    yield
    forget_launched_studies()


def test_it_reads_conditions_items_and_passages_once_and_then_no_more(django_assert_num_queries):
    study = make_study(n_items=2, passage="Once upon a time.\n\nThe end.")
    with django_assert_num_queries(3):
        first = launched_study(study)
    fetched = Study.objects.defer("manifest").get(pk=study.pk)  # as a participant's request reads it
    with django_assert_num_queries(0):
        again = launched_study(fetched)
    assert again is first
    assert set(first.items) == set(study.condition_items.values_list("item_id", flat=True))
    assert {c.pk for c in first.conditions.values()} == set(study.conditions.values_list("pk", flat=True))
    with django_assert_num_queries(0):
        passages = {item.passage.text for item in first.items.values()}
        kinds = {c.endpoint.kind if c.endpoint else None for c in first.conditions.values()}
    assert passages == {"Once upon a time.\n\nThe end."} and kinds == {"simulated", None}
    # One passage object however many of its questions were drawn.
    assert len({id(item.passage) for item in first.items.values()}) == 1


def test_a_draft_has_no_frozen_parts():
    with pytest.raises(ValueError, match="not been launched"):
        launched_study(make_study(launch=False))


def test_a_new_launch_is_a_new_entry_and_the_old_one_is_left_as_it_was():
    study = make_study(n_items=2)
    original = launched_study(study)
    copy = study_launch(study=study_clone(study=Study.objects.get(pk=study.pk), slug="copy"))
    assert launched_study(copy) is not original and launched_study(copy).study_id == copy.pk
    assert launched_study(Study.objects.get(pk=study.pk)) is original


def test_the_cache_keeps_at_most_a_bounded_number_of_studies(monkeypatch):
    monkeypatch.setattr(launched, "MAX_STUDIES", 2)
    studies = [make_study(slug=f"s{i}", n_items=1) for i in range(3)]
    for study in studies:
        launched_study(study)
    assert len(launched._cache) == 2
    assert launched._key(studies[0]) not in launched._cache


def test_closing_a_study_is_seen_at_once_by_its_participants(client):
    study = make_study()
    p = enrol(client, study)
    assert client.get(item_url(p, 0)).status_code == 200  # cached now
    study_close(study=study)
    assert client.get(item_url(p, 0)).status_code == 410
    assert client.post(item_url(p, 0, "submit"), {"choice": "1", "confidence": "60"}).status_code == 410


def test_the_page_shows_the_item_as_it_was_frozen(client):
    """Scoring and pages use the items read at the first request; a bank re-import behind a live study's back
    (which the manifest's content hashes would reveal) is not picked up half-way by one process."""
    study = make_study()
    p = enrol(client, study)
    trial = p.trials.select_related("item").get(position=0)
    text = trial.item.text
    assert text in client.get(item_url(p, 0)).content.decode()
    Item.objects.filter(pk=trial.item_id).update(text="Changed behind the study's back?")
    assert text in client.get(item_url(p, 0)).content.decode()
