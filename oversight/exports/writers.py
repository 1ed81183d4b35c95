"""Writers for CSV, JSONL and Parquet that take rows in batches and write them as they come, and readers that give
the rows back as Python values (for the round-trip tests and for `readback.py`).

A writer is opened with the table's columns (from the data dictionary) and receives lists of tuples in that
column order. Nothing is held beyond one batch: CSV and JSONL write line by line to the file, Parquet writes each
batch as one row group through `pyarrow.parquet.ParquetWriter` with the declared schema (never inferred).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from oversight.exports.dictionary import Column

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
PARQUET_COMPRESSION = "zstd"


def arrow_type(type_: str) -> pa.DataType:
    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        # Parquet's own name for a list's values ("element"), so a file read back has exactly the declared type.
        "list<string>": pa.list_(pa.field("element", pa.string())),
        "list<float64>": pa.list_(pa.field("element", pa.float64())),
        "list<int64>": pa.list_(pa.field("element", pa.int64())),
        "json": pa.string(),
    }[type_]


def arrow_schema(columns: Sequence[Column], *, table: str = "") -> pa.Schema:
    fields = [
        pa.field(
            c.name,
            arrow_type(c.type),
            nullable=c.nullable,
            metadata={"type": c.type, "meaning": c.meaning, "units": c.units},
        )
        for c in columns
    ]
    return pa.schema(fields, metadata={"table": table, "schema": "oversight.export/1"} if table else None)


# --- Encoding ---------------------------------------------------------------------------------------------------


class RawJSON(str):
    """JSON text exactly as the database holds it: written as is, never decoded and encoded again (on a million
    chat messages that round trip through Python objects was half of the export's time)."""

    __slots__ = ()


def iso(value: datetime) -> str:
    # One fixed shape (always microseconds, always Z) so every reader parses every cell the same way.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(value) -> str:
    if isinstance(value, RawJSON):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _csv_encoder(type_: str) -> Callable:
    if type_ == "string":
        return lambda v: "" if v is None else v
    if type_ == "bool":
        return lambda v: "" if v is None else ("true" if v else "false")
    if type_ == "float64":
        return lambda v: "" if v is None else repr(float(v))
    if type_ == "int64":
        return lambda v: "" if v is None else str(v)
    if type_ == "timestamp":
        return lambda v: "" if v is None else iso(v)
    return lambda v: "" if v is None else dumps(v)  # lists and json


def _json_encoder(type_: str) -> Callable:
    """The JSON text of one value (a JSONL line is assembled from these, so RawJSON goes in untouched)."""
    if type_ == "string":
        return lambda v: '""' if v is None else encode_basestring(v)
    if type_ == "bool":
        return lambda v: "null" if v is None else ("true" if v else "false")
    if type_ == "float64":
        return lambda v: "null" if v is None else _float(float(v))
    if type_ == "int64":
        return lambda v: "null" if v is None else str(int(v))
    if type_ == "timestamp":
        return lambda v: "null" if v is None else f'"{iso(v)}"'
    return lambda v: "null" if v is None else dumps(v)  # lists and json


def _float(value: float) -> str:
    return repr(value) if math.isfinite(value) else json.dumps(value)  # NaN/Infinity as the json module writes them


def _arrow_values(type_: str) -> Callable | None:
    if type_ == "json":
        return lambda values: [None if v is None else dumps(v) for v in values]
    if type_ == "string":
        return lambda values: ["" if v is None else v for v in values]
    if type_ == "float64":
        return lambda values: [None if v is None else float(v) for v in values]
    return None


# --- Writers ----------------------------------------------------------------------------------------------------


class Writer:
    format = ""

    def __init__(self, path: Path, columns: Sequence[Column], *, table: str = "") -> None:
        self.path = path
        self.columns = tuple(columns)
        self.table = table
        self.rows = 0

    def write(self, batch: Sequence[tuple]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class CsvWriter(Writer):
    format = "csv"

    def __init__(self, path, columns, *, table=""):
        super().__init__(path, columns, table=table)
        self.file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self.writer = csv.writer(self.file)
        self.writer.writerow([c.name for c in self.columns])
        self.encoders = [_csv_encoder(c.type) for c in self.columns]

    def write(self, batch):
        encoders = self.encoders
        self.writer.writerows([enc(v) for enc, v in zip(encoders, row, strict=True)] for row in batch)
        self.rows += len(batch)

    def close(self):
        self.file.close()


class JsonlWriter(Writer):
    format = "jsonl"

    def __init__(self, path, columns, *, table=""):
        super().__init__(path, columns, table=table)
        self.file = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in close()
        self.keys = [encode_basestring(c.name) + ":" for c in self.columns]
        self.encoders = [_json_encoder(c.type) for c in self.columns]

    def write(self, batch):
        keys, encoders = self.keys, self.encoders
        # A generator: the file's buffer takes the lines one by one, so a batch is never held twice as text.
        self.file.writelines(
            "{" + ",".join([key + enc(v) for key, enc, v in zip(keys, encoders, row, strict=True)]) + "}\n"
            for row in batch
        )
        self.rows += len(batch)

    def close(self):
        self.file.close()


class ParquetWriter(Writer):
    format = "parquet"

    def __init__(self, path, columns, *, table=""):
        super().__init__(path, columns, table=table)
        self.schema = arrow_schema(self.columns, table=table)
        self.writer = pq.ParquetWriter(path, self.schema, compression=PARQUET_COMPRESSION)
        self.converters = [_arrow_values(c.type) for c in self.columns]

    def write(self, batch):
        if not batch:
            return
        arrays = []
        for field, convert, values in zip(self.schema, self.converters, zip(*batch, strict=True), strict=True):
            arrays.append(pa.array(convert(values) if convert else values, type=field.type))
        self.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows += len(batch)

    def close(self):
        self.writer.close()  # an empty table still gets a file with the schema


WRITERS: dict[str, type[Writer]] = {"csv": CsvWriter, "jsonl": JsonlWriter, "parquet": ParquetWriter}


# --- Readers ----------------------------------------------------------------------------------------------------


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _csv_decoder(type_: str) -> Callable:
    if type_ == "string":
        return lambda s: s
    if type_ == "bool":
        return lambda s: None if s == "" else {"true": True, "false": False}[s]
    if type_ == "float64":
        return lambda s: None if s == "" else float(s)
    if type_ == "int64":
        return lambda s: None if s == "" else int(s)
    if type_ == "timestamp":
        return lambda s: None if s == "" else parse_iso(s)
    return lambda s: None if s == "" else json.loads(s)


def read_rows(path: Path, columns: Sequence[Column], fmt: str) -> Iterator[dict]:
    """The rows of one exported file as dicts of Python values (timestamps as aware UTC datetimes)."""
    types = {c.name: c.type for c in columns}
    if fmt == "csv":
        decoders = {c.name: _csv_decoder(c.type) for c in columns}
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield {k: decoders[k](v) for k, v in row.items()}
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for k, v in row.items():
                    if types.get(k) == "timestamp" and v is not None:
                        row[k] = parse_iso(v)
                yield row
    elif fmt == "parquet":
        parquet = pq.ParquetFile(path)
        json_columns = [c.name for c in columns if c.type == "json"]
        for batch in parquet.iter_batches():
            for row in batch.to_pylist():
                for k in json_columns:
                    if row.get(k) is not None:
                        row[k] = json.loads(row[k])
                for k, v in row.items():
                    if isinstance(v, datetime):
                        row[k] = v.astimezone(UTC)
                yield row
    else:
        raise ValueError(f"unknown format {fmt!r}")
