"""A study's model judges in the console (issue 17): start a judge run, follow it, cancel it; the report shows its
rows beside the people's. The list refreshes while a run is unfinished (htmx; without JS the Refresh link does the
same).

Who may do what: everyone who may read the study sees its runs; the owner and editors start and cancel them;
outsiders get a 404. A run's accuracy is hidden from a collaborator blind to results, as the report is.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from oversight.console.access import can_edit, get_study_for_user, results_hidden
from oversight.console.judge_forms import JudgeRunForm
from oversight.core.models import Study
from oversight.judges.runner import RunError
from oversight.judges.services import judge_run_cancel, judge_run_request, runs_for_study

TEMPLATE = "console/judges.html"
MAX_LISTED = 50


def _page(request: HttpRequest, study: Study, form: JudgeRunForm | None = None, status: int = 200) -> HttpResponse:
    may_edit = can_edit(request.user, study)
    hidden = results_hidden(request.user, study)
    runs = [
        {
            "run": run,
            "finished": run.is_finished,
            "accuracy": None if hidden else (run.summary or {}).get("accuracy"),
            "n": (run.summary or {}).get("answered"),
            "cancellable": may_edit and not run.is_finished,
        }
        for run in runs_for_study(study).select_related("created_by").order_by("-pk")[:MAX_LISTED]
    ]
    context = {"study": study, "runs": runs, "may_edit": may_edit, "polling": any(not r["finished"] for r in runs)}
    if request.htmx:
        return render(request, f"{TEMPLATE}#runs", context, status=status)
    if may_edit:
        context["form"] = form or JudgeRunForm(study=study)
    return render(request, TEMPLATE, context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def judges(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=request.method == "POST")
    if request.method == "GET":
        return _page(request, study)
    form = JudgeRunForm(request.POST, study=study)
    if form.is_valid():
        try:
            run = judge_run_request(
                study=study,
                condition=form.cleaned_data["condition"],
                endpoint=form.cleaned_data["endpoint"],
                mode=form.cleaned_data["mode"],
                answer=form.cleaned_data["answer"],
                params=form.run_params(),
                by=request.user,
            )
        except RunError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Judge run {run.pk} started.")
            return redirect("console:judges", slug=study.slug)
    return _page(request, study, form=form, status=400)


@login_required
@require_POST
def judge_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    study = get_study_for_user(request.user, slug, write=True)
    run = runs_for_study(study).filter(pk=run_id).first()
    if run is None:
        raise Http404("No such judge run for this study")
    judge_run_cancel(study=study, run=run)
    messages.success(request, f"Judge run {run.pk}: cancel asked for; the answers so far are kept.")
    return redirect("console:judges", slug=study.slug)
