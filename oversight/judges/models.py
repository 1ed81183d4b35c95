"""Model judges (issue 17): a model in the judge's seat of a launched study's condition.

A `JudgeRun` is one endpoint judging one condition, in one of two modes:

* **replay**: the model judges, trial by trial, exactly the material people judged (the question, the answers, the
  story where shown, the chat or the transcript they read): a paired comparison on identical material;
* **live**: the model takes the judge's seat itself: in an assisted condition it asks the assistant its own
  questions, and is then judged on that chat.

Its answers are ordinary `core.Trial`s of a `core.Participant` of kind `model` (exports, exclusions, the bootstrap
and the transcript viewer read them unchanged). What is the judge run's own sits here: the run (the lifecycle of
every job, with a heartbeat and a cooperative cancel, as `baselines.BaselineRun`), and per answer a `JudgeVerdict`:
the material as text, the prompt, the probability per option and how it was read (letter log-probabilities, or a
stated probability parsed from the reply).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from oversight.core.models import JobStatus, ResumableJob

STALE_AFTER_S = ResumableJob.STALE_AFTER_S  # a running run whose heartbeat is older may be claimed by another


class Mode(models.TextChoices):
    REPLAY = "replay", "Replay (judge what people judged)"
    LIVE = "live", "Live (the model takes the judge's seat)"


class AnswerMethod(models.TextChoices):
    AUTO = "auto", "Letter log-probabilities where the endpoint gives them, else a stated probability"
    LOGPROBS = "logprobs", "Letter log-probabilities"
    VERBAL = "verbal", "A stated probability per answer, parsed from the reply"


class JudgeRun(ResumableJob, models.Model):
    """One endpoint judging one condition of a launched study. Resumable: every answer is written with its trial
    in one transaction, and a resumed run skips what has an answer."""

    Status = JobStatus

    study = models.ForeignKey("core.Study", on_delete=models.PROTECT, related_name="judge_runs")
    condition = models.ForeignKey("core.Condition", on_delete=models.PROTECT, related_name="judge_runs")
    endpoint = models.ForeignKey("core.ModelEndpoint", on_delete=models.PROTECT, related_name="judge_runs")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.REPLAY)
    answer = models.CharField(max_length=8, choices=AnswerMethod.choices, default=AnswerMethod.AUTO)
    # questions (live assisted: the judge's messages per item), top_n, retries, sampling: the values actually used.
    params = models.JSONField(default=dict, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    summary = models.JSONField(null=True, blank=True)  # written at the end: answered, accuracy, methods used

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    claimed_by = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Judge run {self.pk}: {self.get_mode_display()} on {self.condition} ({self.status})"


class JudgeVerdict(models.Model):
    """The model judge's answer to one trial: what it was shown, what it was asked, what it answered."""

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    # The model participant's trial that records the answer (an ordinary trial, analysed as such).
    trial = models.OneToOneField("core.Trial", on_delete=models.CASCADE, related_name="verdict")
    # Replay: the person's trial whose material was judged (the pair of the paired comparison).
    source_trial = models.ForeignKey(
        "core.Trial", on_delete=models.PROTECT, null=True, blank=True, related_name="model_verdicts"
    )
    # Exactly what the judge's page shows, as text (`material.material_text`): no gold, the same transcript.
    material = models.TextField()
    prompt = models.TextField()  # the whole prompt sent (the material inside the judge's instructions)
    # One per option of the item (fractions summing to 1; 0 for an option a protocol did not show).
    probabilities = models.JSONField()
    method = models.CharField(max_length=12)  # logprobs | verbal | simulated
    response = models.JSONField(default=dict, blank=True)  # the raw answer: top tokens, or the reply's text
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "trial"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "source_trial"], condition=Q(source_trial__isnull=False), name="verdict_unique_source"
            )
        ]

    def __str__(self) -> str:
        return f"Verdict of run {self.run_id} on trial {self.trial_id}"
