"""Designing a study: create, edit while draft (study, tasks, conditions), preview, clone, recruitment, collaborators.

Who may do what:
- creating a study, and cloning one, needs a staff account (studies draw on the lab's shared banks and
  endpoints); the creator owns the new study;
- editing needs the owner or an editor (`get_study_for_user(..., write=True)`: outsiders get 404, viewers 403);
- the design (study fields, tasks, conditions) can be edited only while the study is a draft: from launch on
  it is frozen in the manifest, and a 403 page says so and offers a clone;
- recruitment settings (completion URL and codes) are not part of the manifest and stay editable while live;
- only the owner adds and removes collaborators;
- self-play (the static protocol conditions' transcripts, written before launch) is started by an editor of the draft.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from oversight.assistant.selfplay import SelfPlayError, selfplay_request, static_conditions
from oversight.console.access import can_edit, get_study_for_user, require_staff
from oversight.console.forms import (
    CloneForm,
    CollaboratorForm,
    ConditionForm,
    RecruitmentForm,
    StudyForm,
    TaskForm,
)
from oversight.core.models import Collaborator, Condition, Study, StudyLogEntry, Task, Transcript
from oversight.core.protocols import ProtocolSettingsError
from oversight.core.services.protocols import condition_settings_hash
from oversight.core.services.samples import draw_samples
from oversight.core.services.studies import study_clone, study_design_problems
from oversight.core.services.study_log import changed_names, field_changes, field_values, study_log_add

TEMPLATE = "console/study_form.html"


def _frozen_page(request: HttpRequest, study: Study, message: str) -> HttpResponse:
    return render(
        request,
        TEMPLATE,
        {"page": "locked", "study": study, "message": message, "can_edit": can_edit(request.user, study)},
        status=403,
    )


def _editable_draft(request: HttpRequest, slug: str) -> tuple[Study, HttpResponse | None]:
    """The draft this user may edit, or (study, the 403 page that says why its design is frozen)."""
    study = get_study_for_user(request.user, slug, write=True)
    if study.status != Study.Status.DRAFT:
        return study, _frozen_page(
            request,
            study,
            (
                f"“{study.title}” is {study.get_status_display().lower()}: its design was frozen in the manifest at "
                f"launch and cannot be edited. Clone it to start a new draft with the same design."
            ),
        )
    return study, None


def _design_context(request: HttpRequest, study: Study, **extra) -> dict:
    selfplay = _selfplay_status(study) if study.status == Study.Status.DRAFT else []
    return {
        "study": study,
        "can_edit": can_edit(request.user, study),
        "is_owner": study.owner_id == request.user.pk or request.user.is_superuser,
        "tasks": study.tasks.select_related("bank"),
        "conditions": study.conditions.select_related("endpoint"),
        "problems": study_design_problems(study) if study.status == Study.Status.DRAFT else [],
        "selfplay": selfplay,
        "selfplay_missing": any(s["ready"] < s["needed"] for s in selfplay),
        **extra,
    }


def _selfplay_status(study: Study) -> list[dict]:
    """Per static protocol condition: how many of the items launch will draw have a finished transcript written
    under the condition's current settings and advocates (launch refuses the study until all have)."""
    try:
        conditions = static_conditions(study)
        if not conditions:
            return []
        drawn: dict[int, set[int]] = {}
        for row in draw_samples(study):
            if row.condition is not None:
                drawn.setdefault(row.condition.pk, set()).add(row.item_id)
        hashes = {c.pk: condition_settings_hash(c) for c in conditions}
    except (ProtocolSettingsError, ValueError):  # a design launch refuses anyway: its problems say why
        return []
    status = []
    for condition in conditions:
        items = drawn.get(condition.pk, set())
        ready = Transcript.objects.filter(
            condition=condition,
            shared=True,
            settings_hash=hashes[condition.pk],
            status=Transcript.Status.COMPLETE,
            item_id__in=items,
        ).count()
        status.append({"condition": condition, "ready": ready, "needed": len(items)})
    return status


@login_required
@require_http_methods(["GET", "POST"])
def study_create(request: HttpRequest) -> HttpResponse:
    require_staff(request.user)
    form = StudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        study = form.save(commit=False)
        study.owner = request.user
        with transaction.atomic():
            study.save()
            study_log_add(study=study, action=StudyLogEntry.Action.CREATED, by=request.user, summary="Created")
        messages.success(request, "Study created. Add its conditions and tasks next.")
        return redirect("console:design", slug=study.slug)
    return render(request, TEMPLATE, {"page": "create", "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def study_design(request: HttpRequest, slug: str) -> HttpResponse:
    study, frozen = _editable_draft(request, slug)
    if frozen:
        return frozen
    form = StudyForm(request.POST or None, instance=study, prefix="study")
    before = field_values(study, form._meta.fields)  # before is_valid() writes the form's values into `study`
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            study = form.save()
            _log_edit(request, study, form, before, "Study settings")
        messages.success(request, "Saved.")
        return redirect("console:design", slug=study.slug)
    if request.method == "POST":
        study.refresh_from_db()  # the failed form's values were applied to the instance; show the stored study
    return render(request, TEMPLATE, _design_context(request, study, page="design", form=form))


@login_required
@require_GET
def study_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """What a draft would run, and what still stops it from launching (a draft has no participant page)."""
    study = get_study_for_user(request.user, slug)
    return render(request, TEMPLATE, _design_context(request, study, page="preview"))


@login_required
@require_http_methods(["GET", "POST"])
def study_clone_view(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    require_staff(request.user)
    form = CloneForm(request.POST or None, initial={"slug": f"{study.slug}-copy"[:64]})
    if request.method == "POST" and form.is_valid():
        clone = study_clone(
            study=study, slug=form.cleaned_data["slug"], title=form.cleaned_data["title"] or None, owner=request.user
        )
        messages.success(request, f"Cloned into the draft “{clone.title}”.")
        return redirect("console:design", slug=clone.slug)
    return render(request, TEMPLATE, {"page": "clone", "study": study, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def study_recruitment(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    if study.status == Study.Status.CLOSED:
        return _frozen_page(
            request,
            study,
            f"“{study.title}” is closed: no participant can finish it any more, "
            f"so its recruitment settings no longer change anything.",
        )
    form = RecruitmentForm(request.POST or None, instance=study)
    before = field_values(study, form._meta.fields)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            _log_edit(request, study, form, before, "Recruitment settings", StudyLogEntry.Action.RECRUITMENT)
        messages.success(request, "Recruitment settings saved.")
        return redirect("console:study", slug=study.slug)
    return render(request, TEMPLATE, {"page": "recruitment", "study": study, "form": form})


def _log(request: HttpRequest, study: Study, summary: str, action=StudyLogEntry.Action.DESIGN, changes=()) -> None:
    study_log_add(study=study, action=action, by=request.user, summary=summary, changes=changes)


def _log_edit(request, study: Study, form, before: dict, what: str, action=StudyLogEntry.Action.DESIGN) -> None:
    """Log what a saved model form changed (nothing, when it changed nothing), by the form's labels."""
    labels = {name: field.label for name, field in form.fields.items()}
    changes = field_changes(form.instance, before, labels)
    if changes:
        _log(request, study, f"{what} edited: {changed_names(changes)}", action, changes)


# --- Tasks and conditions ------------------------------------------------------------------------------------


def _next_position(queryset) -> int:
    last = queryset.aggregate(last=Max("position"))["last"]
    return 0 if last is None else last + 1


def _part_form(request: HttpRequest, slug: str, *, model, form_class, page: str, pk: int | None):
    study, frozen = _editable_draft(request, slug)
    if frozen:
        return frozen
    related = study.tasks if model is Task else study.conditions
    instance = get_object_or_404(related, pk=pk) if pk is not None else None
    initial = {} if instance else {"position": _next_position(related)}
    form = form_class(request.POST or None, instance=instance, initial=initial, study=study)
    before = field_values(instance, form._meta.fields) if instance else None
    if request.method == "POST" and form.is_valid():
        what = model._meta.verbose_name.capitalize()
        with transaction.atomic():
            obj = form.save()
            if before is None:
                _log(request, study, f"{what} “{obj.name}” added")
            else:
                _log_edit(request, study, form, before, f"{what} “{obj.name}”")
        messages.success(request, f"{model._meta.verbose_name.capitalize()} “{obj.name}” saved.")
        return redirect("console:design", slug=study.slug)
    return render(request, TEMPLATE, _design_context(request, study, page=page, form=form, instance=instance))


def _part_delete(request: HttpRequest, slug: str, *, model, pk: int) -> HttpResponse:
    study, frozen = _editable_draft(request, slug)
    if frozen:
        return frozen
    related = study.tasks if model is Task else study.conditions
    obj = get_object_or_404(related, pk=pk)
    with transaction.atomic():
        obj.delete()
        _log(request, study, f"{model._meta.verbose_name.capitalize()} “{obj.name}” removed")
    if request.htmx:
        response = render(request, f"{TEMPLATE}#design-parts", _design_context(request, study))
        response["HX-Trigger"] = "designChanged"
        return response
    messages.success(request, f"{model._meta.verbose_name.capitalize()} “{obj.name}” removed.")
    return redirect("console:design", slug=study.slug)


@login_required
@require_http_methods(["GET", "POST"])
def task_create(request: HttpRequest, slug: str) -> HttpResponse:
    return _part_form(request, slug, model=Task, form_class=TaskForm, page="task", pk=None)


@login_required
@require_http_methods(["GET", "POST"])
def task_edit(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _part_form(request, slug, model=Task, form_class=TaskForm, page="task", pk=pk)


@login_required
@require_POST
def task_delete(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _part_delete(request, slug, model=Task, pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def condition_create(request: HttpRequest, slug: str) -> HttpResponse:
    return _part_form(request, slug, model=Condition, form_class=ConditionForm, page="condition", pk=None)


@login_required
@require_http_methods(["GET", "POST"])
def condition_edit(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _part_form(request, slug, model=Condition, form_class=ConditionForm, page="condition", pk=pk)


@login_required
@require_POST
def condition_delete(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _part_delete(request, slug, model=Condition, pk=pk)


# --- Collaborators -------------------------------------------------------------------------------------------


def _owned_study(request: HttpRequest, slug: str) -> Study:
    study = get_study_for_user(request.user, slug, write=True)
    if study.owner_id != request.user.pk and not request.user.is_superuser:
        raise PermissionDenied("Only the study's owner manages its collaborators")
    return study


def _collaborators_response(request: HttpRequest, study: Study, form: CollaboratorForm) -> HttpResponse:
    context = {
        "page": "collaborators",
        "study": study,
        "form": form,
        "collaborators": study.collaborators.select_related("user").order_by("user__username"),
    }
    template = f"{TEMPLATE}#collaborators" if request.htmx else TEMPLATE
    # An invalid form comes back with 200 too: htmx swaps only 2xx responses by default.
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def collaborators(request: HttpRequest, slug: str) -> HttpResponse:
    study = _owned_study(request, slug)
    form = CollaboratorForm(request.POST or None, study=study)
    if request.method == "POST":
        if not form.is_valid():
            return _collaborators_response(request, study, form)
        role, blind = form.cleaned_data["role"], form.cleaned_data["blind"]
        with transaction.atomic():
            _, created = Collaborator.objects.update_or_create(
                study=study, user=form.user, defaults={"role": role, "blind": blind}
            )
            verb = "added" if created else "updated"
            _log(
                request,
                study,
                f"{form.user.username} {verb} as {role}{' (blind)' if blind else ''}",
                StudyLogEntry.Action.COLLABORATORS,
            )
        if request.htmx:
            response = _collaborators_response(request, study, CollaboratorForm(study=study))
            response["HX-Trigger"] = "collaboratorsChanged"
            return response
        messages.success(request, f"{form.user.username} {verb} as {form.cleaned_data['role']}.")
        return redirect("console:collaborators", slug=study.slug)
    return _collaborators_response(request, study, form)


@login_required
@require_POST
def collaborator_remove(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    study = _owned_study(request, slug)
    collaborator = get_object_or_404(study.collaborators.select_related("user"), pk=pk)
    with transaction.atomic():
        collaborator.delete()
        _log(request, study, f"{collaborator.user.username} removed", StudyLogEntry.Action.COLLABORATORS)
    if request.htmx:
        response = _collaborators_response(request, study, CollaboratorForm(study=study))
        response["HX-Trigger"] = "collaboratorsChanged"
        return response
    messages.success(request, f"{collaborator.user.username} no longer has access to this study.")
    return redirect(reverse("console:collaborators", kwargs={"slug": study.slug}))


@login_required
@require_POST
def study_selfplay(request: HttpRequest, slug: str) -> HttpResponse:
    """Write the static conditions' transcripts (self-play) as a job; its page shows the progress."""
    study, frozen = _editable_draft(request, slug)
    if frozen:
        return frozen
    try:
        job = selfplay_request(study=study, by=request.user)
    except SelfPlayError as exc:
        messages.error(request, str(exc))
        return redirect("console:design", slug=study.slug)
    _log(request, study, f"Self-play started: {job.total} transcripts to write")
    return redirect("console:job", pk=job.pk)
