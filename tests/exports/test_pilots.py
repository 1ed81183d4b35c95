"""Pilot participants and everything they did are left out by default, and marked when included."""

import pytest

from oversight.exports.services import export_study
from tests.exports.helpers import all_rows

pytestmark = pytest.mark.django_db

PARTICIPANT_TABLES = ("participants", "trials", "messages", "events", "exclusions")


def test_pilots_and_all_their_data_are_left_out_by_default(study, tmp_path):
    result = export_study(study=study, formats=["parquet"], out_dir=tmp_path)
    pilot = f"P{study.people['pilot'].pk}"
    rows = all_rows(tmp_path, "parquet")
    for table in PARTICIPANT_TABLES:
        assert rows[table], table
        assert pilot not in {r["participant_id"] for r in rows[table]}, table
    assert not any(p["is_pilot"] for p in rows["participants"])
    assert result.row_counts["participants"] == len(study.people) - 1
    assert "Pilots: **left out**" in (tmp_path / "README.md").read_text()


def test_pilots_are_included_and_marked_when_asked(study, tmp_path):
    export_study(study=study, formats=["parquet"], include_pilots=True, out_dir=tmp_path)
    pilot = f"P{study.people['pilot'].pk}"
    rows = all_rows(tmp_path, "parquet")
    for table in PARTICIPANT_TABLES:
        assert pilot in {r["participant_id"] for r in rows[table]}, table
    assert [p["participant_id"] for p in rows["participants"] if p["is_pilot"]] == [pilot]
    assert "Pilots: **included**" in (tmp_path / "README.md").read_text()


def test_the_studys_design_items_and_baselines_do_not_depend_on_pilots(study, tmp_path):
    without = export_study(study=study, formats=["csv"], out_dir=tmp_path / "a").row_counts
    with_pilots = export_study(study=study, formats=["csv"], include_pilots=True, out_dir=tmp_path / "b").row_counts
    for table in ("conditions", "tasks", "items", "passages", "baseline_runs", "baselines"):
        assert without[table] == with_pilots[table] > 0, table
