"""A participant's way through a study, step by step, decided by the server.

consent → the study's instructions → the comprehension check → practice items → for each condition block: its
introduction (the condition's instructions; between blocks, "Part 1 of 2 done. Next: …"), then its items → done.

Where a participant is follows from their row and their trials alone (`Progress.step`), so a refresh, a second
tab, the back button or a return the next day all land on the same step. Each step is passed once, by a POST that
a service below records (with its event) and that, when an item comes next, also shows that item in the same
transaction: the page answering the POST is the item, its clock started.

Studies launched before these steps existed keep working: the instructions and the check are only offered
before the first item is shown, and a block introduction only before its block's first item.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.db import transaction
from django.utils import timezone

from oversight.core.launched import LaunchedStudy, launched_study
from oversight.core.models import Condition, ConditionItem, Event, Participant, Study, Trial
from oversight.core.prepared import PreparedQuery, insert_rows
from oversight.core.services.monitor import monitor_changed
from oversight.core.services.participants import participant_complete
from oversight.core.services.trials import Answer, AnswerError, apply_show, apply_submit


class StepKind:
    CONSENT = "consent"  # enrolled but not yet consented
    DECLINED = "declined"
    INSTRUCTIONS = "instructions"
    CHECK = "check"  # the comprehension check
    BLOCK = "block"  # a condition block's introduction
    TRIAL = "trial"
    FEEDBACK = "feedback"  # the correct option of the trial just answered (studies that reveal it)
    COMPLETE = "complete"  # every trial final, the participant not yet closed
    DONE = "done"


@dataclass(frozen=True)
class Block:
    """One condition's run of items, in the order this participant does the conditions."""

    number: int  # 1-based
    total: int
    condition: Condition
    first_position: int
    after_practice: bool  # the practice items came just before it

    @property
    def has_introduction(self) -> bool:
        # Between blocks there is always a page saying one part ended and what the next one is; before the first
        # block only if there is something to say (its instructions, or that the practice is over).
        return bool(self.condition.instructions.strip()) or self.number > 1 or self.after_practice


@dataclass(frozen=True)
class Step:
    kind: str
    trial: Trial | None = None
    block: Block | None = None


# Every request on the participant path reads these rows: compiled once per process (core.prepared).
_TRIALS_OF = PreparedQuery(
    lambda participant_id: Trial.objects.filter(participant_id=participant_id).order_by("position"), int
)


_PARTICIPANT, _ITEM, _CONDITION = (Trial._meta.get_field(name) for name in ("participant", "item", "condition"))


class Progress:
    """A participant, their trials (one query) and their study's frozen parts (cached per process).

    The trials' rows are all read, but a row becomes a `Trial` only when asked for: a step needs two of twenty,
    and making all twenty was the largest single cost of an answer (issue 15's py-spy). What decides the step for
    every trial (its position, condition and role, which never change, and its status) is read from the rows,
    the status from the `Trial` once there is one (the services change it in place)."""

    def __init__(self, participant: Participant, rows: list[tuple], launched: LaunchedStudy):
        self.participant = participant
        self.launched = launched
        position, status, condition, role = map(_TRIALS_OF.index, ("position", "status", "condition_id", "role"))
        self._rows = {row[position]: row for row in rows}  # in position order
        self._statuses = {row[position]: row[status] for row in rows}
        self._shape = [(row[position], row[condition], row[role]) for row in rows]
        self._built: dict[int, Trial] = {}

    @classmethod
    def load(cls, participant: Participant) -> Progress:
        return cls(participant, _TRIALS_OF.rows(participant.pk), launched_study(participant.study))

    @property
    def study(self) -> Study:
        return self.participant.study

    @property
    def total(self) -> int:
        return len(self._rows)

    def trial_at(self, position: int) -> Trial | None:
        trial = self._built.get(position)
        if trial is None and position in self._rows:
            trial = self._built[position] = _TRIALS_OF.instance(self._rows[position])
            # Attached, not fetched: the item, its passage and the condition come from the launched study. Put in
            # the related-object caches directly (the descriptors' checks are for objects of unknown origin).
            _PARTICIPANT.set_cached_value(trial, self.participant)
            _ITEM.set_cached_value(trial, self.launched.item(trial.item_id))
            _CONDITION.set_cached_value(trial, self.launched.condition(trial.condition_id))
        return trial

    def _status(self, position: int) -> str:
        trial = self._built.get(position)
        return self._statuses[position] if trial is None else trial.status

    def current_trial(self) -> Trial | None:
        """The first trial not yet answered: the only one the participant may work on."""
        final = {Trial.Status.ANSWERED, Trial.Status.TIMED_OUT}
        return next((self.trial_at(p) for p in self._rows if self._status(p) not in final), None)

    def timed_out_before(self, position: int) -> Trial | None:
        """The trial just before `position`, if the clock ended it: the next page says so."""
        if position - 1 not in self._rows or self._status(position - 1) != Trial.Status.TIMED_OUT:
            return None
        return self.trial_at(position - 1)

    def rebind(self, participant: Participant) -> None:
        """The participant's row was read again (locked): the trials made so far and to come point to it."""
        self.participant = participant
        for trial in self._built.values():
            _PARTICIPANT.set_cached_value(trial, participant)

    @cached_property
    def blocks(self) -> list[Block]:
        order = [cid for cid in self.participant.condition_order if cid in self.launched.conditions]
        has_practice = any(role == ConditionItem.Role.PRACTICE for _, _, role in self._shape)
        blocks = []
        for index, cid in enumerate(order):
            positions = [pos for pos, condition, role in self._shape if condition == cid and role != "practice"]
            if positions:
                blocks.append(
                    Block(
                        number=index + 1,
                        total=len(order),
                        condition=self.launched.condition(cid),
                        first_position=min(positions),
                        after_practice=index == 0 and has_practice,
                    )
                )
        return blocks

    def block_of(self, trial: Trial) -> Block | None:
        """The block `trial` belongs to; None for a practice item."""
        if trial.role == ConditionItem.Role.PRACTICE:
            return None
        return next((b for b in self.blocks if b.condition.pk == trial.condition_id), None)

    def step(self) -> Step:
        """Where the participant is now."""
        p = self.participant
        if p.status == Participant.Status.DECLINED:
            return Step(StepKind.DECLINED)
        if p.status in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
            return Step(StepKind.DONE)
        if p.status == Participant.Status.CONSENT:
            return Step(StepKind.CONSENT)
        untouched = all(self._status(position) == Trial.Status.PENDING for position in self._rows)
        if untouched and self.study.instructions.strip() and p.instructions_read_at is None:
            return Step(StepKind.INSTRUCTIONS)
        if untouched and self.study.comprehension_questions and p.comprehension_passed_at is None:
            return Step(StepKind.CHECK)
        current = self.current_trial()
        if current is None:
            return Step(StepKind.COMPLETE)
        block = self.block_of(current)
        if (
            block is not None
            and block.has_introduction
            and current.status == Trial.Status.PENDING
            and current.position == block.first_position
            and p.blocks_started < block.number
        ):
            return Step(StepKind.BLOCK, block=block)
        return Step(StepKind.TRIAL, trial=current)


def _advance(progress: Progress, now, events: list[Event]) -> Step:
    """The step after a change. An item that comes next is shown now, in the caller's transaction (its event goes
    into `events`); a participant with every trial final is closed."""
    step = progress.step()
    if step.kind == StepKind.TRIAL:
        events += apply_show(trial=step.trial, now=now)
    elif step.kind == StepKind.COMPLETE:
        closed = participant_complete(participant=progress.participant, now=now)
        progress.participant.status, progress.participant.completed_at = closed.status, closed.completed_at
        step = Step(StepKind.DONE)
    return step


@transaction.atomic
def participant_advance(*, progress: Progress, now=None) -> Step:
    """Where the participant is, with the current item shown (its clock started) if it was not yet."""
    now = now or timezone.now()
    events: list[Event] = []
    step = _advance(progress, now, events)
    insert_rows(events)
    return step


@transaction.atomic
def participant_read_instructions(*, progress: Progress, now=None) -> Step:
    """The participant has read the study's instructions (a second POST changes nothing)."""
    now = now or timezone.now()
    p = progress.participant
    events: list[Event] = []
    if progress.step().kind == StepKind.INSTRUCTIONS:
        if Participant.objects.filter(pk=p.pk, instructions_read_at__isnull=True).update(instructions_read_at=now):
            events.append(Event(participant=p, kind=Event.Kind.INSTRUCTIONS_READ, at=now))
        p.instructions_read_at = p.instructions_read_at or now
    step = _advance(progress, now, events)
    insert_rows(events)
    return step


@dataclass(frozen=True)
class CheckResult:
    attempt: int
    wrong: list[int]  # indexes of the questions answered wrongly
    attempts_left: int

    @property
    def passed(self) -> bool:
        return not self.wrong


def comprehension_answers(study: Study, data) -> list[int]:
    """The chosen option of every question (`q0`, `q1`, … in `data`), or AnswerError if any is missing or bad."""
    answers = []
    for i, question in enumerate(study.comprehension_questions):
        raw = data.get(f"q{i}")
        if raw in (None, ""):
            raise AnswerError("Please answer every question.")
        try:
            answer = int(raw)
        except (TypeError, ValueError):
            raise AnswerError("That option does not exist.") from None
        if not 0 <= answer < len(question["options"]):
            raise AnswerError("That option does not exist.")
        answers.append(answer)
    return answers


def max_attempts(study: Study) -> int:
    return max(1, study.comprehension_max_attempts)


@transaction.atomic
def participant_check_comprehension(
    *, progress: Progress, answers: list[int], now=None
) -> tuple[Step, CheckResult | None]:
    """One complete attempt at the comprehension check (see docs/participant.md for the rule).

    All answers right: the participant goes on. Otherwise the attempt is recorded and they try again, until
    `Study.comprehension_max_attempts` complete attempts have failed: then they are screened out, and the done
    page gives them the study's screen-out code. An attempt arriving when the check is no longer the step (a
    second tab, a double click) changes nothing and gets (step, None).
    """
    now = now or timezone.now()
    study = progress.study
    if progress.step().kind != StepKind.CHECK:
        return progress.step(), None
    # Locked: two tabs submitting at once must count as two attempts, never lose one.
    p = Participant.objects.select_for_update().get(pk=progress.participant.pk)
    if p.status != Participant.Status.ACTIVE or p.comprehension_passed_at is not None:
        progress.rebind(p)
        return progress.step(), None
    wrong = [i for i, (q, a) in enumerate(zip(study.comprehension_questions, answers, strict=True)) if a != q["answer"]]
    p.comprehension_attempts += 1
    fields = ["comprehension_attempts"]
    events = [
        Event(
            participant=p,
            kind=Event.Kind.COMPREHENSION_ATTEMPT,
            at=now,
            data={"attempt": p.comprehension_attempts, "answers": answers, "wrong": wrong, "passed": not wrong},
        )
    ]
    if not wrong:
        p.comprehension_passed_at = now
        fields.append("comprehension_passed_at")
    elif p.comprehension_attempts >= max_attempts(study):
        p.status = Participant.Status.SCREENED_OUT
        p.completed_at = now
        fields += ["status", "completed_at"]
        events.append(
            Event(
                participant=p,
                kind=Event.Kind.SCREENED_OUT,
                at=now,
                data={"reason": "comprehension", "attempts": p.comprehension_attempts},
            )
        )
        monitor_changed(study_id=study.pk, participant_id=p.pk)
    p.save(update_fields=fields)
    p.study = study
    progress.rebind(p)
    step = _advance(progress, now, events) if not wrong else progress.step()
    insert_rows(events)
    result = CheckResult(
        attempt=p.comprehension_attempts,
        wrong=wrong,
        attempts_left=max(0, max_attempts(study) - p.comprehension_attempts),
    )
    return step, result


@transaction.atomic
def participant_start_block(*, progress: Progress, number: int, now=None) -> Step:
    """The participant has read block `number`'s introduction: its first item is shown."""
    now = now or timezone.now()
    p = progress.participant
    events: list[Event] = []
    step = progress.step()
    if step.kind == StepKind.BLOCK and step.block.number == number:
        if Participant.objects.filter(pk=p.pk, blocks_started__lt=number).update(blocks_started=number):
            events.append(
                Event(
                    participant=p,
                    kind=Event.Kind.BLOCK_STARTED,
                    at=now,
                    data={"block": number, "condition_id": step.block.condition.pk},
                )
            )
        p.blocks_started = max(p.blocks_started, number)
    step = _advance(progress, now, events)
    insert_rows(events)
    return step


@transaction.atomic
def participant_answer(
    *, progress: Progress, trial: Trial, answer: Answer, kind: str, now=None, posted: dict | None = None
) -> Step:
    """Commit an answer and move on, in one transaction: the next item is shown in it (or, where the study
    reveals the correct option, the step is this trial's feedback)."""
    now = now or timezone.now()
    events = apply_submit(trial=trial, answer=answer, kind=kind, now=now, posted=posted)
    if progress.study.reveal_gold and trial.is_final:
        step = Step(StepKind.FEEDBACK, trial=trial)
    else:
        step = _advance(progress, now, events)
    insert_rows(events)
    return step


def participant_refuse_answer(*, trial: Trial, reason: str, posted: dict, now=None) -> None:
    """Record a submission refused for what it lacked (no option, an untouched slider) or carried: the
    researcher sees how often participants tried to go on without answering."""
    Event.objects.create(
        participant_id=trial.participant_id,
        trial=trial,
        kind=Event.Kind.ANSWER_REFUSED,
        at=now or timezone.now(),
        data={"reason": reason, "posted": posted},
    )
