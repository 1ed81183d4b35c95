"""A study's model-alone baselines in the console (issue 13.10): start a run, follow it, cancel it; the report shows
its numbers. A run is a job (`baselines.services`): its progress is the job page's, and this page's list refreshes
while a run is unfinished (htmx; without JS the Refresh link does the same).

Who may do what: everyone who may read the study sees its runs (a model's accuracy says nothing about the
participants, so blinding does not apply); the owner and editors start and cancel them; outsiders get a 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from oversight.analysis.tables import model_method_of
from oversight.baselines.runner import RunError
from oversight.baselines.services import baseline_run_cancel, baseline_run_request, runs_for_study, started_for
from oversight.console.access import can_edit, get_study_for_user
from oversight.console.baseline_forms import BaselineRunForm
from oversight.core.models import Study

TEMPLATE = "console/baselines.html"
MAX_LISTED = 50


def _runs(study: Study, *, may_edit: bool) -> list[dict]:
    rows = []
    for run in (
        runs_for_study(study).select_related("endpoint", "bank", "job", "created_by").order_by("-pk")[:MAX_LISTED]
    ):
        summary = run.summary or {}
        rows.append(
            {
                "run": run,
                "label": model_method_of(run.method, run.params).label,
                "items": "the study's items" if run.study_id else f"“{run.bank.name}”, split {run.split or 'all'}",
                "finished": run.is_finished,
                "accuracy": summary.get("accuracy"),
                "n": summary.get("labelled"),
                "cancellable": may_edit and not run.is_finished and started_for(study, run),
            }
        )
    return rows


def _page(request: HttpRequest, study: Study, form: BaselineRunForm | None = None, status: int = 200) -> HttpResponse:
    may_edit = can_edit(request.user, study)
    runs = _runs(study, may_edit=may_edit)
    context = {"study": study, "runs": runs, "may_edit": may_edit, "polling": any(not r["finished"] for r in runs)}
    if request.htmx:
        return render(request, f"{TEMPLATE}#runs", context, status=status)
    if may_edit:
        context["form"] = form or BaselineRunForm(study=study)
    return render(request, TEMPLATE, context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def baselines(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=request.method == "POST")
    if request.method == "GET":
        return _page(request, study)
    form = BaselineRunForm(request.POST, study=study)
    if form.is_valid():
        try:
            run = baseline_run_request(
                study=study,
                endpoint=form.cleaned_data["endpoint"],
                method=form.cleaned_data["method"],
                items=form.cleaned_data["items"],
                params=form.run_params(),
                by=request.user,
            )
        except RunError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Baseline run {run.pk} started: {run.total} items.")
            return redirect("console:baselines", slug=study.slug)
    return _page(request, study, form=form, status=400)


@login_required
@require_POST
def baseline_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    run = runs_for_study(study).select_related("job").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run for this study")
    try:
        baseline_run_cancel(study=study, run=run)
    except RunError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Baseline run {run.pk}: cancel asked for; finished items are kept.")
    return redirect("console:baselines", slug=study.slug)
