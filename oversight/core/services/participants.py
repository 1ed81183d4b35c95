"""Joining, consent, condition assignment and completion."""

import random
import secrets
from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from oversight.core import protocols
from oversight.core.models import Condition, ConditionItem, Event, Participant, Study, Trial
from oversight.core.services.monitor import monitor_changed
from oversight.core.services.protocols import trial_transcripts

# Recruitment parameters we keep, per platform. The first key of each platform is its participant id.
RECRUITMENT_KEYS = {
    "prolific": ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"),
    "mturk": ("workerId", "assignmentId", "hitId"),
    "pid": ("pid",),
}
MAX_PARAM_LENGTH = 200


class RecruitmentError(ValueError):
    """A join link's recruitment parameter that cannot be an id; the message names it."""


def _param(params: Mapping[str, str], key: str) -> str:
    value = (params.get(key) or "").strip()
    # Never cut short: two long ids sharing a prefix would become one participant.
    if len(value) > MAX_PARAM_LENGTH:
        raise RecruitmentError(f"Its {key} is {len(value):,} characters long; at most {MAX_PARAM_LENGTH} are accepted.")
    # Control characters are never part of an id; PostgreSQL refuses to store a NUL at all.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RecruitmentError(f"Its {key} contains a control character.")
    return value


def recruitment_from_params(params: Mapping[str, str]) -> tuple[str, dict]:
    """(`external_id`, recruitment dict) from a join link's query string; ("", {}) for an anonymous join.
    RecruitmentError for a parameter too long or with control characters."""
    for source, keys in RECRUITMENT_KEYS.items():
        values = {k: _param(params, k) for k in keys}
        if values[keys[0]]:
            return f"{source}:{values[keys[0]]}", {"source": source, **values}
    return "", {}


def participant_for_external_id(*, study: Study, external_id: str) -> Participant | None:
    if not external_id:
        return None
    return Participant.objects.filter(study=study, external_id=external_id).first()


def participant_join(
    *, study: Study, params: Mapping[str, str], consent: bool, is_pilot: bool = False, now=None
) -> Participant:
    """Enrol (or resume) a participant after they answered the consent form.

    The same external id always resumes the same participant: a second tab, a returning Prolific worker or
    a double-clicked consent button must never create a second enrolment.
    """
    now = now or timezone.now()
    external_id, recruitment = recruitment_from_params(params)
    try:
        with transaction.atomic():
            participant = participant_for_external_id(study=study, external_id=external_id)
            if participant is None:
                participant = Participant.objects.create(
                    study=study,
                    external_id=external_id,
                    recruitment=recruitment,
                    is_pilot=is_pilot,
                    order_seed=secrets.randbits(62),
                )
                Event.objects.create(participant=participant, kind=Event.Kind.JOINED, at=now, data=recruitment)
            else:
                Event.objects.create(participant=participant, kind=Event.Kind.RESUMED, at=now)
    except IntegrityError:
        # Two simultaneous first joins with one id: the other request won; resume theirs.
        participant = Participant.objects.get(study=study, external_id=external_id)
    return participant_consent(participant=participant, consent=consent, now=now)


@transaction.atomic
def participant_consent(*, participant: Participant, consent: bool, now=None) -> Participant:
    now = now or timezone.now()
    participant = Participant.objects.select_for_update().get(pk=participant.pk)
    if participant.status not in {Participant.Status.CONSENT, Participant.Status.DECLINED}:
        return participant  # already started: consenting again is a no-op
    if not consent:
        participant.status = Participant.Status.DECLINED
        participant.save(update_fields=["status"])
        Event.objects.create(participant=participant, kind=Event.Kind.DECLINED, at=now)
        monitor_changed(study_id=participant.study_id, participant_id=participant.pk)
        return participant
    participant.status = Participant.Status.ACTIVE
    participant.consented_at = now
    participant.condition_order = assign_conditions(participant)
    participant.save(update_fields=["status", "consented_at", "condition_order"])
    Event.objects.create(participant=participant, kind=Event.Kind.CONSENTED, at=now)
    create_trials(participant)
    monitor_changed(study_id=participant.study_id, participant_id=participant.pk)
    return participant


def assign_conditions(participant: Participant) -> list[int]:
    """The conditions this participant does, in order.

    Within-subject: every condition, either in the study's fixed order or counterbalanced by rotating the
    order by enrolment number (a Latin square over the conditions). Between-subject: the condition with the
    fewest enrolled participants so far, so groups stay balanced whatever the dropout.
    """
    study = participant.study
    conditions = list(study.conditions.order_by("position", "id").values_list("id", flat=True))
    # People only: a model judge (issue 17) must not shift the rotation or the balance of the people who follow.
    enrolled = Participant.objects.filter(
        study=study, is_pilot=participant.is_pilot, kind=Participant.Kind.HUMAN
    ).exclude(Q(pk=participant.pk) | Q(consented_at__isnull=True))
    if study.design == Study.Design.BETWEEN:
        counts = {cid: 0 for cid in conditions}
        for order in enrolled.values_list("condition_order", flat=True):
            for cid in order[:1]:
                if cid in counts:
                    counts[cid] += 1
        return [min(conditions, key=lambda cid: (counts[cid], conditions.index(cid)))]
    orders = condition_orders(study, conditions)
    return orders[enrolled.count() % len(orders)] if conditions else []


def condition_orders(study: Study, conditions: list) -> list[list]:
    """The orders in which participants get `conditions` (the study's, in position order): one order when it is
    fixed; when counterbalanced, every rotation, the k-th participant to consent getting rotation k mod n;
    between-subject, one condition each. What the console shows is what `assign_conditions` does."""
    if study.design == Study.Design.BETWEEN:
        return [[c] for c in conditions]
    if study.order == Study.Order.COUNTERBALANCED and conditions:
        return [conditions[shift:] + conditions[:shift] for shift in range(len(conditions))]
    return [list(conditions)]


def create_trials(participant: Participant) -> list[Trial]:
    """Lay out the participant's whole sequence up front, so what they will see is fixed and auditable."""
    study = participant.study
    rng = random.Random(participant.order_seed)
    items = list(
        ConditionItem.objects.filter(study=study)
        .select_related("task", "item")
        .order_by("role", "condition_id", "position")
    )
    conditions = {c.pk: c for c in study.conditions.all()}
    order = [cid for cid in participant.condition_order if cid in conditions]

    blocks: list[list[ConditionItem]] = []
    for cid in order:
        block = [ci for ci in items if ci.condition_id == cid and ci.role == ConditionItem.Role.SCORED]
        if study.randomise_item_order:
            rng.shuffle(block)
        blocks.append(block)
    # Catch items are spread over the conditions and placed at seeded random points within each block.
    catch = [ci for ci in items if ci.role == ConditionItem.Role.CATCH]
    for i, ci in enumerate(catch):
        block = blocks[i % len(blocks)]
        block.insert(rng.randint(0, len(block)), ci)
    practice = [ci for ci in items if ci.role == ConditionItem.Role.PRACTICE]

    sequence: list[tuple[ConditionItem, int]] = [(ci, order[0]) for ci in practice]
    for cid, block in zip(order, blocks, strict=True):
        sequence += [(ci, cid) for ci in block]

    # Protocol conditions' scored items: the transcript each trial shows (shared, or made here for this trial).
    transcripts = trial_transcripts(participant, [(cid, ci.item_id, ci.role) for ci, cid in sequence])
    trials = [
        Trial(
            participant=participant,
            condition_id=cid,
            item_id=ci.item_id,
            role=ci.role,
            position=position,
            time_limit_s=ci.task.time_limit_s,
            transcript=transcript,
        )
        for position, ((ci, cid), transcript) in enumerate(zip(sequence, transcripts, strict=True))
    ]
    return Trial.objects.bulk_create(trials)


def current_trial(participant: Participant) -> Trial | None:
    """The first trial not yet answered: the only one the participant may work on."""
    return (
        participant.trials.exclude(status__in=[Trial.Status.ANSWERED, Trial.Status.TIMED_OUT])
        .select_related("item", "item__passage", "condition")
        .order_by("position")
        .first()
    )


def catch_pass_rate(participant: Participant) -> float | None:
    stats = participant.trials.filter(role=ConditionItem.Role.CATCH).aggregate(
        n=Count("id"), right=Count("id", filter=Q(correct=True))
    )
    return None if not stats["n"] else stats["right"] / stats["n"]


@transaction.atomic
def participant_complete(*, participant: Participant, now=None) -> Participant:
    """Close the participant's record once every trial is final; screen out failed attention checks."""
    now = now or timezone.now()
    participant = Participant.objects.select_for_update().get(pk=participant.pk)
    if participant.status != Participant.Status.ACTIVE:
        return participant
    if participant.trials.exclude(status__in=[Trial.Status.ANSWERED, Trial.Status.TIMED_OUT]).exists():
        raise ValueError("participant still has unanswered trials")
    rate = catch_pass_rate(participant)
    if rate is not None and rate < participant.study.catch_pass_threshold:
        participant.status = Participant.Status.SCREENED_OUT
        kind = Event.Kind.SCREENED_OUT
    else:
        participant.status = Participant.Status.COMPLETED
        kind = Event.Kind.COMPLETED
    participant.completed_at = now
    participant.save(update_fields=["status", "completed_at"])
    Event.objects.create(participant=participant, kind=kind, at=now, data={"catch_pass_rate": rate})
    monitor_changed(study_id=participant.study_id, participant_id=participant.pk)
    return participant


def condition_label(condition: Condition) -> str:
    if condition.is_protocol:
        return protocols.LABELS.get(condition.kind, condition.get_kind_display())  # "Debate", "Consultancy", …
    return "With the AI assistant" if condition.kind == Condition.Kind.ASSISTED else "On your own"
