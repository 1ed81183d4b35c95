"""Researcher login with throttling: a few wrong passwords lock that username (and that address) for a while."""

from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpResponse

MAX_FAILURES = 5
LOCKOUT_S = 15 * 60


def _keys(request) -> list[str]:
    username = (request.POST.get("username") or "").strip().lower()[:150]
    address = request.META.get("REMOTE_ADDR", "")
    # Per username (against guessing one account from many addresses) and per address (against spraying).
    return [f"login:fail:user:{username}", f"login:fail:addr:{address}"]


def _locked(request) -> bool:
    counts = cache.get_many(_keys(request))
    return any(count >= MAX_FAILURES * (1 if key.startswith("login:fail:user") else 4) for key, count in counts.items())


class ThrottledLoginView(auth_views.LoginView):
    template_name = "console/login.html"

    def post(self, request, *args, **kwargs):
        if _locked(request):
            response = self.render_to_response(self.get_context_data(form=self.get_form(), locked=True))
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        for key in _keys(self.request):
            cache.add(key, 0, LOCKOUT_S)
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, LOCKOUT_S)
        return super().form_invalid(form)

    def form_valid(self, form) -> HttpResponse:
        cache.delete(_keys(self.request)[0])
        return super().form_valid(form)
