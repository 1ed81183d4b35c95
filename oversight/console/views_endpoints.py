"""Model endpoints: list, add, edit, and test (health, /info, a one-line reply and its latency).

Endpoints are a shared lab resource: every staff account (`is_staff`) may list, add and test them, and edit
those no other researcher's live study uses (`endpoint_change_refusal`); other console accounts get 403. Every
edit is recorded in the log of each study using the endpoint. Tokens are write-only: never rendered back into
a page or a log.
"""

import asyncio

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from oversight.assistant.backends import probe, request_for_endpoint
from oversight.console.access import endpoint_change_refusal, get_endpoint_for_user, require_staff
from oversight.console.forms import EndpointForm
from oversight.core.models import ModelEndpoint, Study
from oversight.core.services.endpoints import endpoint_update

INFO_KEYS = ("model_id", "max_input_tokens", "max_total_tokens", "version")


def _endpoints():
    return ModelEndpoint.objects.annotate(
        n_studies=Count("condition__study", distinct=True),
        n_live=Count("condition__study", filter=Q(condition__study__status=Study.Status.LIVE), distinct=True),
    )


@login_required
@require_GET
def endpoint_list(request: HttpRequest) -> HttpResponse:
    require_staff(request.user)
    return render(request, "console/endpoints.html", _list_context(request))


def _list_context(request: HttpRequest, **extra) -> dict:
    endpoints = list(_endpoints())
    locked = {e.pk for e in endpoints if e.n_live and endpoint_change_refusal(request.user, e)}
    return {"endpoints": endpoints, "locked": locked, **extra}


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_create(request: HttpRequest) -> HttpResponse:
    require_staff(request.user)
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save()
        messages.success(request, f"Endpoint “{endpoint.name}” saved. Test it below.")
        return redirect("console:endpoints")
    return render(request, "console/endpoint_form.html", {"form": form, "endpoint": None})


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_endpoint_for_user(request.user, pk)
    refusal = endpoint_change_refusal(request.user, endpoint)
    if refusal:
        return render(request, "console/endpoint_form.html", {"endpoint": endpoint, "refusal": refusal}, status=403)
    form = EndpointForm(request.POST or None, instance=endpoint)
    if request.method == "POST" and form.is_valid():
        values = {name: form.cleaned_data[name] for name in EndpointForm.Meta.fields}
        labels = {name: form.fields[name].label for name in values}
        endpoint = endpoint_update(endpoint=endpoint, values=values, by=request.user, labels=labels)
        messages.success(request, f"Endpoint “{endpoint.name}” saved. Test it below.")
        return redirect("console:endpoints")
    if request.method == "POST":
        endpoint.refresh_from_db()  # the failed form's values were applied to the instance; show the stored one
    return render(request, "console/endpoint_form.html", {"form": form, "endpoint": endpoint})


@login_required
@require_POST
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Run the probe now. htmx swaps in the result; without JS the list page comes back with it."""
    endpoint = get_endpoint_for_user(request.user, pk)
    result = asyncio.run(probe(request_for_endpoint(endpoint)))
    info = result.get("info") or {}
    result["info_rows"] = [(key, info[key]) for key in INFO_KEYS if info.get(key) is not None]
    result["ok"] = bool(result["healthy"] and not result["error"])
    context = _list_context(request, endpoint=endpoint, probe=result, probed_pk=endpoint.pk)
    if request.htmx:
        response = render(request, "console/endpoints.html#probe-result", context)
        response["HX-Trigger"] = "endpointTested"
        return response
    return render(request, "console/endpoints.html", context)
