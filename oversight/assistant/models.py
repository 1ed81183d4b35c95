from django.db import models
from django.utils import timezone


class ModelRecord(models.Model):
    """What produced a generated text and how it went: a chat reply's and a protocol advocate's turn's record."""

    endpoint = models.ForeignKey("core.ModelEndpoint", on_delete=models.SET_NULL, null=True, blank=True)
    model_id = models.CharField(max_length=200, blank=True)
    sampling = models.JSONField(default=dict, blank=True)
    # Ids of the messages or turns that were in the model's context, and what else it was given.
    context = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    quotes = models.JSONField(default=list, blank=True)

    # The web process generating a streaming text (assistant.lease.PROCESS_ID): when its lease lapses the text is
    # known dead within seconds instead of after the heartbeat's 15 s.
    owner = models.CharField(max_length=40, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class ChatMessage(ModelRecord):
    """One turn of a trial's chat, persisted before it is shown.

    A participant's message is stored before generation starts; the assistant's reply is stored as a
    placeholder, grows while it streams (flushed every half second) and is finalised with its metrics.
    A message sent while a reply is streaming is stored at once as `queued` and answered when that reply
    ends. `reset` rows mark where the model's context was emptied: the history stays visible, the model forgets.
    """

    class Role(models.TextChoices):
        USER = "user", "Participant"
        ASSISTANT = "assistant", "Assistant"
        RESET = "reset", "Reset"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        # A participant's message waiting for the reply before it to end; `complete` once a reply answers it.
        QUEUED = "queued", "Queued (not yet sent to the model)"
        STOPPED = "stopped", "Stopped by the participant"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted (server stopped mid-reply)"

    trial = models.ForeignKey("core.Trial", on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    content = models.TextField(blank=True)
    # Sent by the page with each message so a resend after a dropped socket is not stored twice.
    client_id = models.CharField(max_length=64, blank=True)
    reply_to = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["trial", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "seq"], name="chat_message_seq_unique"),
            models.UniqueConstraint(
                fields=["trial", "client_id"], condition=~models.Q(client_id=""), name="chat_message_client_id_unique"
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.role} #{self.seq} of trial {self.trial_id}"


class TranscriptTurn(ModelRecord):
    """One turn of a protocol transcript (`core.Transcript`), persisted before it is shown, like a chat message.

    An advocate's turn is stored as a placeholder, grows while it streams (`raw`, flushed every half second) and
    is finalised with the model's record: `content` is what the judge and the other side see (the scratchpad
    removed, cut at the word limit), `private` the scratchpad, never shown to anyone but the researcher. A
    judge's question is a turn too, and an open protocol's model states its choice of answer in a private
    `choice` turn before arguing.
    """

    class Role(models.TextChoices):
        ADVOCATE = "advocate", "Advocate"
        JUDGE = "judge", "Judge"
        CHOICE = "choice", "The model's choice of answer (open protocols)"

    Status = ChatMessage.Status

    transcript = models.ForeignKey("core.Transcript", on_delete=models.CASCADE, related_name="turns")
    seq = models.PositiveIntegerField()
    round = models.PositiveSmallIntegerField()  # 1-based; a judge's question belongs to the round it precedes
    role = models.CharField(max_length=10, choices=Role.choices)
    position = models.PositiveSmallIntegerField(null=True, blank=True)  # speaking position: 0 = A / consultant
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    raw = models.TextField(blank=True)  # the model's whole output (or the judge's text)
    content = models.TextField(blank=True)  # the public part
    private = models.TextField(blank=True)  # the scratchpad: stored, never shown to the judge or the other side
    words = models.PositiveIntegerField(default=0)
    truncated = models.BooleanField(default=False)  # the public part was cut at the word limit
    client_id = models.CharField(max_length=64, blank=True)
    prompt_hash = models.CharField(max_length=64, blank=True)  # sha256 of the exact messages sent

    class Meta:
        ordering = ["transcript", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["transcript", "seq"], name="transcript_turn_seq_unique"),
            models.UniqueConstraint(
                fields=["transcript", "client_id"],
                condition=~models.Q(client_id=""),
                name="transcript_turn_client_id_unique",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.role} turn #{self.seq} of transcript {self.transcript_id}"
