"""`GET /metrics`: operational numbers in the Prometheus text exposition format (version 0.0.4).

Every number is read from the database at scrape time, so each web replica answers the same, database-wide
figures: scraping any one of them (through the proxy, with the bearer token) is enough, a restart loses
nothing, and the generation code needs no hooks. The distributions (time to first token, deadline
finalisation lag) cover a sliding window (`WINDOW`, five minutes) and are exposed as *gauges* named
`oversight_recent_*`: their `_bucket{le=…}` series are cumulative like a histogram's, so
`histogram_quantile(0.95, oversight_recent_ttft_seconds_bucket)` works directly — without `rate()`, because
they describe the window, not a count since start-up. The `*_total` series are counters (rows in the
database; they only go down if rows are deleted).

Each query is one aggregate over an indexed filter: `Trial(status, deadline_at)`, `ChatMessage(status,
heartbeat_at)` and `Event(at)`. A finished reply's `heartbeat_at` is its last flush (or its creation), so it
lies at most one reply's duration before `finished_at`: the window's rows are found through the index with
`heartbeat_at >= start − HEARTBEAT_MARGIN`, then filtered exactly on `finished_at`. The answer counter is the
one count that grows with the study (every final trial, counted through the status index).

Access (no Django auth: scrapers have no session): a request is served when
- it comes straight from a loopback or private-network address (RFC 1918, IPv6 ULA) *and* carries no
  forwarding header (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`) — a request relayed by nginx or an ingress
  always carries one, so the public never qualifies through the proxy; or
- it sends `Authorization: Bearer <METRICS_TOKEN>` (the setting, from the environment), compared in constant
  time.
Otherwise 401 (a token is configured) or 403 (none is).
"""

import hmac
import ipaddress
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from oversight.assistant.backends import HUMAN_MESSAGES
from oversight.assistant.models import ChatMessage
from oversight.core.models import Event, Participant, Trial

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

WINDOW = timedelta(minutes=5)  # the sliding window of the `oversight_recent_*` distributions
ACTIVE_WINDOW = timedelta(minutes=5)  # a participant counts as active with an event (or last_seen_at) this recent
OVERDUE_AFTER = timedelta(seconds=5)  # a shown trial this far past its deadline means the sweep is behind
STALE_GENERATION_AFTER = timedelta(seconds=15)  # no heartbeat for this long: the generating process is gone
HEARTBEAT_MARGIN = timedelta(minutes=15)  # longest a reply may go between its last heartbeat and its end

TTFT_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LAG_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

FINISHED_REPLY = (
    ChatMessage.Status.COMPLETE,
    ChatMessage.Status.STOPPED,
    ChatMessage.Status.FAILED,
    ChatMessage.Status.CANCELLED,
    ChatMessage.Status.INTERRUPTED,
)
ENDED_BADLY = (ChatMessage.Status.FAILED, ChatMessage.Status.CANCELLED, ChatMessage.Status.INTERRUPTED)
# Series always present (at 0) so that dashboards and alerts see them before the first occurrence.
ANSWER_SERIES = (
    (Trial.Status.ANSWERED, Trial.SubmitKind.MANUAL),
    (Trial.Status.TIMED_OUT, Trial.SubmitKind.AUTO),
    (Trial.Status.TIMED_OUT, Trial.SubmitKind.SERVER),
)

PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


# --- Access control --------------------------------------------------------------------------------------


def metrics_token() -> str:
    return settings.METRICS_TOKEN.strip()


def is_private_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in PRIVATE_NETWORKS)


def direct_from_private_network(request: HttpRequest) -> bool:
    if any(request.META.get(header) for header in FORWARDING_HEADERS):
        return False
    return is_private_address(request.META.get("REMOTE_ADDR") or "")


def has_valid_token(request: HttpRequest, token: str) -> bool:
    if not token:
        return False
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


# --- Exposition format -----------------------------------------------------------------------------------


def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def format_le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Exposition:
    """Collects metric families and renders them: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | int | None]]
    ) -> None:
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels.items())
            self.lines.append(
                f"{name}{{{rendered}}} {format_value(value)}" if rendered else f"{name} {format_value(value)}"
            )

    def gauge(self, name: str, help_text: str, value: float | int | None) -> None:
        self.family(name, "gauge", help_text, [({}, value)])

    def recent_distribution(
        self, name: str, help_text: str, buckets: tuple[float, ...], counts: list[int], count: int, total: float
    ) -> None:
        """A gauge 'histogram' over the window: cumulative buckets, count and sum (see the module doc)."""
        cumulative = [({"le": format_le(bound)}, n) for bound, n in zip(buckets, counts, strict=True)]
        cumulative.append(({"le": "+Inf"}, count))
        self.family(f"{name}_bucket", "gauge", f"{help_text} Cumulative count per upper bound (le).", cumulative)
        self.family(f"{name}_count", "gauge", f"{help_text} Number of observations.", [({}, count)])
        self.family(f"{name}_sum", "gauge", f"{help_text} Sum of the observations.", [({}, round(total, 6))])

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


# --- The numbers -----------------------------------------------------------------------------------------


def _seconds(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)  # some backends hand durations back as a number of seconds


def collect(now=None) -> Exposition:
    now = now or timezone.now()
    start = now - WINDOW
    out = Exposition()

    out.gauge(
        "oversight_metrics_window_seconds",
        "Length of the sliding window the oversight_recent_* distributions cover.",
        WINDOW.total_seconds(),
    )

    recently_active = Event.objects.filter(at__gte=now - ACTIVE_WINDOW).values("participant_id")
    active = (
        Participant.objects.filter(status=Participant.Status.ACTIVE)
        .filter(Q(last_seen_at__gte=now - ACTIVE_WINDOW) | Q(pk__in=recently_active))
        .count()
    )
    out.gauge(
        "oversight_active_participants",
        f"Participants in progress (status active) seen in the last {int(ACTIVE_WINDOW.total_seconds())} s.",
        active,
    )

    trials = Trial.objects.filter(status=Trial.Status.SHOWN).aggregate(
        shown=Count("id"), overdue=Count("id", filter=Q(deadline_at__lt=now - OVERDUE_AFTER))
    )
    out.gauge(
        "oversight_trials_in_progress",
        "Trials shown to a participant and not yet answered or timed out.",
        trials["shown"],
    )
    out.gauge(
        "oversight_trials_overdue",
        f"Shown trials more than {int(OVERDUE_AFTER.total_seconds())} s past their deadline "
        "(the deadline sweep is behind or not running).",
        trials["overdue"],
    )

    streaming = ChatMessage.objects.filter(status=ChatMessage.Status.STREAMING).aggregate(
        in_flight=Count("id"), stale=Count("id", filter=Q(heartbeat_at__lt=now - STALE_GENERATION_AFTER))
    )
    out.gauge("oversight_generations_in_flight", "Assistant replies streaming now.", streaming["in_flight"])
    out.gauge(
        "oversight_generations_stale",
        f"Streaming replies with no heartbeat for {int(STALE_GENERATION_AFTER.total_seconds())} s "
        "(their process died; the stale-generation sweep marks them interrupted).",
        streaming["stale"],
    )

    # Time to first token of replies that finished in the window.
    ttft_filter = {
        f"le_{i}": Count("id", filter=Q(ttft_ms__lte=bound * 1000)) for i, bound in enumerate(TTFT_BUCKETS_S)
    }
    ttft = ChatMessage.objects.filter(
        status__in=FINISHED_REPLY,
        heartbeat_at__gte=start - HEARTBEAT_MARGIN,
        finished_at__gte=start,
        role=ChatMessage.Role.ASSISTANT,
        ttft_ms__isnull=False,
    ).aggregate(count=Count("id"), total=Sum("ttft_ms"), **ttft_filter)
    out.recent_distribution(
        "oversight_recent_ttft_seconds",
        f"Time to first token of assistant replies that finished in the last {int(WINDOW.total_seconds())} s.",
        TTFT_BUCKETS_S,
        [ttft[f"le_{i}"] for i in range(len(TTFT_BUCKETS_S))],
        ttft["count"],
        (ttft["total"] or 0.0) / 1000,
    )

    # Deadline finalisation lag: how late the server closed trials whose deadline passed in the window.
    lag_expr = ExpressionWrapper(F("submitted_at") - F("deadline_at"), output_field=DurationField())
    lag_filter = {
        f"le_{i}": Count("id", filter=Q(lag__lte=timedelta(seconds=bound))) for i, bound in enumerate(LAG_BUCKETS_S)
    }
    lag = (
        Trial.objects.filter(
            status=Trial.Status.TIMED_OUT,
            deadline_at__gte=start,
            submit_kind=Trial.SubmitKind.SERVER,
            submitted_at__isnull=False,
        )
        .annotate(lag=lag_expr)
        .aggregate(count=Count("id"), total=Sum("lag"), worst=Max("lag"), **lag_filter)
    )
    out.recent_distribution(
        "oversight_recent_deadline_lag_seconds",
        "Seconds between a trial's deadline and the server finalising it, for trials whose deadline passed "
        f"in the last {int(WINDOW.total_seconds())} s.",
        LAG_BUCKETS_S,
        [lag[f"le_{i}"] for i in range(len(LAG_BUCKETS_S))],
        lag["count"],
        _seconds(lag["total"]),
    )
    out.gauge(
        "oversight_recent_deadline_lag_seconds_max",
        "Largest deadline finalisation lag in the window (0 when there was none).",
        _seconds(lag["worst"]),
    )

    answers = {key: 0 for key in ANSWER_SERIES}
    for row in (
        Trial.objects.filter(status__in=(Trial.Status.ANSWERED, Trial.Status.TIMED_OUT))
        .values("status", "submit_kind")
        .annotate(n=Count("id"))
        .order_by()
    ):
        answers[(row["status"], row["submit_kind"])] = row["n"]
    out.family(
        "oversight_answers_total",
        "counter",
        "Final answers recorded (status answered or timed_out), by who submitted them.",
        [({"status": status, "submit_kind": kind or "none"}, n) for (status, kind), n in sorted(answers.items())],
    )

    # The backend's error kinds (TGI unreachable, timeout, busy, context too long, …) start at 0.
    errors = {(ChatMessage.Status.FAILED.value, kind): 0 for kind in HUMAN_MESSAGES}
    for row in (
        ChatMessage.objects.filter(status__in=ENDED_BADLY)
        .values("status", "error_kind")
        .annotate(n=Count("id"))
        .order_by()
    ):
        errors[(row["status"], row["error_kind"] or "unknown")] = row["n"]
    out.family(
        "oversight_generation_errors_total",
        "counter",
        "Assistant replies that did not complete, by status and error kind: status failed are backend "
        "(TGI) errors, cancelled are deadlines and cancellations, interrupted lost their process.",
        [({"status": status, "kind": kind}, n) for (status, kind), n in sorted(errors.items())],
    )
    return out


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = metrics_token()
    if not (direct_from_private_network(request) or has_valid_token(request, token)):
        if token:
            response = HttpResponse(
                "metrics: a valid bearer token is required\n", status=401, content_type="text/plain; charset=utf-8"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return HttpResponse(
            "metrics: only from loopback or a private network (or set METRICS_TOKEN)\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    started = time.perf_counter()
    try:
        exposition = collect()
    except DatabaseError as exc:
        return HttpResponse(
            f"metrics: database unavailable: {str(exc)[:200]}\n", status=503, content_type="text/plain; charset=utf-8"
        )
    exposition.gauge(
        "oversight_metrics_scrape_duration_seconds",
        "Time taken to compute these metrics.",
        round(time.perf_counter() - started, 6),
    )
    return HttpResponse(exposition.render(), content_type=CONTENT_TYPE)
