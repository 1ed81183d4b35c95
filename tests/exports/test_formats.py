"""CSV, JSONL and Parquet hold the same rows; the zip has one folder with the documents; rows go out in batches."""

import json
import zipfile

import pyarrow.parquet as pq
import pytest

from oversight.core.services.studies import manifest_hash
from oversight.exports import dictionary
from oversight.exports.registry import ExportContext, registry
from oversight.exports.services import ExportError, export_study
from oversight.exports.writers import FORMATS, RawJSON
from tests.exports.helpers import all_rows, unzip
from tests.factories import make_study

pytestmark = pytest.mark.django_db


def test_csv_jsonl_and_parquet_read_back_the_same_rows(study, tmp_path):
    export_study(study=study, formats="all", out_dir=tmp_path)
    csv_rows, jsonl_rows, parquet_rows = (all_rows(tmp_path, fmt) for fmt in FORMATS)
    for table in dictionary.TABLES:
        assert csv_rows[table.name] == jsonl_rows[table.name] == parquet_rows[table.name], table.name


def test_the_rows_read_back_are_the_rows_the_database_gave(study, tmp_path):
    export_study(study=study, formats=["parquet"], out_dir=tmp_path)
    rows = all_rows(tmp_path, "parquet")
    for table in dictionary.TABLES:
        exporter = registry[table.name](ExportContext(study=study))
        names = [c.name for c in exporter.columns]
        # JSON text straight from the database (RawJSON) is compared as the value it encodes.
        from_db = [
            {n: (json.loads(v) if isinstance(v, RawJSON) else v) for n, v in zip(names, row, strict=True)}
            for row in exporter.written_rows()
        ]
        assert rows[table.name] == from_db, table.name


def test_text_with_commas_quotes_new_lines_and_unicode_survives_every_format(study, tmp_path):
    export_study(study=study, formats="all", out_dir=tmp_path)
    for fmt in FORMATS:
        contents = {m["content"] for m in all_rows(tmp_path, fmt)["messages"]}
        assert 'Again, with a comma, and "quotes"\nand a new line?' in contents
        assert "It says: “Once upon a time”." in contents


def test_a_stopped_reply_and_a_message_that_was_never_sent_are_exported_as_such(study, tmp_path):
    from oversight.assistant.models import ChatMessage

    reply = ChatMessage.objects.filter(trial__participant__study=study, role="assistant").first()
    ChatMessage.objects.filter(pk=reply.pk).update(status="stopped", content="It says: “Once")
    late = ChatMessage.objects.create(trial=reply.trial, seq=99, role="user", status="queued", content="Too late")
    export_study(study=study, formats=["csv"], out_dir=tmp_path)
    rows = {m["message_id"]: m for m in all_rows(tmp_path, "csv")["messages"]}
    assert (rows[reply.pk]["status"], rows[reply.pk]["content"]) == ("stopped", "It says: “Once")
    assert (rows[late.pk]["status"], rows[late.pk]["content"]) == ("queued", "Too late")


def test_nested_values_keep_their_shape(study, tmp_path):
    export_study(study=study, formats="all", out_dir=tmp_path)
    for fmt in FORMATS:
        rows = all_rows(tmp_path, fmt)
        reply = next(m for m in rows["messages"] if m["role"] == "assistant" and m["status"] == "complete")
        assert reply["quotes"] == [
            {"text": "Once upon a time", "verified": True},
            {"text": "happily", "verified": False},
        ]
        assert reply["sampling"] == {"temperature": 0.7, "seed": 3}
        assert all(isinstance(i["options"], list) and len(i["options"]) == i["n_options"] for i in rows["items"])
        assert all(b["probabilities"] is None or abs(sum(b["probabilities"]) - 1) < 1e-9 for b in rows["baselines"])


def test_the_zip_holds_one_folder_with_the_readme_dictionary_manifest_and_every_table(study, tmp_path):
    result = export_study(study=study, formats="all", zip_path=tmp_path / "out.zip")
    assert result.path == tmp_path / "out.zip" and result.path.is_file()
    assert not list(tmp_path.glob(".export-*")), "the staging folder is removed"
    folder = unzip(result.path, tmp_path / "unzipped")
    assert folder.name == result.name and folder.name.startswith("exp-export-")
    for name in ("README.md", "data_dictionary.md", "data_dictionary.json", "manifest.json", "export.json"):
        assert (folder / name).is_file(), name
    for fmt, ext in (("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet")):
        assert sorted(p.name for p in (folder / fmt).iterdir()) == sorted(f"{t.name}.{ext}" for t in dictionary.TABLES)
    with zipfile.ZipFile(result.path) as zf:
        kinds = {i.filename.rsplit(".", 1)[-1]: i.compress_type for i in zf.infolist()}
    assert kinds["parquet"] == zipfile.ZIP_STORED and kinds["csv"] == zipfile.ZIP_DEFLATED


def test_the_manifest_file_carries_the_frozen_manifest_and_its_hash(study, tmp_path):
    export_study(study=study, formats=["csv"], out_dir=tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["manifest"] == study.manifest
    assert data["manifest_hash"] == study.manifest_hash == manifest_hash(data["manifest"])


def test_the_readme_says_when_and_what_with_row_counts_and_the_manifest_hash(study, tmp_path):
    result = export_study(study=study, formats="all", out_dir=tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert study.manifest_hash in readme and "matching" in readme
    assert result.meta["exported_at"] in readme
    for table, n in result.row_counts.items():
        assert f"| `{table}` | {n:,} |" in readme
    assert "Pilots: **left out**" in readme and "Exclusions are **not applied**" in readme
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["row_counts"] == result.row_counts and meta["manifest_hash_verified"] is True
    assert meta["include_pilots"] is False and meta["include_external_ids"] is False


def test_only_the_requested_formats_are_written(study, tmp_path):
    export_study(study=study, formats=["jsonl"], out_dir=tmp_path)
    assert (tmp_path / "jsonl").is_dir() and not (tmp_path / "csv").exists() and not (tmp_path / "parquet").exists()


def test_an_unknown_format_is_refused(study, tmp_path):
    with pytest.raises(ExportError, match="Formats must be among"):
        export_study(study=study, formats=["xlsx"], out_dir=tmp_path)


def test_a_directory_export_refuses_a_folder_that_is_not_empty(study, tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_study(study=study, formats="all", out_dir=tmp_path)


def test_rows_are_written_in_batches_as_parquet_row_groups(study, tmp_path):
    result = export_study(study=study, formats=["parquet", "csv"], out_dir=tmp_path, batch_rows=7, chunk_size=5)
    trials = pq.ParquetFile(tmp_path / "parquet" / "trials.parquet")
    assert trials.metadata.num_rows == result.row_counts["trials"] > 7
    assert trials.metadata.num_row_groups == -(-result.row_counts["trials"] // 7)
    assert all_rows(tmp_path, "parquet")["trials"] == all_rows(tmp_path, "csv")["trials"]


def test_a_study_with_no_participants_exports_empty_tables_with_their_schema(tmp_path):
    study = make_study(slug="empty")
    result = export_study(study=study, formats="all", out_dir=tmp_path)
    assert result.row_counts["trials"] == result.row_counts["messages"] == result.row_counts["participants"] == 0
    assert result.row_counts["items"] > 0
    assert pq.read_schema(tmp_path / "parquet" / "trials.parquet").names == list(dictionary.table("trials").names)
    assert (tmp_path / "csv" / "trials.csv").read_text().startswith("trial_id,participant_id,")
    assert (tmp_path / "jsonl" / "trials.jsonl").read_text() == ""


def test_progress_is_reported_in_rows(study, tmp_path):
    seen = []
    result = export_study(
        study=study,
        formats=["csv"],
        out_dir=tmp_path,
        batch_rows=5,
        progress=lambda done, total, message: seen.append((done, total, message)),
    )
    assert seen[-1][0] == seen[-1][1] == result.total_rows
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
