"""A study's data exports in the console: ask for one (a background job), list past ones, download them; and the
Prolific bonus and approval files (oversight/exports, docs/export.md).

Who gets what:
- everyone who may read the study sees the page, asks for exports and downloads them;
- recruitment ids identify people: exports that include them, and the payment files (which always carry Prolific
  ids), are for the owner and editors only; an export includes them only where the study allows it;
- a collaborator blind to accuracy gets no data while the study runs — every export and payment file shows who
  answered right — just as the report hides its results from them (`access.results_hidden`).
"""

from __future__ import annotations

import io
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from oversight.console.access import can_edit, get_study_for_user, results_hidden
from oversight.console.forms import BonusForm, ExportForm
from oversight.core.models import Job, Study
from oversight.exports.payments import (
    payment_rows,
    prolific_bonus_lines,
    unpayable,
    write_prolific_bonus_csv,
    write_statuses_csv,
)
from oversight.exports.services import ExportError, export_file, export_request

TEMPLATE = "console/export.html"
MAX_LISTED = 50
PAYMENT_FILES = {"bonus": ("prolific-bonus", write_prolific_bonus_csv), "statuses": ("statuses", write_statuses_csv)}


def _study_data(request: HttpRequest, slug: str, *, write: bool = False) -> Study:
    """The study for this user, refusing a viewer who is blind to accuracy while it runs."""
    study = get_study_for_user(request.user, slug, write=write)
    if results_hidden(request.user, study):
        raise PermissionDenied("You are blind to accuracy while the study runs: its data stays hidden until it closes")
    return study


def _exports(study: Study, *, may_identify: bool) -> list[dict]:
    now = timezone.now()
    rows = []
    for job in (
        Job.objects.filter(study=study, kind=Job.Kind.EXPORT)
        .select_related("created_by")
        .order_by("-created_at", "-pk")[:MAX_LISTED]
    ):
        result = job.result or {}
        identifying = bool((job.params or {}).get("include_external_ids"))
        expired = bool(result.get("expired")) or (job.expires_at is not None and job.expires_at <= now)
        rows.append(
            {
                "job": job,
                "formats": ", ".join((job.params or {}).get("formats", [])),
                "identifying": identifying,
                "pilots": bool((job.params or {}).get("include_pilots")),
                "size": result.get("size"),
                "expired": expired,
                "downloadable": (may_identify or not identifying) and export_file(job, now=now) is not None,
                "finished": job.is_finished,
            }
        )
    return rows


def _page(
    request: HttpRequest,
    study: Study,
    *,
    form: ExportForm | None = None,
    bonus_form: BonusForm | None = None,
    status: int = 200,
) -> HttpResponse:
    may_identify = can_edit(request.user, study)
    rows = _exports(study, may_identify=may_identify)
    context = {
        "page": "exports",
        "study": study,
        "may_identify": may_identify,
        "exports": rows,
        "polling": any(not r["finished"] for r in rows),
    }
    if request.htmx:
        return render(request, f"{TEMPLATE}#exports", context, status=status)
    context["form"] = form or ExportForm(study=study, may_identify=may_identify)
    if may_identify:
        context.update(
            _bonus_context(study, bonus_form or BonusForm(request.GET if "per_correct" in request.GET else None))
        )
    return render(request, TEMPLATE, context, status=status)


def _bonus_context(study: Study, form: BonusForm) -> dict:
    context: dict = {"bonus_form": form}
    if form.is_bound and form.is_valid():
        rows = payment_rows(
            study=study,
            per_correct=form.cleaned_data["per_correct"],
            withhold_excluded=form.cleaned_data["withhold_excluded"],
        )
        query = urlencode(
            {
                "per_correct": form.cleaned_data["per_correct"],
                **({"withhold_excluded": "on"} if form.cleaned_data["withhold_excluded"] else {}),
            }
        )
        context["bonus"] = {
            "lines": len(prolific_bonus_lines(rows)),
            "total": sum((r.bonus for r in rows if r.prolific_pid), Decimal("0")),
            "unpayable": unpayable(rows),
            "query": query,
        }
    return context


@login_required
@require_http_methods(["GET", "POST"])
def export_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The export form (POST: a background job, then its progress page), past exports, the payment files."""
    study = get_study_for_user(request.user, slug)
    if results_hidden(request.user, study):
        if request.method == "POST":
            raise PermissionDenied("You are blind to accuracy while the study runs")
        return render(request, TEMPLATE, {"page": "hidden", "study": study})
    if request.method == "GET":
        return _page(request, study)
    form = ExportForm(request.POST, study=study, may_identify=can_edit(request.user, study))
    if form.is_valid():
        try:
            job = export_request(
                study=study,
                by=request.user,
                formats=form.cleaned_data["formats"],
                include_external_ids=form.cleaned_data["include_external_ids"],
                include_pilots=form.cleaned_data["include_pilots"],
            )
        except ExportError as exc:  # the study's setting changed since the form was checked
            form.add_error(None, str(exc))
        else:
            return redirect("console:job", pk=job.pk)
    return _page(request, study, form=form, status=400)


@login_required
@require_GET
def export_download(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """One export's zip file, while it has not expired."""
    study = _study_data(request, slug)
    job = get_object_or_404(Job, pk=pk, study=study, kind=Job.Kind.EXPORT)
    if (job.params or {}).get("include_external_ids") and not can_edit(request.user, study):
        raise PermissionDenied("This export holds recruitment ids: only the owner and editors may download it")
    path = export_file(job)
    if path is None:
        done = job.status == Job.Status.DONE
        return render(
            request,
            TEMPLATE,
            {"page": "gone" if done else "not_ready", "study": study, "job": job},
            status=410 if done else 404,
        )
    response = FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=job.result.get("filename") or path.name,
        content_type="application/zip",
    )
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def payments_file(request: HttpRequest, slug: str, which: str) -> HttpResponse:
    """The Prolific bulk-bonus file (`<PROLIFIC_PID>,<amount>` lines) or every participant's status and bonus (CSV),
    under the bonus rule in the query (`per_correct`, `withhold_excluded`). Owner and editors only."""
    study = _study_data(request, slug, write=True)
    name, write = PAYMENT_FILES[which]
    form = BonusForm(request.GET)
    if not form.is_valid():
        return _page(request, study, bonus_form=form, status=400)
    rows = payment_rows(
        study=study,
        per_correct=form.cleaned_data["per_correct"],
        withhold_excluded=form.cleaned_data["withhold_excluded"],
    )
    out = io.StringIO(newline="")
    write(rows, out)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{name}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
