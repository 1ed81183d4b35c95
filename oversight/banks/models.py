import hashlib
import json

from django.db import models


class Bank(models.Model):
    """A named collection of multiple-choice items (an MMLU import, a QuALITY import, a custom set)."""

    class Format(models.TextChoices):
        MMLU = "mmlu", "MMLU"
        QUALITY = "quality", "QuALITY"
        CUSTOM = "custom", "Custom"

    name = models.CharField(max_length=100, unique=True)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.CUSTOM)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Passage(models.Model):
    """A reading passage (a QuALITY article), stored once and shared by all of its items."""

    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="passages")
    external_id = models.CharField(max_length=200)
    title = models.CharField(max_length=500, blank=True)
    author = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bank", "external_id"], name="passage_unique_per_bank")]

    def __str__(self) -> str:
        return self.title or self.external_id


class Item(models.Model):
    """One multiple-choice question.

    `gold_index` is the 0-based index of the correct option (null for unlabeled splits such as QuALITY
    test). It must never reach a participant's browser before their answer to the item is committed; only
    server-side scoring and post-answer feedback read it.
    """

    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="items")
    passage = models.ForeignKey(Passage, on_delete=models.PROTECT, null=True, blank=True, related_name="items")
    external_id = models.CharField(max_length=200)
    subject = models.CharField(max_length=200, blank=True, db_index=True)
    split = models.CharField(max_length=32, blank=True)
    text = models.TextField()
    options = models.JSONField()
    gold_index = models.PositiveSmallIntegerField(null=True, blank=True)
    # QuALITY's `difficult` flag (1 = hard subset); null where the source has none.
    difficult = models.BooleanField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bank", "external_id"], name="item_unique_per_bank"),
            models.CheckConstraint(
                condition=models.Q(gold_index__isnull=True) | models.Q(gold_index__lt=6),
                name="item_gold_index_in_range",
            ),
        ]
        indexes = [models.Index(fields=["bank", "split", "subject"])]

    def __str__(self) -> str:
        return self.external_id

    @property
    def letters(self) -> list[str]:
        return [chr(ord("A") + i) for i in range(len(self.options))]

    @property
    def gold_letter(self) -> str | None:
        return None if self.gold_index is None else chr(ord("A") + self.gold_index)

    def is_correct(self, choice: int | None) -> bool | None:
        if self.gold_index is None:
            return None
        return choice is not None and choice == self.gold_index


def content_hash(payload: dict) -> str:
    """A stable hash of an item's or passage's content, used to tell updated rows from unchanged ones."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
