"""The participant's pages. Thin: fetch the participant by token (404 otherwise), call one service."""

import re
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from oversight.core.models import Event, Participant, Study, Trial
from oversight.core.services.participants import (
    RECRUITMENT_KEYS,
    condition_label,
    current_trial,
    participant_complete,
    participant_for_external_id,
    participant_join,
    recruitment_from_params,
)
from oversight.core.services.trials import (
    LIKERT_LEVELS,
    Answer,
    AnswerError,
    parse_answer,
    trial_finalize_if_expired,
    trial_select,
    trial_show,
    trial_submit,
)

LIKERT_LABELS = {
    25: "Guessing (25%)",
    42: "Unsure (42%)",
    60: "Somewhat sure (60%)",
    80: "Fairly sure (80%)",
    100: "Certain (100%)",
}
RECRUITMENT_PARAMS = [key for keys in RECRUITMENT_KEYS.values() for key in keys]


def _error(request, status: int, title: str, message: str) -> HttpResponse:
    return render(request, "participant/error.html", {"title": title, "message": message}, status=status)


def _study_open(request, study: Study) -> HttpResponse | None:
    if study.status == Study.Status.CLOSED:
        return _error(
            request,
            410,
            "This study has closed",
            "Thank you for your interest. This study is no longer accepting answers.",
        )
    if study.status != Study.Status.LIVE:
        return _error(request, 404, "Study not found", "This study is not open yet. Please check your link.")
    return None


def _participant(request, token: str) -> Participant:
    participant = Participant.objects.select_related("study").filter(token=token).first()
    if participant is None:
        raise Http404("Unknown participant link")
    return participant


@require_http_methods(["GET", "POST"])
def welcome(request: HttpRequest, slug: str) -> HttpResponse:
    """The public link. GET only shows the consent page, so link-preview bots never enrol anyone."""
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        return _error(request, 404, "Study not found", "Please check the link you were given.")
    if closed := _study_open(request, study):
        return closed
    source = request.POST if request.method == "POST" else request.GET
    params = {k: source.get(k, "") for k in RECRUITMENT_PARAMS if source.get(k)}
    if request.method == "POST":
        decision = request.POST.get("consent")
        if decision not in {"yes", "no"}:
            return _error(request, 400, "Please choose", "Please say whether you agree to take part.")
        participant = participant_join(study=study, params=params, consent=decision == "yes")
        if participant.status == Participant.Status.DECLINED:
            return render(request, "participant/declined.html", {"study": study})
        return redirect("participant:next", token=participant.token)
    external_id, _ = recruitment_from_params(params)
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


@require_GET
def next_step(request: HttpRequest, token: str) -> HttpResponse:
    """Where the participant is now: their current item, or the end."""
    participant = _participant(request, token)
    if participant.status == Participant.Status.DECLINED:
        return render(request, "participant/declined.html", {"study": participant.study})
    if participant.status in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
        return redirect("participant:done", token=token)
    if closed := _study_open(request, participant.study):
        return closed
    trial = current_trial(participant)
    if trial is None:
        participant_complete(participant=participant)
        return redirect("participant:done", token=token)
    return redirect("participant:trial", token=token, position=trial.position)


def _trial_for(participant: Participant, position: int) -> Trial:
    return get_object_or_404(
        Trial.objects.select_related("item", "item__passage", "condition", "participant__study"),
        participant=participant,
        position=position,
    )


@require_GET
def trial_page(request: HttpRequest, token: str, position: int) -> HttpResponse:
    participant = _participant(request, token)
    if closed := _study_open(request, participant.study):
        return closed
    trial = _trial_for(participant, position)
    current = current_trial(participant)
    if current is None or current.pk != trial.pk:
        if trial.is_final and participant.study.reveal_gold:
            return redirect("participant:feedback", token=token, position=position)
        return redirect("participant:next", token=token)
    now = timezone.now()
    trial = trial_show(trial=trial, now=now)
    if trial.status == Trial.Status.SHOWN and trial.is_expired(now):
        # The deadline passed while the page was closed: finalise now rather than wait for the sweep.
        trial_finalize_if_expired(trial_id=trial.pk, now=now)
        return redirect("participant:next", token=token)
    total = participant.trials.count()
    return render(request, "participant/trial.html", _trial_context(participant, trial, total, now))


_BLOCK = re.compile(r"(?:(?!\n[ \t]*\n).)+", re.S)


def passage_paragraphs(text: str) -> list[tuple[int, str]]:
    """Paragraphs with their offsets in the passage, so a verified quote's span can be found in the page."""
    paragraphs = []
    for match in _BLOCK.finditer(text):
        block = match.group()
        stripped = block.strip()
        if stripped:
            paragraphs.append((match.start() + len(block) - len(block.lstrip()), stripped))
    return paragraphs


def _trial_context(participant: Participant, trial: Trial, total: int, now, error: str = "") -> dict:
    study = participant.study
    item = trial.item
    return {
        "participant": participant,
        "study": study,
        "trial": trial,
        "item": item,
        "options": list(zip(item.letters, item.options, strict=True)),
        "passage": item.passage,
        "paragraphs": passage_paragraphs(item.passage.text) if item.passage_id else [],
        "seconds_left": trial.seconds_left(now),
        "number": trial.position + 1,
        "total": total,
        "condition_label": condition_label(trial.condition),
        "is_practice": trial.role == "practice",
        "likert": [(level, LIKERT_LABELS[level]) for level in LIKERT_LEVELS],
        "error": error,
    }


@require_POST
def trial_select_view(request: HttpRequest, token: str, position: int) -> HttpResponse:
    """The page reports every change of selection, so the server always knows the last choice."""
    participant = _participant(request, token)
    if closed := _study_open(request, participant.study):
        return closed
    trial = _trial_for(participant, position)
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


@require_GET
def trial_state(request: HttpRequest, token: str, position: int) -> HttpResponse:
    """The server's clock for this trial; the page re-syncs its countdown with it."""
    participant = _participant(request, token)
    return JsonResponse(_state(_trial_for(participant, position)))


@require_POST
def trial_submit_view(request: HttpRequest, token: str, position: int) -> HttpResponse:
    participant = _participant(request, token)
    if closed := _study_open(request, participant.study):
        return closed
    trial = _trial_for(participant, position)
    auto = request.POST.get("auto") == "1"
    now = timezone.now()
    open_now = trial.status == Trial.Status.SHOWN and not trial.is_expired(now)
    try:
        answer = parse_answer(trial=trial, data=request.POST, require_choice=open_now and not auto)
    except AnswerError as exc:
        if open_now:
            context = _trial_context(participant, trial, participant.trials.count(), now, error=str(exc))
            return render(request, "participant/trial.html", context, status=400)
        # Final or expired: whatever was posted cannot change the record anyway (see trial_submit).
        answer = Answer(choice=None, confidence=None)
    kind = Trial.SubmitKind.AUTO if auto else Trial.SubmitKind.MANUAL
    trial = trial_submit(trial=trial, answer=answer, kind=kind)
    if participant.study.reveal_gold and trial.is_final:
        return redirect("participant:feedback", token=token, position=position)
    return redirect("participant:next", token=token)


@require_GET
def feedback(request: HttpRequest, token: str, position: int) -> HttpResponse:
    """The correct option, shown only once this trial's answer is committed (and only if the study says so)."""
    participant = _participant(request, token)
    trial = _trial_for(participant, position)
    if not trial.is_final or not participant.study.reveal_gold:
        return redirect("participant:next", token=token)
    item = trial.item
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
        },
    )


@require_POST
def page_event(request: HttpRequest, token: str) -> HttpResponse:
    """Visibility changes (tab hidden / visible), sent by the page with sendBeacon."""
    participant = _participant(request, token)
    kind = {"hidden": Event.Kind.PAGE_HIDDEN, "visible": Event.Kind.PAGE_VISIBLE}.get(request.POST.get("kind", ""))
    if kind is None:
        return JsonResponse({"error": "unknown event"}, status=400)
    trial = None
    position = request.POST.get("position", "")
    if position.isdigit():
        trial = participant.trials.filter(position=int(position)).first()
    Event.objects.create(participant=participant, trial=trial, kind=kind)
    return HttpResponse(status=204)


@require_GET
def done(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant(request, token)
    if participant.status == Participant.Status.ACTIVE:
        return redirect("participant:next", token=token)
    if participant.status not in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
        raise Http404("Not finished")
    study = participant.study
    screened_out = participant.status == Participant.Status.SCREENED_OUT
    code = study.screenout_code if screened_out else study.completion_code
    return_url = ""
    # Only now — every answer committed and the participant closed — do we send them back to Prolific.
    if participant.recruitment.get("source") == "prolific" and study.prolific_completion_url and code:
        return_url = _with_query(study.prolific_completion_url, {"cc": code})
    return render(
        request,
        "participant/done.html",
        {
            "study": study,
            "participant": participant,
            "code": code,
            "screened_out": screened_out,
            "return_url": return_url,
        },
    )


def _with_query(url: str, params: dict) -> str:
    separator = "&" if "?" in url else "?"
    if "cc=" in url:
        return url
    return f"{url}{separator}{urlencode(params)}"
