"""Self-play: advocates write a static condition's transcripts before the study launches, as a job.

`selfplay_request` computes the sample launch will draw (`samples.draw_samples` is deterministic), stores a
shared transcript for every item of every static protocol condition that has none made under the condition's
current settings, and creates the Job → `assistant.tasks.run_selfplay`, enqueued after commit →
`selfplay_run` claims the job and runs each transcript to its end (`generate_transcript`), reporting progress.
At launch every drawn item must have a finished transcript; they are frozen into the manifest there
(`core.services.studies`), so every judge of an item reads the same transcript.

Safe to run twice and resumable: a finished transcript is never regenerated; a transcript is taken up at the
turn where it stopped (a turn a dead worker left streaming is marked interrupted and asked again), and a
delivered-twice task finds its job taken or finished.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from oversight.assistant.backends import AssistantError, stream_reply
from oversight.assistant.debate import TurnJob, transcript_advance, turn_finish, turn_flush
from oversight.assistant.models import TranscriptTurn
from oversight.core.enqueue import enqueue_on_commit
from oversight.core.models import Job, Study, Transcript
from oversight.core.protocols import STATIC
from oversight.core.services.protocols import condition_settings_hash, shared_transcripts_to_make
from oversight.core.services.samples import draw_samples

# A run still "running" after this long belongs to a worker that died (acks_late delivers its task again).
STALE_AFTER = timedelta(hours=2)
HEARTBEAT_S = 0.5
NOT_QUEUED = "Could not reach the task queue; nothing was generated. Start self-play again."


class SelfPlayError(ValueError):
    """A self-play request that cannot run; the message says why."""


def static_conditions(study: Study) -> list:
    return [c for c in study.conditions.all() if c.is_protocol and c.protocol_settings().transcripts == STATIC]


def selfplay_request(*, study: Study, by=None) -> Job:
    """Store the shared transcripts a draft study's static conditions need and a job that writes them."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if study.status != Study.Status.DRAFT:
            raise SelfPlayError("Transcripts are generated before a study launches; this one is not a draft.")
        conditions = static_conditions(study)
        if not conditions:
            raise SelfPlayError("No condition of this study shows pre-generated transcripts.")
        drawn: dict[int, list[int]] = {}
        for row in draw_samples(study):
            if row.condition is not None:
                drawn.setdefault(row.condition.pk, []).append(row.item_id)
        wanted: list[int] = []
        for condition in conditions:
            item_ids = drawn.get(condition.pk, [])
            existing = {
                t.item_id: t.pk
                for t in Transcript.objects.filter(
                    condition=condition, shared=True, settings_hash=condition_settings_hash(condition)
                )
            }
            made = Transcript.objects.bulk_create(
                shared_transcripts_to_make(
                    study=study, condition=condition, item_ids=[i for i in item_ids if i not in existing]
                )
            )
            existing |= {t.item_id: t.pk for t in made}
            wanted += [existing[i] for i in item_ids]
        todo = list(
            Transcript.objects.filter(pk__in=wanted)
            .exclude(status=Transcript.Status.COMPLETE)
            .values_list("pk", flat=True)
        )
        job = Job.objects.create(
            kind=Job.Kind.SELFPLAY,
            study=study,
            created_by=by,
            params={"transcript_ids": sorted(todo), "needed": len(wanted)},
            total=len(todo),
            message="Queued",
        )
        Transcript.objects.filter(pk__in=todo).update(job=job)
        from oversight.assistant.tasks import run_selfplay

        enqueue_on_commit(run_selfplay, job.pk, on_failure=lambda: job.fail(NOT_QUEUED))
    return job


def selfplay_run(*, job_id: int) -> bool:
    """Run a self-play job's transcripts to their end; False when another executor has it or it is finished."""
    job = Job.objects.get(pk=job_id)
    if not job.claim(stale_after=STALE_AFTER):
        return False
    ids = list(job.params.get("transcript_ids", []))
    try:
        # Nobody else writes a shared transcript: a turn still streaming is a dead run's, asked again below.
        for turn in TranscriptTurn.objects.filter(transcript_id__in=ids, status=TranscriptTurn.Status.STREAMING):
            turn_finish(
                message_id=turn.pk,
                text=turn.raw,
                status=TranscriptTurn.Status.INTERRUPTED,
                error_kind="interrupted",
                error="the self-play run that wrote it stopped",
            )
        job.set_progress(done=0, total=len(ids), message="Writing transcripts")
        for done, transcript_id in enumerate(ids, start=1):
            generate_transcript(transcript_id)
            job.set_progress(done=done, total=len(ids), message=f"{done} of {len(ids)} transcripts written")
        failed = Transcript.objects.filter(pk__in=ids, status=Transcript.Status.FAILED).count()
        message = f"{len(ids) - failed} transcripts written"
        if failed:
            message += f"; {failed} failed (their advocates' endpoints kept failing): start self-play again"
        job.finish(Job.Status.DONE, message=message, result={"written": len(ids) - failed, "failed": failed})
    except Exception as exc:  # noqa: BLE001 - the job must end visibly; the log has the traceback
        job.fail_unexpectedly(exc)
    return True


def generate_transcript(transcript_id: int) -> Transcript:
    """Run a transcript to its end without a judge: self-play, and bots judging live transcripts in process.

    Each step's turns (both sides of a simultaneous round at once) are generated on an event loop in a helper
    thread while this thread heartbeats them; each is finalised here, then the next step is taken.
    """
    while True:
        advanced = transcript_advance(transcript_id=transcript_id)
        if not advanced.jobs:
            return Transcript.objects.get(pk=transcript_id)
        generate_turns(advanced.jobs)


def generate_turns(jobs: list[TurnJob]) -> None:
    """Generate turns already stored as placeholders and finalise each: a step of `generate_transcript`, and the
    round a model judge's question starts (judges.runner)."""
    results = _generate(jobs)
    for job, fields in zip(jobs, results, strict=True):
        turn_finish(message_id=job.message_id, **fields)


def _generate(jobs: list[TurnJob]) -> list[dict]:
    results: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(asyncio.run(_collect_all(jobs)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="selfplay-generation", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(HEARTBEAT_S)
        if worker.is_alive():
            turn_flush(texts={job.message_id: None for job in jobs})
    if failure:
        raise failure[0]
    return results


async def _collect_all(jobs: list[TurnJob]) -> list[dict]:
    return list(await asyncio.gather(*(_collect(job) for job in jobs)))


async def _collect(job: TurnJob) -> dict:
    """One turn's whole output and its record, as `turn_finish` takes them."""
    text, ttft_ms = "", None
    final = {"finish_reason": "", "prompt_tokens": None, "completion_tokens": None}
    status, error_kind, error = TranscriptTurn.Status.COMPLETE, "", ""
    model_id = job.request.model_label or job.endpoint_name
    started = time.monotonic()
    timeout = None if job.deadline_at is None else max(0.0, (job.deadline_at - timezone.now()).total_seconds())
    try:
        async with asyncio.timeout(timeout):
            async for chunk in stream_reply(job.request):
                if chunk.text:
                    ttft_ms = ttft_ms if ttft_ms is not None else (time.monotonic() - started) * 1000
                    text += chunk.text
                for key in final:
                    if getattr(chunk, key, None):
                        final[key] = getattr(chunk, key)
                model_id = chunk.model_id or model_id
    except TimeoutError:
        status, error_kind, error = TranscriptTurn.Status.CANCELLED, "deadline", "the trial's deadline passed"
    except AssistantError as exc:
        status, error_kind, error = TranscriptTurn.Status.FAILED, exc.kind, exc.detail
    return {
        "text": text,
        "status": status,
        "error_kind": error_kind,
        "error": error,
        "ttft_ms": ttft_ms,
        "total_ms": (time.monotonic() - started) * 1000,
        "model_id": model_id,
        **final,
    }
