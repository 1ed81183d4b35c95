"""Question banks: list, upload (a background import job), browse items; and the job progress page.

Banks are a shared lab resource, not a study's: every staff account (`is_staff`) may list and browse them
and upload into them; other console accounts (e.g. a collaborator given access to one study) get 403.
The gold option is shown when browsing: only researchers reach the console.
"""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from oversight.banks.models import Bank, Item, Passage
from oversight.console.access import get_study_for_user, require_staff
from oversight.console.forms import BankUploadForm
from oversight.core.models import Job
from oversight.core.services.bank_imports import bank_import_request

ITEMS_PER_PAGE = 25
DIFFICULTY = {"hard": True, "easy": False, "unknown": None}


@login_required
@require_GET
def bank_list(request: HttpRequest) -> HttpResponse:
    """Every bank with its items per split; recent import jobs. Staff only (view)."""
    require_staff(request.user)
    banks = list(Bank.objects.all())
    splits: dict[int, list[tuple[str, int]]] = {}
    for bank_id, split, n in (
        Item.objects.values_list("bank_id", "split").annotate(n=Count("id")).order_by("bank_id", "split")
    ):
        splits.setdefault(bank_id, []).append((split or "(none)", n))
    passages = dict(Passage.objects.values_list("bank_id").annotate(n=Count("id")).order_by())
    for bank in banks:
        bank.splits = splits.get(bank.pk, [])
        bank.n_items = sum(n for _, n in bank.splits)
        bank.n_passages = passages.get(bank.pk, 0)
    jobs = Job.objects.filter(kind=Job.Kind.IMPORT).select_related("created_by").order_by("-created_at")[:10]
    return render(request, "console/banks.html", {"banks": banks, "jobs": jobs})


@login_required
@require_http_methods(["GET", "POST"])
def bank_upload(request: HttpRequest) -> HttpResponse:
    """Upload a bank file; it is imported by a background job (see core.services.bank_imports). Staff only."""
    require_staff(request.user)
    form = BankUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = bank_import_request(
            upload=form.cleaned_data["file"],
            format=form.cleaned_data["format"],
            custom_format=form.cleaned_data["custom_format"],
            bank_name=form.cleaned_data["bank_name"],
            by=request.user,
        )
        return redirect("console:job", pk=job.pk)
    return render(request, "console/bank_upload.html", {"form": form})


@login_required
@require_GET
def bank_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Browse a bank's items: search the question text, filter by subject, split and difficulty. Staff only."""
    require_staff(request.user)
    bank = get_object_or_404(Bank, pk=pk)
    filters = {key: request.GET.get(key, "").strip() for key in ("q", "subject", "split", "difficulty")}
    items = bank.items.select_related("passage").defer("passage__text", "passage__metadata").order_by("id")
    if filters["q"]:
        items = items.filter(text__icontains=filters["q"])
    if filters["subject"]:
        items = items.filter(subject=filters["subject"])
    if filters["split"]:
        items = items.filter(split=filters["split"])
    if filters["difficulty"] in DIFFICULTY:
        items = items.filter(difficult=DIFFICULTY[filters["difficulty"]])
    page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    for item in page:
        item.lettered = list(zip(item.letters, item.options, strict=True))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "bank": bank,
        "page": page,
        "filters": filters,
        "query": query.urlencode(),
        "subjects": bank.items.order_by("subject").values_list("subject", flat=True).distinct(),
        "splits": bank.items.order_by("split").values_list("split", flat=True).distinct(),
    }
    template = "console/bank_detail.html#results" if request.htmx else "console/bank_detail.html"
    return render(request, template, context)


@login_required
@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A job's progress. A study's job (an export) is for those who may read the study; others are staff-only."""
    job = get_object_or_404(Job.objects.select_related("study", "created_by"), pk=pk)
    if job.study_id:
        get_study_for_user(request.user, job.study.slug)
    else:
        require_staff(request.user)
    finished = job.is_finished
    seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
    context = {"job": job, "finished": finished, "seconds": seconds}
    if request.htmx:
        response = render(request, "console/job.html#job-status", context)
        if finished:
            response["HX-Trigger"] = "jobFinished"
        return response
    return render(request, "console/job.html", context)
