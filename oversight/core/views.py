from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from oversight.core.demo import demo_links


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"demo": demo_links()})
