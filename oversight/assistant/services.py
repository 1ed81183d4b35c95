"""Chat workflows (sync, transactional): send, reset, retry, the model's context, finalising a reply."""

import logging
from datetime import timedelta

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from oversight.assistant.models import ChatMessage
from oversight.assistant.quotes import find_quotes
from oversight.assistant.render import render_markdown
from oversight.core.models import Condition, Event, Trial
from oversight.core.services.monitor import monitor_changed

RATE_LIMIT_MESSAGES = 12  # per participant per minute: generous for a person, a wall for a script
RATE_LIMIT_WINDOW_S = 60
STALE_AFTER_S = 15  # a streaming reply with no heartbeat for this long lost its process


class ChatRejected(Exception):
    """A chat action refused with a message the participant can act on."""


def chat_group(trial_id: int) -> str:
    return f"chat.trial.{trial_id}"


def live_key(message_id: int) -> str:
    return f"chat:live:{message_id}"


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


def _placeholder(trial: Trial, reply_to: ChatMessage, now) -> ChatMessage:
    condition = trial.condition
    endpoint = condition.endpoint
    return ChatMessage.objects.create(
        trial=trial, seq=_next_seq(trial), role=ChatMessage.Role.ASSISTANT, status=ChatMessage.Status.STREAMING,
        reply_to=reply_to, endpoint=endpoint, model_id=(endpoint.model_label or endpoint.name) if endpoint else "",
        sampling=condition.sampling, created_at=now, heartbeat_at=now,
    )


def chat_send(*, trial_id: int, text: str, client_id: str = "", now=None) -> tuple[ChatMessage, ChatMessage | None]:
    """Persist the participant's message and the reply's placeholder, or refuse with a reason.

    Returns (user message, assistant placeholder). A resend with a known client_id returns the stored pair
    and starts nothing (the placeholder is None).
    """
    now = now or timezone.now()
    text = (text or "").strip()
    try:
        with transaction.atomic():
            trial = _locked_trial(trial_id)
            if client_id and (known := trial.messages.filter(client_id=client_id).first()):
                return known, None
            _check_open(trial, now)
            condition = trial.condition
            if not text:
                raise ChatRejected("Type a message first.")
            if len(text) > condition.max_message_chars:
                raise ChatRejected(
                    f"Your message is {len(text):,} characters long; the limit is {condition.max_message_chars:,}. "
                    "Please shorten it."
                )
            if _generating(trial):
                raise ChatRejected("Please wait for the assistant to finish its reply.")
            turns = trial.messages.filter(role=ChatMessage.Role.USER).count()
            if turns >= condition.max_turns:
                raise ChatRejected(f"You have used all {condition.max_turns} messages for this question.")
            _rate_limit(trial.participant_id)
            user = ChatMessage.objects.create(trial=trial, seq=_next_seq(trial), role=ChatMessage.Role.USER,
                                              content=text, client_id=client_id[:64], created_at=now)
            Event.objects.create(participant_id=trial.participant_id, trial=trial, kind=Event.Kind.CHAT_SENT, at=now,
                                 data={"message_id": user.pk, "chars": len(text)})
            placeholder = _placeholder(trial, user, now)
            monitor_changed(study_id=trial.participant.study_id, participant_id=trial.participant_id)
            return user, placeholder
    except IntegrityError:
        # The same client_id raced in twice: the first one won.
        return ChatMessage.objects.get(trial_id=trial_id, client_id=client_id), None


def _rate_limit(participant_id: int) -> None:
    key = f"chat:rate:{participant_id}"
    cache.add(key, 0, RATE_LIMIT_WINDOW_S)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, RATE_LIMIT_WINDOW_S)
        count = 1
    if count > RATE_LIMIT_MESSAGES:
        raise ChatRejected("You are sending messages very quickly. Please wait a moment and try again.")


@transaction.atomic
def chat_reset(*, trial_id: int, now=None) -> ChatMessage:
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
    Event.objects.create(participant_id=trial.participant_id, trial=trial, kind=Event.Kind.CHAT_RESET, at=now,
                         data={"message_id": reset.pk})
    return reset


@transaction.atomic
def chat_retry(*, trial_id: int, now=None) -> ChatMessage:
    """Ask again after a failed, cancelled or interrupted reply."""
    now = now or timezone.now()
    trial = _locked_trial(trial_id)
    _check_open(trial, now)
    if _generating(trial):
        raise ChatRejected("Please wait for the assistant to finish its reply.")
    last = trial.messages.order_by("-seq").first()
    if last is None or last.role != ChatMessage.Role.ASSISTANT or last.status == ChatMessage.Status.COMPLETE:
        raise ChatRejected("There is nothing to retry.")
    return _placeholder(trial, last.reply_to, now)


def passage_turn(passage_text: str) -> str:
    return f"Here is a story:\n\n{passage_text.strip()}"


def model_context(placeholder: ChatMessage) -> tuple[list[dict], dict]:
    """The messages sent to the model for this reply: exactly what the participant's context holds.

    Only turns after the last reset count. Failed or interrupted replies are left out (the participant saw an
    error, not an answer). QuALITY: the passage opens the first user turn — merged into it rather than sent as
    a separate turn, because many chat templates insist that user and assistant turns alternate.
    """
    trial = placeholder.trial
    condition = trial.condition
    earlier = list(trial.messages.filter(seq__lt=placeholder.seq).order_by("seq"))
    resets = [m.seq for m in earlier if m.role == ChatMessage.Role.RESET]
    since = resets[-1] if resets else 0
    turns = [
        m for m in earlier
        if m.seq > since and (m.role == ChatMessage.Role.USER
                              or (m.role == ChatMessage.Role.ASSISTANT and m.status == ChatMessage.Status.COMPLETE))
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
    return messages, {"message_ids": [m.pk for m in turns], "passage_injected": passage_injected,
                      "question_sent": bool(condition.send_question), "since_reset_seq": since}


def message_payload(message: ChatMessage, passage_text: str | None = None, live_text: str | None = None) -> dict:
    """What the page renders. Model text is only ever sent as sanitised HTML (or as plain text while streaming)."""
    payload = {"id": message.pk, "seq": message.seq, "role": message.role, "status": message.status,
               "created_at": message.created_at.isoformat()}
    if message.role == ChatMessage.Role.USER:
        payload["text"] = message.content
    elif message.role == ChatMessage.Role.ASSISTANT:
        if message.status == ChatMessage.Status.STREAMING:
            payload["text"] = live_text if live_text is not None and len(live_text) >= len(message.content) \
                else message.content
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
        return "The reply was stopped because time ran out." if message.error_kind == "deadline" \
            else "The reply was stopped."
    return HUMAN_MESSAGES.get(message.error_kind, HUMAN_MESSAGES["generation"]) + " You can try again."


def chat_history(trial: Trial) -> list[dict]:
    messages = list(trial.messages.order_by("seq"))
    live = {}
    streaming = [m.pk for m in messages if m.status == ChatMessage.Status.STREAMING]
    if streaming:
        live = cache.get_many([live_key(pk) for pk in streaming])
    return [message_payload(m, live_text=live.get(live_key(m.pk))) for m in messages]


def generation_flush(*, message_id: int, text: str, now=None) -> None:
    """Persist a growing reply (and prove its process is alive) without touching its final fields."""
    now = now or timezone.now()
    ChatMessage.objects.filter(pk=message_id, status=ChatMessage.Status.STREAMING).update(
        content=text, heartbeat_at=now
    )


def generation_finish(*, message_id: int, text: str, status: str, now=None, **fields) -> ChatMessage | None:
    """Finalise a reply with its metrics; a reply already finalised (e.g. marked interrupted) is left alone."""
    now = now or timezone.now()
    with transaction.atomic():
        message = (ChatMessage.objects.select_for_update(of=("self",))
                   .select_related("trial__item__passage", "trial__participant")
                   .filter(pk=message_id).first())
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
    cache.delete(live_key(message_id))
    return message


def interrupt_stale_generations(*, now=None, trial_id: int | None = None) -> int:
    """Replies whose process died mid-stream: keep the partial text, mark them interrupted."""
    now = now or timezone.now()
    stale = ChatMessage.objects.filter(status=ChatMessage.Status.STREAMING,
                                       heartbeat_at__lt=now - timedelta(seconds=STALE_AFTER_S))
    if trial_id is not None:
        stale = stale.filter(trial_id=trial_id)
    count = 0
    for message in stale:
        live = cache.get(live_key(message.pk))
        text = live if live is not None and len(live) > len(message.content) else message.content
        final = generation_finish(message_id=message.pk, text=text, status=ChatMessage.Status.INTERRUPTED, now=now,
                                  error_kind="interrupted", error="no heartbeat from the generating process")
        if final is not None:
            count += 1
            _announce(final)
    return count


def _announce(message: ChatMessage) -> None:
    """Tell pages watching the trial that a reply was finalised outside its generating task."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(chat_group(message.trial_id),
                                        {"type": "chat.message", "message": message_payload(message)})
    except Exception:  # noqa: BLE001 - the record is final either way; a page's next hello shows it
        logging.getLogger(__name__).warning("could not announce an interrupted reply", exc_info=True)
