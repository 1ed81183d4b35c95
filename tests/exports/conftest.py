"""A small finished study for the export tests: participants who completed, were screened out, excluded, did not
finish or were pilots; a chat with quotes; a debate condition whose transcripts are written as each judge opens
the item; exclusions (one revoked); and model-alone baseline results."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from oversight.assistant.models import ChatMessage
from oversight.assistant.selfplay import generate_transcript
from oversight.baselines.models import BaselineResult, BaselineRun, PromptTemplate
from oversight.core.models import Advocate, Condition, ConditionItem, Exclusion, ModelEndpoint
from oversight.core.services.participants import participant_complete, participant_join
from oversight.core.services.studies import study_launch
from oversight.core.services.trials import Answer, trial_show, trial_submit
from tests.factories import make_study

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ENDPOINT_TOKEN = "endpoint-secret-token-xyz"


def answer(participant, *, right_when, limit=None, complete=True):
    """Show and answer the participant's trials in order, 30 s each; right or wrong as `right_when(trial)` says."""
    now = START + timedelta(hours=participant.pk)
    trials = participant.trials.select_related("item", "condition").order_by("position")
    for n, trial in enumerate(trials):
        if limit is not None and n >= limit:
            return participant
        trial_show(trial=trial, now=now)
        gold = trial.item.gold_index
        choice = gold if right_when(trial) else (gold + 1) % 4
        if trial.transcript_id:  # a debate: the judge reads it, then chooses one of the two answers shown
            generate_transcript(trial.transcript_id)
            shown = trial.transcript.options
            choice = gold if right_when(trial) else next(o for o in shown if o != gold)
        trial_submit(
            trial=trial,
            answer=Answer(choice=choice, confidence=[25, 42, 60, 80, 100][n % 5]),
            now=now + timedelta(seconds=30 + n),
        )
        now += timedelta(seconds=60)
    if complete:
        participant = participant_complete(participant=participant, now=now)
    return participant


def prolific(pid):
    return {"PROLIFIC_PID": pid, "STUDY_ID": "study-on-prolific", "SESSION_ID": f"session-{pid}"}


@pytest.fixture
def study(alice):
    study = make_study(
        slug="exp",
        n_items=3,
        catch=1,
        practice=1,
        passage="Once upon a time, the end.",
        allow_external_id_export=True,
        launch=False,
    )
    debate = Condition.objects.create(study=study, kind="debate", name="Debate", position=2, protocol={"rounds": 1})
    advocate = ModelEndpoint.objects.create(
        name="exp advocate", kind="simulated", simulation={"ttft_ms": 0, "tokens_per_s": 0}
    )
    for position in (0, 1):
        Advocate.objects.create(condition=debate, position=position, endpoint=advocate)
    study = study_launch(study=study)
    ModelEndpoint.objects.filter(name="exp sim").update(token=ENDPOINT_TOKEN, model_label="sim-model")
    people = {
        "right": answer(
            participant_join(study=study, params=prolific("PIDRIGHT"), consent=True), right_when=lambda t: True
        ),
        "assisted_only": answer(
            participant_join(study=study, params=prolific("PIDASSIST"), consent=True),
            right_when=lambda t: t.condition.kind == "assisted" or t.role != "scored",
        ),
        "screened": answer(
            participant_join(study=study, params=prolific("PIDSCREEN"), consent=True),
            right_when=lambda t: t.role == "scored",
        ),
        "outlier": answer(
            participant_join(study=study, params=prolific("PIDOUTLIER"), consent=True),
            right_when=lambda t: t.role != "scored",
        ),
        "forgiven": answer(
            participant_join(study=study, params={"pid": "panel-7"}, consent=True), right_when=lambda t: True
        ),
        "unfinished": answer(
            participant_join(study=study, params=prolific("PIDUNFINISHED"), consent=True),
            right_when=lambda t: True,
            limit=3,
            complete=False,
        ),
        "pilot": answer(
            participant_join(study=study, params=prolific("PIDPILOT"), consent=True, is_pilot=True),
            right_when=lambda t: False,
        ),
    }
    Exclusion.objects.create(
        participant=people["outlier"], reason="Unaided accuracy far from the others", rule="outlier", created_by=alice
    )
    Exclusion.objects.create(
        participant=people["forgiven"],
        reason="A mistake",
        rule="manual",
        created_by=alice,
        revoked_by=alice,
        revoked_at=timezone.now(),
    )
    Exclusion.objects.create(participant=people["pilot"], reason="Pilot", rule="manual", created_by=alice)

    endpoint = ModelEndpoint.objects.get(name="exp sim")
    for person in ("right", "pilot"):
        first = people[person].trials.filter(condition__kind="assisted", role="scored").order_by("position").first()
        user = ChatMessage.objects.create(
            trial=first,
            seq=0,
            role="user",
            client_id="client-abc",
            created_at=START,
            content=f"What does the story say, {person}?",
        )
        ChatMessage.objects.create(
            trial=first,
            seq=1,
            role="assistant",
            content="It says: “Once upon a time”.",
            reply_to=user,
            endpoint=endpoint,
            model_id="sim-model",
            sampling={"temperature": 0.7, "seed": 3},
            context={"messages": [user.pk], "passage": True},
            prompt_tokens=120,
            completion_tokens=12,
            ttft_ms=80.5,
            total_ms=400.25,
            finish_reason="stop",
            quotes=[{"text": "Once upon a time", "verified": True}, {"text": "happily", "verified": False}],
            created_at=START + timedelta(seconds=1),
            finished_at=START + timedelta(seconds=2),
        )
        ChatMessage.objects.create(trial=first, seq=2, role="reset", created_at=START + timedelta(seconds=3))
        ChatMessage.objects.create(
            trial=first,
            seq=3,
            role="user",
            content='Again, with a comma, and "quotes"\nand a new line?',
            created_at=START + timedelta(seconds=4),
        )
        ChatMessage.objects.create(
            trial=first,
            seq=4,
            role="assistant",
            status="failed",
            content="",
            reply_to=None,
            endpoint=endpoint,
            error_kind="timeout",
            error="Read timed out",
            created_at=START + timedelta(seconds=5),
        )

    template = PromptTemplate.objects.create(name="unit zero-shot", method="zero-shot", text="{question}")
    scored = list(ConditionItem.objects.filter(study=study, role="scored").values_list("item_id", flat=True))
    for method, right in (("zero-shot", lambda i: i % 2 == 0), ("cot", lambda i: True)):
        run = BaselineRun.objects.create(
            endpoint=endpoint,
            study=study,
            method=method,
            template=template,
            template_hash=template.content_hash,
            status="done",
            total=len(scored),
            done=len(scored),
            params={"k": 0},
            summary={"accuracy": 0.5},
        )
        for n, item_id in enumerate(scored):
            ok = right(n)
            BaselineResult.objects.create(
                run=run,
                item_id=item_id,
                probabilities=[0.7, 0.1, 0.1, 0.1] if ok else [0.1, 0.7, 0.1, 0.1],
                predicted=0 if ok else 1,
                correct=ok,
                prompt=f"Question {item_id}",
                response={"top": [" A"]},
                latency_ms=12.5,
            )
    study.people = people
    return study


@pytest.fixture(autouse=True)
def _jobs_run_in_process(tasks_inline):
    """These tests are about the export job itself, not the broker: the task runs inline."""
