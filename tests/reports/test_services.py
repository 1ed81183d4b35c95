"""The console's report bundle: the fingerprint of the data it is cached under, and what it holds."""

import pytest

from oversight.baselines.models import BaselineResult, BaselineRun, PromptTemplate
from oversight.core.models import Exclusion
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, trial_show, trial_submit
from oversight.reports import services
from oversight.reports.services import data_version, report_bundle
from tests.factories import make_study

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]


@pytest.fixture
def study():
    return make_study(n_items=2)


def answer_one(participant):
    trial = participant.trials.select_related("item").order_by("position").first()
    trial_show(trial=trial)
    trial_submit(trial=trial, answer=Answer(choice=trial.item.gold_index, confidence=80))
    return trial


def test_the_fingerprint_changes_with_an_answer_an_exclusion_and_a_model_result(study, alice):
    participant = participant_join(study=study, params={"pid": "a"}, consent=True)
    seen = [data_version(study)]
    trial = answer_one(participant)
    seen.append(data_version(study))
    Exclusion.objects.create(participant=participant, reason="test", rule="manual", created_by=alice)
    seen.append(data_version(study))
    template = PromptTemplate.objects.create(name="zs", method="zero-shot", text="Question: {question}")
    run = BaselineRun.objects.create(
        endpoint=study.conditions.get(kind="assisted").endpoint,
        study=study,
        method="zero-shot",
        template=template,
        template_hash=template.content_hash,
    )
    BaselineResult.objects.create(
        run=run, item_id=trial.item_id, probabilities=[0.7, 0.1, 0.1, 0.1], predicted=0, correct=True
    )
    seen.append(data_version(study))
    assert len(set(seen)) == 4
    assert data_version(study) == seen[-1]  # and nothing else moves it


def test_another_studys_results_leave_the_fingerprint_alone(study):
    before = data_version(study)
    other = make_study(slug="other", n_items=2)
    answer_one(participant_join(study=other, params={"pid": "b"}, consent=True))
    assert data_version(study) == before


def test_a_bundle_is_built_once_per_version_and_holds_both_variants(study, monkeypatch):
    answer_one(participant_join(study=study, params={"pid": "a"}, consent=True))
    built = []
    real = services.build_bundle
    monkeypatch.setattr(services, "build_bundle", lambda s, r: built.append(r) or real(s, r))
    first = report_bundle(study=study, resamples=0)
    again = report_bundle(study=study, resamples=0)
    assert built == [0] and again == first and first["version"] == data_version(study)
    assert set(first["items"]) == set(first["participants"]) == {"with_exclusions", "without_exclusions"}
    assert first["report"]["method"]["bootstrap"]["resamples"] == 0
    report_bundle(study=study, resamples=10)  # another number of resamples is another report
    assert built == [0, 10]
