"""Chat workflows (sync, transactional): send, reset, retry, the model's context, finalising a reply."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from oversight.assistant import lease, live
from oversight.assistant.backends import GenerationRequest, request_for_endpoint
from oversight.assistant.models import ChatMessage
from oversight.assistant.pages import chat_group
from oversight.assistant.quotes import find_quotes
from oversight.assistant.render import render_markdown
from oversight.assistant.simulated import SimulatedItem
from oversight.core import broadcast, counters
from oversight.core.models import Condition, Event, Trial
from oversight.core.services.monitor import monitor_changed

RATE_LIMIT_MESSAGES = 12  # per participant per minute: generous for a person, a wall for a script
RATE_LIMIT_WINDOW_S = 60
# A streaming reply is dead when its heartbeat is DEAD_AFTER_S old and its process holds no lease (lease.py),
# or, whatever the lease says, when its heartbeat is STALE_AFTER_S old (a process alive but wedged, or a reply
# from before owners were recorded).
DEAD_AFTER_S = 2
STALE_AFTER_S = 15
STREAMING = ChatMessage.Status.STREAMING
_SURROGATE = re.compile("[\ud800-\udfff]")


class ChatRejected(Exception):
    """A chat action refused with a message the participant can act on."""


CHAT_TRIAL_FIELDS = (
    "status",
    "deadline_at",
    "item",
    "condition",
    "participant",
    "participant__kind",
    "participant__study",
    "participant__study__status",
    "condition__kind",
    "condition__endpoint",
    "condition__system_prompt",
    "condition__sampling",
    "condition__max_message_chars",
    "condition__max_turns",
    "condition__inject_passage",
    "condition__send_question",
    *(
        f"condition__endpoint__{f}"
        for f in ("kind", "name", "base_url", "token", "model_label", "request_timeout_s", "simulation")
    ),
    "condition__endpoint__max_concurrency",
    *(f"item__{f}" for f in ("bank", "external_id", "text", "options", "gold_index", "passage")),
    "item__passage__text",
)


def _locked_trial(trial_id: int) -> Trial:
    return (
        # of=self: PostgreSQL cannot lock the nullable side of the outer joins (endpoint, passage).
        Trial.objects.select_for_update(of=("self",))
        .select_related("condition", "condition__endpoint", "item", "item__passage", "participant__study")
        # Only what the chat reads (a field left out would cost a query of its own, not an error): a send's
        # cost is the platform's time to first token, and building and reading all ~140 columns of these six
        # rows was a third of it (bench/README.md, "Chat streaming").
        .only(*CHAT_TRIAL_FIELDS)
        .get(pk=trial_id)
    )


def chat_open(trial: Trial, now) -> bool:
    return trial.status == Trial.Status.SHOWN and not trial.is_expired(now) and trial.participant.study.is_live


def _check_open(trial: Trial, now) -> None:
    if trial.condition.kind != Condition.Kind.ASSISTED:
        raise ChatRejected("There is no assistant for this question.")
    if not chat_open(trial, now):
        raise ChatRejected("Time is up for this question: the chat is now read-only.")


def clean_text(text: str) -> tuple[str, int]:
    """The text with NUL characters removed (PostgreSQL cannot store them in text) and lone surrogates replaced
    (they cannot be encoded), and how many NULs were removed."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", "")), text.count("\x00")


def reply_is_dead(message: ChatMessage, now, alive: set[str] | None = None) -> bool:
    """Whether a streaming reply's process is gone. `alive`: the owners known to hold a lease, if already asked."""
    beat = message.heartbeat_at or message.created_at
    silent_s = (now - beat).total_seconds()
    if silent_s < DEAD_AFTER_S:
        return False
    if silent_s >= STALE_AFTER_S:
        return True
    if not message.owner:
        return False
    if message.owner == lease.PROCESS_ID:  # ours: dead if its task is gone
        return message.pk not in lease.local_replies
    if alive is None:
        alive = lease.alive({message.owner})
    return alive is not None and message.owner not in alive


@dataclass(frozen=True)
class ReplyJob:
    """A reply ready to generate: its placeholder and the exact request, read in the transaction that made it.

    Handing this to the generation task (instead of a message id to load) saves a second trip through the web
    process's one database thread per message, which under a burst of sends was most of the time to first token;
    and what it carries lets the reply be finalised without reading anything back (generation_end).
    """

    message_id: int
    seq: int
    created_at: datetime
    trial_id: int
    study_id: int
    participant_id: int
    deadline_at: datetime | None
    endpoint_id: int
    endpoint_name: str
    max_concurrency: int
    request: GenerationRequest


@dataclass(frozen=True)
class Sent:
    """What a chat action stored: the messages' payloads to publish, the reply to start (if any), a note for
    the sender alone (e.g. that characters were removed from the message), and whether messages are still
    queued behind a streaming reply."""

    payloads: list[dict]
    job: ReplyJob | None
    notice: str = ""
    waiting: bool = False


class _TrialChat:
    """One trial's chat inside a chat action's transaction: the trial locked and its messages read once, then
    changed in place; what changed is collected for publishing after the commit.

    Every action first ends a reply whose process died (so a send is not queued behind a reply that will
    never end) and, where an action may, answers the messages queued behind the reply that ended.
    """

    def __init__(self, trial_id: int, now) -> None:
        self.now = now
        self.trial = _locked_trial(trial_id)
        # One read serves the resend check, the limits, the next seq and the model's context: under a burst of
        # sends a send's cost is the platform's time to first token (bench/README.md).
        self.history: list[ChatMessage] = list(self.trial.messages.order_by("seq"))
        self.payloads: list[dict] = []
        self.job: ReplyJob | None = None
        self._end_dead_reply()

    @property
    def streaming(self) -> ChatMessage | None:
        return next((m for m in self.history if m.role == ChatMessage.Role.ASSISTANT and m.status == STREAMING), None)

    @property
    def queued(self) -> list[ChatMessage]:
        return [m for m in self.history if m.role == ChatMessage.Role.USER and m.status == ChatMessage.Status.QUEUED]

    @property
    def next_seq(self) -> int:
        return (self.history[-1].seq if self.history else 0) + 1

    def _replace(self, message: ChatMessage) -> None:
        self.history = [message if m.pk == message.pk else m for m in self.history]
        self.payloads.append(message_payload(message))

    def _end_dead_reply(self) -> None:
        reply = self.streaming
        if reply is not None and reply_is_dead(reply, self.now):
            final = _interrupt(reply, self.now)
            if final is not None:
                self._replace(final)

    def finalise(self, reply: ChatMessage, *, status: str, **fields) -> None:
        final = generation_finish(message_id=reply.pk, text=text_so_far(reply), status=status, now=self.now, **fields)
        if final is not None:
            self._replace(final)

    def add(self, message: ChatMessage) -> None:
        self.history.append(message)
        self.payloads.append(message_payload(message))

    def answer(self) -> None:
        """Start a reply to the last participant message, which answers every message queued before it too."""
        queued = self.queued
        if queued:
            ChatMessage.objects.filter(pk__in=[m.pk for m in queued]).update(status=ChatMessage.Status.COMPLETE)
            for message in queued:
                message.status = ChatMessage.Status.COMPLETE
                self.payloads.append(message_payload(message))
        last_user = next(m for m in reversed(self.history) if m.role == ChatMessage.Role.USER)
        self.reply(reply_to=last_user)

    def answer_queued(self) -> None:
        """Answer the queued messages if nothing is streaming and the chat is still open; else leave them."""
        if self.queued and self.streaming is None and chat_open(self.trial, self.now):
            self.answer()

    def reply(self, *, reply_to: ChatMessage | None) -> None:
        placeholder, self.job = _placeholder(self.trial, reply_to, self.now, history=self.history)
        self.add(placeholder)
        monitor_changed(study_id=self.trial.participant.study_id, participant_id=self.trial.participant_id)

    def sent(self, notice: str = "") -> Sent:
        waiting = bool(self.queued) and self.streaming is not None and chat_open(self.trial, self.now)
        return Sent(self.payloads, self.job, notice, waiting)


def _placeholder(
    trial: Trial, reply_to: ChatMessage | None, now, history: list[ChatMessage]
) -> tuple[ChatMessage, ReplyJob]:
    """Store the reply's placeholder with the context the model will get, and build the request for it.

    `history` is every message of the trial so far, read in this transaction.
    """
    condition = trial.condition
    endpoint = condition.endpoint
    seq = history[-1].seq + 1 if history else 1
    messages, context = context_before(trial, seq, earlier=history)
    placeholder = ChatMessage.objects.create(
        trial=trial,
        seq=seq,
        role=ChatMessage.Role.ASSISTANT,
        status=STREAMING,
        reply_to=reply_to,
        endpoint=endpoint,
        model_id=(endpoint.model_label or endpoint.name) if endpoint else "",
        sampling=condition.sampling,
        context=context,
        owner=lease.PROCESS_ID,
        created_at=now,
        heartbeat_at=now,
    )
    item = trial.item
    request = request_for_endpoint(
        endpoint,
        messages=messages,
        sampling=dict(condition.sampling or {}),
        item=SimulatedItem(
            item_key=f"{item.bank_id}:{item.external_id}",
            question=item.text,
            options=item.options,
            gold_index=item.gold_index,
            passage=item.passage.text if item.passage_id else None,
        ),
    )
    job = ReplyJob(
        message_id=placeholder.pk,
        seq=seq,
        created_at=now,
        trial_id=trial.pk,
        study_id=trial.participant.study_id,
        participant_id=trial.participant_id,
        deadline_at=trial.deadline_at,
        endpoint_id=endpoint.pk,
        endpoint_name=endpoint.name,
        max_concurrency=endpoint.max_concurrency,
        request=request,
    )
    return placeholder, job


def chat_send(*, trial_id: int, text: str, client_id: str = "", now=None) -> Sent:
    """Persist the participant's message and start the reply to it, or refuse with a reason.

    A message sent while a reply is streaming is stored as queued and answered when that reply ends (the page
    may be refreshed meanwhile: the message is on the server, not in the page). A resend with a known client_id
    publishes the stored message again and starts nothing.
    """
    now = now or timezone.now()
    text, removed = clean_text(text or "")
    text = text.strip()
    client_id = clean_text(client_id)[0][:64]
    try:
        with transaction.atomic():
            chat = _TrialChat(trial_id, now)
            trial = chat.trial
            if client_id and (known := next((m for m in chat.history if m.client_id == client_id), None)):
                return Sent([message_payload(known)], None)
            _check_open(trial, now)
            condition = trial.condition
            if not text:
                raise ChatRejected("Type a message first.")
            if len(text) > condition.max_message_chars:
                raise ChatRejected(
                    f"Your message is {len(text):,} characters long; the limit is {condition.max_message_chars:,}. "
                    "Please shorten it."
                )
            turns = sum(m.role == ChatMessage.Role.USER for m in chat.history)
            if turns >= condition.max_turns:
                raise ChatRejected(f"You have used all {condition.max_turns} messages for this question.")
            if trial.participant.kind != trial.participant.Kind.MODEL:
                # The limit stops a script posing as a person; a model judge is the platform's own (issue 17).
                _rate_limit(trial.participant_id)
            queued = chat.streaming is not None
            user = ChatMessage.objects.create(
                trial=trial,
                seq=chat.next_seq,
                role=ChatMessage.Role.USER,
                status=ChatMessage.Status.QUEUED if queued else ChatMessage.Status.COMPLETE,
                content=text,
                client_id=client_id,
                created_at=now,
            )
            chat.add(user)
            data = {"message_id": user.pk, "chars": len(text)}
            if queued:
                data["queued"] = True
            if removed:
                data["nul_removed"] = removed
            Event.objects.create(
                participant_id=trial.participant_id, trial=trial, kind=Event.Kind.CHAT_SENT, at=now, data=data
            )
            if not queued:
                chat.answer()
            notice = ""
            if removed:
                notice = (
                    f"{removed:,} invisible NUL character{'s were' if removed > 1 else ' was'} removed from your "
                    "message; the rest was sent as you wrote it."
                )
            return chat.sent(notice)
    except IntegrityError:
        # The same client_id raced in twice: the first one won.
        return Sent([message_payload(ChatMessage.objects.get(trial_id=trial_id, client_id=client_id))], None)


def _rate_limit(participant_id: int) -> None:
    if counters.hit(f"chat:rate:{participant_id}", RATE_LIMIT_WINDOW_S) > RATE_LIMIT_MESSAGES:
        raise ChatRejected("You are sending messages very quickly. Please wait a moment and try again.")


@transaction.atomic
def chat_reset(*, trial_id: int, now=None) -> Sent:
    """Empty the model's context from here on; the participant still sees everything before."""
    now = now or timezone.now()
    chat = _TrialChat(trial_id, now)
    trial = chat.trial
    _check_open(trial, now)
    if chat.streaming or chat.queued:
        raise ChatRejected("Please wait for the assistant to finish before resetting.")
    if not chat.history or chat.history[-1].role == ChatMessage.Role.RESET:
        raise ChatRejected("The conversation is already fresh.")
    reset = ChatMessage.objects.create(trial=trial, seq=chat.next_seq, role=ChatMessage.Role.RESET, created_at=now)
    chat.add(reset)
    Event.objects.create(
        participant_id=trial.participant_id,
        trial=trial,
        kind=Event.Kind.CHAT_RESET,
        at=now,
        data={"message_id": reset.pk},
    )
    return chat.sent()


RETRYABLE = (ChatMessage.Status.FAILED, ChatMessage.Status.CANCELLED, ChatMessage.Status.INTERRUPTED)


@transaction.atomic
def chat_retry(*, trial_id: int, now=None) -> Sent:
    """Ask again after a failed, cancelled or interrupted reply."""
    now = now or timezone.now()
    chat = _TrialChat(trial_id, now)
    _check_open(chat.trial, now)
    if chat.streaming:
        raise ChatRejected("Please wait for the assistant to finish its reply.")
    last = chat.history[-1] if chat.history else None
    if last is None or last.role != ChatMessage.Role.ASSISTANT or last.status not in RETRYABLE:
        raise ChatRejected("There is nothing to retry.")
    chat.reply(reply_to=last.reply_to)
    return chat.sent()


def chat_stop(*, trial_id: int, now=None) -> Sent:
    """End the trial's streaming reply as `stopped`, keeping the text the pages were shown, and answer what was
    queued behind it. For a reply generated by another process (or none): the process generating a reply stops
    its own (generation.stop_local), and the other process notices at its next flush and cancels its request.
    A reply that already ended is left as it is.
    """
    now = now or timezone.now()
    with transaction.atomic():
        chat = _TrialChat(trial_id, now)
        reply = chat.streaming
        if reply is not None:
            chat.finalise(reply, status=ChatMessage.Status.STOPPED)
            chat.answer_queued()
        return chat.sent()


def chat_dequeue(*, trial_id: int, now=None) -> Sent:
    """Answer the messages queued behind a reply that has ended (if the chat is still open): the generating task
    calls it when its reply ends, and a page's hello calls it for a reply that ended elsewhere."""
    now = now or timezone.now()
    # Nearly always there is nothing to do: look without locking first (this runs at every reply's end and
    # every page's hello), and lock the trial only when a queued message or a dead reply needs acting on.
    unsettled = list(
        ChatMessage.objects.filter(trial_id=trial_id, status__in=(STREAMING, ChatMessage.Status.QUEUED)).only(
            "pk", "status", "owner", "heartbeat_at", "created_at"
        )
    )
    reply = next((m for m in unsettled if m.status == STREAMING), None)
    queued = any(m.status == ChatMessage.Status.QUEUED for m in unsettled)
    if not (reply and reply_is_dead(reply, now)) and (not queued or reply):
        return Sent([], None, waiting=queued)
    with transaction.atomic():
        chat = _TrialChat(trial_id, now)
        chat.answer_queued()
        return chat.sent()


def passage_turn(passage_text: str) -> str:
    return f"Here is a story:\n\n{passage_text.strip()}"


def context_before(trial: Trial, seq: int, earlier: list[ChatMessage] | None = None) -> tuple[list[dict], dict]:
    """The model's context for a reply at `seq`, and the record of it stored with the reply.

    Only turns after the last reset count. Failed, cancelled or interrupted replies are left out (the
    participant saw an error, not an answer); a reply the participant stopped counts with the text they saw.
    Participant messages with no reply between them (queued behind a reply, or sent after a failed one) are
    merged into one turn, and so is the passage (QuALITY), which opens the first user turn: many chat templates
    insist that user and assistant turns alternate.
    """
    condition = trial.condition
    if earlier is None:
        earlier = list(trial.messages.filter(seq__lt=seq).order_by("seq"))
    else:
        earlier = [m for m in earlier if m.seq < seq]
    resets = [m.seq for m in earlier if m.role == ChatMessage.Role.RESET]
    since = resets[-1] if resets else 0
    turns = [
        m
        for m in earlier
        if m.seq > since
        and (
            m.role == ChatMessage.Role.USER
            or (m.role == ChatMessage.Role.ASSISTANT and m.status == ChatMessage.Status.COMPLETE)
            or (m.role == ChatMessage.Role.ASSISTANT and m.status == ChatMessage.Status.STOPPED and m.content)
        )
    ]
    messages = []
    if condition.system_prompt:
        messages.append({"role": "system", "content": condition.system_prompt})
    prefix_parts = []
    item = trial.item
    passage_injected = bool(condition.inject_passage and item.passage_id)
    if passage_injected:
        prefix_parts.append(passage_turn(item.passage.text))
    if condition.send_question:
        options = "\n".join(f"({letter}) {text}" for letter, text in zip(item.letters, item.options, strict=True))
        prefix_parts.append(f"Question: {item.text}\n{options}")
    first_user = True
    for m in turns:
        content = m.content
        if m.role == ChatMessage.Role.USER and first_user:
            first_user = False
            if prefix_parts:
                content = "\n\n".join([*prefix_parts, content])
        if m.role == ChatMessage.Role.USER and len(messages) > 1 and messages[-1]["role"] == m.role:
            messages[-1]["content"] += "\n\n" + content
        else:
            messages.append({"role": m.role, "content": content})
    return messages, {
        "message_ids": [m.pk for m in turns],
        "passage_injected": passage_injected,
        "question_sent": bool(condition.send_question),
        "since_reset_seq": since,
    }


def message_payload(message: ChatMessage, passage_text: str | None = None, live_text: str | None = None) -> dict:
    """What the page renders. Model text is only ever sent as sanitised HTML (or as plain text while streaming)."""
    payload = {
        "id": message.pk,
        "seq": message.seq,
        "role": message.role,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }
    if message.role == ChatMessage.Role.USER:
        payload["text"] = message.content
        payload["client_id"] = message.client_id  # the sending page clears its box when it sees its message stored
    elif message.role == ChatMessage.Role.ASSISTANT:
        if message.status == STREAMING:
            payload["text"] = (
                live_text if live_text is not None and len(live_text) >= len(message.content) else message.content
            )
        else:
            payload["html"] = render_markdown(message.content, quotes=message.quotes)
            payload["quotes"] = message.quotes
        if message.status in RETRYABLE:
            payload["notice"] = failure_notice(message)
            payload["retry"] = True
        elif message.status == ChatMessage.Status.STOPPED:
            payload["notice"] = "You stopped this reply."
    return payload


def failure_notice(message: ChatMessage) -> str:
    from oversight.assistant.backends import HUMAN_MESSAGES

    if message.status == ChatMessage.Status.INTERRUPTED:
        return "The reply was interrupted. You can ask again."
    if message.status == ChatMessage.Status.CANCELLED:
        return (
            "The reply was stopped because time ran out."
            if message.error_kind == "deadline"
            else "The reply was stopped."
        )
    return HUMAN_MESSAGES.get(message.error_kind, HUMAN_MESSAGES["generation"]) + " You can try again."


def chat_history(trial: Trial) -> list[dict]:
    messages = list(trial.messages.order_by("seq"))
    live_texts = live.get_many([m.pk for m in messages if m.status == STREAMING])
    return [message_payload(m, live_text=live_texts.get(m.pk)) for m in messages]


def text_so_far(message: ChatMessage) -> str:
    """A streaming reply's longest known text: the live text of its last frame, or its last flush."""
    so_far = live.get(message.pk)
    return so_far if so_far is not None and len(so_far) > len(message.content) else message.content


def generation_flush(*, texts: dict[int, str | None], now=None) -> set[int]:
    """Persist growing replies and prove their process is alive, in one transaction for the whole process.

    `texts` maps each reply in flight to its text so far, or to None when nothing new arrived (a heartbeat
    only: a slow first token must not look like a dead process). Final fields are never touched, and a reply
    already finalised is left alone. Returns the replies among them that are no longer streaming: ended by
    someone else (stopped from a page on another process), so their generation can stop too.
    """
    now = now or timezone.now()
    grown = [(text, pk) for pk, text in texts.items() if text is not None]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A flush is a checkpoint of text the final write repeats: it need not wait for the WAL to reach disk
            # (a PostgreSQL crash could lose the last half second of partial text, never a finished reply).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        if grown:
            # One executemany for all replies: per-row ORM updates cost a round of query building each.
            table = connection.ops.quote_name(ChatMessage._meta.db_table)
            stamp = connection.ops.adapt_datetimefield_value(now)
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {table} SET content = %s, heartbeat_at = %s WHERE id = %s AND status = %s",
                    [(text, stamp, pk, STREAMING) for text, pk in grown],
                )
        idle = [pk for pk, text in texts.items() if text is None]
        if idle:
            ChatMessage.objects.filter(pk__in=idle, status=STREAMING).update(heartbeat_at=now)
        ended = ChatMessage.objects.filter(pk__in=list(texts)).exclude(status=STREAMING)
        return set(ended.values_list("pk", flat=True))


def generation_finish(*, message_id: int, text: str, status: str, now=None, **fields) -> ChatMessage | None:
    """Finalise a reply with its metrics; a reply already finalised (e.g. marked interrupted) is left alone."""
    now = now or timezone.now()
    with transaction.atomic():
        message = (
            ChatMessage.objects.select_for_update(of=("self",))
            .select_related("trial__item__passage", "trial__participant")
            .filter(pk=message_id)
            .first()
        )
        if message is None or message.status != STREAMING:
            return None
        passage = message.trial.item.passage
        message.content = text
        message.status = status
        message.finished_at = now
        message.quotes = find_quotes(text, passage.text) if passage and text else []
        for key, value in fields.items():
            setattr(message, key, value)
        message.save()
        monitor_changed(study_id=message.trial.participant.study_id, participant_id=message.trial.participant_id)
        # Once final for good: inside a chat action that is then refused, the reply is still streaming.
        transaction.on_commit(lambda: live.delete(message_id))
    return message


def generation_end(*, job: ReplyJob, text: str, status: str, now=None, **fields) -> tuple[dict | None, Sent]:
    """The generating task's last trip: finalise the reply, render it, and answer what was queued behind it.

    One conditional UPDATE from what the job already knows (a reply ended elsewhere meanwhile, e.g. stopped from
    another process, is left alone). Returns the final reply's payload (None if it had been ended elsewhere)
    and what the dequeue sent.
    """
    now = now or timezone.now()
    passage = job.request.item.passage if job.request.item else None
    quotes = find_quotes(text, passage) if passage and text else []
    with transaction.atomic():
        ended = ChatMessage.objects.filter(pk=job.message_id, status=STREAMING).update(
            content=text, status=status, finished_at=now, quotes=quotes, **fields
        )
        if ended:
            monitor_changed(study_id=job.study_id, participant_id=job.participant_id)
    payload = None
    if ended:
        live.delete(job.message_id)
        final = ChatMessage(
            pk=job.message_id,
            trial_id=job.trial_id,
            seq=job.seq,
            role=ChatMessage.Role.ASSISTANT,
            created_at=job.created_at,
            content=text,
            status=status,
            quotes=quotes,
            **fields,
        )
        payload = message_payload(final)
    # Nothing is queued after nearly every reply: one plain query says so (the ORM's took a third of the trip).
    table = connection.ops.quote_name(ChatMessage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE trial_id = %s AND status = %s LIMIT 1",
            [job.trial_id, ChatMessage.Status.QUEUED],
        )
        queued = cursor.fetchone() is not None
    return payload, chat_dequeue(trial_id=job.trial_id, now=now) if queued else Sent([], None)


def _interrupt(message: ChatMessage, now) -> ChatMessage | None:
    return generation_finish(
        message_id=message.pk,
        text=text_so_far(message),
        status=ChatMessage.Status.INTERRUPTED,
        now=now,
        error_kind="interrupted",
        error="no heartbeat from the generating process",
    )


def interrupt_stale_generations(*, now=None, trial_id: int | None = None) -> int:
    """Replies whose process died mid-stream: keep the partial text, mark them interrupted, tell the pages."""
    now = now or timezone.now()
    silent = ChatMessage.objects.filter(status=STREAMING, heartbeat_at__lt=now - timedelta(seconds=DEAD_AFTER_S))
    if trial_id is not None:
        silent = silent.filter(trial_id=trial_id)
    # Only what the rule reads: under load every streaming reply's heartbeat can be late (the sweep runs every
    # second), and those this process is generating are alive whatever it says.
    silent = [
        m
        for m in silent.only("pk", "trial_id", "owner", "heartbeat_at", "created_at")
        if not (m.owner == lease.PROCESS_ID and m.pk in lease.local_replies)
    ]
    if not silent:
        return 0
    others = {m.owner for m in silent if m.owner and m.owner != lease.PROCESS_ID}
    alive = lease.alive(others) if others else set()
    count = 0
    for message in silent:
        if not reply_is_dead(message, now, alive=alive):
            continue
        final = _interrupt(message, now)
        if final is not None:
            count += 1
            _announce(final)
    return count


def _announce(message: ChatMessage) -> None:
    """Tell pages watching the trial that a reply was finalised outside its generating task."""
    broadcast.group_send(
        chat_group(message.trial_id),
        {"type": "chat.message", "message": message_payload(message)},
        what="interrupted reply",
    )
