"""The report: exclusions and pilots, the sandwich arithmetic, the paper-style table, JSON and Markdown."""

import json

import pytest

from oversight.analysis.report import build_report
from tests.analysis.rows import model, tables, trial


def sandwich_rows():
    rows = []
    # Assisted items 1–4: P1 right on 1–3 (75%), P2 right on all (100%) → assisted 87.5.
    for item in range(1, 5):
        rows.append(trial(1, item, 0 if item < 4 else 1, 80, assisted=True, block_position=item))
        rows.append(trial(2, item, 0, 80, assisted=True, block_position=item))
    # Unaided items 5–8: P1 right on 5–6 (50%), P2 on 5 only (25%) → unaided 37.5.
    for item in range(5, 9):
        rows.append(trial(1, item, 0 if item <= 6 else 2, 42))
        rows.append(trial(2, item, 0 if item == 5 else 2, 42))
    baselines = [model("zero-shot", i, i in (1, 2, 5)) for i in range(1, 9)]  # 50% on assisted items
    baselines += [model("cot", i, i in (1, 2, 3)) for i in range(1, 9)]  # 75% on assisted items
    return rows, baselines


def test_the_sandwich_subtracts_the_best_of_unaided_and_model_alone_from_assisted():
    rows, baselines = sandwich_rows()
    report = build_report(tables(rows, baselines=baselines), resamples=0).to_dict()["with_exclusions"]
    s = report["sandwich"][0]["all"]
    assert s["assisted"]["value"] == pytest.approx(87.5)
    assert s["unaided"]["value"] == pytest.approx(37.5)
    assert s["same_items"] is False
    assert s["models"]["zero-shot"]["accuracy"]["value"] == pytest.approx(50)
    assert s["models"]["cot"]["accuracy"]["value"] == pytest.approx(75)
    assert s["best_other"]["label"] == "Model (CoT)"
    assert s["best_other"]["accuracy"]["value"] == pytest.approx(75)
    assert s["gaps"]["assisted_minus_unaided"]["value"] == pytest.approx(50)
    assert s["gaps"]["assisted_minus_model"]["zero-shot"]["value"] == pytest.approx(37.5)
    assert s["gaps"]["assisted_minus_best_other"]["value"] == pytest.approx(12.5)
    # Paired on the assisted items: differences (1−1, 1−1, 1−1, .5−0) → one non-zero → p = 1 exactly.
    test = s["paired_tests"]["cot"]["individual"]
    assert test["n_items"] == 4 and test["mean_difference"] == pytest.approx(12.5) and test["p_value"] == 1


def test_the_table_has_the_papers_rows_in_order_and_models_on_all_the_studys_items():
    rows, baselines = sandwich_rows()
    report = build_report(tables(rows, baselines=baselines), resamples=0, tie_rule="lowest_option")
    table = report.to_dict()["with_exclusions"]["table"]
    assert table["columns"] == ["MMLU"]
    assert [r["label"] for r in table["rows"]] == [
        "Unaided",
        "Unaided vote",
        "Model (zero-shot) on the study's items",
        "Model (CoT) on the study's items",
        "Assisted",
        "Assisted vote",
    ]
    cells = {r["label"]: r["cells"]["MMLU"] for r in table["rows"]}
    zero_shot = cells["Model (zero-shot) on the study's items"]
    assert zero_shot["accuracy"]["value"] == pytest.approx(300 / 8)  # items 1, 2, 5 of 8
    assert zero_shot["n_items"] == 8
    assert cells["Assisted"]["accuracy"]["value"] == pytest.approx(87.5)
    assert cells["Assisted"]["n_participants"] == 2 and cells["Assisted"]["n_answers"] == 8
    # Assisted vote: both choose A on items 1–3 (right); item 4: A@80 vs B@80 tie → A (lowest option), right.
    assert cells["Assisted vote"]["accuracy"]["value"] == 100


def test_a_column_per_task_and_one_for_all_tasks():
    rows = [trial(1, 1, 0, task="MMLU"), trial(1, 2, 1, task="QuALITY"), trial(2, 2, 0, task="QuALITY")]
    report = build_report(tables(rows, tasks=["QuALITY", "MMLU"]), resamples=0).to_dict()["with_exclusions"]
    assert report["table"]["columns"] == ["QuALITY", "MMLU", "All"]
    unaided = report["table"]["rows"][0]["cells"]
    assert unaided["MMLU"]["accuracy"]["value"] == 100
    assert unaided["QuALITY"]["accuracy"]["value"] == 50
    assert unaided["All"]["accuracy"]["value"] == pytest.approx((50 + 100) / 2)  # P1 1 of 2, P2 1 of 1


def test_excluded_participants_are_left_out_of_one_variant_only():
    rows = [trial(1, 1, 0), trial(2, 1, 1), trial(3, 1, 1)]
    data = build_report(tables(rows, excluded={3}), resamples=0).to_dict()
    assert data["with_exclusions"]["participant_ids"] == [1, 2]
    assert data["with_exclusions"]["conditions"][0]["all"]["accuracy"]["value"] == 50
    assert data["without_exclusions"]["participant_ids"] == [1, 2, 3]
    assert data["without_exclusions"]["conditions"][0]["all"]["accuracy"]["value"] == pytest.approx(100 / 3)
    assert data["participants"]["excluded"] == [3]


def test_pilots_are_never_included():
    rows = [trial(1, 1, 0), trial(2, 1, 1), trial(9, 1, 0), trial(9, 2, 0)]
    data = build_report(tables(rows, pilots={9}, excluded={9}), resamples=0).to_dict()
    for variant in ("with_exclusions", "without_exclusions"):
        assert data[variant]["participant_ids"] == [1, 2]
        assert data[variant]["n_items"] == 1
    assert data["participants"]["pilots_left_out"] == {"n_participants": 1, "n_trials": 2}
    assert data["participants"]["excluded"] == []


def test_practice_catch_and_unfinished_trials_are_not_analysed():
    rows = [
        trial(1, 1, 0),
        trial(1, 2, 0, role="catch"),
        trial(1, 3, 0, role="practice"),
        trial(1, 4, None, None, status="shown"),
        trial(1, 5, None, None, status="pending"),
    ]
    data = build_report(tables(rows), resamples=0).to_dict()["with_exclusions"]
    assert data["n_answers"] == 1


def test_the_report_is_strict_json_and_says_how_it_was_made():
    rows, baselines = sandwich_rows()
    report = build_report(tables(rows, baselines=baselines), seed=5, resamples=50, tie_rule="lowest_option")
    data = json.loads(report.to_json())
    assert data["schema"] == "oversight.sandwich-report/2"
    assert data["method"]["bootstrap"]["seed"] == 5
    assert "sum of the products" in data["method"]["vote_confidence"]
    assert "lowest option index" in data["method"]["vote_tie_rule"]
    assert set(data) == {"schema", "study", "method", "participants", "with_exclusions", "without_exclusions"}
    assistant = data["with_exclusions"]["sandwich"][0]["all"]["assisted"]
    assert assistant["ci95"][0] <= assistant["value"] <= assistant["ci95"][1]


def test_the_markdown_shows_the_paper_table_and_the_key_numbers():
    rows, baselines = sandwich_rows()
    text = build_report(tables(rows, baselines=baselines, excluded={2}), resamples=100).to_markdown()
    assert "| | MMLU accuracy [95% CI] | MMLU CE | MMLU N |" in text
    assert "| Model (CoT) on the study's items | 37.5 [" in text  # right on items 1, 2 and 3 of the 8
    assert "**Sandwich, MMLU**" in text
    assert "Table 1, without exclusions" in text
    assert "Excluded: P2" in text
    assert "## Method" in text


def test_an_empty_study_still_renders():
    report = build_report(tables([]), resamples=100)
    assert report.to_dict()["with_exclusions"]["n_answers"] == 0
    assert "No analysed trials" in report.to_markdown()
    json.loads(report.to_json())
