"""No participant ever sees a traceback or a debug page, whatever the settings (DEBUG=1 included).

Every participant view is wrapped in `participant_page` (participant/urls.py wraps them all; a test checks it):
- input that cannot be part of a link or an answer (a NUL character, which PostgreSQL refuses to store) gets a
  clear 400 page before the view runs;
- Http404 becomes the friendly "not found" page, not Django's debug 404 with the URL patterns;
- a request Django refuses (too many fields, too large) gets the friendly 400 page;
- any other exception is logged with its traceback and answered with the friendly 500 page.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable

from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, UnreadablePostError
from django.shortcuts import render

log = logging.getLogger(__name__)

NUL = "\x00"


def error_page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    response = render(request, "participant/error.html", {"title": title, "message": message}, status=status)
    if getattr(request, "htmx", False):
        response["HX-Push-Url"] = "false"  # the address bar keeps the page the participant was on
    return response


def _has_nul(values: Iterable[str]) -> bool:
    return any(NUL in value for value in values)


def _bad_input(request: HttpRequest, kwargs: dict) -> HttpResponse | None:
    if _has_nul(str(v) for v in kwargs.values()):
        return error_page(request, 404, "Page not found", "Please check the link you were given.")
    fields = [*request.GET.keys(), *request.GET.values()]
    if request.method == "POST":
        fields += [*request.POST.keys(), *request.POST.values()]
    if _has_nul(fields):
        return error_page(
            request,
            400,
            "This link or form is damaged",
            "It contains a character that cannot be part of a link or an answer (a NUL character). "
            "Please check the link you were given, or go back and try again.",
        )
    return None


def participant_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            if refused := _bad_input(request, kwargs):
                return refused
            return view(request, *args, **kwargs)
        except Http404:
            return error_page(request, 404, "Page not found", "Please check the link you were given.")
        except (BadRequest, SuspiciousOperation, RequestDataTooBig, TooManyFieldsSent, UnreadablePostError):
            return error_page(request, 400, "This request could not be read", "Please go back and try again.")
        except Exception:
            log.exception("participant page failed", extra={"path": request.path})
            return error_page(
                request,
                500,
                "Something went wrong on our side",
                "Your answers so far are saved. Please wait a moment and reload this page to continue.",
            )

    wrapped.participant_page = True
    return wrapped
