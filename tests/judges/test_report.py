"""A model judge's answers are ordinary trials: the people's report rows do not change when a model judges the
study, the model gets its own labelled rows and hybrid verdicts, and the exported files give the same report."""

import pytest
from django.urls import reverse

from oversight.analysis.report import build_report
from oversight.core.models import ModelEndpoint
from oversight.exports.readback import read_table, study_tables
from oversight.exports.services import export_study
from oversight.judges.runner import execute
from oversight.judges.services import judge_run_request
from oversight.reports.load import load_tables
from oversight_dev.bots import BotConfig, check_run, run_bots_in_process
from tests.factories import make_protocol_study

pytestmark = pytest.mark.django_db
SEED, RESAMPLES = 3, 100


@pytest.fixture
def judged_study():
    study = make_protocol_study(
        slug="judged",
        conditions=(("unaided", {}), ("consultancy", {"transcripts": "static", "rounds": 1})),
        n_items=4,
        disjoint=False,
        confidence_format="slider",
    )
    run = run_bots_in_process(BotConfig(slug="judged", participants=3, seed=2, timeout_rate=0.0, messages_per_item=0))
    assert run.errors == [] and check_run(run).ok
    before = build_report(load_tables(study), seed=SEED, resamples=RESAMPLES).to_dict()
    judge = ModelEndpoint.objects.create(name="sim judge", kind="simulated", simulation={"accuracy": 0.9, "seed": 4})
    for kind in ("unaided", "consultancy"):
        condition = study.conditions.get(kind=kind)
        judge_run = judge_run_request(study=study, condition=condition, endpoint=judge, enqueue=False)
        assert execute(judge_run.pk).outcome == "done"
    study.before = before
    return study


def test_the_people_s_rows_are_the_same_after_a_model_judged_the_study(judged_study):
    after = build_report(load_tables(judged_study), seed=SEED, resamples=RESAMPLES).to_dict()
    model_block = after.pop("model_judges")
    assert after == judged_study.before  # nothing of the people's report moved
    rows = model_block["judges"]
    assert {r["condition_kind"] for r in rows} == {"unaided", "consultancy"}
    for row in rows:
        assert row["label"] == "Model judge: sim judge (replay)" and row["method"] == "auto"
        assert row["model"]["n_items"] == 4 and row["model"]["n_answers"] == 3 * 4  # one per person's trial
        assert row["people_same_items"]["n_answers"] == 3 * 4
        assert row["hybrid"]["n_items"] == 4


def test_the_exported_files_carry_the_kind_and_give_the_same_report(judged_study, tmp_path):
    export_study(study=judged_study, formats=["parquet"], out_dir=tmp_path)
    participants = list(read_table(tmp_path, "participants", "parquet"))
    assert sorted(p["kind"] for p in participants) == ["human"] * 3 + ["model"] * 6
    trials = list(read_table(tmp_path, "trials", "parquet"))
    assert {t["participant_kind"] for t in trials} == {"human", "model"}
    from_files = build_report(study_tables(tmp_path, "parquet"), seed=SEED, resamples=RESAMPLES)
    from_db = build_report(load_tables(judged_study), seed=SEED, resamples=RESAMPLES)
    assert from_files.to_json() == from_db.to_json()


def test_the_console_report_shows_the_model_judge_beside_the_people(judged_study, client, alice, empty_cache):
    judged_study.owner = alice
    judged_study.save(update_fields=["owner"])
    client.force_login(alice)
    response = client.get(reverse("console:report", kwargs={"slug": judged_study.slug}))
    page = response.content.decode()
    assert response.status_code == 200 and 'id="report-model-judges"' in page
    assert page.count('class="model-judge"') == 2  # one row per condition judged
    assert "people, same items" in page and "Deferral (model when confident, else humans)" in page
    assert 'id="plot-persuasion"' in page  # the study has a consultancy: its consultant is rated
