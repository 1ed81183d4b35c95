"""Self-play: a static condition's transcripts written as a job before launch; safe to run twice, resumable."""

from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.assistant import selfplay
from oversight.assistant.models import TranscriptTurn
from oversight.assistant.selfplay import SelfPlayError, selfplay_request, selfplay_run
from oversight.assistant.tasks import run_selfplay
from oversight.core.models import Job, Transcript
from oversight.core.services.samples import draw_samples
from oversight.core.services.studies import study_launch
from tests.factories import make_protocol_study

pytestmark = pytest.mark.django_db


def draft(n_items=3, **protocol):
    return make_protocol_study(
        conditions=(("debate", {"transcripts": "static", **protocol}), ("unaided", {})), n_items=n_items, launch=False
    )


def test_a_request_stores_a_transcript_for_every_item_launch_will_draw_and_a_queued_job():
    study = draft()
    job = selfplay_request(study=study)
    drawn = {r.item_id for r in draw_samples(study) if r.condition and r.condition.kind == "debate"}
    transcripts = Transcript.objects.filter(study=study, shared=True)
    assert {t.item_id for t in transcripts} == drawn
    assert job.kind == "selfplay" and job.status == "queued" and job.total == 3
    assert sorted(job.params["transcript_ids"]) == sorted(transcripts.values_list("pk", flat=True))
    assert not TranscriptTurn.objects.exists()  # nothing generated yet


def test_the_job_writes_every_transcript_and_reports_its_progress():
    study = draft()
    job = selfplay_request(study=study)
    assert selfplay_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.done, job.total, job.message) == ("done", 3, 3, "3 transcripts written")
    assert job.result == {"written": 3, "failed": 0}
    assert set(Transcript.objects.filter(study=study).values_list("status", "rounds_done")) == {("complete", 3)}
    assert TranscriptTurn.objects.filter(transcript__study=study).count() == 3 * 3 * 2
    study = study_launch(study=study)
    assert study.status == "live" and len(study.manifest["transcripts"]) == 1


def test_running_the_task_twice_writes_nothing_twice():
    study = draft()
    job = selfplay_request(study=study)
    assert run_selfplay(job.pk) is True
    turns = list(TranscriptTurn.objects.order_by("pk").values_list("pk", "raw"))
    assert run_selfplay(job.pk) is False  # the job is finished: a task delivered twice leaves it alone
    assert list(TranscriptTurn.objects.order_by("pk").values_list("pk", "raw")) == turns


def test_a_second_request_reuses_the_finished_transcripts():
    study = draft()
    selfplay_run(job_id=selfplay_request(study=study).pk)
    again = selfplay_request(study=study)
    assert again.total == 0 and again.params == {"transcript_ids": [], "needed": 3}
    assert Transcript.objects.filter(study=study).count() == 3
    selfplay_run(job_id=again.pk)
    assert Job.objects.get(pk=again.pk).message == "0 transcripts written"


def test_a_run_that_died_is_resumed_where_it_stopped(monkeypatch):
    study = draft()
    job = selfplay_request(study=study)
    ids = job.params["transcript_ids"]
    real = selfplay.generate_transcript
    calls = []

    def dies_on_the_second(transcript_id):
        calls.append(transcript_id)
        if len(calls) == 2:
            # Half-way through its first round the worker is killed: a turn stays streaming, the job running.
            from oversight.assistant.debate import transcript_advance

            transcript_advance(transcript_id=transcript_id)
            raise SystemExit("worker killed")
        return real(transcript_id)

    monkeypatch.setattr(selfplay, "generate_transcript", dies_on_the_second)
    with pytest.raises(SystemExit):
        selfplay_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "running" and job.done == 1
    first_turns = list(TranscriptTurn.objects.filter(transcript_id=ids[0]).values_list("pk", flat=True))
    assert TranscriptTurn.objects.filter(transcript_id=ids[1], status="streaming").count() == 2

    monkeypatch.setattr(selfplay, "generate_transcript", real)
    assert selfplay_run(job_id=job.pk) is False  # not stale yet: the first worker might still be alive
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - selfplay.STALE_AFTER - timedelta(seconds=1))
    assert selfplay_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == "done" and job.done == 3
    assert list(TranscriptTurn.objects.filter(transcript_id=ids[0]).values_list("pk", flat=True)) == first_turns
    interrupted = TranscriptTurn.objects.filter(transcript_id=ids[1], status="interrupted")
    assert interrupted.count() == 2 and all(t.error == "the self-play run that wrote it stopped" for t in interrupted)
    assert set(Transcript.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"complete"}


def test_transcripts_whose_endpoint_keeps_failing_are_reported(monkeypatch):
    study = draft(n_items=1)
    job = selfplay_request(study=study)

    async def refused(request):
        from oversight.assistant.backends import AssistantError

        raise AssistantError("unavailable", "connection refused")
        yield  # pragma: no cover - an async generator that fails at once

    monkeypatch.setattr(selfplay, "stream_reply", refused)
    selfplay_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.result == {"written": 0, "failed": 1}
    assert "1 failed (their advocates' endpoints kept failing)" in job.message


def test_only_a_draft_with_a_static_condition_can_ask_for_self_play():
    live = make_protocol_study(slug="live", conditions=(("debate", {}),))
    with pytest.raises(SelfPlayError, match="not a draft"):
        selfplay_request(study=live)
    with pytest.raises(SelfPlayError, match="No condition"):
        selfplay_request(study=make_protocol_study(slug="nostatic", conditions=(("debate", {}),), launch=False))
