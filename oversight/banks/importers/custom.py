"""Custom banks: a CSV file with a header row, or a JSON Lines file. The columns/keys are in docs/banks.md."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from oversight.banks.models import Bank

from .base import (
    EXTERNAL_ID_MAX,
    LETTERS,
    MAX_OPTIONS,
    PASSAGE_ID_MAX,
    SPLIT_MAX,
    SUBJECT_MAX,
    TITLE_MAX,
    BankImportError,
    ImportResult,
    ParsedBank,
    ParsedItem,
    ParsedPassage,
    ProgressCallback,
    no_progress,
)
from .sources import SourceFile, csv_records, decode, json_lines, require_content
from .writer import write_bank

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

OPTION_COLUMNS = tuple(f"option_{letter.lower()}" for letter in LETTERS[:MAX_OPTIONS])
CSV_REQUIRED = ("id", "question", "option_a", "option_b")
CSV_OPTIONAL = (
    *OPTION_COLUMNS[2:],
    "answer",
    "subject",
    "split",
    "difficult",
    "passage_id",
    "passage_title",
    "passage_text",
)
META_PREFIX = "meta_"
JSONL_KEYS = frozenset(
    {"id", "question", "options", "answer", "subject", "split", "difficult", "passage", "passage_id", "metadata"}
)

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def import_custom(
    *,
    path: Path | str,
    bank_name: str,
    format: str | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    parsed = parse_custom(path=Path(path), format=format, progress=progress)
    return write_bank(bank_name=bank_name, parsed=parsed, source=str(path), progress=progress)


def detect_format(path: Path) -> str:
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise BankImportError(str(path), None, "cannot tell the format from the file name; give --format csv or jsonl")
    return fmt


def parse_custom(*, path: Path, format: str | None = None, progress: ProgressCallback | None = None) -> ParsedBank:
    progress = progress or no_progress
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if not path.exists():
        raise BankImportError(str(path), None, "no such file or directory")
    if not path.is_file():
        raise BankImportError(str(path), None, "expected a .csv or .jsonl file")
    fmt = format or detect_format(path)
    file = SourceFile(str(path), PurePosixPath(path.name), path.read_bytes())
    text = decode(file)
    require_content(file, text)
    builder = _Builder(file)
    progress("read", 0, 1)
    if fmt == "csv":
        _parse_csv(builder, text)
    else:
        _parse_jsonl(builder, text)
    progress("read", 1, 1)
    if not builder.items:
        raise BankImportError(file.name, None, "the file holds no items")
    return builder.result()


class _Builder:
    """Collects items and passages, checking what spans rows: unique ids and consistent passages."""

    def __init__(self, file: SourceFile) -> None:
        self.file = file
        self.items: list[ParsedItem] = []
        self.item_lines: dict[str, int] = {}
        self.passages: dict[str, ParsedPassage] = {}
        self.passage_refs: dict[str, str] = {}

    def fail(self, line: int, problem: str):
        raise BankImportError(self.file.name, line, problem)

    def add_item(self, line: int, item: ParsedItem) -> None:
        if not item.external_id:
            self.fail(line, "id is empty")
        if len(item.external_id) > EXTERNAL_ID_MAX:
            self.fail(line, f"id is longer than {EXTERNAL_ID_MAX} characters")
        if item.external_id in self.item_lines:
            self.fail(line, f"id {item.external_id!r} already used on line {self.item_lines[item.external_id]}")
        if not item.text.strip():
            self.fail(line, "question is empty")
        if len(item.subject) > SUBJECT_MAX:
            self.fail(line, f"subject is longer than {SUBJECT_MAX} characters")
        if len(item.split) > SPLIT_MAX:
            self.fail(line, f"split is longer than {SPLIT_MAX} characters")
        self.item_lines[item.external_id] = line
        self.items.append(item)

    def define_passage(self, line: int, passage_id: str, title: str, text: str) -> None:
        if len(passage_id) > PASSAGE_ID_MAX:
            self.fail(line, f"passage id is longer than {PASSAGE_ID_MAX} characters")
        if len(title) > TITLE_MAX:
            self.fail(line, f"passage title is longer than {TITLE_MAX} characters")
        known = self.passages.get(passage_id)
        if known is None:
            self.passages[passage_id] = ParsedPassage(
                external_id=passage_id, text=text, title=title, origin=f"{self.file.name}:{line}"
            )
        elif (known.text, known.title) != (text, title):
            self.fail(line, f"passage {passage_id!r} has a different title or text than at {known.origin}")

    def refer_to_passage(self, line: int, passage_id: str) -> None:
        self.passage_refs.setdefault(passage_id, f"{self.file.name}:{line}")

    def result(self) -> ParsedBank:
        # References to passages this file does not define must name passages already in the bank; the
        # writer checks that against the database.
        external = {pid: origin for pid, origin in self.passage_refs.items() if pid not in self.passages}
        return ParsedBank(
            format=Bank.Format.CUSTOM,
            items=self.items,
            passages=list(self.passages.values()),
            external_passage_refs=external,
        )


def _answer_index(builder: _Builder, line: int, answer, n_options: int) -> int | None:
    letters = LETTERS[:n_options]
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return None
    if isinstance(answer, str):
        letter = answer.strip().upper()
        if len(letter) == 1 and letter in letters:
            return letters.index(letter)
        builder.fail(line, f"answer {answer!r} is not one of {', '.join(letters)} (the item has {n_options} options)")
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 1 <= answer <= n_options:
            return answer - 1
        builder.fail(line, f"answer {answer} is not in 1–{n_options} (the item has {n_options} options)")
    builder.fail(line, f"answer must be a letter, a 1-based number or null, found {answer!r}")


def _check_option_count(builder: _Builder, line: int, n: int) -> None:
    if not 2 <= n <= MAX_OPTIONS:
        builder.fail(line, f"an item needs 2 to {MAX_OPTIONS} options, found {n}")


# --- CSV -------------------------------------------------------------------------------------------------


def _parse_csv(builder: _Builder, text: str) -> None:
    records = csv_records(builder.file, text)
    header_line, header = next(records, (1, []))
    columns = [name.strip().lower() for name in header]
    # Every problem with the header at once: a researcher fixing a spreadsheet should not learn of them one by one.
    known = set(CSV_REQUIRED) | set(CSV_OPTIONAL)
    unknown = [
        name
        for name in dict.fromkeys(columns)
        if name not in known and not (name.startswith(META_PREFIX) and len(name) > len(META_PREFIX))
    ]
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    missing = [name for name in CSV_REQUIRED if name not in columns]
    problems = []
    if unknown:
        problems.append(f"unknown {_columns(unknown)}")
    if duplicates:
        problems.append(f"{_columns(duplicates)} {'appears' if len(duplicates) == 1 else 'appear'} twice")
    if missing:
        problems.append(f"missing {_columns(missing)} (the header row is required)")
    if problems:
        if unknown or missing:
            problems.append(
                f"columns are {', '.join((*CSV_REQUIRED, *CSV_OPTIONAL))} and {META_PREFIX}<name> for metadata"
            )
        builder.fail(header_line, "; ".join(problems))
    option_columns = [name for name in OPTION_COLUMNS if name in columns]
    if option_columns != list(OPTION_COLUMNS[: len(option_columns)]):
        builder.fail(header_line, f"option columns must run option_a, option_b, … without gaps; found {option_columns}")

    for line, row in records:
        if len(row) != len(columns):
            builder.fail(line, f"expected {len(columns)} columns (as in the header), found {len(row)}")
        values = dict(zip(columns, row, strict=True))
        builder.add_item(line, _csv_item(builder, line, values, option_columns))


def _columns(names: list[str]) -> str:
    return ("column " if len(names) == 1 else "columns ") + ", ".join(repr(name) for name in names)


def _csv_item(builder: _Builder, line: int, values: dict[str, str], option_columns: list[str]) -> ParsedItem:
    cells = [values[name] for name in option_columns]
    n_options = 0
    for index, cell in enumerate(cells):
        if cell.strip():
            if index > n_options:
                builder.fail(
                    line, f"{option_columns[n_options]} is blank but {option_columns[index]} is not (blanks go last)"
                )
            n_options += 1
    _check_option_count(builder, line, n_options)

    difficult_raw = values.get("difficult", "").strip().lower()
    if difficult_raw and difficult_raw not in _TRUE | _FALSE:
        builder.fail(line, f"difficult must be 1/0, true/false, yes/no or empty, found {values['difficult']!r}")

    passage_id = values.get("passage_id", "").strip()
    passage_text = values.get("passage_text", "")
    if passage_text.strip() and not passage_id:
        builder.fail(line, "passage_text needs a passage_id")
    if passage_id:
        if passage_text.strip():
            builder.define_passage(line, passage_id, values.get("passage_title", "").strip(), passage_text)
        else:
            builder.refer_to_passage(line, passage_id)

    return ParsedItem(
        external_id=values["id"].strip(),
        text=values["question"],
        options=cells[:n_options],
        gold_index=_answer_index(builder, line, values.get("answer", ""), n_options),
        subject=values.get("subject", "").strip(),
        split=values.get("split", "").strip(),
        difficult=None if not difficult_raw else difficult_raw in _TRUE,
        metadata={
            name[len(META_PREFIX) :]: value
            for name, value in values.items()
            if name.startswith(META_PREFIX) and value != ""
        },
        passage_id=passage_id or None,
    )


# --- JSON Lines ------------------------------------------------------------------------------------------


def _parse_jsonl(builder: _Builder, text: str) -> None:
    for line, record in json_lines(builder.file, text):
        builder.add_item(line, _jsonl_item(builder, line, record))


def _jsonl_item(builder: _Builder, line: int, record) -> ParsedItem:
    fail = builder.fail
    if not isinstance(record, dict):
        fail(line, f"expected a JSON object, found {type(record).__name__}")
    unknown = sorted(set(record) - JSONL_KEYS)
    if unknown:
        fail(line, f"unknown key {unknown[0]!r}; keys are {', '.join(sorted(JSONL_KEYS))}")
    missing = [key for key in ("id", "question", "options") if key not in record]
    if missing:
        fail(line, f"missing {', '.join(repr(key) for key in missing)}")

    external_id = record["id"]
    if isinstance(external_id, bool) or not isinstance(external_id, str | int):
        fail(line, f"id must be a string, found {external_id!r}")
    question = record["question"]
    if not isinstance(question, str):
        fail(line, f"question must be a string, found {question!r}")
    options = record["options"]
    if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
        fail(line, "options must be a list of non-empty strings")
    _check_option_count(builder, line, len(options))
    subject, split = (_jsonl_str(builder, line, record, key) for key in ("subject", "split"))
    difficult = record.get("difficult")
    if difficult is not None and difficult not in (0, 1):  # True/False compare equal to 1/0
        fail(line, f"difficult must be true, false, 0, 1 or null, found {difficult!r}")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        fail(line, "metadata must be a JSON object")

    passage_id = None
    if "passage" in record and "passage_id" in record:
        fail(line, "give either passage or passage_id, not both")
    if record.get("passage") is not None:
        passage = record["passage"]
        if not isinstance(passage, dict) or set(passage) - {"id", "title", "text"}:
            fail(line, 'passage must be an object {"id", "title", "text"}')
        passage_id, title, text = passage.get("id"), passage.get("title") or "", passage.get("text")
        if not isinstance(passage_id, str) or not passage_id.strip():
            fail(line, "passage.id must be a non-empty string")
        if not isinstance(title, str) or not isinstance(text, str) or not text.strip():
            fail(line, "passage.text must be a non-empty string and passage.title a string")
        passage_id = passage_id.strip()
        builder.define_passage(line, passage_id, title, text)
    elif record.get("passage_id") is not None:
        passage_id = record["passage_id"]
        if not isinstance(passage_id, str) or not passage_id.strip():
            fail(line, "passage_id must be a non-empty string")
        passage_id = passage_id.strip()
        builder.refer_to_passage(line, passage_id)

    return ParsedItem(
        external_id=str(external_id).strip(),
        text=question,
        options=list(options),
        gold_index=_answer_index(builder, line, record.get("answer"), len(options)),
        subject=subject,
        split=split,
        difficult=None if difficult is None else bool(difficult),
        metadata=metadata,
        passage_id=passage_id,
    )


def _jsonl_str(builder: _Builder, line: int, record: dict, key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        builder.fail(line, f"{key} must be a string, found {value!r}")
    return value.strip()
