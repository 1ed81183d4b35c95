"""Paying participants: a performance bonus per correct scored answer, and who to approve.

The bonus rule, as in Parrish et al.: a fixed amount for every correct answer to a *scored* item (practice and
attention-check items earn nothing), counted over the participant's final trials (answered, or timed out with
the right option selected). Who gets it:

- completed participants: their bonus;
- screened-out participants (failed the attention checks): no bonus — they were sent to the screen-out code;
- participants who did not finish (active, returned, declined, never consented): no bonus — Prolific only pays
  bonuses to submissions of the study, and an unfinished one has no completion to approve;
- pilots: never (they are not recruited participants);
- participants with an active exclusion: their bonus by default — an exclusion is an analysis decision and the
  answers were still right; `withhold_excluded=True` (`--withhold-excluded`) leaves them out.

Amounts are rounded to the cent (half up). Prolific's bulk bonus format, for the web form (Submissions → Bulk
bonus payment) and the API's `csv_bonuses` alike, is one line per participant, `<participant id>,<amount>`,
no header, the amount a decimal in the study's currency with two decimals (`60ffe5c8371090c7041d43f8,4.25` pays
£4.25 on a GBP study). Only participants who joined with a Prolific id (`PROLIFIC_PID`) can be in it, and zero
amounts are left out.

These files carry the Prolific ids: they are for paying people, not for publication, and are written whatever the
study's "allow external id export" setting (which governs data exports).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TextIO

from django.db.models import Count, Exists, OuterRef, Q

from oversight.core.models import ConditionItem, Exclusion, Participant, Study, Trial
from oversight.exports.registry import pid

CENT = Decimal("0.01")
PROLIFIC_PREFIX = "prolific:"

# What to do with each participant's Prolific submission, by status.
ACTIONS = {
    Participant.Status.COMPLETED: ("approve", "Completed: was shown the completion code."),
    Participant.Status.SCREENED_OUT: ("screened_out", "Failed the attention checks: was shown the screen-out code."),
    Participant.Status.ACTIVE: ("not_finished", "Started but did not finish: no completion code was shown."),
    Participant.Status.RETURNED: ("not_finished", "Returned or abandoned the study."),
    Participant.Status.DECLINED: ("not_finished", "Declined consent: should return the submission."),
    Participant.Status.CONSENT: ("not_finished", "Opened the study but never answered the consent form."),
}


def parse_amount(text: str | Decimal) -> Decimal:
    try:
        amount = Decimal(str(text))
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"the amount per correct answer must be 0 or more (got {text})")
    return amount


@dataclass(frozen=True)
class PaymentRow:
    participant_id: str  # P<number>
    prolific_pid: str  # "" when they did not join through Prolific
    external_id: str
    status: str
    is_pilot: bool
    excluded: bool
    n_scored: int  # final scored trials
    n_correct: int
    bonus: Decimal
    action: str  # approve, screened_out, not_finished, pilot
    note: str


def payment_rows(*, study: Study, per_correct: Decimal | str, withhold_excluded: bool = False) -> list[PaymentRow]:
    """One row per participant of the study (pilots included, marked), with their bonus under the rule above."""
    per_correct = parse_amount(per_correct)
    scored = Q(
        trials__role=ConditionItem.Role.SCORED, trials__status__in=[Trial.Status.ANSWERED, Trial.Status.TIMED_OUT]
    )
    active = Exclusion.objects.filter(participant=OuterRef("pk"), revoked_at__isnull=True)
    participants = (
        Participant.objects.filter(study=study, kind=Participant.Kind.HUMAN)  # model judges are not paid
        .annotate(
            n_scored=Count("trials", filter=scored),
            n_correct=Count("trials", filter=scored & Q(trials__correct=True)),
            excluded=Exists(active),
        )
        .order_by("pk")
    )
    rows = []
    for p in participants:
        action, note = ACTIONS.get(p.status, ("not_finished", p.status))
        eligible = p.status == Participant.Status.COMPLETED
        if p.is_pilot:
            action, note, eligible = "pilot", "Pilot participant: not paid through the recruitment platform.", False
        elif p.excluded and withhold_excluded and eligible:
            note, eligible = note + " Excluded from analysis: bonus withheld.", False
        elif p.excluded:
            note += " Excluded from analysis."
        bonus = (per_correct * p.n_correct).quantize(CENT, rounding=ROUND_HALF_UP) if eligible else Decimal("0.00")
        prolific = p.external_id.removeprefix(PROLIFIC_PREFIX) if p.external_id.startswith(PROLIFIC_PREFIX) else ""
        rows.append(
            PaymentRow(
                participant_id=pid(p.pk),
                prolific_pid=prolific,
                external_id=p.external_id,
                status=p.status,
                is_pilot=p.is_pilot,
                excluded=p.excluded,
                n_scored=p.n_scored,
                n_correct=p.n_correct,
                bonus=bonus,
                action=action,
                note=note,
            )
        )
    return rows


def prolific_bonus_lines(rows: Iterable[PaymentRow]) -> list[str]:
    """`<PROLIFIC_PID>,<amount>` for every Prolific participant with a bonus above zero."""
    return [f"{r.prolific_pid},{r.bonus:.2f}" for r in rows if r.prolific_pid and r.bonus > 0]


def unpayable(rows: Iterable[PaymentRow]) -> list[PaymentRow]:
    """Participants owed a bonus who did not join through Prolific (pay them another way)."""
    return [r for r in rows if r.bonus > 0 and not r.prolific_pid]


def write_prolific_bonus_csv(rows: Iterable[PaymentRow], out: TextIO) -> int:
    lines = prolific_bonus_lines(rows)
    out.writelines(line + "\n" for line in lines)
    return len(lines)


STATUS_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "external_id",
    "status",
    "action",
    "is_pilot",
    "excluded",
    "n_scored",
    "n_correct",
    "bonus",
    "note",
)


def write_statuses_csv(rows: Iterable[PaymentRow], out: TextIO) -> int:
    """Every participant, what to do with their submission (approve / screened out / not finished / pilot) and
    their bonus: the list to approve submissions from."""
    writer = csv.writer(out)
    writer.writerow(STATUS_COLUMNS)
    n = 0
    for r in rows:
        writer.writerow(
            [
                r.participant_id,
                r.prolific_pid,
                r.external_id,
                r.status,
                r.action,
                "true" if r.is_pilot else "false",
                "true" if r.excluded else "false",
                r.n_scored,
                r.n_correct,
                f"{r.bonus:.2f}",
                r.note,
            ]
        )
        n += 1
    return n
