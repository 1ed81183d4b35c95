"""Model endpoints: list, add, edit, and test (health, /info, a one-line reply and its latency).

Endpoints are a shared lab resource: every staff account (`is_staff`) may list, add, edit and test them;
other console accounts get 403. Tokens are write-only: never rendered back into a page.
"""

import asyncio

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from oversight.assistant.backends import probe, request_for_endpoint
from oversight.console.access import require_staff
from oversight.console.forms import EndpointForm
from oversight.core.models import ModelEndpoint, Study

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
    return render(request, "console/endpoints.html", {"endpoints": _endpoints()})


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_create(request: HttpRequest) -> HttpResponse:
    require_staff(request.user)
    return _endpoint_form(request, None)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_staff(request.user)
    return _endpoint_form(request, get_object_or_404(ModelEndpoint, pk=pk))


def _endpoint_form(request: HttpRequest, endpoint: ModelEndpoint | None) -> HttpResponse:
    form = EndpointForm(request.POST or None, instance=endpoint)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save()
        messages.success(request, f"Endpoint “{endpoint.name}” saved. Test it below.")
        return redirect("console:endpoints")
    return render(request, "console/endpoint_form.html", {"form": form, "endpoint": endpoint})


@login_required
@require_POST
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Run the probe now. htmx swaps in the result; without JS the list page comes back with it."""
    require_staff(request.user)
    endpoint = get_object_or_404(ModelEndpoint, pk=pk)
    result = asyncio.run(probe(request_for_endpoint(endpoint)))
    info = result.get("info") or {}
    result["info_rows"] = [(key, info[key]) for key in INFO_KEYS if info.get(key) is not None]
    result["ok"] = bool(result["healthy"] and not result["error"])
    context = {"endpoint": endpoint, "probe": result, "endpoints": _endpoints(), "probed_pk": endpoint.pk}
    if request.htmx:
        response = render(request, "console/endpoints.html#probe-result", context)
        response["HX-Trigger"] = "endpointTested"
        return response
    return render(request, "console/endpoints.html", context)
