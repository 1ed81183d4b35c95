"""The researcher console (a first slice: studies, their frozen manifest and who is where)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from oversight.console.access import can_edit, get_study_for_user, studies_for_user
from oversight.core.models import Participant, Trial
from oversight.core.services.studies import StudyDesignError, study_close, study_design_problems, study_launch


@login_required
@require_GET
def study_list(request: HttpRequest) -> HttpResponse:
    studies = studies_for_user(request.user).annotate(
        n_participants=Count("participants", filter=Q(participants__is_pilot=False))
    )
    return render(request, "console/study_list.html", {"studies": studies})


@login_required
@require_GET
def study_detail(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug)
    by_status = dict(
        study.participants.filter(is_pilot=False).values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    conditions = study.conditions.select_related("endpoint").annotate(
        n_items=Count("condition_items", distinct=True),
        n_answered=Count(
            "trials", filter=Q(trials__status__in=[Trial.Status.ANSWERED, Trial.Status.TIMED_OUT]), distinct=True
        ),
    )
    return render(
        request,
        "console/study_detail.html",
        {
            "study": study,
            "can_edit": can_edit(request.user, study),
            "conditions": conditions,
            "tasks": study.tasks.select_related("bank"),
            "statuses": [(label, by_status.get(value, 0)) for value, label in Participant.Status.choices],
            "problems": study_design_problems(study) if study.status == study.Status.DRAFT else [],
        },
    )


@login_required
@require_GET
def study_manifest(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug)
    return JsonResponse(
        {"manifest_hash": study.manifest_hash, "manifest": study.manifest}, json_dumps_params={"indent": 2}
    )


@login_required
@require_POST
def study_launch_view(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    try:
        study = study_launch(study=study)
    except StudyDesignError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Launched. Manifest hash {study.manifest_hash[:12]}…")
    return redirect("console:study", slug=slug)


@login_required
@require_POST
def study_close_view(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    try:
        study_close(study=study)
    except StudyDesignError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The study is closed; participants can no longer answer.")
    return redirect("console:study", slug=slug)
