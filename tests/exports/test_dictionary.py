"""The data dictionary is the contract: every exported column is documented, and the files have exactly its columns
with exactly its types."""

import csv
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from oversight.exports import dictionary
from oversight.exports.registry import ExportContext, exporters, registry
from oversight.exports.services import export_study
from oversight.exports.writers import arrow_type

REPO = Path(__file__).resolve().parents[2]


def test_every_table_of_the_dictionary_has_an_exporter_and_every_exporter_a_table():
    assert list(registry) == [t.name for t in dictionary.TABLES]
    assert {"trials", "messages", "events", "participants", "items", "passages", "baselines", "exclusions"} <= set(
        registry
    )


@pytest.mark.parametrize("table", [t.name for t in dictionary.TABLES])
def test_each_exporter_yields_exactly_the_documented_columns_in_order(table):
    assert registry[table].fields == dictionary.table(table).names


@pytest.mark.parametrize("table", dictionary.TABLES, ids=lambda t: t.name)
def test_every_column_has_a_type_a_meaning_and_units_where_they_matter(table):
    assert table.description and table.row
    for column in table.columns:
        assert column.type in dictionary.TYPES
        assert len(column.meaning) > 5, column.name
        if column.type == "timestamp":
            assert column.units == "UTC", column.name
        if column.name.endswith(("_ms", "_s", "seconds_used")) or column.name in {"confidence", "distribution"}:
            assert column.units, f"{table.name}.{column.name} needs units"


def test_only_the_participants_external_id_is_an_identifying_column():
    marked = [(t.name, c.name) for t in dictionary.TABLES for c in t.columns if c.external_id]
    assert marked == [("participants", "external_id")]
    assert not any(c.name == "token" for t in dictionary.TABLES for c in t.columns)


def test_the_json_dictionary_lists_every_column_with_its_arrow_type():
    data = dictionary.as_json()
    for t in dictionary.TABLES:
        columns = data["tables"][t.name]["columns"]
        assert [c["name"] for c in columns] == list(t.names)
        for c in columns:
            assert c["arrow_type"] == str(arrow_type(c["type"]))
            assert c["meaning"] and "units" in c and "nullable" in c


def test_the_docs_carry_the_current_data_dictionary():
    text = (REPO / "docs" / "export.md").read_text(encoding="utf-8")
    embedded = re.search(r"<!-- data-dictionary:start -->\n(.*)<!-- data-dictionary:end -->", text, re.S)
    assert embedded, "docs/export.md must embed the data dictionary between the markers"
    assert embedded.group(1) == dictionary.as_markdown(level=2), (
        "docs/export.md is out of date: regenerate the section with "
        "`python -c 'from oversight.exports.dictionary import as_markdown; print(as_markdown(level=2), end=\"\")'`"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("external_ids", [False, True], ids=["pseudonymous", "with-external-ids"])
def test_the_written_files_have_exactly_the_dictionarys_columns(study, tmp_path, external_ids):
    export_study(study=study, formats="all", include_external_ids=external_ids, out_dir=tmp_path)
    for table in dictionary.TABLES:
        expected = [c.name for c in table.columns if external_ids or not c.external_id]
        with open(tmp_path / "csv" / f"{table.name}.csv", encoding="utf-8", newline="") as f:
            assert next(csv.reader(f)) == expected
        with open(tmp_path / "jsonl" / f"{table.name}.jsonl", encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert lines, f"{table.name} should have rows in this fixture"
        assert all(list(json.loads(line)) == expected for line in lines)
        assert pq.read_schema(tmp_path / "parquet" / f"{table.name}.parquet").names == expected


@pytest.mark.django_db
def test_the_parquet_schema_has_the_declared_types_not_inferred_ones(study, tmp_path):
    export_study(study=study, formats=["parquet"], include_external_ids=True, out_dir=tmp_path)
    declared = dictionary.as_json()["tables"]
    for table in dictionary.TABLES:
        schema = pq.read_schema(tmp_path / "parquet" / f"{table.name}.parquet")
        for field, column in zip(schema, declared[table.name]["columns"], strict=True):
            assert str(field.type) == column["arrow_type"], f"{table.name}.{field.name}"
            assert field.nullable == column["nullable"], f"{table.name}.{field.name}"
            assert field.metadata[b"meaning"].decode() == column["meaning"]
        assert schema.metadata[b"table"].decode() == table.name


@pytest.mark.django_db
def test_an_exporter_cannot_write_an_undocumented_column(study):
    class Sneaky(registry["trials"]):
        fields = (*registry["trials"].fields, "token")

    with pytest.raises(KeyError, match="trials.token is not in the data dictionary"):
        Sneaky(ExportContext(study=study)).columns  # noqa: B018 - the property raises


@pytest.mark.django_db
def test_exporters_come_in_dictionary_order(study):
    assert [e.identifier for e in exporters(ExportContext(study=study))] == [t.name for t in dictionary.TABLES]
