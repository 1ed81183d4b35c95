"""The demo's model-alone baseline (issue 13.10): seed_demo scores the demo banks with the simulated assistant, so
the first report a new user opens shows all three numbers of the sandwich."""

import io

import pytest
from django.core.management import call_command

from oversight.analysis.report import build_report
from oversight.baselines.models import BaselineRun
from oversight.core.demo import DEMO_STUDY_SLUG
from oversight.core.models import Study
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, trial_show, trial_submit
from oversight.reports.load import load_tables

pytestmark = pytest.mark.django_db


def test_seed_demo_scores_each_demo_bank_once_with_the_simulated_assistant():
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    study = Study.objects.get(slug=DEMO_STUDY_SLUG)
    runs = list(BaselineRun.objects.order_by("pk"))
    assert {r.bank for r in runs} == {t.bank for t in study.tasks.filter(role="scored")}
    assert all(r.status == "done" and r.method == "zero-shot" and r.study is None for r in runs)
    assert all(r.endpoint.kind == "simulated" and r.job.study == study for r in runs)
    assert "Model alone (zero-shot, simulated) on Demo MMLU, split val" in out.getvalue()
    call_command("seed_demo", stdout=io.StringIO())
    assert BaselineRun.objects.count() == len(runs)  # idempotent


def test_the_first_demo_report_shows_unaided_model_and_assisted():
    call_command("seed_demo", stdout=io.StringIO())
    study = Study.objects.get(slug=DEMO_STUDY_SLUG)
    participant = participant_join(study=study, params={"pid": "first-user"}, consent=True)
    for trial in participant.trials.select_related("item").order_by("position"):
        trial_show(trial=trial)
        trial_submit(trial=trial, answer=Answer(choice=trial.item.gold_index, confidence=80))

    table = build_report(load_tables(study), resamples=0).to_dict()["with_exclusions"]["table"]
    kinds = {r["kind"] for r in table["rows"]}
    assert {"individual", "model_split", "model", "expert"} <= kinds
    labels = [r["label"] for r in table["rows"]]
    assert labels[0] == "Unaided" and "Model (zero-shot) on its split" in labels and "Assisted" in labels
    assert labels[-1] == "Expert human (published)"


def test_a_demo_on_a_real_model_server_gets_no_simulated_baseline(settings):
    settings.TGI_URL = "http://127.0.0.1:9"
    call_command("seed_demo", stdout=io.StringIO())
    assert not BaselineRun.objects.exists()
