"""Helpers shared by the bank tests."""

from oversight.banks.models import Bank, Item, Passage

# Small custom banks (CSV): two good items; and one whose line 3 has an answer that is not an option.
CUSTOM_OK = (
    "id,question,option_a,option_b,answer,subject\n"
    "q1,Is ice cold?,yes,no,A,physics\nq2,Is fire cold?,yes,no,B,physics\n"
)
CUSTOM_BAD = "id,question,option_a,option_b,answer\nq1,Is ice cold?,yes,no,A\nq2,Is fire cold?,yes,no,Z\n"


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
