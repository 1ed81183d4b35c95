"""QuALITY v1.0.1 (Pang et al., 2022), official JSON Lines: `QuALITY.v1.0.1[.htmlstripped].{train,dev,test}`.

Each line is one writer's question set for one article, and each article has two lines (two writers), so
the article becomes one Passage (external id = article_id) shared by both sets' items.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from oversight.banks.models import Bank

from .base import (
    AUTHOR_MAX,
    EXTERNAL_ID_MAX,
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
from .htmltext import html_to_text, looks_like_html
from .sources import SourceFile, decode, json_lines, read_source, require_content
from .writer import write_bank

DEFAULT_BANK = "QuALITY"
SPLITS = ("train", "dev", "test")
# The official train and dev files are labeled; only test withholds gold_label (for the leaderboard).
LABELED_SPLITS = frozenset({"train", "dev"})
UNKNOWN_SPLIT = "unknown"

_QUALITY_NAME = re.compile(r"^quality\.", re.IGNORECASE)
# Passage metadata: everything about the article except what has its own field.
_ARTICLE_META = ("source", "topic", "url", "year", "license")
# Item metadata: the writer and the annotations, kept whole for the analysis of hard/easy items.
_SET_META = ("set_unique_id", "writer_id", "batch_num")
_QUESTION_META = ("writer_label", "validation", "speed_validation")


def import_quality(
    *,
    path: Path | str,
    bank_name: str = DEFAULT_BANK,
    split: str | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import QuALITY from one file, a directory of files or the official zip.

    The split comes from the file name's last suffix (.train, .dev, .test, optionally followed by .jsonl);
    other files (such as a `.sample`) get `split`, or "unknown" when it is not given.
    """
    parsed = parse_quality(path=Path(path), split=split, progress=progress)
    return write_bank(bank_name=bank_name, parsed=parsed, source=str(path), progress=progress)


def split_from_filename(filename: str) -> str | None:
    name = re.sub(r"\.(jsonl|json)$", "", filename, flags=re.IGNORECASE)
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return suffix if suffix in SPLITS else None


def parse_quality(*, path: Path, split: str | None = None, progress: ProgressCallback | None = None) -> ParsedBank:
    progress = progress or no_progress
    fallback_split = (split or "").strip() or UNKNOWN_SPLIT
    if len(fallback_split) > SPLIT_MAX:
        raise ValueError(f"a split name has at most {SPLIT_MAX} characters")

    def want(relpath: PurePosixPath) -> bool:
        return bool(_QUALITY_NAME.match(relpath.name)) or relpath.name.lower().endswith(".jsonl")

    source = read_source(path, want=want)
    if not source.files:
        raise BankImportError(
            str(path), None, "no QuALITY files (QuALITY.v1.0.1[.htmlstripped].{train,dev,test} or *.jsonl) found"
        )
    warnings: list[str] = []
    files = _prefer_htmlstripped(source.files, fallback_split, warnings)

    texts = []
    for file in files:
        text = decode(file)
        require_content(file, text)
        texts.append((file, text))
    total_lines = sum(1 for _, text in texts for line in text.split("\n") if line.strip())

    state = _State(warnings=warnings)
    done = 0
    progress("read", 0, total_lines)
    for file, text in texts:
        file_split = split_from_filename(file.filename) or fallback_split
        strip_html = "htmlstripped" not in file.filename.lower()
        for line, record in json_lines(file, text):
            _parse_record(state, file, line, record, split=file_split, strip_html=strip_html)
            done += 1
            progress("read", done, total_lines)
    return ParsedBank(
        format=Bank.Format.QUALITY, items=state.items, passages=list(state.passages.values()), warnings=warnings
    )


def _prefer_htmlstripped(files: list[SourceFile], fallback_split: str, warnings: list[str]) -> list[SourceFile]:
    """Drop the HTML files of a split that also has an htmlstripped file.

    The official zip holds both forms of every split, with the same ids: importing both would be the same
    questions twice. The htmlstripped text is the authors' own conversion, so it wins.
    """
    by_split = defaultdict(list)
    for file in files:
        by_split[split_from_filename(file.filename) or fallback_split].append(file)
    kept = []
    for group in by_split.values():
        stripped = [f for f in group if "htmlstripped" in f.filename.lower()]
        for file in group:
            if stripped and file not in stripped:
                warnings.append(f"skipped {file.name}: the htmlstripped form of the same split is imported instead")
            else:
                kept.append(file)
    return sorted(kept, key=lambda f: f.name)


class _State:
    def __init__(self, warnings: list[str]) -> None:
        self.items: list[ParsedItem] = []
        self.passages: dict[str, ParsedPassage] = {}
        self.question_origin: dict[str, str] = {}
        self.warnings = warnings


def _parse_record(state: _State, file: SourceFile, line: int, record, *, split: str, strip_html: bool) -> None:
    def fail(problem: str):
        raise BankImportError(file.name, line, problem)

    if not isinstance(record, dict):
        fail(f"expected a JSON object, found {type(record).__name__}")
    for key in ("article_id", "article", "questions"):
        if key not in record:
            fail(f"missing {key!r}")
    article_id = record["article_id"]
    if isinstance(article_id, bool) or not isinstance(article_id, str | int) or str(article_id) == "":
        fail(f"article_id must be a non-empty string, found {article_id!r}")
    article_id = str(article_id)
    if len(article_id) > PASSAGE_ID_MAX:
        fail(f"article_id is longer than {PASSAGE_ID_MAX} characters")
    article = record["article"]
    if not isinstance(article, str) or not article.strip():
        fail("article must be a non-empty string")
    questions = record["questions"]
    if not isinstance(questions, list) or not questions:
        fail("questions must be a non-empty list")
    set_id = record.get("set_unique_id")
    if set_id is not None and not isinstance(set_id, str):
        fail(f"set_unique_id must be a string, found {set_id!r}")
    title = _optional_str(record.get("title"), "title", fail)
    author = _optional_str(record.get("author"), "author", fail)

    # An htmlstripped file is never parsed as HTML (a literal "<" in a story would be read as markup); other
    # files are parsed only when the article looks like HTML, so a plain-text file under another name is kept.
    text = html_to_text(article) if strip_html and looks_like_html(article) else article
    origin = f"{file.name}:{line}"
    passage = state.passages.get(article_id)
    if passage is None:
        state.passages[article_id] = ParsedPassage(
            external_id=article_id,
            text=text,
            title=title[:TITLE_MAX],
            author=author[:AUTHOR_MAX],
            metadata={key: record[key] for key in _ARTICLE_META if key in record},
            origin=origin,
        )
    elif passage.text != text:
        state.warnings.append(
            f"{origin}: article {article_id} differs from its text at {passage.origin}; the first was kept"
        )

    set_meta = {key: record[key] for key in _SET_META if key in record}
    for number, question in enumerate(questions, start=1):
        item = _parse_question(question, number, set_id, split, fail)
        if item.external_id in state.question_origin:
            fail(f"question id {item.external_id!r} already appeared at {state.question_origin[item.external_id]}")
        state.question_origin[item.external_id] = origin
        item.passage_id = article_id
        item.subject = title[:SUBJECT_MAX]
        item.metadata = {**set_meta, **item.metadata}
        state.items.append(item)


def _parse_question(question, number: int, set_id: str | None, split: str, fail) -> ParsedItem:
    if not isinstance(question, dict):
        fail(f"question {number}: expected a JSON object, found {type(question).__name__}")
    qid = question.get("question_unique_id")
    if qid is None:
        if set_id is None:
            fail(f"question {number}: no question_unique_id, and the line has no set_unique_id to number it by")
        qid = f"{set_id}_{number}"  # the official ids follow this pattern
    if not isinstance(qid, str) or not qid:
        fail(f"question {number}: question_unique_id must be a non-empty string, found {qid!r}")
    if len(qid) > EXTERNAL_ID_MAX:
        fail(f"question {number}: question_unique_id is longer than {EXTERNAL_ID_MAX} characters")
    where = f"question {number} ({qid})"

    text = question.get("question")
    if not isinstance(text, str) or not text.strip():
        fail(f"{where}: question must be a non-empty string")
    options = question.get("options")
    if not isinstance(options, list) or len(options) != 4 or not all(isinstance(o, str) for o in options):
        fail(f"{where}: options must be a list of 4 strings")

    gold = question.get("gold_label")
    if gold is None:
        if split in LABELED_SPLITS:
            fail(f"{where}: gold_label is missing (the {split} split is labeled)")
        gold_index = None
    elif isinstance(gold, bool) or not isinstance(gold, int) or not 1 <= gold <= 4:
        fail(f"{where}: gold_label {gold!r} is not in 1–4")
    else:
        gold_index = gold - 1

    difficult = question.get("difficult")
    if difficult is not None and difficult not in (0, 1):  # True/False compare equal to 1/0
        fail(f"{where}: difficult must be 0, 1 or null, found {difficult!r}")

    return ParsedItem(
        external_id=qid,
        text=text,
        options=list(options),
        gold_index=gold_index,
        split=split,
        difficult=None if difficult is None else bool(difficult),
        metadata={key: question[key] for key in _QUESTION_META if key in question},
    )


def _optional_str(value, name: str, fail) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        fail(f"{name} must be a string or null, found {value!r}")
    return value
