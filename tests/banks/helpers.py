"""Helpers shared by the bank tests."""

from oversight.banks.models import Bank, Item, Passage


def row_counts() -> tuple[int, int, int]:
    """(banks, passages, items) in the database."""
    return Bank.objects.count(), Passage.objects.count(), Item.objects.count()


def db_snapshot():
    """Everything an import could change, to assert that a failed one changed nothing."""
    return (
        sorted(Bank.objects.values_list("name", "format", "updated_at")),
        sorted(Passage.objects.values_list("bank__name", "external_id", "content_hash")),
        sorted(Item.objects.values_list("bank__name", "external_id", "content_hash", "updated_at")),
    )
