"""The report recomputed from the exported files alone equals the report built from the database."""

import json

import pytest

from oversight.analysis.report import build_report
from oversight.banks.models import Bank
from oversight.baselines.models import BaselineResult, BaselineRun
from oversight.baselines.runner import run_summary
from oversight.exports.readback import study_tables
from oversight.exports.services import export_study
from oversight.exports.writers import FORMATS
from oversight.reports.load import load_tables
from tests.exports.helpers import unzip

pytestmark = pytest.mark.django_db
SEED, RESAMPLES = 11, 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_report_from_the_exported_files_equals_the_report_from_the_database(study, tmp_path, fmt):
    result = export_study(study=study, formats=[fmt], include_pilots=True, zip_path=tmp_path / "e.zip")
    from_files = build_report(study_tables(unzip(result.path, tmp_path / "x"), fmt), seed=SEED, resamples=RESAMPLES)
    from_db = build_report(load_tables(study), seed=SEED, resamples=RESAMPLES)
    assert from_files.to_json() == from_db.to_json()
    data = from_db.to_dict()
    # The comparison is not vacuous: exclusions, pilots, model baselines and chat all reach the report.
    assert data["participants"]["excluded"] == [study.people["outlier"].pk]
    assert data["participants"]["pilots_left_out"]["n_participants"] == 1
    assert data["with_exclusions"]["baselines"]
    assert data["with_exclusions"]["conditions"][0]["all"]["dialogue"]["turns_per_item"] > 0
    debate = next(c for c in data["protocols"]["with_exclusions"]["conditions"] if c["kind"] == "debate")
    assert debate["splits"] and debate["quotes"]["by_position"]  # and the debate's transcripts


def test_without_pilots_in_the_export_only_the_pilot_count_differs(study, tmp_path):
    export_study(study=study, formats=["parquet"], out_dir=tmp_path)
    from_files = build_report(study_tables(tmp_path, "parquet"), seed=SEED, resamples=RESAMPLES).to_dict()
    from_db = build_report(load_tables(study), seed=SEED, resamples=RESAMPLES).to_dict()
    assert from_db["participants"]["pilots_left_out"] == {"n_participants": 1, "n_trials": 8}
    assert from_files["participants"]["pilots_left_out"] == {"n_participants": 0, "n_trials": 0}
    for data in (from_files, from_db):
        data["participants"].pop("pilots_left_out")
    assert json.dumps(from_files, sort_keys=True) == json.dumps(from_db, sort_keys=True)


def test_the_model_on_its_split_and_the_expert_row_survive_the_round_trip(study, tmp_path):
    bank = study.tasks.filter(role="scored").first().bank
    Bank.objects.filter(pk=bank.pk).update(format=Bank.Format.MMLU)
    cot = BaselineRun.objects.get(study=study, method="cot")
    run = BaselineRun.objects.create(
        endpoint=cot.endpoint,
        bank=bank,
        split="val",
        method="cot",
        template=cot.template,
        template_hash=cot.template_hash,
        status="done",
        params={"samples": 20, "selector": "best-of-n", "scorer": "reward", "shots": 0},
    )
    for item in bank.items.all():
        BaselineResult.objects.create(run=run, item=item, probabilities=[0.6, 0.2, 0.1, 0.1], predicted=0, correct=True)
    BaselineRun.objects.filter(pk=run.pk).update(summary=run_summary(run))

    export_study(study=study, formats=["jsonl"], include_pilots=True, out_dir=tmp_path)
    from_files = build_report(study_tables(tmp_path, "jsonl"), seed=SEED, resamples=RESAMPLES)
    from_db = build_report(load_tables(study), seed=SEED, resamples=RESAMPLES)
    assert from_files.to_json() == from_db.to_json()
    labels = [r["label"] for r in from_db.to_dict()["with_exclusions"]["table"]["rows"]]
    assert "Model (best-of-20 CoT, reward model) on its split" in labels and labels[-1] == "Expert human (published)"
