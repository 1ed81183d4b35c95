"""Chat workflows (sync, transactional): send, reset, retry, the model's context, finalising a reply."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from oversight.assistant import live
from oversight.assistant.backends import GenerationRequest, request_for_endpoint
from oversight.assistant.models import ChatMessage
from oversight.assistant.quotes import find_quotes
from oversight.assistant.render import render_markdown
from oversight.assistant.simulated import SimulatedItem
from oversight.core import broadcast, counters
from oversight.core.models import Condition, Event, Trial
from oversight.core.services.monitor import monitor_changed

RATE_LIMIT_MESSAGES = 12  # per participant per minute: generous for a person, a wall for a script
RATE_LIMIT_WINDOW_S = 60
STALE_AFTER_S = 15  # a streaming reply with no heartbeat for this long lost its process


class ChatRejected(Exception):
    """A chat action refused with a message the participant can act on."""


def chat_group(trial_id: int) -> str:
    return f"chat.trial.{trial_id}"


def _locked_trial(trial_id: int) -> Trial:
    return (
        # of=self: PostgreSQL cannot lock the nullable side of the outer joins (endpoint, passage).
        Trial.objects.select_for_update(of=("self",))
        .select_related("condition", "condition__endpoint", "item", "item__passage", "participant__study")
        .get(pk=trial_id)
    )


def chat_open(trial: Trial, now) -> bool:
    return trial.status == Trial.Status.SHOWN and not trial.is_expired(now) and trial.participant.study.is_live


def _next_seq(trial: Trial) -> int:
    return (trial.messages.aggregate(m=Max("seq"))["m"] or 0) + 1


def _check_open(trial: Trial, now) -> None:
    if trial.condition.kind != Condition.Kind.ASSISTED:
        raise ChatRejected("There is no assistant for this question.")
    if not chat_open(trial, now):
        raise ChatRejected("Time is up for this question: the chat is now read-only.")


def _generating(trial: Trial) -> ChatMessage | None:
    return trial.messages.filter(role=ChatMessage.Role.ASSISTANT, status=ChatMessage.Status.STREAMING).first()


@dataclass(frozen=True)
class ReplyJob:
    """A reply ready to generate: its placeholder and the exact request, read in the transaction that made it.

    Handing this to the generation task (instead of a message id to load) saves a second trip through the web
    process's one database thread per message, which under a burst of sends was most of the time to first token.
    """

    message_id: int
    trial_id: int
    deadline_at: datetime | None
    endpoint_id: int
    endpoint_name: str
    max_concurrency: int
    request: GenerationRequest


@dataclass(frozen=True)
class Sent:
    """What a chat action stored: the messages' payloads to publish, and the reply to start (if any)."""

    payloads: list[dict]
    job: ReplyJob | None


def _placeholder(
    trial: Trial, reply_to: ChatMessage, now, history: list[ChatMessage] | None = None
) -> tuple[ChatMessage, ReplyJob]:
    """Store the reply's placeholder with the context the model will get, and build the request for it.

    `history`, when the caller already read it in this transaction, is every message of the trial so far
    (the participant's new message included).
    """
    condition = trial.condition
    endpoint = condition.endpoint
    seq = history[-1].seq + 1 if history else _next_seq(trial)
    messages, context = context_before(trial, seq, earlier=history)
    placeholder = ChatMessage.objects.create(
        trial=trial,
        seq=seq,
        role=ChatMessage.Role.ASSISTANT,
        status=ChatMessage.Status.STREAMING,
        reply_to=reply_to,
        endpoint=endpoint,
        model_id=(endpoint.model_label or endpoint.name) if endpoint else "",
        sampling=condition.sampling,
        context=context,
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
        trial_id=trial.pk,
        deadline_at=trial.deadline_at,
        endpoint_id=endpoint.pk,
        endpoint_name=endpoint.name,
        max_concurrency=endpoint.max_concurrency,
        request=request,
    )
    return placeholder, job


def chat_send(*, trial_id: int, text: str, client_id: str = "", now=None) -> Sent:
    """Persist the participant's message and the reply's placeholder, or refuse with a reason.

    A resend with a known client_id publishes the stored message again and starts nothing.
    """
    now = now or timezone.now()
    text = (text or "").strip()
    try:
        with transaction.atomic():
            trial = _locked_trial(trial_id)
            # One read serves the resend check, the limits, the next seq and the model's context: under a
            # burst of sends this function's cost is the platform's time to first token (bench/README.md).
            history = list(trial.messages.order_by("seq"))
            if client_id and (known := next((m for m in history if m.client_id == client_id), None)):
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
            if any(m.role == ChatMessage.Role.ASSISTANT and m.status == ChatMessage.Status.STREAMING for m in history):
                raise ChatRejected("Please wait for the assistant to finish its reply.")
            turns = sum(m.role == ChatMessage.Role.USER for m in history)
            if turns >= condition.max_turns:
                raise ChatRejected(f"You have used all {condition.max_turns} messages for this question.")
            _rate_limit(trial.participant_id)
            user = ChatMessage.objects.create(
                trial=trial,
                seq=(history[-1].seq if history else 0) + 1,
                role=ChatMessage.Role.USER,
                content=text,
                client_id=client_id[:64],
                created_at=now,
            )
            Event.objects.create(
                participant_id=trial.participant_id,
                trial=trial,
                kind=Event.Kind.CHAT_SENT,
                at=now,
                data={"message_id": user.pk, "chars": len(text)},
            )
            placeholder, job = _placeholder(trial, user, now, history=[*history, user])
            monitor_changed(study_id=trial.participant.study_id, participant_id=trial.participant_id)
            return Sent([message_payload(user), message_payload(placeholder)], job)
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
    trial = _locked_trial(trial_id)
    _check_open(trial, now)
    if _generating(trial):
        raise ChatRejected("Please wait for the assistant to finish before resetting.")
    last = trial.messages.order_by("-seq").first()
    if last is None or last.role == ChatMessage.Role.RESET:
        raise ChatRejected("The conversation is already fresh.")
    reset = ChatMessage.objects.create(trial=trial, seq=_next_seq(trial), role=ChatMessage.Role.RESET, created_at=now)
    Event.objects.create(
        participant_id=trial.participant_id,
        trial=trial,
        kind=Event.Kind.CHAT_RESET,
        at=now,
        data={"message_id": reset.pk},
    )
    return Sent([message_payload(reset)], None)


@transaction.atomic
def chat_retry(*, trial_id: int, now=None) -> Sent:
    """Ask again after a failed, cancelled or interrupted reply."""
    now = now or timezone.now()
    trial = _locked_trial(trial_id)
    _check_open(trial, now)
    if _generating(trial):
        raise ChatRejected("Please wait for the assistant to finish its reply.")
    last = trial.messages.order_by("-seq").first()
    if last is None or last.role != ChatMessage.Role.ASSISTANT or last.status == ChatMessage.Status.COMPLETE:
        raise ChatRejected("There is nothing to retry.")
    placeholder, job = _placeholder(trial, last.reply_to, now)
    return Sent([message_payload(placeholder)], job)


def passage_turn(passage_text: str) -> str:
    return f"Here is a story:\n\n{passage_text.strip()}"


def context_before(trial: Trial, seq: int, earlier: list[ChatMessage] | None = None) -> tuple[list[dict], dict]:
    """The model's context for a reply at `seq`, and the record of it stored with the reply.

    Only turns after the last reset count. Failed or interrupted replies are left out (the participant saw an
    error, not an answer). QuALITY: the passage opens the first user turn — merged into it rather than sent as
    a separate turn, because many chat templates insist that user and assistant turns alternate.
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
    elif message.role == ChatMessage.Role.ASSISTANT:
        if message.status == ChatMessage.Status.STREAMING:
            payload["text"] = (
                live_text if live_text is not None and len(live_text) >= len(message.content) else message.content
            )
        else:
            payload["html"] = render_markdown(message.content, quotes=message.quotes)
            payload["quotes"] = message.quotes
        if message.status in {ChatMessage.Status.FAILED, ChatMessage.Status.INTERRUPTED, ChatMessage.Status.CANCELLED}:
            payload["notice"] = failure_notice(message)
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
    live_texts = live.get_many([m.pk for m in messages if m.status == ChatMessage.Status.STREAMING])
    return [message_payload(m, live_text=live_texts.get(m.pk)) for m in messages]


def generation_flush(*, texts: dict[int, str | None], now=None) -> None:
    """Persist growing replies and prove their process is alive, in one transaction for the whole process.

    `texts` maps each reply in flight to its text so far, or to None when nothing new arrived (a heartbeat
    only: a slow first token must not look like a dead process). Final fields are never touched, and a reply
    already finalised is left alone.
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
                    [(text, stamp, pk, ChatMessage.Status.STREAMING) for text, pk in grown],
                )
        idle = [pk for pk, text in texts.items() if text is None]
        if idle:
            ChatMessage.objects.filter(pk__in=idle, status=ChatMessage.Status.STREAMING).update(heartbeat_at=now)


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
        if message is None or message.status != ChatMessage.Status.STREAMING:
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
    live.delete(message_id)
    return message


def interrupt_stale_generations(*, now=None, trial_id: int | None = None) -> int:
    """Replies whose process died mid-stream: keep the partial text, mark them interrupted."""
    now = now or timezone.now()
    stale = ChatMessage.objects.filter(
        status=ChatMessage.Status.STREAMING, heartbeat_at__lt=now - timedelta(seconds=STALE_AFTER_S)
    )
    if trial_id is not None:
        stale = stale.filter(trial_id=trial_id)
    count = 0
    for message in stale:
        so_far = live.get(message.pk)
        text = so_far if so_far is not None and len(so_far) > len(message.content) else message.content
        final = generation_finish(
            message_id=message.pk,
            text=text,
            status=ChatMessage.Status.INTERRUPTED,
            now=now,
            error_kind="interrupted",
            error="no heartbeat from the generating process",
        )
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
