"""Helpers shared by the export tests: unzip an export, read every table in every format."""

import zipfile
from pathlib import Path

from oversight.exports import dictionary
from oversight.exports.readback import read_table
from oversight.exports.writers import FORMATS


def unzip(zip_path: Path, into: Path) -> Path:
    """Extract an export zip; returns its one top-level folder."""
    with zipfile.ZipFile(zip_path) as zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist()}
        assert len(tops) == 1, tops
        zf.extractall(into)
    return into / tops.pop()


def all_rows(folder: Path, fmt: str) -> dict[str, list[dict]]:
    return {t.name: list(read_table(folder, t.name, fmt)) for t in dictionary.TABLES}


def every_value(folder: Path):
    """Every cell of every table in every format written, as text (for scanning what an export contains)."""
    for fmt in FORMATS:
        if not (folder / fmt).is_dir():
            continue
        for rows in all_rows(folder, fmt).values():
            for row in rows:
                for value in row.values():
                    yield str(value)


def every_text(folder: Path):
    """The raw text of every non-Parquet file (Parquet is compressed: `every_value` reads it)."""
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".parquet":
            yield path.name, path.read_text(encoding="utf-8")
