"""Execute a judge run: claim it, judge each unit not judged yet, record every answer as a model participant's
trial, finish once.

The units: replay, every final scored trial of the condition's people (pilots left out); live, every scored item
of the condition's frozen sample, in its order. A unit is judged outside any transaction (the model may take
seconds) and written in one transaction with its trial, so a run that dies resumes where it stopped and never
writes an answer twice (`JudgeVerdict`'s constraint, and the trial's own). The run heartbeats before each unit and
stops at the first unit after a cancel.

The model calls go through the baselines' backends (`baselines.clients`): one event loop and one connection pool
per execution, the same retries and error kinds, the same letter scoring.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from oversight.assistant.backends import AssistantError, request_for_endpoint, stream_reply
from oversight.assistant.debate import transcript_question
from oversight.assistant.models import ChatMessage
from oversight.assistant.selfplay import generate_transcript, generate_turns
from oversight.assistant.services import ChatRejected, chat_send, generation_finish, generation_flush
from oversight.baselines.clients import ItemError, ItemSpec, Settings, backend_for
from oversight.baselines.prompts import PromptItem
from oversight.baselines.scoring import normalise, predict
from oversight.core.models import Condition, ConditionItem, Participant, Trial
from oversight.core.services.protocols import trial_transcripts

from .material import Material, material_for
from .models import AnswerMethod, JudgeRun, JudgeVerdict, Mode
from .prompts import ASK, ASK_ADVOCATES, letter_prompt, parse_probabilities, question_prompt, verbal_prompt

FINAL = frozenset({Trial.Status.ANSWERED, Trial.Status.TIMED_OUT})
SIMULATED_QUESTION = "Which answer is right, and what in the story shows it?"
MAX_STEPS = 50  # a debate's steps: rounds and the judge's turns between them (a guard, never reached by design)
FLUSH_S = 0.5  # as the chat's own generation flushes: the reply's heartbeat and its text so far


class RunError(Exception):
    """A judge run that cannot be made as asked (a draft study, a live run of a study no longer live, …)."""


@dataclass(frozen=True)
class Outcome:
    outcome: str  # done | cancelled | skipped | failed
    judged: int = 0
    errors: int = 0


def model_record(run: JudgeRun, **extra) -> dict:
    """The record a model participant carries (no token: secrets never leave the endpoint's row)."""
    endpoint = run.endpoint
    return {
        "endpoint": {"id": endpoint.pk, "name": endpoint.name, "kind": endpoint.kind},
        "model_id": endpoint.model_label or endpoint.name,
        "sampling": {"temperature": run.params.get("temperature", 0.0)},
        "method": run.answer,
        "judge_run": run.pk,
        "mode": run.mode,
        **extra,
    }


class Judge:
    """One execution of one run: the backend, its event loop, and the model participants made so far."""

    def __init__(self, run: JudgeRun):
        self.run = run
        self.chat = run.endpoint.kind == "openai"
        self.settings = Settings(
            top_n=int(run.params.get("top_n", 5)),
            max_retries=int(run.params.get("max_retries", 5)),
            retry_base_s=float(run.params.get("retry_base_s", 0.5)),
            retry_cap_s=float(run.params.get("retry_cap_s", 8.0)),
            temperature=float(run.params.get("temperature", 0.0)),
            max_reasoning_tokens=int(run.params.get("max_tokens", 200)),
        )
        self.loop = asyncio.new_event_loop()
        self.backend = backend_for(request_for_endpoint(run.endpoint), self.settings)
        self.participants: dict[int | None, Participant] = {}

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.backend.aclose())
        finally:
            self.loop.close()

    # -- units -------------------------------------------------------------------------------------------------

    def units(self) -> list:
        run = self.run
        if run.mode == Mode.REPLAY:
            return list(
                Trial.objects.filter(
                    condition=run.condition,
                    role=ConditionItem.Role.SCORED,
                    status__in=FINAL,
                    participant__kind=Participant.Kind.HUMAN,
                    participant__is_pilot=False,
                )
                .select_related("participant", "item__passage", "condition", "transcript")
                .order_by("participant_id", "position")
            )
        return list(
            ConditionItem.objects.filter(condition=run.condition, role=ConditionItem.Role.SCORED)
            .select_related("item__passage")
            .order_by("task__position", "task_id", "position")
        )

    def judged(self, unit) -> bool:
        if self.run.mode == Mode.REPLAY:
            return JudgeVerdict.objects.filter(run=self.run, source_trial=unit).exists()
        return JudgeVerdict.objects.filter(run=self.run, trial__item_id=unit.item_id).exists()

    def judge(self, unit) -> str:
        """Judge one unit and store the answer; returns the method used."""
        if self.run.mode == Mode.REPLAY:
            trial = unit
            participant = self.participant(mirrors=trial.participant)
        else:
            participant = self.participant(mirrors=None)
            trial = self.live_trial(participant, unit)
        material = material_for(trial)
        started = timezone.now()
        probabilities, method, prompt, response = self.answer(material, trial)
        self.store(participant, trial, material, probabilities, method, prompt, response, started)
        return method

    # -- the model participant and its trials ------------------------------------------------------------------

    def participant(self, *, mirrors: Participant | None) -> Participant:
        """Replay: one model participant per person judged (their trials mirror the person's, position for
        position); live: one for the run, its trials laid out up front (`lay_out`)."""
        key = mirrors.pk if mirrors else None
        if key in self.participants:
            return self.participants[key]
        run = self.run
        found = Participant.objects.filter(study=run.study, kind=Participant.Kind.MODEL, model__judge_run=run.pk)
        found = found.filter(model__mirrors=key) if key else found
        participant = found.order_by("pk").first()
        if participant is None:
            now = timezone.now()
            with transaction.atomic():
                participant = Participant.objects.create(
                    study=run.study,
                    kind=Participant.Kind.MODEL,
                    model=model_record(run, **({"mirrors": key} if key else {})),
                    status=Participant.Status.COMPLETED,
                    condition_order=[run.condition_id],
                    order_seed=secrets.randbits(62),
                    is_pilot=bool(mirrors and mirrors.is_pilot),
                    consented_at=now,
                    completed_at=now,
                )
                if run.mode == Mode.LIVE:
                    self.lay_out(participant)
        self.participants[key] = participant
        return participant

    def lay_out(self, participant: Participant) -> None:
        """A live judge's trials, one per unit in order, made up front as a person's are: a live protocol's
        transcripts come from the same rule (`trial_transcripts`, which alternates which answer is shown first
        along the judge's sequence, from a side drawn from its seed)."""
        units = self.units()
        sequence = [(self.run.condition_id, unit.item_id, ConditionItem.Role.SCORED) for unit in units]
        transcripts = trial_transcripts(participant, sequence)
        Trial.objects.bulk_create(
            Trial(
                participant=participant,
                condition_id=self.run.condition_id,
                item_id=unit.item_id,
                role=ConditionItem.Role.SCORED,
                position=position,
                transcript=transcript,
            )
            for position, (unit, transcript) in enumerate(zip(units, transcripts, strict=True))
        )

    def live_trial(self, participant: Participant, unit: ConditionItem) -> Trial:
        """The model's own trial of a live unit, shown, with what the judge does in it: the chat of an assisted
        condition (asked once; a resumed run finds it there), the debate of a live protocol (run to its end,
        the judge questioning the advocates where the condition lets it)."""
        trial = Trial.objects.get(participant=participant, condition=self.run.condition, item=unit.item)
        if trial.status == Trial.Status.PENDING:
            Trial.objects.filter(pk=trial.pk).update(status=Trial.Status.SHOWN, shown_at=timezone.now())
        if self.run.condition.kind == Condition.Kind.ASSISTED and not trial.messages.exists():
            for _ in range(int(self.run.params.get("questions", 1))):
                self.ask(trial)
        if trial.transcript_id and not trial.transcript.shared:
            self.debate(trial)
        return Trial.objects.select_related("item__passage", "condition", "participant", "transcript").get(pk=trial.pk)

    def debate(self, trial: Trial) -> None:
        """Run the trial's transcript to its end. Between rounds of an interactive condition the judge writes a
        question (`questions` times per transcript, default 1; afterwards it goes on without one)."""
        asked = sum(1 for _ in trial.transcript.turns.filter(role="judge").exclude(content=""))
        limit = int(self.run.params.get("questions", 1))
        for _ in range(MAX_STEPS):
            transcript = generate_transcript(trial.transcript_id)  # to its end, or until it waits for the judge
            if transcript.is_finished:
                return
            text = ""
            if asked < limit:
                text = self.write(trial, ASK_ADVOCATES)
                asked += 1
            advanced = transcript_question(trial_id=trial.pk, text=text)
            generate_turns(advanced.jobs)
        raise ItemError("debate", f"the transcript did not end within {MAX_STEPS} steps")

    def write(self, trial: Trial, ask: str) -> str:
        """The judge's own message on the material so far (`ask` says to whom). The simulated endpoint writes no
        text of its own (its samples are placeholders), so as a judge it asks a fixed, neutral question."""
        if self.run.endpoint.kind == "simulated":
            return SIMULATED_QUESTION
        material = material_for(Trial.objects.select_related("item__passage", "condition").get(pk=trial.pk))
        prompt = question_prompt(material.text, chat=self.chat, ask=ask)
        text, _ = self.loop.run_until_complete(self.backend.sample(prompt, self.spec(material, trial), 0, []))
        return (text.strip() or SIMULATED_QUESTION)[: trial.condition.max_message_chars]

    def ask(self, trial: Trial) -> None:
        """The judge writes a message to the assistant, which answers it exactly as it answers a person (the chat
        service stores both, with the assistant's model record)."""
        sent = chat_send(trial_id=trial.pk, text=self.write(trial, ASK))
        if sent.job is not None:
            self.reply(sent.job)

    def reply(self, job) -> None:
        """Generate the assistant's reply to the judge in full and finalise it. The stream is driven from this
        thread, which stores the text so far every half second (`generation_flush`): that is the reply's
        heartbeat, so no sweep takes it for a reply whose process died, and a watcher sees it grow."""
        stream = stream_reply(job.request).__aiter__()
        text, started, ttft, flushed = "", time.monotonic(), None, time.monotonic()
        fields = {"status": ChatMessage.Status.COMPLETE, "error_kind": "", "error": ""}
        while True:
            try:
                chunk = self.loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                break
            except AssistantError as exc:
                fields.update(status=ChatMessage.Status.FAILED, error_kind=exc.kind, error=exc.detail)
                break
            if chunk.text:
                ttft = ttft if ttft is not None else (time.monotonic() - started) * 1000
                text += chunk.text
            if chunk.finish_reason:
                fields["finish_reason"] = chunk.finish_reason
            if time.monotonic() - flushed >= FLUSH_S:
                flushed = time.monotonic()
                if generation_flush(texts={job.message_id: text}):
                    break  # ended elsewhere (stopped from the console): what it stored stands
        self.loop.run_until_complete(stream.aclose())
        total = (time.monotonic() - started) * 1000
        generation_finish(message_id=job.message_id, text=text, ttft_ms=ttft, total_ms=total, **fields)

    # -- the answer --------------------------------------------------------------------------------------------

    def spec(self, material: Material, trial: Trial) -> ItemSpec:
        item = trial.item
        gold = material.options.index(item.gold_index) if item.gold_index in material.options else None
        return ItemSpec(
            id=item.pk,
            key=f"{item.bank_id}:{item.external_id}",
            item=PromptItem(question=item.text, options=material.answers),
            gold_index=gold,  # read by the simulated endpoint only (its configured accuracy); never in a prompt
        )

    def answer(self, material: Material, trial: Trial) -> tuple[list[float], str, str, dict]:
        """(probability per letter, method, the prompt sent, the raw answer)."""
        spec = self.spec(material, trial)
        method = self.run.answer
        if method in (AnswerMethod.AUTO, AnswerMethod.LOGPROBS):
            prompt = letter_prompt(material.text, material.letters, chat=self.chat)
            try:
                dist = self.loop.run_until_complete(self.backend.distribution(prompt, spec))
            except ItemError as err:
                if not (method == AnswerMethod.AUTO and err.kind == "no_logprobs"):
                    raise
            else:
                used = "simulated" if self.run.endpoint.kind == "simulated" else "logprobs"
                return normalise(dist.logprobs), used, prompt.display(), {**dist.response, "missing": dist.missing}
        prompt = verbal_prompt(material.text, material.letters, chat=self.chat)
        reply, detail = self.loop.run_until_complete(self.backend.sample(prompt, spec, 0, stop=[]))
        stated = parse_probabilities(reply, material.letters)
        if stated is None:
            raise ItemError("unparsed", f"no probability per answer in the reply: {reply[:300]!r}")
        return stated, "verbal", prompt.display(), {"reply": reply, **detail}

    def store(self, participant, trial, material, probabilities, method, prompt, response, started) -> None:
        """The answer as the model participant's trial (a replay's new trial, a live trial's final state) and its
        verdict, in one transaction."""
        item = trial.item
        letter = predict(probabilities)
        choice = material.options[letter]
        per_option = [0.0] * len(item.options)
        for k, index in enumerate(material.options):
            per_option[index] = probabilities[k]
        answer = {
            "status": Trial.Status.ANSWERED,
            "choice": choice,
            "confidence": 100 * per_option[choice],
            "selected_choice": choice,
            "selected_confidence": 100 * per_option[choice],
            "distribution": [100 * p for p in per_option],
            "correct": item.is_correct(choice),
            "submitted_at": timezone.now(),
            "submit_kind": Trial.SubmitKind.MODEL,
        }
        with transaction.atomic():
            if self.run.mode == Mode.REPLAY:
                own = Trial.objects.create(
                    participant=participant,
                    condition_id=trial.condition_id,
                    item=item,
                    role=trial.role,
                    position=trial.position,
                    transcript_id=trial.transcript_id,
                    shown_at=started,
                    **answer,
                )
                source = trial
            else:
                Trial.objects.filter(pk=trial.pk).update(**answer)
                own, source = trial, None
            JudgeVerdict.objects.create(
                run=self.run,
                trial=own,
                source_trial=source,
                material=material.text,
                prompt=prompt,
                probabilities=per_option,
                method=method,
                response=response,
            )


def execute(run_id: int) -> Outcome:
    """Execute run `run_id` to its end (see the module docstring). Safe to call twice: a run done, cancelled or
    held by a live executor is left alone."""
    token = secrets.token_hex(16)
    run = JudgeRun.objects.select_related("study", "condition", "endpoint").get(pk=run_id)
    if not run.claim(token):
        return Outcome("skipped")
    mine = Q(claimed_by=token)
    judge = None
    methods: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    try:
        judge = Judge(run)
        units = judge.units()
        run.set_progress(where=mine, total=len(units), message="Judging")
        judged = 0
        for unit in units:
            if JudgeRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
                run.finish(JudgeRun.Status.CANCELLED, message="Cancelled: the answers so far are kept", where=mine)
                return Outcome("cancelled", judged, sum(errors.values()))
            if not run.set_progress(where=mine, heartbeat_at=timezone.now()):
                return Outcome("skipped", judged, sum(errors.values()))  # taken over by another executor
            if not judge.judged(unit):
                try:
                    methods[judge.judge(unit)] += 1
                except (ItemError, ChatRejected) as err:
                    errors[getattr(err, "kind", "chat_rejected")] += 1
                except IntegrityError:
                    # Written meanwhile by an executor that was presumed dead: its answer stands. Anything else
                    # is a real conflict, counted as an error of its own.
                    if not judge.judged(unit):
                        errors["conflict"] += 1
            judged += 1
            run.set_progress(where=mine, done=judged, errors=sum(errors.values()))
        summary = run_summary(run, methods, errors)
        message = f"{summary['answered']} answered" + (f", {summary['errors']} errors" if errors else "")
        run.finish(JudgeRun.Status.DONE, message=message, where=mine, summary=summary)
        return Outcome("done", judged, sum(errors.values()))
    except Exception as exc:  # noqa: BLE001 - the run must end visibly; the log has the traceback
        run.fail_unexpectedly(exc)
        return Outcome("failed")
    finally:
        if judge is not None:
            judge.close()


def run_summary(run: JudgeRun, methods: Counter, errors: Counter) -> dict:
    """Over every answer of the run (this execution's and earlier ones'): answered, right, methods, errors."""
    verdicts = JudgeVerdict.objects.filter(run=run)
    correct = list(verdicts.values_list("trial__correct", flat=True))
    labelled = [c for c in correct if c is not None]
    return {
        "answered": len(correct),
        "n_correct": sum(labelled),
        "accuracy": 100 * sum(labelled) / len(labelled) if labelled else None,
        "methods": dict(Counter(verdicts.values_list("method", flat=True))),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(sorted(errors.items())),
    }
