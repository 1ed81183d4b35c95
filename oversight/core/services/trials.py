"""The life of a trial: shown (deadline fixed) → selections → submitted, auto-submitted or finalised.

Every function locks the trial row, so a participant's submit, the page's auto-submit, the Celery deadline
task and the periodic sweep can race freely: whichever commits first decides, the rest are no-ops.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from oversight.core.enqueue import enqueue_on_commit
from oversight.core.models import Event, Study, Trial
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


def parse_answer(*, trial: Trial, data, require_choice: bool) -> Answer:
    """Validate raw form/JSON values against this trial's item and the study's confidence format."""
    study: Study = trial.participant.study
    n_options = len(trial.item.options)

    choice = None
    raw_choice = data.get("choice")
    if raw_choice not in (None, ""):
        try:
            choice = int(raw_choice)
        except (TypeError, ValueError):
            raise AnswerError("That option does not exist for this question.") from None
        if not 0 <= choice < n_options:
            raise AnswerError("That option does not exist for this question.")
    elif require_choice:
        raise AnswerError("Please choose an answer before submitting.")

    confidence = None
    distribution = None
    if study.confidence_format == Study.ConfidenceFormat.DISTRIBUTION:
        values = [data.get(f"p{i}") for i in range(n_options)]
        if any(v not in (None, "") for v in values):
            try:
                distribution = [float(v or 0) for v in values]
            except (TypeError, ValueError):
                raise AnswerError("Probabilities must be numbers.") from None
            if any(p < 0 or p > 100 for p in distribution) or abs(sum(distribution) - 100) > 0.5:
                raise AnswerError("Probabilities must be between 0 and 100 and add up to 100.")
            choice = max(range(n_options), key=lambda i: distribution[i])
            confidence = distribution[choice]
    else:
        raw = data.get("confidence")
        if raw not in (None, ""):
            try:
                confidence = float(raw)
            except (TypeError, ValueError):
                raise AnswerError("Confidence must be a number.") from None
            if study.confidence_format == Study.ConfidenceFormat.LIKERT and confidence not in LIKERT_LEVELS:
                raise AnswerError("Please pick one of the five confidence levels.")
            if study.confidence_format == Study.ConfidenceFormat.SLIDER and not (
                SLIDER_RANGE[0] <= confidence <= SLIDER_RANGE[1]
            ):
                raise AnswerError("Confidence must be between 5% and 95%.")
    if require_choice and confidence is None:
        raise AnswerError("Please say how confident you are before submitting.")
    return Answer(choice=choice, confidence=confidence, distribution=distribution)


def _changed(trial: Trial) -> None:
    monitor_changed(study_id=trial.participant.study_id, participant_id=trial.participant_id)


def _locked(trial: Trial) -> Trial:
    return Trial.objects.select_for_update().select_related("item", "participant__study").get(pk=trial.pk)


@transaction.atomic
def trial_show(*, trial: Trial, now=None) -> Trial:
    """Mark the trial shown and fix its deadline — once. A refresh shows the same clock still running."""
    now = now or timezone.now()
    trial = _locked(trial)
    if trial.status != Trial.Status.PENDING:
        return trial
    trial.status = Trial.Status.SHOWN
    trial.shown_at = now
    trial.deadline_at = trial.deadline_for(now)
    trial.save(update_fields=["status", "shown_at", "deadline_at"])
    Event.objects.create(
        participant_id=trial.participant_id,
        trial=trial,
        kind=Event.Kind.ITEM_SHOWN,
        at=now,
        data={"deadline_at": trial.deadline_at.isoformat() if trial.deadline_at else None},
    )
    _changed(trial)
    if trial.deadline_at and not settings.CELERY_TASK_ALWAYS_EAGER:
        # With a broker, a task waits for the deadline; the periodic sweep is the safety net if it is lost (or
        # could not be sent: enqueue_on_commit logs a broker outage instead of failing the page).
        from oversight.core.tasks import finalize_trial

        enqueue_on_commit(finalize_trial, trial.pk, eta=trial.deadline_at)
    return trial


@transaction.atomic
def trial_select(*, trial: Trial, answer: Answer, now=None) -> Trial:
    """Record the participant's current selection as it changes (a closed browser still has it recorded)."""
    now = now or timezone.now()
    trial = _locked(trial)
    if trial.status != Trial.Status.SHOWN:
        return trial
    if trial.is_expired(now):
        return _finalize(trial, now)
    fields = []
    if answer.choice is not None and answer.choice != trial.selected_choice:
        trial.selected_choice = answer.choice
        fields.append("selected_choice")
        Event.objects.create(
            participant_id=trial.participant_id,
            trial=trial,
            kind=Event.Kind.SELECTION,
            at=now,
            data={"choice": answer.choice},
        )
    if answer.confidence is not None and answer.confidence != trial.selected_confidence:
        trial.selected_confidence = answer.confidence
        fields.append("selected_confidence")
        Event.objects.create(
            participant_id=trial.participant_id,
            trial=trial,
            kind=Event.Kind.CONFIDENCE,
            at=now,
            data={"confidence": answer.confidence, "distribution": answer.distribution},
        )
    if answer.distribution is not None:
        trial.distribution = answer.distribution
        fields.append("distribution")
    if fields:
        trial.save(update_fields=fields)
    return trial


@transaction.atomic
def trial_submit(*, trial: Trial, answer: Answer, kind: str = Trial.SubmitKind.MANUAL, now=None) -> Trial:
    """Commit an answer. Idempotent; after the deadline the recorded answer is the last selection seen.

    A POST that arrives after the deadline — a slow network, a replay, a tampered clock — cannot change
    what is recorded: the trial is finalised as timed out with the server's last known selection, and the
    late payload is kept as an event for the researcher to see.
    """
    now = now or timezone.now()
    trial = _locked(trial)
    if trial.is_final:
        return trial
    if trial.status == Trial.Status.PENDING:
        raise AnswerError("This question has not been opened yet.")
    if trial.is_expired(now):
        Event.objects.create(
            participant_id=trial.participant_id,
            trial=trial,
            kind=Event.Kind.LATE_POST,
            at=now,
            data={"choice": answer.choice, "confidence": answer.confidence, "kind": kind},
        )
        return _finalize(trial, now)
    trial.choice = answer.choice
    trial.confidence = answer.confidence
    trial.selected_choice = answer.choice
    trial.selected_confidence = answer.confidence
    if answer.distribution is not None:
        trial.distribution = answer.distribution
    trial.correct = trial.item.is_correct(answer.choice)
    trial.submitted_at = now
    trial.submit_kind = kind
    # The page's own submission at zero is still a timeout from the participant's point of view.
    trial.status = Trial.Status.TIMED_OUT if kind == Trial.SubmitKind.AUTO else Trial.Status.ANSWERED
    trial.save()
    Event.objects.create(
        participant_id=trial.participant_id,
        trial=trial,
        kind=Event.Kind.SUBMITTED,
        at=now,
        data={"choice": answer.choice, "confidence": answer.confidence, "kind": kind},
    )
    _changed(trial)
    return trial


def _finalize(trial: Trial, now) -> Trial:
    """Close an expired trial with the last selection the server saw. Caller holds the row lock."""
    trial.choice = trial.selected_choice
    trial.confidence = trial.selected_confidence
    trial.correct = trial.item.is_correct(trial.choice)
    trial.submitted_at = now
    trial.submit_kind = Trial.SubmitKind.SERVER
    trial.status = Trial.Status.TIMED_OUT
    trial.save()
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
