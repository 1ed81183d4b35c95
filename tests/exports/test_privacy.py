"""What an export must never contain, and external ids only when asked for on a study that allows them."""

import pytest

from oversight.core.models import Participant
from oversight.exports.services import ExportNotAllowed, export_study
from tests.exports.conftest import ENDPOINT_TOKEN
from tests.exports.helpers import all_rows, every_text, every_value, unzip

pytestmark = pytest.mark.django_db


def secrets_of(study):
    return [
        *Participant.objects.filter(study=study).values_list("token", flat=True),
        ENDPOINT_TOKEN,
        study.completion_code,
        study.screenout_code,
        "client-abc",
    ]


@pytest.mark.parametrize(
    "options", [{}, {"include_pilots": True, "include_external_ids": True}], ids=["default", "everything"]
)
def test_participant_tokens_codes_and_credentials_are_never_exported(study, tmp_path, options):
    result = export_study(study=study, formats="all", zip_path=tmp_path / "e.zip", **options)
    folder = unzip(result.path, tmp_path / "x")
    secrets = secrets_of(study)
    assert all(len(s) >= 8 for s in secrets)
    for value in every_value(folder):
        assert not any(s in value for s in secrets), value
    for name, text in every_text(folder):
        assert not any(s in text for s in secrets), name


def test_recruitment_ids_are_left_out_unless_asked_for(study, tmp_path):
    export_study(study=study, formats="all", out_dir=tmp_path)
    for fmt in ("csv", "jsonl", "parquet"):
        assert "external_id" not in all_rows(tmp_path, fmt)["participants"][0]
    for value in every_value(tmp_path):
        assert "PID" not in value and "session-" not in value and "panel-7" not in value, value
    for name, text in every_text(tmp_path):
        assert "PIDRIGHT" not in text and "session-PIDRIGHT" not in text, name


def test_joined_events_keep_only_the_recruitment_source(study, tmp_path):
    export_study(study=study, formats=["jsonl"], out_dir=tmp_path)
    joined = [e for e in all_rows(tmp_path, "jsonl")["events"] if e["kind"] == "joined"]
    assert joined and all(e["data"] in ({"source": "prolific"}, {"source": "pid"}) for e in joined)


def test_external_ids_are_refused_when_the_study_does_not_allow_their_export(study, tmp_path):
    study.allow_external_id_export = False
    study.save(update_fields=["allow_external_id_export"])
    with pytest.raises(ExportNotAllowed, match="does not allow exporting recruitment ids"):
        export_study(study=study, formats="all", include_external_ids=True, out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_external_ids_are_exported_when_asked_for_and_allowed(study, tmp_path):
    export_study(study=study, formats="all", include_external_ids=True, out_dir=tmp_path)
    for fmt in ("csv", "jsonl", "parquet"):
        rows = all_rows(tmp_path, fmt)
        ids = {p["participant_id"]: p["external_id"] for p in rows["participants"]}
        assert ids[f"P{study.people['right'].pk}"] == "prolific:PIDRIGHT"
        assert ids[f"P{study.people['forgiven'].pk}"] == "pid:panel-7"
        joined = next(
            e for e in rows["events"] if e["kind"] == "joined" and e["participant_id"] == f"P{study.people['right'].pk}"
        )
        assert joined["data"]["PROLIFIC_PID"] == "PIDRIGHT"
    assert "This export identifies participants; do not publish it." in (tmp_path / "README.md").read_text()


def test_participants_are_known_by_pseudonymous_ids_across_tables(study, tmp_path):
    export_study(study=study, formats=["parquet"], out_dir=tmp_path)
    rows = all_rows(tmp_path, "parquet")
    ids = {p["participant_id"] for p in rows["participants"]}
    assert all(i.startswith("P") and i[1:].isdigit() for i in ids)
    for table in ("trials", "messages", "events", "exclusions"):
        assert {r["participant_id"] for r in rows[table]} <= ids, table
