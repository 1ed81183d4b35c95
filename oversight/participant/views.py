"""The participant's pages. Thin: fetch the participant by token (404 otherwise), read their progress, call one
service, answer with the page of the step they are on (core.services.steps decides which).

One round trip per answer: forms on pages without the chat are boosted by htmx, and a POST answers with the next
step's page (swapped into <main>, its address pushed with HX-Push-Url). Without JavaScript the same POST answers
303 to that step's address. A page with the chat is entered and left by a full page load (static/js/chat.js keeps
one websocket per page), so an htmx request whose next page has the chat gets HX-Redirect instead. Every view is
wrapped in `participant_page` (errors.py): no participant sees a traceback.
"""

import re
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from oversight.assistant.transcripts import judge_view, render_transcript
from oversight.core.launched import launched_study
from oversight.core.models import Condition, Event, Participant, Study, Trial
from oversight.core.prepared import PreparedQuery
from oversight.core.services.participants import (
    RECRUITMENT_KEYS,
    RecruitmentError,
    condition_label,
    participant_for_external_id,
    participant_join,
    recruitment_from_params,
)
from oversight.core.services.steps import (
    Progress,
    Step,
    StepKind,
    comprehension_answers,
    max_attempts,
    participant_advance,
    participant_answer,
    participant_check_comprehension,
    participant_read_instructions,
    participant_refuse_answer,
    participant_start_block,
)
from oversight.core.services.trials import (
    JUDGE_RANGE,
    LIKERT_LEVELS,
    Answer,
    AnswerError,
    parse_answer,
    posted_fields,
    trial_finalize_if_expired,
    trial_select,
)
from oversight.participant.errors import error_page, participant_page

LIKERT_LABELS = {
    25: "Guessing (25%)",
    42: "Unsure (42%)",
    60: "Somewhat sure (60%)",
    80: "Fairly sure (80%)",
    100: "Certain (100%)",
}
RECRUITMENT_PARAMS = [key for keys in RECRUITMENT_KEYS.values() for key in keys]


def _study_open(request, study: Study) -> HttpResponse | None:
    if study.status == Study.Status.CLOSED:
        return error_page(
            request,
            410,
            "This study has closed",
            "Thank you for your interest. This study is no longer accepting answers.",
        )
    if study.status != Study.Status.LIVE:
        return error_page(request, 404, "Study not found", "This study is not open yet. Please check your link.")
    return None


# The study comes along (one join): its status is the one thing about a launched study that changes. Its
# manifest is left behind; the frozen parts a page needs come from the per-process cache (core.launched).
_PARTICIPANT_BY_TOKEN = PreparedQuery(
    lambda token: Participant.objects.select_related("study").defer("study__manifest").filter(token=token), str
)

# The page reports each change of selection and re-syncs its clock: one trial, by position.
_TRIAL_AT = PreparedQuery(
    lambda participant_id, position: Trial.objects.filter(participant_id=participant_id, position=position), int, int
)


def _participant(token: str) -> Participant:
    participant = _PARTICIPANT_BY_TOKEN.first(token)
    if participant is None:
        raise Http404("Unknown participant link")
    return participant


def _progress(request: HttpRequest, token: str) -> tuple[Progress | None, HttpResponse | None]:
    """The participant's progress in their live study, or the page saying why there is none (closed, not open)."""
    participant = _participant(token)
    if closed := _study_open(request, participant.study):
        return None, closed
    return Progress.load(participant), None


def _trial(progress: Progress, position: int) -> Trial:
    trial = progress.trial_at(position)
    if trial is None:
        raise Http404("No such item")
    return trial


# --- Answering with a step -------------------------------------------------------------------------------------


def step_url(participant: Participant, step: Step) -> str:
    token = participant.token
    if step.kind == StepKind.TRIAL:
        return reverse("participant:trial", kwargs={"token": token, "position": step.trial.position})
    if step.kind == StepKind.FEEDBACK:
        return reverse("participant:feedback", kwargs={"token": token, "position": step.trial.position})
    if step.kind == StepKind.INSTRUCTIONS:
        return reverse("participant:instructions", kwargs={"token": token})
    if step.kind == StepKind.CHECK:
        return reverse("participant:check", kwargs={"token": token})
    if step.kind == StepKind.BLOCK:
        return reverse("participant:block", kwargs={"token": token, "number": step.block.number})
    if step.kind == StepKind.DONE:
        return reverse("participant:done", kwargs={"token": token})
    if step.kind == StepKind.CONSENT:
        return reverse("participant:welcome", kwargs={"slug": participant.study.slug})
    return reverse("participant:next", kwargs={"token": token})  # declined, complete: `next` answers them


def _swappable(step: Step) -> bool:
    """Whether the step's page can replace the current one in place. Not a page with the chat or a protocol's
    transcript (their socket is set up once per page load), nor the done page (its <head> sends a Prolific
    participant back after 3 s)."""
    if step.kind == StepKind.TRIAL:
        return not _has_socket(step.trial)
    return step.kind not in {StepKind.DONE, StepKind.COMPLETE, StepKind.CONSENT}


def _respond(request: HttpRequest, progress: Progress, step: Step) -> HttpResponse:
    """The step's page in this response (htmx), or a redirect to it."""
    url = step_url(progress.participant, step)
    if request.htmx and _swappable(step):
        # The title and <main> alone, except for htmx restoring its history from the server (it wants a page).
        response = _render_step(request, progress, step, fragment=not request.htmx.history_restore_request)
        response["HX-Push-Url"] = url
        return response
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url, status=303 if request.method == "POST" else 302)


def _render_step(request: HttpRequest, progress: Progress, step: Step, *, status: int = 200, **extra) -> HttpResponse:
    p = progress.participant
    if step.kind == StepKind.TRIAL:
        return _trial_response(request, progress, step.trial, status=status, **extra)
    if step.kind == StepKind.FEEDBACK:
        return _feedback_response(request, progress, step.trial, fragment=extra.get("fragment", False))
    if step.kind == StepKind.DECLINED:
        return render(request, "participant/declined.html", {"study": p.study})
    context = {"participant": p, "study": p.study, "step": step, **extra}
    if step.kind == StepKind.INSTRUCTIONS:
        context["has_check"] = bool(p.study.comprehension_questions)
        return render(request, "participant/instructions.html", context, status=status)
    if step.kind == StepKind.CHECK:
        context.update(_check_context(progress, extra.get("chosen") or {}))
        return render(request, "participant/check.html", context, status=status)
    if step.kind == StepKind.BLOCK:
        block = step.block
        context.update(
            {
                "part": block,  # not "block": templates keep the name for the {% block %} being rendered
                "label": condition_label(block.condition),
                "timed_out": _timed_out_notice(progress, block.first_position),
            }
        )
        return render(request, "participant/block.html", context, status=status)
    raise ValueError(f"no page for step {step.kind}")


def _timed_out_notice(progress: Progress, position: int) -> Trial | None:
    """The trial the clock ended just before this page, if the page is the first one after it (studies that
    reveal the correct option say so on the feedback page instead)."""
    return None if progress.study.reveal_gold else progress.timed_out_before(position)


# --- Joining ---------------------------------------------------------------------------------------------------


@participant_page
@require_http_methods(["GET", "POST"])
def welcome(request: HttpRequest, slug: str) -> HttpResponse:
    """The public link. GET only shows the consent page, so link-preview bots never enrol anyone."""
    study = Study.objects.defer("manifest").filter(slug=slug).first()
    if study is None:
        return error_page(request, 404, "Study not found", "Please check the link you were given.")
    if closed := _study_open(request, study):
        return closed
    source = request.POST if request.method == "POST" else request.GET
    params = {k: source.get(k, "") for k in RECRUITMENT_PARAMS if source.get(k)}
    try:
        external_id, _ = recruitment_from_params(params)
    except RecruitmentError as exc:
        return error_page(request, 400, "This link is damaged", f"{exc} Please check the link you were given.")
    if request.method == "POST":
        decision = request.POST.get("consent")
        if decision not in {"yes", "no"}:
            return error_page(request, 400, "Please choose", "Please say whether you agree to take part.")
        participant = participant_join(study=study, params=params, consent=decision == "yes")
        participant.study = study
        if participant.status == Participant.Status.DECLINED:
            response = render(request, "participant/declined.html", {"study": study})
            if request.htmx:
                response["HX-Push-Url"] = reverse("participant:next", kwargs={"token": participant.token})
            return response
        progress = Progress.load(participant)
        return _respond(request, progress, participant_advance(progress=progress))
    existing = participant_for_external_id(study=study, external_id=external_id)
    return render(
        request,
        "participant/welcome.html",
        {
            "study": study,
            "params": params,
            "returning": existing is not None and existing.status != Participant.Status.DECLINED,
        },
    )


@participant_page
@require_GET
def next_step(request: HttpRequest, token: str) -> HttpResponse:
    """Where the participant is now (the address to come back to): their current step."""
    participant = _participant(token)
    if participant.status == Participant.Status.DECLINED:
        return render(request, "participant/declined.html", {"study": participant.study})
    if participant.status in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
        return redirect("participant:done", token=token)
    if closed := _study_open(request, participant.study):
        return closed
    progress = Progress.load(participant)
    step = progress.step()
    if step.kind == StepKind.COMPLETE or (request.htmx and step.kind == StepKind.TRIAL):
        step = participant_advance(progress=progress)
    return _respond(request, progress, step)


# --- Instructions, comprehension check, block introductions ----------------------------------------------------


@participant_page
@require_http_methods(["GET", "POST"])
def instructions(request: HttpRequest, token: str) -> HttpResponse:
    progress, refused = _progress(request, token)
    if refused:
        return refused
    if request.method == "POST":
        return _respond(request, progress, participant_read_instructions(progress=progress))
    step = progress.step()
    if step.kind != StepKind.INSTRUCTIONS:
        return _respond(request, progress, step)
    return _render_step(request, progress, step)


def _check_context(progress: Progress, chosen: dict) -> dict:
    """The questions as the page shows them, with the participant's last choices checked."""
    study = progress.study
    used = progress.participant.comprehension_attempts
    return {
        "questions": [
            (f"q{i}", q["question"], [(j, o, chosen.get(f"q{i}") == str(j)) for j, o in enumerate(q["options"])])
            for i, q in enumerate(study.comprehension_questions)
        ],
        "attempts_left": max(0, max_attempts(study) - used),
        "max_attempts": max_attempts(study),
    }


@participant_page
@require_http_methods(["GET", "POST"])
def check(request: HttpRequest, token: str) -> HttpResponse:
    """The comprehension check: every answer right to go on; see docs/participant.md for the attempts rule."""
    progress, refused = _progress(request, token)
    if refused:
        return refused
    step = progress.step()
    if step.kind != StepKind.CHECK:
        return _respond(request, progress, step)
    if request.method == "GET":
        return _render_step(request, progress, step)
    try:
        answers = comprehension_answers(progress.study, request.POST)
    except AnswerError as exc:
        chosen = {k: request.POST.get(k) for k in request.POST if k.startswith("q")}
        return _render_step(request, progress, step, status=400, error=str(exc), chosen=chosen)
    step, result = participant_check_comprehension(progress=progress, answers=answers)
    if result is None or result.passed or step.kind != StepKind.CHECK:
        return _respond(request, progress, step)
    # A failed attempt with attempts left: the same page again, with how many answers were wrong.
    chosen = {f"q{i}": str(a) for i, a in enumerate(answers)}
    response = _render_step(request, progress, step, result=result, chosen=chosen)
    if request.htmx:
        response["HX-Push-Url"] = "false"
    return response


@participant_page
@require_http_methods(["GET", "POST"])
def block(request: HttpRequest, token: str, number: int) -> HttpResponse:
    """A condition block's introduction; between blocks also the transition ("Part 1 of 2 done. Next: …")."""
    progress, refused = _progress(request, token)
    if refused:
        return refused
    if request.method == "POST":
        return _respond(request, progress, participant_start_block(progress=progress, number=number))
    step = progress.step()
    if step.kind != StepKind.BLOCK or step.block.number != number:
        return _respond(request, progress, step)
    return _render_step(request, progress, step)


# --- Items -----------------------------------------------------------------------------------------------------

_BLOCK = re.compile(r"(?:(?!\n[ \t]*\n).)+", re.S)


def passage_paragraphs(text: str) -> list[tuple[int, str]]:
    """Paragraphs with their offsets in the passage, so a verified quote's span can be found in the page."""
    paragraphs = []
    for match in _BLOCK.finditer(text):
        block_text = match.group()
        stripped = block_text.strip()
        if stripped:
            paragraphs.append((match.start() + len(block_text) - len(block_text.lstrip()), stripped))
    return paragraphs


def _has_socket(trial: Trial) -> bool:
    """A page that keeps a websocket (the chat, a live debate; a static one too, for simplicity: one rule for
    every protocol trial) is entered and left by a full page load."""
    return trial.condition.kind == Condition.Kind.ASSISTED or trial.transcript_id is not None


def _judge_response(request, progress: Progress, trial: Trial, *, status: int = 200, error: str = "") -> HttpResponse:
    """A protocol trial: the question, the two answers and the transcript as it stands (so a refresh or a page
    without the socket reads everything stored so far), the judge's probability and the server's clock. Never
    the item's other options, nor the story unless the condition shows it (`judge_view` decides)."""
    participant = progress.participant
    view = judge_view(trial.transcript)
    p_first = _selected_p_first(trial, trial.transcript.options[0])
    context = {
        "participant": participant,
        "study": participant.study,
        "trial": trial,
        "view": view,
        "transcript_html": render_transcript(view),
        "live": not trial.transcript.shared,
        "p_first": p_first,
        "p_second": None if p_first is None else 100 - p_first,
        "judge_range": JUDGE_RANGE,
        "seconds_left": trial.seconds_left(timezone.now()),
        "number": trial.position + 1,
        "total": progress.total,
        "part": progress.block_of(trial),
        "condition_label": condition_label(trial.condition),
        "error": error,
        "timed_out": _timed_out_notice(progress, trial.position),
        "swappable": False,
    }
    response = render(request, "participant/judge.html", context, status=status)
    if request.htmx and status != 200:
        response["HX-Push-Url"] = "false"
    return response


def _selected_p_first(trial: Trial, first: int) -> float | None:
    """The judge's last probability for the first answer, as the server recorded it (a refresh keeps it)."""
    distribution = trial.distribution
    if not distribution or first >= len(distribution):
        return None
    return distribution[first]


def _trial_response(
    request, progress: Progress, trial: Trial, *, status: int = 200, error: str = "", fragment: bool = False
) -> HttpResponse:
    if trial.transcript_id is not None:
        return _judge_response(request, progress, trial, status=status, error=error)
    participant = progress.participant
    study = participant.study
    item = trial.item
    now = timezone.now()
    context = {
        "participant": participant,
        "study": study,
        "trial": trial,
        "item": item,
        "options": list(zip(item.letters, item.options, strict=True)),
        "passage": item.passage,
        "paragraphs": passage_paragraphs(item.passage.text) if item.passage_id else [],
        "seconds_left": trial.seconds_left(now),
        "number": trial.position + 1,
        "total": progress.total,
        "part": progress.block_of(trial),
        "condition_label": condition_label(trial.condition),
        "is_practice": trial.role == "practice",
        "likert": [(level, LIKERT_LABELS[level]) for level in LIKERT_LEVELS],
        "error": error,
        "timed_out": _timed_out_notice(progress, trial.position),
        "swappable": not _has_socket(trial),
        "fragment": fragment,
    }
    response = render(request, "participant/trial.html", context, status=status)
    if request.htmx and status != 200:
        response["HX-Push-Url"] = "false"
    return response


@participant_page
@require_GET
def trial_page(request: HttpRequest, token: str, position: int) -> HttpResponse:
    progress, refused = _progress(request, token)
    if refused:
        return refused
    trial = _trial(progress, position)
    step = progress.step()
    if step.kind != StepKind.TRIAL or step.trial.pk != trial.pk:
        if trial.is_final and progress.study.reveal_gold:
            return redirect("participant:feedback", token=token, position=position)
        return _respond(request, progress, step)
    now = timezone.now()
    if trial.status == Trial.Status.PENDING:
        participant_advance(progress=progress, now=now)
    elif trial.is_expired(now):
        # The deadline passed while the page was closed: finalise now rather than wait for the sweep.
        trial_finalize_if_expired(trial_id=trial.pk, now=now)
        return redirect("participant:next", token=token)
    return _trial_response(request, progress, trial)


@participant_page
@require_POST
def trial_select_view(request: HttpRequest, token: str, position: int) -> HttpResponse:
    """The page reports every change of selection, so the server always knows the last choice."""
    participant = _participant(token)
    if closed := _study_open(request, participant.study):
        return closed
    trial = _TRIAL_AT.first(participant.pk, position)
    if trial is None:
        raise Http404("No such item")
    trial.participant, trial.item = participant, launched_study(participant.study).item(trial.item_id)
    try:
        answer = parse_answer(trial=trial, data=request.POST, require_choice=False)
    except AnswerError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    trial = trial_select(trial=trial, answer=answer)
    return JsonResponse(_state(trial))


def _state(trial: Trial) -> dict:
    return {
        "status": trial.status,
        "seconds_left": trial.seconds_left(timezone.now()),
        "selected_choice": trial.selected_choice,
        "selected_confidence": trial.selected_confidence,
    }


@participant_page
@require_GET
def trial_state(request: HttpRequest, token: str, position: int) -> HttpResponse:
    """The server's clock for this trial; the page re-syncs its countdown with it."""
    participant = _participant(token)
    trial = _TRIAL_AT.first(participant.pk, position)
    if trial is None:
        raise Http404("No such item")
    return JsonResponse(_state(trial))


@participant_page
@require_POST
def trial_submit_view(request: HttpRequest, token: str, position: int) -> HttpResponse:
    progress, refused = _progress(request, token)
    if refused:
        return refused
    trial = _trial(progress, position)
    if trial.status == Trial.Status.PENDING:
        # Not opened yet (a tampered or replayed form): nothing to record; the participant's current step.
        return _respond(request, progress, progress.step())
    auto = request.POST.get("auto") == "1"
    now = timezone.now()
    open_now = trial.status == Trial.Status.SHOWN and not trial.is_expired(now)
    posted = posted_fields(request.POST)
    try:
        answer = parse_answer(trial=trial, data=request.POST, require_choice=open_now and not auto)
    except AnswerError as exc:
        if open_now:
            participant_refuse_answer(trial=trial, reason=str(exc), posted=posted, now=now)
            return _trial_response(request, progress, trial, status=400, error=str(exc))
        # Final or expired: whatever was posted cannot change the record anyway; it is kept as posted.
        answer = Answer(choice=None, confidence=None)
    kind = Trial.SubmitKind.AUTO if auto else Trial.SubmitKind.MANUAL
    step = participant_answer(progress=progress, trial=trial, answer=answer, kind=kind, now=now, posted=posted)
    return _respond(request, progress, step)


def _feedback_response(request, progress: Progress, trial: Trial, *, fragment: bool = False) -> HttpResponse:
    item = trial.item
    participant = progress.participant
    return render(
        request,
        "participant/feedback.html",
        {
            "participant": participant,
            "study": participant.study,
            "trial": trial,
            "item": item,
            "options": list(zip(item.letters, item.options, strict=True)),
            "chosen_letter": None if trial.choice is None else item.letters[trial.choice],
            "gold_letter": item.gold_letter,
            "timed_out": trial.status == Trial.Status.TIMED_OUT,
            "number": trial.position + 1,
            "total": progress.total,
            "fragment": fragment,
        },
    )


@participant_page
@require_GET
def feedback(request: HttpRequest, token: str, position: int) -> HttpResponse:
    """The correct option, shown only once this trial's answer is committed (and only if the study says so)."""
    participant = _participant(token)
    progress = Progress.load(participant)
    trial = _trial(progress, position)
    if not trial.is_final or not participant.study.reveal_gold:
        return redirect("participant:next", token=token)
    return _feedback_response(request, progress, trial)


@participant_page
@require_POST
def page_event(request: HttpRequest, token: str) -> HttpResponse:
    """Visibility changes (tab hidden / visible), sent by the page with sendBeacon."""
    participant = _participant(token)
    kind = {"hidden": Event.Kind.PAGE_HIDDEN, "visible": Event.Kind.PAGE_VISIBLE}.get(request.POST.get("kind", ""))
    if kind is None:
        return JsonResponse({"error": "unknown event"}, status=400)
    trial = None
    position = request.POST.get("position", "")
    if position.isascii() and position.isdigit():
        trial = participant.trials.filter(position=int(position)).first()
    Event.objects.create(participant=participant, trial=trial, kind=kind)
    return HttpResponse(status=204)


# --- The end ---------------------------------------------------------------------------------------------------


def _done_response(request, participant: Participant) -> HttpResponse:
    study = participant.study
    screened_out = participant.status == Participant.Status.SCREENED_OUT
    code = study.screenout_code if screened_out else study.completion_code
    return_url = ""
    # Only now — every answer committed and the participant closed — do we send them back to Prolific.
    if participant.recruitment.get("source") == "prolific" and study.prolific_completion_url and code:
        return_url = _with_query(study.prolific_completion_url, {"cc": code})
    last = Trial.objects.filter(participant_id=participant.pk).order_by("-position").first()
    timed_out = last if last is not None and last.status == Trial.Status.TIMED_OUT and not study.reveal_gold else None
    return render(
        request,
        "participant/done.html",
        {
            "study": study,
            "participant": participant,
            "code": code,
            "screened_out": screened_out,
            # Screened out at the comprehension check rather than by the attention checks.
            "failed_check": screened_out
            and participant.comprehension_attempts > 0
            and participant.comprehension_passed_at is None,
            "return_url": return_url,
            "timed_out": timed_out,
        },
    )


@participant_page
@require_GET
def done(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant(token)
    if participant.status == Participant.Status.ACTIVE:
        return redirect("participant:next", token=token)
    if participant.status not in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
        raise Http404("Not finished")
    return _done_response(request, participant)


def _with_query(url: str, params: dict) -> str:
    separator = "&" if "?" in url else "?"
    if "cc=" in url:
        return url
    return f"{url}{separator}{urlencode(params)}"
