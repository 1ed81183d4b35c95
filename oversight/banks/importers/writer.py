"""Writing a parsed bank: bulk statements, idempotent by content hash, all or nothing.

On PostgreSQL the whole write is one transaction. SQLite has one writer for the whole file, so there one long
transaction held every other write — the deadline sweep, a participant's consent — for as long as the import
wrote (issue 15: tens of seconds for a large upload): there each batch of rows is its own transaction, and an
import that fails halfway takes back what it wrote (`_Undo`), so it still leaves the bank as it found it.
"""

from __future__ import annotations

import contextlib
from collections import Counter

from django.db import connection, transaction
from django.utils import timezone

from oversight.banks.models import Bank, Item, Passage

from .base import (
    BankImportError,
    ImportResult,
    ParsedBank,
    ParsedItem,
    ParsedPassage,
    ProgressCallback,
    no_progress,
)

# Rows per INSERT/UPDATE statement. Django lowers it further where the backend needs (SQLite's bound
# parameter limit); 500 keeps PostgreSQL statements well under a megabyte even with long passages.
BATCH_SIZE = 500

_ITEM_FIELDS = [
    "passage",
    "subject",
    "split",
    "text",
    "options",
    "gold_index",
    "difficult",
    "metadata",
    "content_hash",
    "updated_at",
]
_PASSAGE_FIELDS = ["title", "author", "text", "metadata", "content_hash"]


def write_bank(
    *,
    bank_name: str,
    parsed: ParsedBank,
    source: str,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Create, update or skip each passage and item of `parsed` in the bank named `bank_name`.

    Rows are matched by external id and compared by content hash. Rows missing from `parsed` are kept:
    trials may reference them, and a partial import (one split) must not delete the others.
    """
    progress = progress or no_progress
    name_max = Bank._meta.get_field("name").max_length
    if not bank_name.strip() or len(bank_name) > name_max:
        raise BankImportError(source, None, f"the bank name must have 1 to {name_max} characters")
    _check_unique(parsed, source)
    short = connection.vendor == "sqlite"
    with transaction.atomic() if not short else contextlib.nullcontext():
        return _write(bank_name=bank_name, parsed=parsed, source=source, progress=progress, short=short)


def _write(*, bank_name: str, parsed: ParsedBank, source: str, progress: ProgressCallback, short: bool) -> ImportResult:
    item_hashes = [item.hash() for item in parsed.items]
    passage_hashes = [passage.hash() for passage in parsed.passages]
    with transaction.atomic():
        # The row lock makes two concurrent imports into one bank (two Celery jobs) run one after the
        # other instead of racing on the unique constraints (PostgreSQL, where this is the whole import).
        bank, created = Bank.objects.select_for_update().get_or_create(
            name=bank_name, defaults={"format": parsed.format}
        )
        if bank.format != parsed.format:
            raise BankImportError(
                source,
                None,
                f"bank {bank_name!r} holds {bank.get_format_display()} items; "
                f"import {dict(Bank.Format.choices)[parsed.format]} items into another bank (--bank NAME)",
            )
        stored_passages = {
            ext: (pk, digest)
            for ext, pk, digest in Passage.objects.filter(bank=bank).values_list("external_id", "pk", "content_hash")
        }
        for passage_id, origin in parsed.external_passage_refs.items():
            if passage_id not in stored_passages:
                raise BankImportError(
                    origin, None, f"passage {passage_id!r} is neither defined in the file nor stored in the bank"
                )
        stored_items = {
            ext: (pk, digest)
            for ext, pk, digest in Item.objects.filter(bank=bank).values_list("external_id", "pk", "content_hash")
        }
    result = ImportResult(bank=bank, bank_created=created, warnings=list(parsed.warnings))
    result.split_counts = dict(Counter(item.split for item in parsed.items))
    result.subject_count = len({item.subject for item in parsed.items})

    new_passages, changed_passages = [], []
    for passage, digest in zip(parsed.passages, passage_hashes, strict=True):
        stored = stored_passages.get(passage.external_id)
        if stored is None:
            new_passages.append(_passage_row(bank, passage, digest))
        elif stored[1] != digest:
            changed_passages.append(_passage_row(bank, passage, digest, pk=stored[0]))
            result.updated_passage_ids.append(passage.external_id)
        else:
            result.passages_unchanged += 1
    result.passages_new = len(new_passages)
    result.passages_updated = len(changed_passages)

    # Items are only classified here: their rows need the passages' primary keys, known after writing.
    new_items, changed_items = [], []
    for item, digest in zip(parsed.items, item_hashes, strict=True):
        stored = stored_items.get(item.external_id)
        if stored is None:
            new_items.append((item, digest, None))
        elif stored[1] != digest:
            changed_items.append((item, digest, stored[0]))
            result.updated_item_ids.append(item.external_id)
        else:
            result.items_unchanged += 1
    result.items_new = len(new_items)
    result.items_updated = len(changed_items)
    result.items_not_in_import = len(stored_items.keys() - {item.external_id for item in parsed.items})

    batches = _Batches(
        total=len(new_passages) + len(changed_passages) + len(new_items) + len(changed_items),
        progress=progress,
        short=short,
    )
    undo = _Undo(bank, created, changed_passages, changed_items) if short else None
    try:
        batches.run(new_passages, Passage.objects.bulk_create)
        batches.run(changed_passages, lambda chunk: Passage.objects.bulk_update(chunk, _PASSAGE_FIELDS))
        if new_items or changed_items:
            # One query for the passage ids instead of relying on bulk_create returning primary keys.
            passage_pks = dict(Passage.objects.filter(bank=bank).values_list("external_id", "pk"))
            now = timezone.now()  # bulk_update does not run auto_now
            new_rows = [_item_row(bank, item, digest, passage_pks) for item, digest, _ in new_items]
            changed_rows = [
                _item_row(bank, item, digest, passage_pks, pk=pk, updated_at=now) for item, digest, pk in changed_items
            ]
            batches.run(new_rows, Item.objects.bulk_create)
            batches.run(changed_rows, lambda chunk: Item.objects.bulk_update(chunk, _ITEM_FIELDS))

        if batches.total and not created:
            bank.save(update_fields=["updated_at"])
    except BaseException:
        if undo is not None:
            undo.revert(
                new_passage_ids=[p.external_id for p in new_passages],
                new_item_ids=[i.external_id for i, _, _ in new_items],
            )
        raise
    return result


class _Undo:
    """What an import in short transactions changed, to take back if it fails halfway: the bank if it created
    it, else the rows it added and the previous content of the rows it updated (read before writing)."""

    def __init__(self, bank: Bank, created: bool, changed_passages: list, changed_items: list) -> None:
        self.bank, self.created = bank, created
        self.old_passages = list(Passage.objects.filter(pk__in=[p.pk for p in changed_passages]))
        self.old_items = list(Item.objects.filter(pk__in=[i for _, _, i in changed_items]))

    def revert(self, *, new_passage_ids: list[str], new_item_ids: list[str]) -> None:
        with transaction.atomic():
            if self.created:
                Item.objects.filter(bank=self.bank).delete()
                Passage.objects.filter(bank=self.bank).delete()
                Bank.objects.filter(pk=self.bank.pk).delete()
                return
            for start in range(0, len(new_item_ids), BATCH_SIZE):
                Item.objects.filter(bank=self.bank, external_id__in=new_item_ids[start : start + BATCH_SIZE]).delete()
            Passage.objects.bulk_update(self.old_passages, _PASSAGE_FIELDS, batch_size=BATCH_SIZE)
            Item.objects.bulk_update(self.old_items, _ITEM_FIELDS, batch_size=BATCH_SIZE)
            for start in range(0, len(new_passage_ids), BATCH_SIZE):
                chunk = new_passage_ids[start : start + BATCH_SIZE]
                Passage.objects.filter(bank=self.bank, external_id__in=chunk).delete()


class _Batches:
    """Writes rows BATCH_SIZE at a time, reporting the running count over all of an import's writes."""

    def __init__(self, *, total: int, progress: ProgressCallback, short: bool = False) -> None:
        self.total = total
        self.done = 0
        self.progress = progress
        self.short = short
        if total:
            progress("write", 0, total)

    def run(self, rows: list, write) -> None:
        for start in range(0, len(rows), BATCH_SIZE):
            chunk = rows[start : start + BATCH_SIZE]
            with transaction.atomic() if self.short else contextlib.nullcontext():
                write(chunk)
            self.done += len(chunk)
            self.progress("write", self.done, self.total)


def _check_unique(parsed: ParsedBank, source: str) -> None:
    # The parsers report duplicates with their line numbers; this catches any parser that does not.
    for kind, ids in (
        ("item", [item.external_id for item in parsed.items]),
        ("passage", [passage.external_id for passage in parsed.passages]),
    ):
        duplicates = [ext for ext, count in Counter(ids).items() if count > 1]
        if duplicates:
            raise BankImportError(source, None, f"{kind} id {duplicates[0]!r} occurs more than once")


def _passage_row(bank: Bank, passage: ParsedPassage, digest: str, pk: int | None = None) -> Passage:
    return Passage(
        pk=pk,
        bank=bank,
        external_id=passage.external_id,
        title=passage.title,
        author=passage.author,
        text=passage.text,
        metadata=passage.metadata,
        content_hash=digest,
    )


def _item_row(
    bank: Bank, item: ParsedItem, digest: str, passage_pks: dict[str, int], pk: int | None = None, updated_at=None
) -> Item:
    row = Item(
        pk=pk,
        bank=bank,
        passage_id=None if item.passage_id is None else passage_pks[item.passage_id],
        external_id=item.external_id,
        subject=item.subject,
        split=item.split,
        text=item.text,
        options=item.options,
        gold_index=item.gold_index,
        difficult=item.difficult,
        metadata=item.metadata,
        content_hash=digest,
    )
    if updated_at is not None:
        row.updated_at = updated_at
    return row
