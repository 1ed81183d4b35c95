"""MMLU (Hendrycks et al., 2021), official CSV release: `data/{dev,val,test}/<subject>_<split>.csv`.

Six columns, no header: question, A, B, C, D, answer letter. Upstream has no stable question id, so the
external id is the usual `<subject>_<split>.csv:<0-based row>` (rows counted as pandas does, blank lines
skipped), which stays stable as long as the upstream files do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from oversight.banks.models import Bank

from .base import (
    EXTERNAL_ID_MAX,
    SUBJECT_MAX,
    BankImportError,
    ImportResult,
    ParsedBank,
    ParsedItem,
    ProgressCallback,
    no_progress,
)
from .sources import csv_records, decode, read_source, require_content
from .writer import write_bank

SPLITS = ("test", "val", "dev")
DEFAULT_BANK = "MMLU"

_FILENAME = re.compile(r"^(?P<subject>.+)_(?P<split>dev|val|test)\.csv$")
_ANSWERS = {"A": 0, "B": 1, "C": 2, "D": 3}
# data.tar also ships auxiliary_train/ (RACE, ARC, OBQA, MCTest training data, not MMLU questions). One of
# its files, mc_test.csv, even matches the <subject>_<split>.csv pattern.
_IGNORED_DIR = "auxiliary_train"


def import_mmlu(
    *,
    path: Path | str,
    bank_name: str = DEFAULT_BANK,
    splits: Iterable[str] | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import MMLU from its data.tar (or a .zip), its data/ directory, a directory of split directories,
    one split directory or one CSV file."""
    parsed = parse_mmlu(path=Path(path), splits=splits, progress=progress)
    return write_bank(bank_name=bank_name, parsed=parsed, source=str(path), progress=progress)


def parse_mmlu(
    *, path: Path, splits: Iterable[str] | None = None, progress: ProgressCallback | None = None
) -> ParsedBank:
    progress = progress or no_progress
    wanted = _check_splits(splits)

    def want(relpath: PurePosixPath) -> bool:
        match = _FILENAME.match(relpath.name)
        return bool(match) and match["split"] in wanted and _IGNORED_DIR not in relpath.parts[:-1]

    source = read_source(path, want=want)
    files = source.files
    if source.kind == "file":
        match = _FILENAME.match(path.name)
        if not match:
            raise BankImportError(
                str(path),
                None,
                "not an MMLU source: expected a tar or zip archive, a directory, or a <subject>_<split>.csv file",
            )
        if match["split"] not in wanted:
            files = []
    if not files:
        where = {"file": "in this file", "directory": "in this directory"}.get(source.kind, "in this archive")
        raise BankImportError(
            str(path),
            None,
            f"no MMLU CSV files (<subject>_{{{','.join(sorted(wanted))}}}.csv) found {where}"
            + (f" outside {_IGNORED_DIR}/" if source.kind != "file" else ""),
        )

    seen: dict[str, str] = {}
    items: list[ParsedItem] = []
    progress("read", 0, len(files))
    for done, file in enumerate(files, start=1):
        if file.filename in seen:
            raise BankImportError(
                file.name, None, f"{file.filename} appears twice (also at {seen[file.filename]}); keep one copy"
            )
        seen[file.filename] = file.name
        items.extend(_parse_file(file))
        progress("read", done, len(files))
    return ParsedBank(format=Bank.Format.MMLU, items=items)


def _check_splits(splits: Iterable[str] | None) -> set[str]:
    if splits is None:
        return set(SPLITS)
    wanted = {split.strip() for split in splits if split.strip()}
    unknown = wanted - set(SPLITS)
    if unknown or not wanted:
        raise ValueError(f"MMLU splits are {', '.join(SPLITS)}; got {', '.join(sorted(unknown)) or 'none'}")
    return wanted


def _parse_file(file) -> list[ParsedItem]:
    match = _FILENAME.match(file.filename)
    subject, split = match["subject"], match["split"]
    if len(subject) > SUBJECT_MAX or len(file.filename) + 8 > EXTERNAL_ID_MAX:
        raise BankImportError(file.name, None, "the file name is too long for a subject")
    text = decode(file)
    require_content(file, text)
    items = []
    for line, row in csv_records(file, text):
        if len(row) != 6:
            raise BankImportError(
                file.name, line, f"expected 6 columns (question, A, B, C, D, answer), found {len(row)}"
            )
        gold = _ANSWERS.get(row[5].strip())
        if gold is None:
            raise BankImportError(file.name, line, f"answer {row[5]!r} is not one of A, B, C, D")
        # Question and option text are kept byte for byte: upstream has leading/trailing spaces in 1,242
        # rows, and changing them would change the content hash against other copies of MMLU.
        items.append(
            ParsedItem(
                external_id=f"{file.filename}:{len(items)}",
                text=row[0],
                options=row[1:5],
                gold_index=gold,
                subject=subject,
                split=split,
            )
        )
    return items
