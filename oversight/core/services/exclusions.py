"""Exclusions: a researcher's reasoned decision to leave a participant out of analysis. Never deleted."""

import statistics

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from oversight.core.models import Condition, Exclusion, Participant, Study, StudyLogEntry, Trial
from oversight.core.services.participants import catch_pass_rate
from oversight.core.services.study_log import study_log_add

RULES = {
    "manual": "Excluded by hand",
    "catch": "Failed the attention checks",
    "outlier": "Unaided accuracy far from the other participants",
    "too_fast": "Answered implausibly fast",
    "incomplete": "Did not finish the study",
}


def active_exclusions(study: Study):
    return Exclusion.objects.filter(participant__study=study, revoked_at__isnull=True)


@transaction.atomic
def exclusion_add(*, participant: Participant, reason: str, rule: str, by) -> Exclusion:
    if rule not in RULES:
        raise ValueError(f"Unknown exclusion rule {rule!r}.")
    reason = reason.strip()
    if not reason:
        raise ValueError("Say why the participant is excluded.")
    existing = Exclusion.objects.filter(participant=participant, revoked_at__isnull=True).first()
    if existing:
        return existing
    exclusion = Exclusion.objects.create(participant=participant, reason=reason, rule=rule, created_by=by)
    study_log_add(
        study=participant.study,
        action=StudyLogEntry.Action.EXCLUSION,
        by=by,
        summary=f"P{participant.pk} excluded from analysis ({RULES[rule].lower()})",
        changes=[{"field": "reason", "label": "Reason", "before": "", "after": reason}],
    )
    return exclusion


@transaction.atomic
def exclusion_revoke(*, exclusion: Exclusion, by, now=None) -> Exclusion:
    revoked = Exclusion.objects.filter(pk=exclusion.pk, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now(), revoked_by=by
    )
    exclusion.refresh_from_db()
    if revoked:
        study_log_add(
            study=exclusion.participant.study,
            action=StudyLogEntry.Action.EXCLUSION,
            by=by,
            summary=f"P{exclusion.participant_id} included in analysis again (exclusion revoked)",
        )
    return exclusion


def exclusion_candidates(*, study: Study, rule: str, k: float = 2.0, min_seconds: float = 5.0) -> list[dict]:
    """Who a rule would exclude, with the evidence, for the researcher to review before applying."""
    participants = Participant.objects.filter(study=study, is_pilot=False, kind=Participant.Kind.HUMAN).exclude(
        status__in=[Participant.Status.CONSENT, Participant.Status.DECLINED]
    )
    final = [Trial.Status.ANSWERED, Trial.Status.TIMED_OUT]
    if rule == "catch":
        out = []
        for p in participants:
            rate = catch_pass_rate(p)
            if rate is not None and rate < study.catch_pass_threshold:
                out.append(
                    {
                        "participant": p,
                        "evidence": f"passed {rate:.0%} of attention checks "
                        f"(threshold {study.catch_pass_threshold:.0%})",
                    }
                )
        return out
    if rule == "incomplete":
        return [
            {"participant": p, "evidence": p.get_status_display()}
            for p in participants
            if p.status not in {Participant.Status.COMPLETED}
        ]
    if rule == "too_fast":
        out = []
        for p in participants:
            times = [
                (t.submitted_at - t.shown_at).total_seconds()
                for t in p.trials.filter(
                    status__in=final, role="scored", shown_at__isnull=False, submitted_at__isnull=False
                )
            ]
            if times and statistics.median(times) < min_seconds:
                out.append(
                    {
                        "participant": p,
                        "evidence": f"median {statistics.median(times):.1f} s per item (threshold {min_seconds:g} s)",
                    }
                )
        return out
    if rule == "outlier":
        # The paper excluded one participant per task whose unaided accuracy was far above the others'.
        accuracy = {}
        for row in (
            Trial.objects.filter(
                participant__in=participants, role="scored", status__in=final, condition__kind=Condition.Kind.UNAIDED
            )
            .values("participant_id")
            .annotate(n=Count("id"), right=Count("id", filter=Q(correct=True)))
        ):
            if row["n"]:
                accuracy[row["participant_id"]] = row["right"] / row["n"]
        out = []
        for p in participants:
            if p.pk not in accuracy:
                continue
            others = [a for pid, a in accuracy.items() if pid != p.pk]
            if len(others) < 2:
                continue
            mean, sd = statistics.mean(others), statistics.stdev(others)
            if sd > 0 and abs(accuracy[p.pk] - mean) > k * sd:
                out.append(
                    {
                        "participant": p,
                        "evidence": f"unaided accuracy {accuracy[p.pk]:.0%} vs the others' "
                        f"{mean:.0%} ± {sd:.0%} (k = {k:g})",
                    }
                )
        return out
    raise ValueError(f"Unknown exclusion rule {rule!r}.")
