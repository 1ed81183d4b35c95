"""The study's record: who saw what, chose what, and when.

Row rules live here (`Trial.is_expired`); workflows that touch several rows live in `core/services/`.
"""

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from oversight.banks.models import Bank, Item
from oversight.core import protocols

log = logging.getLogger(__name__)


def new_token() -> str:
    # 32 bytes of randomness: a participant is addressed only by this, so it must be unguessable.
    return secrets.token_urlsafe(32)


class ModelEndpoint(models.Model):
    """Where a model is served: used by assisted conditions and by model-alone baselines."""

    class Kind(models.TextChoices):
        TGI = "tgi", "Text Generation Inference"
        OPENAI = "openai", "OpenAI-compatible (vLLM, llama.cpp, …)"
        SIMULATED = "simulated", "Simulated assistant (no model)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_url = models.URLField(blank=True)
    token = models.CharField(max_length=500, blank=True)
    model_label = models.CharField(max_length=200, blank=True, help_text="Model id sent to the server / shown")
    request_timeout_s = models.FloatField(default=60)
    max_concurrency = models.PositiveIntegerField(default=32)
    # Simulated assistant knobs: accuracy, seed, ttft_ms, tokens_per_s, sycophancy, quote_rate.
    simulation = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (simulated)" if self.kind == self.Kind.SIMULATED else self.name


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        CLOSED = "closed", "Closed"

    class Design(models.TextChoices):
        WITHIN = "within", "Within-subject (every participant does every condition)"
        BETWEEN = "between", "Between-subject (each participant does one condition)"

    class Order(models.TextChoices):
        FIXED = "fixed", "Fixed order (as listed)"
        COUNTERBALANCED = "counterbalanced", "Counterbalanced across participants"

    class ConfidenceFormat(models.TextChoices):
        LIKERT = "likert", "5-point scale (25/42/60/80/100%)"
        SLIDER = "slider", "Slider 5–95%"
        DISTRIBUTION = "distribution", "Probability over all options"

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="owned_studies"
    )
    consent_text = models.TextField(blank=True)
    instructions = models.TextField(blank=True, help_text="Shown after consent, before the first item")
    completion_message = models.TextField(blank=True)
    # The comprehension check on the instructions: [{"question", "options": [...], "answer": index}], empty for
    # none. Every answer must be right to go on; see `comprehension_max_attempts` for what happens otherwise.
    comprehension_questions = models.JSONField(default=list, blank=True)
    comprehension_max_attempts = models.PositiveSmallIntegerField(
        default=2,
        help_text="Complete attempts at the comprehension check before the participant is screened out "
        "(with the screen-out code). Prolific asks for at least 2.",
    )

    design = models.CharField(max_length=8, choices=Design.choices, default=Design.WITHIN)
    order = models.CharField(max_length=16, choices=Order.choices, default=Order.FIXED)
    # Each condition gets its own items, as in the paper.
    disjoint_samples = models.BooleanField(default=True)
    sample_seed = models.BigIntegerField(default=0)
    randomise_item_order = models.BooleanField(default=True)
    confidence_format = models.CharField(
        max_length=16, choices=ConfidenceFormat.choices, default=ConfidenceFormat.LIKERT
    )
    reveal_gold = models.BooleanField(default=False, help_text="Show the correct option after each answer")
    catch_pass_threshold = models.FloatField(default=1.0, help_text="Share of catch items to get right")

    # Recruitment.
    completion_code = models.CharField(max_length=64, blank=True)
    screenout_code = models.CharField(max_length=64, blank=True)
    prolific_completion_url = models.URLField(blank=True)
    allow_external_id_export = models.BooleanField(default=False)
    blind_collaborators = models.BooleanField(default=False)

    # Frozen at launch: the full design, the exact items per condition, prompts and endpoint settings.
    manifest = models.JSONField(null=True, blank=True)
    manifest_hash = models.CharField(max_length=64, blank=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    @property
    def is_live(self) -> bool:
        return self.status == self.Status.LIVE


class Collaborator(models.Model):
    class Role(models.TextChoices):
        EDITOR = "editor", "Editor"
        VIEWER = "viewer", "Viewer"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="collaborators")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collaborations")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.VIEWER)
    blind = models.BooleanField(default=False, help_text="Hide accuracy while the study runs")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "user"], name="collaborator_unique")]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) on {self.study}"


class Task(models.Model):
    """A bank, how many items to draw from it per condition, and the per-item time limit.

    A `scored` task is sampled per condition (disjointly if the study says so). A `practice` task's items are
    shown once, unscored, before the first condition; a `catch` task's items (attention checks) are spread
    over the participant's conditions at seeded positions and decide screen-outs.
    """

    class Role(models.TextChoices):
        SCORED = "scored", "Scored items"
        PRACTICE = "practice", "Practice items (not scored)"
        CATCH = "catch", "Catch items (attention checks)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="tasks")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.SCORED)
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="tasks")
    name = models.CharField(max_length=100)
    position = models.PositiveSmallIntegerField(default=0)
    sample_size = models.PositiveIntegerField(help_text="Items per condition (scored) or in total (practice, catch)")
    time_limit_s = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit")
    splits = models.JSONField(default=list, blank=True)
    subjects = models.JSONField(default=list, blank=True)
    difficult_only = models.BooleanField(default=False)
    # Disjoint samples of a passage bank: no story in two conditions (a participant who read a story with the
    # assistant would carry what they learnt into the unaided block).
    separate_stories = models.BooleanField(default=False)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class Condition(models.Model):
    class Kind(models.TextChoices):
        UNAIDED = "unaided", "Unaided"
        ASSISTED = "assisted", "Assisted"
        # Protocols beyond sandwiching (core/protocols.py, docs/protocols.md).
        CONSULTANCY = protocols.CONSULTANCY, "Consultancy"
        DEBATE = protocols.DEBATE, "Debate"
        OPEN_CONSULTANCY = protocols.OPEN_CONSULTANCY, "Open consultancy"
        OPEN_DEBATE = protocols.OPEN_DEBATE, "Open debate"
        INTERACTIVE_DEBATE = protocols.INTERACTIVE_DEBATE, "Interactive debate"
        EVIDENCE_ONLY = protocols.EVIDENCE_ONLY, "Evidence only"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conditions")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    name = models.CharField(max_length=100)
    position = models.PositiveSmallIntegerField(default=0)
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, null=True, blank=True)
    system_prompt = models.TextField(blank=True)
    sampling = models.JSONField(default=dict, blank=True, help_text="temperature, top_p, max_tokens, seed")
    inject_passage = models.BooleanField(default=True, help_text="QuALITY: the passage opens the model's context")
    send_question = models.BooleanField(default=False, help_text="Send question and options to the model")
    max_message_chars = models.PositiveIntegerField(default=2000)
    max_turns = models.PositiveIntegerField(default=40)
    # What the participant reads before this condition's block ("you may chat with the assistant" / "answer
    # alone, without outside resources"), as the paper's participants had per condition.
    instructions = models.TextField(blank=True, help_text="Shown before this condition's block of items")
    # Protocol kinds only: rounds, word limit, quote budget, … validated by `protocols.ProtocolSettings`.
    protocol = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_protocol(self) -> bool:
        return protocols.is_protocol(self.kind)

    def protocol_settings(self) -> protocols.ProtocolSettings:
        """The validated settings of a protocol condition (raises ProtocolSettingsError on a bad design)."""
        return protocols.ProtocolSettings.for_kind(self.kind, self.protocol)


class Advocate(models.Model):
    """A model that argues in a protocol condition: the consultant or evidence finder (position 0), or one of
    the two debaters' configurations (0 and 1). In a debate, configuration 0 speaks as Debater A and argues the
    first answer shown, unless an open debate's protagonist (configuration 0) chose the second."""

    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="advocates")
    position = models.PositiveSmallIntegerField(default=0)
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="+")
    system_prompt = models.TextField(blank=True, help_text="Empty: the platform's default prompt for the protocol")
    sampling = models.JSONField(default=dict, blank=True, help_text="temperature, top_p, max_tokens, seed")
    name = models.CharField(max_length=100, blank=True, help_text="A label for the analysis, e.g. the model's name")

    class Meta:
        ordering = ["condition", "position"]
        constraints = [models.UniqueConstraint(fields=["condition", "position"], name="advocate_unique_position")]

    def __str__(self) -> str:
        return self.name or f"Advocate {self.position} of {self.condition}"


class ConditionItem(models.Model):
    """The frozen sample: exactly which items a condition shows, fixed when the study goes live."""

    class Role(models.TextChoices):
        SCORED = "scored", "Scored"
        PRACTICE = "practice", "Practice"
        CATCH = "catch", "Catch"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="condition_items")
    # Null for practice and catch items, which belong to the study rather than one condition.
    condition = models.ForeignKey(
        Condition, on_delete=models.CASCADE, null=True, blank=True, related_name="condition_items"
    )
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="condition_items")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.SCORED)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["study", "condition", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "condition", "role", "item"], name="condition_item_unique")
        ]

    def __str__(self) -> str:
        return f"{self.role} item {self.item_id} #{self.position}"


class Transcript(models.Model):
    """What the judge of a protocol trial reads: the two answers in the order shown, who argues for which, and
    the turns (`assistant.TranscriptTurn`).

    Shared: one per condition × item, generated by self-play before launch and frozen in the manifest, so every
    judge of the item reads the same transcript (Khan et al.'s static conditions). Otherwise one per trial,
    generated while its judge watches (and questions, in interactive conditions).

    Never sent to a browser as is: `options`, `argues` and the item's gold answer together say which side is
    right. The judge's page renders it through `assistant.transcripts.judge_view`, which labels sides by
    position only.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Not started"
        RUNNING = "running", "Being generated"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"

    class EndedBy(models.TextChoices):
        ROUNDS = "rounds", "All rounds done"
        JUDGE = "judge", "Ended early by the judge"
        DEADLINE = "deadline", "The trial's time ran out"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="transcripts")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="transcripts")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    shared = models.BooleanField(default=False)
    protocol = models.CharField(max_length=24)  # the condition's kind when it was made
    # The two answers, as option indices of the item, in the order the judge sees them (A, B).
    options = models.JSONField(default=list)
    # Per speaking position (Debater A, Debater B; or the one consultant): the index into `options` it argues
    # for. Empty for evidence only, and for an open protocol until the model has chosen.
    argues = models.JSONField(default=list)
    # Per speaking position: which advocate configuration (Advocate.position) speaks there.
    speakers = models.JSONField(default=list)
    chosen_by_model = models.BooleanField(default=False)  # open protocols: `argues` is the model's choice
    seed = models.BigIntegerField(default=0)
    # The protocol settings and advocates it was made under (protocols.settings_hash).
    settings_hash = models.CharField(max_length=64)
    distractor_rule = models.CharField(max_length=80, blank=True)  # how the second answer was chosen
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rounds_done = models.PositiveSmallIntegerField(default=0)
    ended_by = models.CharField(max_length=10, choices=EndedBy.choices, blank=True)
    job = models.ForeignKey("Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="transcripts")
    # Shared transcripts: a hash of the finished public turns, written into the manifest at launch.
    content_hash = models.CharField(max_length=64, blank=True)
    frozen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["condition", "item", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["condition", "item", "settings_hash"],
                condition=models.Q(shared=True),
                name="transcript_shared_unique",
            )
        ]

    def __str__(self) -> str:
        return f"Transcript {self.pk} ({self.protocol}, item {self.item_id})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.COMPLETE, self.Status.FAILED}


class Participant(models.Model):
    """Someone, or a model, in the judge's seat. A `model` participant is made by a judge run (issue 17): its
    trials are ordinary trials, so exports, exclusions, the bootstrap and the transcript viewer read them unchanged,
    while the report keeps it apart from the people (it never pools the two kinds silently)."""

    class Kind(models.TextChoices):
        HUMAN = "human", "Person"
        MODEL = "model", "Model judge"

    class Status(models.TextChoices):
        CONSENT = "consent", "Not yet consented"
        DECLINED = "declined", "Declined consent"
        ACTIVE = "active", "In progress"
        COMPLETED = "completed", "Completed"
        SCREENED_OUT = "screened_out", "Screened out"
        RETURNED = "returned", "Returned / abandoned"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.HUMAN)
    # A model participant's record, as a chat message carries one: endpoint (id, name, kind), model id, sampling,
    # how it answers (letter log-probs or a stated probability) and the judge run that made it. Empty for people.
    model = models.JSONField(default=dict, blank=True)
    token = models.CharField(max_length=64, unique=True, default=new_token)
    # "prolific:<PID>", "mturk:<workerId>", "pid:<pid>"; empty for anonymous joins.
    external_id = models.CharField(max_length=300, blank=True)
    recruitment = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONSENT)
    condition_order = models.JSONField(default=list, blank=True)  # condition ids, in the order done
    order_seed = models.BigIntegerField(default=0)
    is_pilot = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Where the participant is between consent and the items (core.services.steps): each step is passed once.
    instructions_read_at = models.DateTimeField(null=True, blank=True)
    comprehension_attempts = models.PositiveSmallIntegerField(default=0)
    comprehension_passed_at = models.DateTimeField(null=True, blank=True)
    blocks_started = models.PositiveSmallIntegerField(default=0, help_text="Block introductions passed")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "external_id"],
                condition=~models.Q(external_id=""),
                name="participant_unique_external_id",
            )
        ]

    def __str__(self) -> str:
        return f"M{self.pk}" if self.kind == self.Kind.MODEL else f"P{self.pk}"

    @property
    def is_model(self) -> bool:
        return self.kind == self.Kind.MODEL


class Trial(models.Model):
    """One participant × one item. The deadline is stored the first time the item is shown."""

    class Status(models.TextChoices):
        PENDING = "pending", "Not shown yet"
        SHOWN = "shown", "In progress"
        ANSWERED = "answered", "Answered"
        TIMED_OUT = "timed_out", "Timed out"

    class SubmitKind(models.TextChoices):
        MANUAL = "manual", "Submitted by the participant"
        AUTO = "auto", "Auto-submitted by the page at the deadline"
        SERVER = "server", "Finalised by the server at the deadline"
        MODEL = "model", "Answered by a model judge"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="trials")
    condition = models.ForeignKey(Condition, on_delete=models.PROTECT, related_name="trials")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=8, choices=ConditionItem.Role.choices, default=ConditionItem.Role.SCORED)
    position = models.PositiveIntegerField()
    time_limit_s = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    shown_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The last selection the server saw (sent as it changes, so a closed browser still has it recorded).
    selected_choice = models.PositiveSmallIntegerField(null=True, blank=True)
    selected_confidence = models.FloatField(null=True, blank=True)
    choice = models.PositiveSmallIntegerField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # For the "probability over all options" format: the full distribution.
    distribution = models.JSONField(null=True, blank=True)
    correct = models.BooleanField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    submit_kind = models.CharField(max_length=8, choices=SubmitKind.choices, blank=True)
    # Protocol conditions' scored trials: what the judge reads (shared by the item's judges, or this trial's own).
    transcript = models.ForeignKey(Transcript, on_delete=models.PROTECT, null=True, blank=True, related_name="trials")

    class Meta:
        ordering = ["participant", "position"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "position"], name="trial_unique_position"),
            models.UniqueConstraint(fields=["participant", "condition", "item"], name="trial_unique_item"),
        ]
        indexes = [models.Index(fields=["status", "deadline_at"])]

    def __str__(self) -> str:
        return f"Trial {self.pk} ({self.participant}, #{self.position})"

    @property
    def is_final(self) -> bool:
        return self.status in {self.Status.ANSWERED, self.Status.TIMED_OUT}

    def is_expired(self, now) -> bool:
        return self.deadline_at is not None and now >= self.deadline_at

    def seconds_left(self, now) -> float | None:
        if self.deadline_at is None:
            return None
        return max(0.0, (self.deadline_at - now).total_seconds())

    def deadline_for(self, shown_at):
        return shown_at + timedelta(seconds=self.time_limit_s) if self.time_limit_s else None


class Event(models.Model):
    """Everything a researcher would want to replay, with the server's clock."""

    class Kind(models.TextChoices):
        JOINED = "joined"
        RESUMED = "resumed"
        CONSENTED = "consented"
        DECLINED = "declined"
        ITEM_SHOWN = "item_shown"
        SELECTION = "selection_changed"
        CONFIDENCE = "confidence_changed"
        SUBMITTED = "submitted"
        TIMED_OUT = "timed_out"
        LATE_POST = "late_post"
        PAGE_HIDDEN = "page_hidden"
        PAGE_VISIBLE = "page_visible"
        RECONNECT = "reconnect"
        COMPLETED = "completed"
        SCREENED_OUT = "screened_out"
        CHAT_SENT = "chat_sent"
        CHAT_RESET = "chat_reset"
        INSTRUCTIONS_READ = "instructions_read"
        COMPREHENSION_ATTEMPT = "comprehension_attempt"
        BLOCK_STARTED = "block_started"
        ANSWER_REFUSED = "answer_refused"
        JUDGE_QUESTION = "judge_question"
        DEBATE_ENDED = "debate_ended"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="events")
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%H:%M:%S}"


class Exclusion(models.Model):
    """A researcher's decision to leave a participant out of analysis. Reversible; never deleted."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="exclusions")
    reason = models.TextField()
    rule = models.CharField(max_length=32, blank=True, help_text="manual, catch, outlier, too_fast, incomplete")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Exclusion of {self.participant}: {self.reason[:40]}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class StudyLogEntry(models.Model):
    """One change to a study: who made it, when, and what changed (before → after). Append-only.

    Launch, close, design and recruitment edits, collaborators, exclusions, and every change to a model endpoint
    the study uses (an endpoint is shared by studies, so a change made for one study is recorded in the log of
    each study it reaches). A secret (an endpoint's token) is recorded as set, replaced or removed, never its
    value.
    """

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        DESIGN = "design", "Design"
        LAUNCHED = "launched", "Launched"
        CLOSED = "closed", "Closed"
        RECRUITMENT = "recruitment", "Recruitment"
        COLLABORATORS = "collaborators", "Collaborators"
        ENDPOINT = "endpoint", "Model endpoint"
        EXCLUSION = "exclusion", "Exclusion"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="log_entries")
    at = models.DateTimeField(default=timezone.now)
    # Kept when the account is deleted: the log says who it was.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    summary = models.CharField(max_length=300)
    # [{"field": name, "label": …, "before": shown text, "after": shown text}, …]
    changes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["study", "-at"])]
        verbose_name_plural = "study log entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name or 'system'}: {self.summary}"


NO_CONDITION = Q()  # `where=` of the lifecycle rules: nothing more than the rule's own condition


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobLifecycle:
    """The row rules of a long background action: queued → running → done | failed | cancelled, with progress.

    For a model with the fields `status` (JobStatus), `done`, `total`, `message`, `started_at` and `finished_at`:
    `Job` here, and `baselines.BaselineRun`, which adds a heartbeat, an executor token and cooperative
    cancellation because its runs are long, sliced and resumable. Every rule is one conditional UPDATE, so of
    two executors (a task delivered twice, a worker presumed dead coming back) exactly one acts, and repeating
    a rule changes nothing. `where` narrows a rule further (BaselineRun: "still claimed by this executor").
    """

    STATE_FIELDS = ("status", "done", "total", "message", "started_at", "finished_at")
    FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def update_if(self, condition: Q, **fields) -> bool:
        """Write `fields` if the row still meets `condition`; the instance then holds what was written."""
        if not type(self)._default_manager.filter(condition, pk=self.pk).update(**fields):
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True

    def take(self, *, stale: Q, where: Q = NO_CONDITION, **fields) -> bool:
        """Queued, or running but `stale` (its executor died) → running. False when another executor has it or it
        has finished: the caller leaves it alone, which is what makes its task safe to run twice."""
        claimable = Q(status=JobStatus.QUEUED) | Q(stale, status=JobStatus.RUNNING)
        return self.update_if(claimable & where, status=JobStatus.RUNNING, **fields)

    def set_progress(self, *, where: Q = NO_CONDITION, **fields) -> bool:
        """Store progress (`done`, `total`, `message`, …) while running; a late report after the end is dropped."""
        return self.update_if(Q(where, status=JobStatus.RUNNING), **fields)

    def finish(
        self, status: str, *, message: str = "", now: datetime | None = None, where: Q = NO_CONDITION, **fields
    ) -> bool:
        """Running → done, failed or cancelled, once."""
        if status not in self.FINISHED:
            raise ValueError(f"{status!r} does not finish a job")
        return self.update_if(
            Q(where, status=JobStatus.RUNNING),
            status=status,
            message=message,
            finished_at=now or timezone.now(),
            **fields,
        )

    def fail(self, message: str, *, now: datetime | None = None, where: Q = NO_CONDITION, **fields) -> bool:
        """Running → failed; or queued → failed, for a job that could not be handed to a worker at all."""
        return self.update_if(
            Q(where, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]),
            status=JobStatus.FAILED,
            message=message,
            finished_at=now or timezone.now(),
            **fields,
        )

    def fail_unexpectedly(self, exc: BaseException) -> bool:
        """Fail on an error nobody planned for. Call it in the `except` block: the traceback goes to the log, and
        the researcher gets the error's type only (its text may hold server paths or data)."""
        log.exception("%s failed", self)
        return self.fail(f"Unexpected error ({type(exc).__name__}); see the server log.")

    def cancel(
        self, *, message: str = "Cancelled before it started", now: datetime | None = None, where: Q = NO_CONDITION
    ) -> bool:
        """Queued → cancelled: a job nobody executes yet stops at once, and no executor can claim it after this.
        A running one is not stopped here (BaselineRun asks its executor to stop with `cancel_requested`)."""
        return self.update_if(
            Q(where, status=JobStatus.QUEUED),
            status=JobStatus.CANCELLED,
            message=message,
            finished_at=now or timezone.now(),
        )


class ResumableJob(JobLifecycle):
    """The rules of a long, resumable run on top of `JobLifecycle` (baselines.BaselineRun, judges.JudgeRun): an
    executor holds the run by a random token (`claimed_by`) and proves it alive with `heartbeat_at`; a run whose
    heartbeat is older than STALE_AFTER_S may be claimed by another executor (its own died); a running run is
    stopped cooperatively (`cancel_requested`), between two units of work, keeping what it has written."""

    STALE_AFTER_S = 60.0
    CANCELLED_BEFORE_START = "cancelled before it started"

    def claim(self, token: str, *, now: datetime | None = None) -> bool:
        """Take the run for the executor `token`: queued, or running with a stale heartbeat. A queued run whose
        cancel arrived before anyone claimed it is cancelled instead."""
        now = now or timezone.now()
        stale = Q(heartbeat_at__lt=now - timedelta(seconds=self.STALE_AFTER_S)) | Q(heartbeat_at__isnull=True)
        if self.take(stale=stale, where=Q(cancel_requested=False), claimed_by=token, heartbeat_at=now, message=""):
            self.update_if(Q(started_at__isnull=True), started_at=now)  # a resumed run keeps its first start
            return True
        self.cancel(where=Q(cancel_requested=True), message=self.CANCELLED_BEFORE_START, now=now)
        return False

    def request_cancel(self, *, now: datetime | None = None) -> None:
        """Ask the executor to stop after the unit of work in hand; a run nobody executes yet is cancelled at once."""
        self.update_if(Q(), cancel_requested=True)
        self.cancel(message=self.CANCELLED_BEFORE_START, now=now)


class Job(JobLifecycle, models.Model):
    """One pattern for every long researcher action: a service creates the job and enqueues its task after commit
    (`core.enqueue`); the task claims the row, reports progress and finishes it (`JobLifecycle`); a status
    partial polls the row."""

    class Kind(models.TextChoices):
        IMPORT = "import", "Bank import"
        EXPORT = "export", "Data export"
        BASELINE = "baseline", "Model baseline"
        SELFPLAY = "selfplay", "Self-play transcripts"

    Status = JobStatus

    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs")
    params = models.JSONField(default=dict, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job {self.pk} ({self.status})"

    def claim(self, *, stale_after: timedelta, now: datetime | None = None) -> bool:
        """Take the job for the task about to run it (see `take`). A job has no heartbeat: one still running
        `stale_after` after it started belongs to a worker that died (acks_late delivered its task again)."""
        now = now or timezone.now()
        return self.take(stale=Q(started_at__lt=now - stale_after), started_at=now, message="Starting", done=0, total=0)
