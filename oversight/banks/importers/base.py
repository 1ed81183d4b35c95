"""What every importer shares: the error type, the parsed-record types and the result object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oversight.banks.models import Bank, Item, Passage, content_hash

# progress(stage, done, total): stage is "read" (files or lines parsed) or "write" (rows written).
# The console's Celery job will store these on its job row; the management commands draw a counter.
ProgressCallback = Callable[[str, int, int], None]

LETTERS = "ABCDEF"
MAX_OPTIONS = 6  # Item's check constraint allows gold_index 0–5

# Field lengths from the models: SQLite ignores max_length but PostgreSQL rejects longer values, so the
# importers check them while validating instead of failing halfway through the write.
EXTERNAL_ID_MAX = Item._meta.get_field("external_id").max_length
SUBJECT_MAX = Item._meta.get_field("subject").max_length
SPLIT_MAX = Item._meta.get_field("split").max_length
PASSAGE_ID_MAX = Passage._meta.get_field("external_id").max_length
TITLE_MAX = Passage._meta.get_field("title").max_length
AUTHOR_MAX = Passage._meta.get_field("author").max_length


class BankImportError(Exception):
    """Bad input. The message is `file:line: what is wrong` (`file: what is wrong` when no line applies)."""

    def __init__(self, source: str, line: int | None, problem: str):
        self.source = source
        self.line = line
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")


def no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class ParsedPassage:
    external_id: str
    text: str
    title: str = ""
    author: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # Where the passage was first seen, for error messages about it.
    origin: str = ""

    def hash(self) -> str:
        return content_hash(
            {
                "external_id": self.external_id,
                "title": self.title,
                "author": self.author,
                "text": self.text,
                "metadata": self.metadata,
            }
        )


@dataclass
class ParsedItem:
    external_id: str
    text: str
    options: list[str]
    gold_index: int | None
    subject: str = ""
    split: str = ""
    difficult: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    passage_id: str | None = None  # a passage's external_id, resolved to a row when written

    def hash(self) -> str:
        return content_hash(
            {
                "external_id": self.external_id,
                "text": self.text,
                "options": self.options,
                "gold_index": self.gold_index,
                "subject": self.subject,
                "split": self.split,
                "difficult": self.difficult,
                "metadata": self.metadata,
                "passage": self.passage_id,
            }
        )


@dataclass
class ParsedBank:
    """Everything an importer read, validated, before anything is written."""

    format: str
    items: list[ParsedItem]
    passages: list[ParsedPassage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Passage ids the items may reference that must already be stored in the bank (custom banks only).
    external_passage_refs: dict[str, str] = field(default_factory=dict)  # passage id -> "file:line"


@dataclass
class ImportResult:
    bank: Bank
    bank_created: bool
    items_new: int = 0
    items_updated: int = 0
    items_unchanged: int = 0
    passages_new: int = 0
    passages_updated: int = 0
    passages_unchanged: int = 0
    # Items in this import, per split and subject (not the whole bank: a `--splits test` import leaves the
    # other splits alone).
    split_counts: dict[str, int] = field(default_factory=dict)
    subject_count: int = 0
    # External ids whose content changed since the last import (the researcher should know about these:
    # an item edited under a running study changes what participants see).
    updated_item_ids: list[str] = field(default_factory=list)
    updated_passage_ids: list[str] = field(default_factory=list)
    # Items stored in the bank that this import did not contain; they are left in place, never deleted,
    # because trials may reference them.
    items_not_in_import: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def items_total(self) -> int:
        return self.items_new + self.items_updated + self.items_unchanged

    @property
    def passages_total(self) -> int:
        return self.passages_new + self.passages_updated + self.passages_unchanged

    def summary_lines(self, *, max_ids: int = 20) -> list[str]:
        lines = [f"Bank {self.bank.name!r} ({'created' if self.bank_created else 'existing'}, {self.bank.format})"]
        split_part = ", ".join(f"{split or '(none)'} {count:,}" for split, count in sorted(self.split_counts.items()))
        lines.append(f"Items per split: {split_part or '(none)'}; {self.subject_count} subjects")
        lines.append(
            f"Items: {self.items_total:,} in the import: {self.items_new:,} new, "
            f"{self.items_updated:,} updated, {self.items_unchanged:,} unchanged"
        )
        if self.passages_total:
            lines.append(
                f"Passages: {self.passages_total:,} in the import: {self.passages_new:,} new, "
                f"{self.passages_updated:,} updated, {self.passages_unchanged:,} unchanged"
            )
        for label, ids in (("Updated items", self.updated_item_ids), ("Updated passages", self.updated_passage_ids)):
            if ids:
                shown = ", ".join(ids[:max_ids])
                more = f" … and {len(ids) - max_ids:,} more" if len(ids) > max_ids else ""
                lines.append(f"{label}: {shown}{more}")
        if self.items_not_in_import:
            lines.append(f"{self.items_not_in_import:,} items already in the bank were not in this import (kept)")
        lines.extend(f"Warning: {warning}" for warning in self.warnings)
        return lines
