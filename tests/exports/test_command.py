"""`manage.py export_study`: the same export from the shell, as a zip or a folder."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oversight.exports import dictionary
from tests.exports.helpers import all_rows, unzip

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("export_study", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_it_writes_a_zip_into_the_directory_and_prints_its_path(study, tmp_path):
    path, counts = run("exp", "--format", "all", "--out", str(tmp_path))
    assert path.endswith(".zip") and path.startswith(str(tmp_path / "exp-export-"))
    folder = unzip(path, tmp_path / "x")
    assert {p.name for p in folder.iterdir()} >= {"csv", "jsonl", "parquet", "README.md", "manifest.json"}
    assert "trials:" in counts and "messages:" in counts


def test_it_writes_a_folder_with_unzipped(study, tmp_path):
    path, _ = run("exp", "--format", "parquet", "--out", str(tmp_path), "--unzipped")
    folder = tmp_path / path.rsplit("/", 1)[-1]
    assert folder.is_dir() and (folder / "parquet" / "trials.parquet").is_file() and not (folder / "csv").exists()
    assert len(all_rows(folder, "parquet")["participants"]) == len(study.people) - 1


def test_it_includes_pilots_and_external_ids_when_asked(study, tmp_path):
    path, _ = run(
        "exp", "--format", "csv", "--out", str(tmp_path), "--unzipped", "--include-pilots", "--include-external-ids"
    )
    participants = all_rows(tmp_path / path.rsplit("/", 1)[-1], "csv")["participants"]
    assert len(participants) == len(study.people)
    assert "prolific:PIDPILOT" in {p["external_id"] for p in participants}


def test_it_refuses_external_ids_when_the_study_does_not_allow_them(study, tmp_path):
    study.allow_external_id_export = False
    study.save(update_fields=["allow_external_id_export"])
    with pytest.raises(CommandError, match="does not allow exporting recruitment ids"):
        run("exp", "--out", str(tmp_path), "--include-external-ids")
    assert list(tmp_path.iterdir()) == []


def test_it_refuses_an_unknown_study(db, tmp_path):
    with pytest.raises(CommandError, match="No study with the slug"):
        run("nope", "--out", str(tmp_path))


def test_it_refuses_an_unknown_format(study, tmp_path):
    with pytest.raises(CommandError):
        run("exp", "--format", "xlsx", "--out", str(tmp_path))


def test_its_dictionary_covers_every_table_it_writes(study, tmp_path):
    path, _ = run("exp", "--format", "jsonl", "--out", str(tmp_path), "--unzipped")
    folder = tmp_path / path.rsplit("/", 1)[-1]
    assert sorted(p.stem for p in (folder / "jsonl").iterdir()) == sorted(t.name for t in dictionary.TABLES)
    assert (folder / "data_dictionary.md").read_text() == dictionary.as_markdown()
