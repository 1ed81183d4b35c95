"""The researcher console (a first slice: studies, their frozen manifest and who is where)."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from oversight.console.access import can_edit, get_study_for_user, results_hidden, studies_for_user
from oversight.core.models import Participant, Study, StudyLogEntry, Task, Trial
from oversight.core.services.participants import condition_orders
from oversight.core.services.studies import StudyDesignError, study_close, study_design_problems, study_launch

# Prolific replaces these placeholders in a study URL with the participant's, study's and session's ids.
PROLIFIC_PARAMS = {"PROLIFIC_PID": "{{%PROLIFIC_PID%}}", "STUDY_ID": "{{%STUDY_ID%}}", "SESSION_ID": "{{%SESSION_ID%}}"}


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
    people = study.participants.filter(is_pilot=False, kind=Participant.Kind.HUMAN)  # model judges are not counted
    by_status = dict(people.values("status").annotate(n=Count("id")).values_list("status", "n"))
    conditions = list(
        study.conditions.select_related("endpoint")
        .annotate(
            n_items=Count("condition_items", distinct=True),
            n_answered=Count(
                "trials", filter=Q(trials__status__in=[Trial.Status.ANSWERED, Trial.Status.TIMED_OUT]), distinct=True
            ),
        )
        .order_by("position", "id")
    )
    return render(
        request,
        "console/study_detail.html",
        {
            **_design_summary(study, conditions),
            "can_edit": can_edit(request.user, study),
            "links": _participant_links(request, study),
            "statuses": [(label, by_status.get(value, 0)) for value, label in Participant.Status.choices],
            "problems": study_design_problems(study) if study.status == study.Status.DRAFT else [],
            "log_entries": _log_entries(request, study, study.log_entries.all()[:LOG_ON_PAGE]),
            "log_more": study.log_entries.count() > LOG_ON_PAGE,
        },
    )


def _participant_links(request: HttpRequest, study: Study) -> dict:
    """The study's public links, absolute: built from this request's scheme and host, as the proxy reports them
    (X-Forwarded-Proto through SECURE_PROXY_SSL_HEADER; the Host header nginx passes on), so they are the links
    participants will use."""
    base = request.build_absolute_uri(reverse("participant:welcome", kwargs={"slug": study.slug}))
    return {"open": base, "prolific": f"{base}?{urlencode(PROLIFIC_PARAMS, safe='{}%')}"}


def _design_summary(study: Study, conditions: list) -> dict:
    """The conditions in the order participants get them, and the tasks: the study page and the confirmations."""
    tasks = list(study.tasks.select_related("bank"))
    return {
        "study": study,
        "conditions": conditions,
        "orders": condition_orders(study, conditions),
        "tasks": tasks,
        "has_practice": any(t.role == Task.Role.PRACTICE for t in tasks),
    }


LOG_ON_PAGE = 8


def _log_entries(request: HttpRequest, study: Study, entries) -> list[StudyLogEntry]:
    """The log as this user may see it: a viewer blind to accuracy does not see why a participant was excluded
    (a rule's evidence states accuracies)."""
    entries = list(entries)
    if results_hidden(request.user, study):
        for entry in entries:
            if entry.action == StudyLogEntry.Action.EXCLUSION:
                entry.changes = []
    return entries


@login_required
@require_GET
def study_log(request: HttpRequest, slug: str) -> HttpResponse:
    """Every recorded change to the study, newest first."""
    study = get_study_for_user(request.user, slug)
    page = Paginator(study.log_entries.all(), 100).get_page(request.GET.get("page"))
    return render(
        request,
        "console/study_log.html",
        {"study": study, "page": page, "log_entries": _log_entries(request, study, page.object_list)},
    )


@login_required
@require_GET
def study_manifest(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug)
    return JsonResponse(
        {"manifest_hash": study.manifest_hash, "manifest": study.manifest}, json_dumps_params={"indent": 2}
    )


@login_required
@require_http_methods(["GET", "POST"])
def study_launch_view(request: HttpRequest, slug: str) -> HttpResponse:
    """GET asks for confirmation, saying what launching freezes; the POST from that page launches."""
    study = get_study_for_user(request.user, slug, write=True)
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        if study.status != Study.Status.DRAFT:
            messages.error(request, "Only a draft study can be launched.")
            return redirect("console:study", slug=slug)
        return _confirm(request, study, "launch", problems=study_design_problems(study))
    try:
        study = study_launch(study=study, by=request.user)
    except StudyDesignError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Launched. Manifest hash {study.manifest_hash[:12]}…")
    return redirect("console:study", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def study_close_view(request: HttpRequest, slug: str) -> HttpResponse:
    """GET asks for confirmation (closing cannot be undone); the POST from that page closes."""
    study = get_study_for_user(request.user, slug, write=True)
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        if study.status != Study.Status.LIVE:
            messages.error(request, "Only a live study can be closed.")
            return redirect("console:study", slug=slug)
        in_progress = study.participants.filter(is_pilot=False, status=Participant.Status.ACTIVE).count()
        return _confirm(request, study, "close", in_progress=in_progress)
    try:
        study_close(study=study, by=request.user)
    except StudyDesignError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The study is closed; participants can no longer answer.")
    return redirect("console:study", slug=slug)


def _confirm(request: HttpRequest, study: Study, action: str, **extra) -> HttpResponse:
    conditions = list(study.conditions.select_related("endpoint").order_by("position", "id"))
    return render(
        request,
        "console/study_confirm.html",
        {**_design_summary(study, conditions), "action": action, "links": _participant_links(request, study), **extra},
    )
