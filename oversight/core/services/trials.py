"""The life of a trial: shown (deadline fixed) → selections → submitted, auto-submitted or finalised.

A participant's submit, the page's auto-submit, the Celery deadline task and the periodic sweep can race
freely: each change is one conditional UPDATE (or, for the deadline's finalisation, made under the row's lock),
so whichever commits first decides and the rest are no-ops.
"""

import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from oversight.core.enqueue import enqueue_on_commit
from oversight.core.models import Event, Study, Trial
from oversight.core.prepared import insert_rows, update_where
from oversight.core.services.monitor import monitor_changed

log = logging.getLogger(__name__)

LIKERT_LEVELS = (25, 42, 60, 80, 100)
SLIDER_RANGE = (5, 95)


class AnswerError(ValueError):
    """Input that cannot be an answer to this trial (tampered option, confidence out of range)."""


@dataclass(frozen=True)
class Answer:
    choice: int | None
    confidence: float | None
    distribution: list[float] | None = None


def _finite(raw) -> float:
    # float() takes "nan" and "inf", which no comparison rejects (and no JSON column stores).
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


# A protocol judge's probability for the first answer shown (percent). Never 0 or 100: a judge scored by the log
# score (Michael et al. 2023) who says "certain" and is wrong would score minus infinity.
JUDGE_RANGE = (1, 99)
JUDGE_FIELD = "p_first"


def parse_judgement(*, trial: Trial, data, require_choice: bool) -> Answer:
    """A protocol judge's answer: the probability of the first of the two answers shown (`p_first`, percent; the
    second gets the rest). Stored as the answer the judge leans to (`choice`), its probability (`confidence`,
    at least 50) and both probabilities over the item's options (`distribution`, 0 for the options not shown),
    so the report reads p(correct) the same way whatever the study's confidence format. 50% leans to neither:
    refused as an answer, kept as a selection (the deadline records it with no choice)."""
    first, second = trial.transcript.options
    raw = data.get(JUDGE_FIELD)
    if raw in (None, ""):
        if require_choice:
            raise AnswerError("Please move the slider to say which answer is more likely.")
        return Answer(choice=None, confidence=None)
    try:
        p = _finite(raw)
    except (TypeError, ValueError):
        raise AnswerError("The probability must be a number.") from None
    if not JUDGE_RANGE[0] <= p <= JUDGE_RANGE[1]:
        raise AnswerError(f"The probability must be between {JUDGE_RANGE[0]}% and {JUDGE_RANGE[1]}%.")
    if p == 50 and require_choice:
        raise AnswerError("At 50% neither answer is more likely: please move the slider towards the one you favour.")
    distribution = [0.0] * len(trial.item.options)
    distribution[first], distribution[second] = p, 100 - p
    choice = None if p == 50 else (first if p > 50 else second)
    return Answer(choice=choice, confidence=max(p, 100 - p), distribution=distribution)


def parse_answer(*, trial: Trial, data, require_choice: bool) -> Answer:
    """Validate raw form/JSON values against this trial's item and the study's confidence format."""
    # A judge's page posts `p_first`; a client that posts a choice and a confidence, or a distribution, is read the
    # ordinary way, limited to the two answers shown.
    answered_otherwise = data.get("choice") not in (None, "") or data.get("p0") not in (None, "")
    if trial.transcript_id and (data.get(JUDGE_FIELD) is not None or not answered_otherwise):
        return parse_judgement(trial=trial, data=data, require_choice=require_choice)
    study: Study = trial.participant.study
    n_options = len(trial.item.options)
    # A protocol trial's judge chooses between the two answers its transcript shows (core.Transcript.options).
    shown = trial.transcript.options if trial.transcript_id else None

    choice = None
    raw_choice = data.get("choice")
    if raw_choice not in (None, ""):
        try:
            choice = int(raw_choice)
        except (TypeError, ValueError):
            raise AnswerError("That option does not exist for this question.") from None
        if not 0 <= choice < n_options or (shown is not None and choice not in shown):
            raise AnswerError("That option does not exist for this question.")
    elif require_choice:
        raise AnswerError("Please choose an answer before submitting.")

    confidence = None
    distribution = None
    if study.confidence_format == Study.ConfidenceFormat.DISTRIBUTION:
        values = [data.get(f"p{i}") for i in range(n_options)]
        if any(v not in (None, "") for v in values):
            try:
                distribution = [_finite(v or 0) for v in values]
            except (TypeError, ValueError):
                raise AnswerError("Probabilities must be numbers.") from None
            if any(p < 0 or p > 100 for p in distribution) or abs(sum(distribution) - 100) > 0.5:
                raise AnswerError("Probabilities must be between 0 and 100 and add up to 100.")
            if shown is not None and any(p for i, p in enumerate(distribution) if i not in shown):
                raise AnswerError("Only the two answers shown can have a probability.")
            choice = max(range(n_options), key=lambda i: distribution[i])
            confidence = distribution[choice]
    else:
        raw = data.get("confidence")
        if raw not in (None, ""):
            try:
                confidence = _finite(raw)
            except (TypeError, ValueError):
                raise AnswerError("Confidence must be a number.") from None
            if study.confidence_format == Study.ConfidenceFormat.LIKERT and confidence not in LIKERT_LEVELS:
                raise AnswerError("Please pick one of the five confidence levels.")
            if study.confidence_format == Study.ConfidenceFormat.SLIDER and not (
                SLIDER_RANGE[0] <= confidence <= SLIDER_RANGE[1]
            ):
                raise AnswerError("Confidence must be between 5% and 95%.")
    if require_choice and confidence is None:
        if study.confidence_format == Study.ConfidenceFormat.SLIDER:
            # The slider starts untouched (no value): its middle is not an answer anyone gave.
            raise AnswerError("Please move the slider to say how confident you are.")
        raise AnswerError("Please say how confident you are before submitting.")
    return Answer(choice=choice, confidence=confidence, distribution=distribution)


# What a trial's state is made of: re-read when another request changed the row first.
TRIAL_STATE = (
    "status",
    "shown_at",
    "deadline_at",
    "selected_choice",
    "selected_confidence",
    "choice",
    "confidence",
    "distribution",
    "correct",
    "submitted_at",
    "submit_kind",
)
# What a posted answer may carry; kept, truncated, on a late or refused POST's event for the researcher.
POSTED_FIELDS = ("choice", "confidence", "auto", JUDGE_FIELD, *(f"p{i}" for i in range(10)))
POSTED_MAX_CHARS = 100


def posted_fields(data) -> dict:
    """The answer fields of a POST as they came (truncated), for an event that records what was sent."""
    return {k: str(data.get(k))[:POSTED_MAX_CHARS] for k in POSTED_FIELDS if data.get(k) not in (None, "")}


def _changed(trial: Trial) -> None:
    monitor_changed(study_id=trial.participant.study_id, participant_id=trial.participant_id)


def _locked(trial: Trial) -> Trial:
    return Trial.objects.select_for_update().select_related("item", "participant__study").get(pk=trial.pk)


def _event(trial: Trial, kind: str, now, data: dict) -> Event:
    return Event(participant_id=trial.participant_id, trial=trial, kind=kind, at=now, data=data)


def _update_if_shown(trial: Trial, **fields) -> bool:
    """Write `fields` if the trial is still shown, in one conditional UPDATE (no lock held across a round trip):
    of a submit, the page's auto-submit, a selection and the deadline sweep, whichever commits first decides. On
    False the row changed first, and `trial` now holds what it became."""
    if not update_where(Trial, where={"id": trial.pk, "status": Trial.Status.SHOWN}, values=fields):
        trial.refresh_from_db(fields=TRIAL_STATE)
        return False
    for name, value in fields.items():
        setattr(trial, name, value)
    return True


# The apply_* functions change one trial and return the events to record, unsaved: the caller holds the
# transaction and saves them with its own in one INSERT (core.services.steps answers and shows the next item
# in one transaction). `trial` is the caller's read of the row, updated in place.


def apply_show(*, trial: Trial, now) -> list[Event]:
    """Mark the trial shown and fix its deadline — once. A refresh shows the same clock still running."""
    if trial.status != Trial.Status.PENDING:
        return []
    deadline = trial.deadline_for(now)
    shown = {"status": Trial.Status.SHOWN, "shown_at": now, "deadline_at": deadline}
    if not update_where(Trial, where={"id": trial.pk, "status": Trial.Status.PENDING}, values=shown):
        trial.refresh_from_db(fields=TRIAL_STATE)  # another request showed it first: its clock stands
        return []
    trial.status, trial.shown_at, trial.deadline_at = Trial.Status.SHOWN, now, deadline
    _changed(trial)
    if deadline and not settings.CELERY_TASK_ALWAYS_EAGER:
        # With a broker, a task waits for the deadline; the periodic sweep is the safety net if it is lost (or
        # could not be sent: enqueue_on_commit logs a broker outage instead of failing the page).
        from oversight.core.tasks import finalize_trial

        enqueue_on_commit(finalize_trial, trial.pk, eta=deadline)
    return [_event(trial, Event.Kind.ITEM_SHOWN, now, {"deadline_at": deadline.isoformat() if deadline else None})]


def apply_select(*, trial: Trial, answer: Answer, now) -> list[Event]:
    """Record the participant's current selection as it changes (a closed browser still has it recorded)."""
    if trial.status == Trial.Status.PENDING:
        trial.refresh_from_db(fields=TRIAL_STATE)  # a caller's old read: the page may well be showing it
    if trial.status != Trial.Status.SHOWN:
        return []
    if trial.is_expired(now):
        trial_finalize_if_expired(trial_id=trial.pk, now=now)
        trial.refresh_from_db(fields=TRIAL_STATE)
        return []
    fields, events = {}, []
    if answer.choice is not None and answer.choice != trial.selected_choice:
        fields["selected_choice"] = answer.choice
        events.append(_event(trial, Event.Kind.SELECTION, now, {"choice": answer.choice}))
    elif answer.choice is None and answer.distribution is not None and trial.selected_choice is not None:
        # A protocol judge moved the slider back to 50%: leaning to neither, so the deadline records no choice.
        fields["selected_choice"] = None
        events.append(_event(trial, Event.Kind.SELECTION, now, {"choice": None}))
    if answer.confidence is not None and answer.confidence != trial.selected_confidence:
        fields["selected_confidence"] = answer.confidence
        events.append(
            _event(
                trial,
                Event.Kind.CONFIDENCE,
                now,
                {"confidence": answer.confidence, "distribution": answer.distribution},
            )
        )
    if answer.distribution is not None:
        fields["distribution"] = answer.distribution
    if fields and not _update_if_shown(trial, **fields):
        return []
    return events


def apply_submit(*, trial: Trial, answer: Answer, kind: str, now, posted: dict | None = None) -> list[Event]:
    """Commit an answer. Idempotent; after the deadline the recorded answer is the last selection seen.

    A POST that arrives after the deadline — a slow network, a replay, a tampered clock — cannot change what is
    recorded: the trial is finalised as timed out with the server's last known selection. Its payload is kept as
    a `late_post` event for the researcher, whether it beat the deadline sweep or not.
    """
    if trial.status == Trial.Status.PENDING:
        trial.refresh_from_db(fields=TRIAL_STATE)  # a caller's old read: the page may well be showing it
    if trial.status == Trial.Status.PENDING:
        raise AnswerError("This question has not been opened yet.")
    if trial.is_final:
        return [_late_post(trial, answer, kind, now, posted)] if trial.status == Trial.Status.TIMED_OUT else []
    if trial.is_expired(now):
        locked = _locked(trial)
        if locked.status == Trial.Status.SHOWN:
            _finalize(locked, now)
        for name in TRIAL_STATE:
            setattr(trial, name, getattr(locked, name))
        return [_late_post(trial, answer, kind, now, posted)]
    fields = {
        "choice": answer.choice,
        "confidence": answer.confidence,
        "selected_choice": answer.choice,
        "selected_confidence": answer.confidence,
        "correct": trial.item.is_correct(answer.choice),
        "submitted_at": now,
        "submit_kind": kind,
        # The page's own submission at zero is still a timeout from the participant's point of view.
        "status": Trial.Status.TIMED_OUT if kind == Trial.SubmitKind.AUTO else Trial.Status.ANSWERED,
    }
    if answer.distribution is not None:
        fields["distribution"] = answer.distribution
    if not _update_if_shown(trial, **fields):
        # Another submit, the page's auto-submit or the sweep committed first: theirs stands.
        return [_late_post(trial, answer, kind, now, posted)] if trial.status == Trial.Status.TIMED_OUT else []
    _changed(trial)
    data = {"choice": answer.choice, "confidence": answer.confidence, "kind": kind}
    return [_event(trial, Event.Kind.SUBMITTED, now, data)]


def _late_post(trial: Trial, answer: Answer, kind: str, now, posted: dict | None) -> Event:
    data = {"choice": answer.choice, "confidence": answer.confidence, "kind": kind, "finalised_by": trial.submit_kind}
    if trial.deadline_at is not None:
        data["after_deadline_s"] = round((now - trial.deadline_at).total_seconds(), 3)
    if posted:
        data["posted"] = posted
    return _event(trial, Event.Kind.LATE_POST, now, data)


@transaction.atomic
def trial_show(*, trial: Trial, now=None) -> Trial:
    """Mark the trial shown and fix its deadline — once. A refresh shows the same clock still running."""
    now = now or timezone.now()
    trial = _locked(trial)
    insert_rows(apply_show(trial=trial, now=now))
    return trial


@transaction.atomic
def trial_select(*, trial: Trial, answer: Answer, now=None) -> Trial:
    """Record the participant's current selection as it changes (a closed browser still has it recorded)."""
    now = now or timezone.now()
    insert_rows(apply_select(trial=trial, answer=answer, now=now))
    return trial


@transaction.atomic
def trial_submit(
    *, trial: Trial, answer: Answer, kind: str = Trial.SubmitKind.MANUAL, now=None, posted: dict | None = None
) -> Trial:
    """Commit an answer (see `apply_submit`): idempotent, and the deadline holds against a late POST."""
    now = now or timezone.now()
    insert_rows(apply_submit(trial=trial, answer=answer, kind=kind, now=now, posted=posted))
    return trial


def _finalize(trial: Trial, now) -> Trial:
    """Close an expired trial with the last selection the server saw. Caller holds the row lock."""
    trial.choice = trial.selected_choice
    trial.confidence = trial.selected_confidence
    trial.correct = trial.item.is_correct(trial.choice)
    trial.submitted_at = now
    trial.submit_kind = Trial.SubmitKind.SERVER
    trial.status = Trial.Status.TIMED_OUT
    trial.save(update_fields=["choice", "confidence", "correct", "submitted_at", "submit_kind", "status"])
    Event.objects.create(
        participant_id=trial.participant_id,
        trial=trial,
        kind=Event.Kind.TIMED_OUT,
        at=now,
        data={
            "choice": trial.choice,
            "confidence": trial.confidence,
            "lag_s": (now - trial.deadline_at).total_seconds(),
        },
    )
    _changed(trial)
    log.info(
        "trial finalised at deadline",
        extra={
            "trial_id": trial.pk,
            "participant_id": trial.participant_id,
            "lag_s": (now - trial.deadline_at).total_seconds(),
        },
    )
    return trial


@transaction.atomic
def trial_finalize_if_expired(*, trial_id: int, now=None) -> bool:
    """Finalise one trial if its deadline has passed. Safe to call any number of times."""
    return _finalize_if_expired(trial_id, now or timezone.now())


def _finalize_if_expired(trial_id: int, now) -> bool:
    trial = Trial.objects.select_for_update().select_related("item", "participant").filter(pk=trial_id).first()
    if trial is None or trial.status != Trial.Status.SHOWN or not trial.is_expired(now):
        return False
    _finalize(trial, now)
    return True


# Trials finalised per transaction by the sweep: one write transaction for 500 expiries at once held SQLite's one
# write lock for seconds; one each took 500 turns at it behind the page load. A few dozen keeps both short.
SWEEP_BATCH = 25


def finalize_expired_trials(*, now=None, limit: int = 500) -> int:
    """The sweep: finalise every shown trial whose deadline has passed.

    Each trial is stamped with the moment it is itself finalised (a sweep of hundreds takes a while, and one
    timestamp for all of them understated how late the last ones were); `now` fixes the clock (tests).
    """
    clock = (lambda: now) if now is not None else timezone.now
    ids = list(
        Trial.objects.filter(status=Trial.Status.SHOWN, deadline_at__lte=clock())
        .order_by("deadline_at")
        .values_list("id", flat=True)[:limit]
    )
    done = 0
    for start in range(0, len(ids), SWEEP_BATCH):
        with transaction.atomic():
            done += sum(_finalize_if_expired(trial_id, clock()) for trial_id in ids[start : start + SWEEP_BATCH])
    return done
