"""Acceptance (c) of issue 17: a live model-judge assisted run on the demo completes, the simulated assistant as the
strong model and the fake TGI as the judge: "weak model assisted by strong model" (Kenton et al. 2024)."""

import html

import pytest
from django.core.management import call_command
from django.urls import reverse

from oversight.assistant.models import ChatMessage
from oversight.assistant.services import message_payload
from oversight.core.demo import DEMO_STUDY_SLUG
from oversight.core.models import ModelEndpoint, Participant, Study, Trial
from oversight.judges.models import JudgeRun, JudgeVerdict
from oversight.judges.runner import RunError, execute
from oversight.judges.services import judge_run_request
from oversight_dev.faketgi import FakeTGI

pytestmark = pytest.mark.django_db

SCRIPTED = {" A": -0.7, " B": -1.1, " C": -1.9, " D": -2.4}


@pytest.fixture
def demo(settings):
    settings.TGI_URL = ""
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115 - the command's chatter is not tested
    study = Study.objects.get(slug=DEMO_STUDY_SLUG)
    # The demo's assistant streams at a person's reading pace; the judge needs no pacing.
    assistant = study.conditions.get(kind="assisted").endpoint
    assistant.simulation = {**assistant.simulation, "ttft_ms": 0, "tokens_per_s": 0}
    assistant.save(update_fields=["simulation"])
    return study


def test_a_live_model_judge_asks_the_simulated_assistant_and_answers_every_assisted_item(demo):
    assisted = demo.conditions.get(kind="assisted")
    items = assisted.condition_items.filter(role="scored").count()
    with FakeTGI(letter_logprobs=SCRIPTED, reply="Which answer does the story support, and where?") as tgi:
        judge = ModelEndpoint.objects.create(name="weak judge", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = judge_run_request(study=demo, condition=assisted, endpoint=judge, mode="live", enqueue=False)
        outcome = execute(run.pk)
    run.refresh_from_db()
    assert outcome.outcome == "done" and run.status == JudgeRun.Status.DONE
    assert run.done == run.total == items > 0 and run.errors == 0
    model = Participant.objects.get(study=demo, kind="model")
    assert model.model["mode"] == "live" and model.model["endpoint"]["name"] == "weak judge"
    trials = Trial.objects.filter(participant=model).order_by("position")
    assert trials.count() == items and {t.status for t in trials} == {Trial.Status.ANSWERED}
    for trial in trials:
        chat = list(trial.messages.order_by("seq"))
        assert [m.role for m in chat] == [ChatMessage.Role.USER, ChatMessage.Role.ASSISTANT]
        assert chat[0].content == "Which answer does the story support, and where?"
        assert chat[1].status == ChatMessage.Status.COMPLETE and chat[1].content
        assert chat[1].endpoint_id == assisted.endpoint_id  # the strong model is the condition's own assistant
        verdict = JudgeVerdict.objects.get(trial=trial)
        assert verdict.source_trial is None and verdict.method == "logprobs"
        assert f"Assistant: {chat[1].content.strip()}" in verdict.material  # judged on its own chat
        assert trial.distribution == pytest.approx([100 * p for p in verdict.probabilities])


def test_a_live_run_of_an_assisted_condition_without_an_assistant_is_refused(demo):
    endpoint = ModelEndpoint.objects.create(name="j", kind="simulated")
    condition = demo.conditions.get(kind="assisted")
    condition.endpoint = None
    with pytest.raises(RunError, match="no assistant endpoint"):
        judge_run_request(study=demo, condition=condition, endpoint=endpoint, mode="live", enqueue=False)


def test_the_assistant_s_reply_to_the_judge_is_stored_as_it_grows_which_is_its_heartbeat(demo, monkeypatch):
    from oversight.judges import runner

    flushed = []

    def recording_flush(*, texts, now=None):
        flushed.extend(texts.items())
        return original(texts=texts, now=now)

    original = runner.generation_flush
    monkeypatch.setattr(runner, "generation_flush", recording_flush)
    monkeypatch.setattr(runner, "FLUSH_S", 0.0)
    assisted = demo.conditions.get(kind="assisted")
    judge = ModelEndpoint.objects.create(name="sim judge", kind="simulated", simulation={"seed": 3})
    run = judge_run_request(study=demo, condition=assisted, endpoint=judge, mode="live", enqueue=False)
    assert execute(run.pk).outcome == "done"
    assert flushed
    asked = set(
        ChatMessage.objects.filter(trial__participant__kind="model", role="user").values_list("content", flat=True)
    )
    assert asked == {runner.SIMULATED_QUESTION}  # a simulated judge writes nothing of its own: a fixed question
    for message_id, text in flushed:
        final = ChatMessage.objects.get(pk=message_id)
        assert final.role == ChatMessage.Role.ASSISTANT and final.content.startswith(text)


def test_the_transcript_viewer_shows_the_model_judge_s_chat_unchanged(demo, client):
    assisted = demo.conditions.get(kind="assisted")
    judge = ModelEndpoint.objects.create(name="sim judge", kind="simulated", simulation={"seed": 3})
    run = judge_run_request(study=demo, condition=assisted, endpoint=judge, mode="live", enqueue=False)
    execute(run.pk)
    model = Participant.objects.get(study=demo, kind="model")
    client.force_login(demo.owner)
    page = client.get(reverse("console:transcript", kwargs={"slug": demo.slug, "participant_id": model.pk}))
    assert page.status_code == 200
    reply = ChatMessage.objects.filter(trial__participant=model, role="assistant").first()
    shown = page.content.decode()
    assert message_payload(reply)["html"] in shown  # the reply exactly as the viewer renders any chat
    for trial in model.trials.select_related("item"):
        assert html.escape(trial.item.text.split("\n")[0]) in shown
