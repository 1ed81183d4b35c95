"""Running a study: the live monitor, transcripts, exclusions and pilot sessions."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from oversight.assistant.advocates import speaker_label
from oversight.assistant.models import ChatMessage
from oversight.assistant.services import message_payload
from oversight.assistant.transcripts import judge_view, render_transcript
from oversight.console.access import get_study_for_user, viewer_is_blind
from oversight.console.monitor import condition_names, monitor_rows, monitor_summary
from oversight.core.models import Exclusion, Participant, Trial
from oversight.core.services.exclusions import RULES, exclusion_add, exclusion_candidates, exclusion_revoke
from oversight.core.services.participants import participant_join


@login_required
@require_GET
def monitor(request: HttpRequest, slug: str) -> HttpResponse:
    """The page renders a full snapshot (works without JS); the websocket then keeps it live."""
    study = get_study_for_user(request.user, slug)
    blind = viewer_is_blind(request.user, study)
    return render(
        request,
        "console/monitor.html",
        {
            "study": study,
            "rows": monitor_rows(study, blind=blind),
            "summary": monitor_summary(study, blind=blind),
            "blind": blind,
            "conditions": condition_names(study),
        },
    )


def _debate(trial: Trial, *, blind: bool) -> dict | None:
    """A protocol trial's whole transcript as its judge saw it, and, for a researcher who is not blind, which
    answer was gold and which side argued it (never on the judge's page)."""
    transcript = trial.transcript
    if transcript is None:
        return None
    debate = {
        "html": render_transcript(judge_view(transcript)),
        "transcript": transcript,
        "shown": [trial.item.letters[i] for i in transcript.options],
        "probabilities": [
            (letter, trial.distribution[i] if trial.distribution and i < len(trial.distribution) else None)
            for letter, i in zip("AB", transcript.options, strict=True)
        ],
    }
    gold = trial.item.gold_index
    if not blind and gold in transcript.options:
        shown = transcript.options.index(gold)
        debate["gold"] = "AB"[shown]
        debate["right_speakers"] = [
            speaker_label(transcript.protocol, position)
            for position, argued in enumerate(transcript.argues or [])
            if argued == shown
        ]
        debate["argued"] = [
            (speaker_label(transcript.protocol, position), "AB"[argued])
            for position, argued in enumerate(transcript.argues or [])
        ]
    return debate


@login_required
@require_GET
def transcript(request: HttpRequest, slug: str, participant_id: int) -> HttpResponse:
    """Everything one participant saw and did: items, chats with resets and verified quotes, timings, answers."""
    study = get_study_for_user(request.user, slug)
    participant = get_object_or_404(Participant, study=study, pk=participant_id)
    blind = viewer_is_blind(request.user, study)
    trials = list(
        participant.trials.select_related("item", "item__passage", "condition", "transcript").order_by("position")
    )
    chat: dict[int, list] = {}
    for message in ChatMessage.objects.filter(trial__participant=participant).order_by("trial_id", "seq"):
        chat.setdefault(message.trial_id, []).append((message, message_payload(message)))
    rows = []
    for trial in trials:
        item = trial.item
        seconds = (
            (trial.submitted_at - trial.shown_at).total_seconds() if trial.submitted_at and trial.shown_at else None
        )
        rows.append(
            {
                "trial": trial,
                "item": item,
                "options": list(zip(item.letters, item.options, strict=True)),
                "chosen": None if trial.choice is None else item.letters[trial.choice],
                "gold": None if blind else item.gold_letter,
                "seconds": seconds,
                "messages": chat.get(trial.pk, []),
                "debate": _debate(trial, blind=blind),
            }
        )
    return render(
        request,
        "console/transcript.html",
        {
            "study": study,
            "participant": participant,
            "rows": rows,
            "blind": blind,
            "exclusions": participant.exclusions.select_related("created_by", "revoked_by").order_by("-created_at"),
            "rules": RULES,
            "events": participant.events.select_related("trial").order_by("at")[:500],
        },
    )


@login_required
@require_POST
def exclude(request: HttpRequest, slug: str, participant_id: int) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    participant = get_object_or_404(Participant, study=study, pk=participant_id)
    try:
        exclusion_add(
            participant=participant,
            reason=request.POST.get("reason", ""),
            rule=request.POST.get("rule", "manual"),
            by=request.user,
        )
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"P{participant.pk} is excluded from analysis (reversible).")
    return redirect("console:transcript", slug=slug, participant_id=participant.pk)


@login_required
@require_POST
def revoke_exclusion(request: HttpRequest, slug: str, exclusion_id: int) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    exclusion = get_object_or_404(Exclusion, participant__study=study, pk=exclusion_id)
    exclusion_revoke(exclusion=exclusion, by=request.user)
    messages.success(request, f"P{exclusion.participant_id} is included again.")
    return redirect("console:transcript", slug=slug, participant_id=exclusion.participant_id)


@login_required
@require_GET
def exclusions(request: HttpRequest, slug: str) -> HttpResponse:
    """Review what each rule would exclude, then apply it (a POST per rule, each exclusion recorded)."""
    study = get_study_for_user(request.user, slug)
    rule = request.GET.get("rule", "")
    candidates = []
    if rule:
        try:
            candidates = exclusion_candidates(
                study=study,
                rule=rule,
                k=_float(request.GET.get("k"), 2.0),
                min_seconds=_float(request.GET.get("min_seconds"), 5.0),
            )
        except ValueError as exc:
            messages.error(request, str(exc))
    active = Exclusion.objects.filter(participant__study=study).select_related("participant", "created_by")
    return render(
        request,
        "console/exclusions.html",
        {
            "study": study,
            "rules": RULES,
            "rule": rule,
            "candidates": candidates,
            "exclusions": active,
            "k": request.GET.get("k", "2"),
            "min_seconds": request.GET.get("min_seconds", "5"),
        },
    )


def _float(raw, default: float) -> float:
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError:
        return default


@login_required
@require_POST
def apply_rule(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    rule = request.POST.get("rule", "")
    try:
        candidates = exclusion_candidates(
            study=study,
            rule=rule,
            k=_float(request.POST.get("k"), 2.0),
            min_seconds=_float(request.POST.get("min_seconds"), 5.0),
        )
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("console:exclusions", slug=slug)
    for c in candidates:
        exclusion_add(
            participant=c["participant"], reason=f"{RULES[rule]}: {c['evidence']}", rule=rule, by=request.user
        )
    messages.success(request, f"Rule “{RULES[rule]}” excluded {len(candidates)} participant(s).")
    return redirect("console:exclusions", slug=slug)


@login_required
@require_POST
def pilot(request: HttpRequest, slug: str) -> HttpResponse:
    """Take the live study as a participant. Pilot data is flagged and left out of analysis and exports."""
    study = get_study_for_user(request.user, slug, write=True)
    if not study.is_live:
        messages.error(request, "Launch the study first: a pilot runs the frozen design participants will see.")
        return redirect("console:study", slug=slug)
    count = Participant.objects.filter(study=study, is_pilot=True).count()
    participant = participant_join(
        study=study, params={"pid": f"pilot-{request.user.pk}-{count + 1}"}, consent=True, is_pilot=True
    )
    return redirect("participant:next", token=participant.token)
