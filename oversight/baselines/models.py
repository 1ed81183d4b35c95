"""Model-alone baselines: which model answered which items how, and what it said.

A `BaselineRun` is one method (zero-shot, few-shot, chain of thought) of one endpoint over a fixed set of
items (a bank or split, or exactly the scored items of a study). Each item gets at most one
`BaselineResult` (a database constraint), which is what makes a run resumable: the runner skips items that
already have a result. `PromptTemplate` rows are data, created from the defaults in `prompts.py` on first
use; the run stores the template's content hash so a later edit of the row cannot silently change what a
finished run means.
"""

import hashlib
import json

from django.conf import settings
from django.db import models

from oversight.core.models import JobStatus, ResumableJob

STALE_AFTER_S = ResumableJob.STALE_AFTER_S  # a running run whose heartbeat is older may be claimed by another


class Method(models.TextChoices):
    ZERO_SHOT = "zero-shot", "Zero-shot"
    FEW_SHOT = "few-shot", "Few-shot"
    COT = "cot", "Chain of thought (best of N)"


def template_hash(*, method: str, text: str, chat: bool) -> str:
    blob = json.dumps({"method": method, "text": text, "chat": bool(chat)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class PromptTemplate(models.Model):
    """A prompt, as data. Placeholders and turn markers are described in docs/baselines.md."""

    name = models.CharField(max_length=100, unique=True)
    method = models.CharField(max_length=16, choices=Method.choices)
    text = models.TextField()
    chat = models.BooleanField(default=False, help_text="Send as chat messages (instruction-tuned models)")
    description = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["method", "name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.content_hash = self.compute_hash()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "content_hash"}
        super().save(*args, **kwargs)

    def compute_hash(self) -> str:
        return template_hash(method=self.method, text=self.text, chat=self.chat)


class BaselineRun(ResumableJob, models.Model):
    """A run has the lifecycle of every job (`core.models.JobLifecycle`: the statuses, the claim, progress, finish
    and cancel rules) and mirrors it onto its `Job` for the console. What is its own: runs are long and
    resumable, so an executor holds a run by a token and proves it alive with a heartbeat (a run is stale after
    a minute of silence, not hours), a running run is stopped cooperatively (`cancel_requested`), and a run
    yields back to the queue between slices, keeping the results it has."""

    Status = JobStatus

    endpoint = models.ForeignKey("core.ModelEndpoint", on_delete=models.PROTECT, related_name="baseline_runs")
    # The item set: a bank (optionally one split of it), or the scored items of a study's conditions.
    bank = models.ForeignKey(
        "banks.Bank", on_delete=models.PROTECT, null=True, blank=True, related_name="baseline_runs"
    )
    study = models.ForeignKey(
        "core.Study", on_delete=models.PROTECT, null=True, blank=True, related_name="baseline_runs"
    )
    split = models.CharField(max_length=32, blank=True)
    method = models.CharField(max_length=16, choices=Method.choices)
    # k (shots), n (samples), temperature, concurrency, top_n, retries…: the normalised values actually used.
    params = models.JSONField(default=dict, blank=True)
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="runs")
    template_hash = models.CharField(max_length=64)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    # Live numbers for progress displays: rate (items/s), eta_s, errors_by_kind.
    progress = models.JSONField(default=dict, blank=True)
    # Written when the run finishes: accuracy, calibration error, errors by kind, accuracy per subject.
    summary = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="Why the run failed or stopped")

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    job = models.OneToOneField(
        "core.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="baseline_run"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Who is executing the run (a random token per execution) and when it last said so.
    claimed_by = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(bank__isnull=False) | models.Q(study__isnull=False),
                name="baseline_run_has_items",
            )
        ]

    def __str__(self) -> str:
        scope = self.study.slug if self.study_id else (self.bank.name if self.bank_id else "?")
        split = f"/{self.split}" if self.split else ""
        return f"Baseline {self.pk}: {self.method} on {scope}{split} ({self.status})"


class BaselineResult(models.Model):
    """The model's answer to one item. `probabilities` are normalised over the item's options."""

    run = models.ForeignKey(BaselineRun, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey("banks.Item", on_delete=models.PROTECT, related_name="+")
    probabilities = models.JSONField(null=True, blank=True)  # list[float], one per option; null on error
    predicted = models.PositiveSmallIntegerField(null=True, blank=True)  # 0-based option index
    correct = models.BooleanField(null=True, blank=True)  # null on error or for unlabelled items
    prompt = models.TextField(blank=True)
    response = models.JSONField(default=dict, blank=True)  # the raw answer, token logprobs included
    latency_ms = models.FloatField(default=0)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    # Letters absent from the top tokens, and how each was scored instead.
    missing_letters = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "item"]
        constraints = [models.UniqueConstraint(fields=["run", "item"], name="baseline_result_unique_item")]

    def __str__(self) -> str:
        return f"Run {self.run_id} item {self.item_id}: {self.error_kind or self.predicted}"
