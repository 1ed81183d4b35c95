"""`/metrics`: the Prometheus text format, the numbers it reports, what the queries cost, and who may read it."""

import math
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oversight.assistant.models import ChatMessage
from oversight.core.models import Participant, Trial
from oversight.core.services.participants import participant_join
from oversight.ops import metrics as metrics_module
from tests.factories import make_study

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token-for-tests"

# One sample line of the text format 0.0.4: name, optional {labels}, value (no timestamps from us).
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})?'
    r" (?P<value>[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf|NaN))$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(autouse=True)
def _no_token(settings):
    settings.METRICS_TOKEN = ""


def parse(text: str) -> dict[str, dict]:
    """A strict reader of what /metrics emits: every family has HELP then TYPE, then only its own samples."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        assert line.strip() == line and line, f"blank or padded line: {line!r}"
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert name not in families, f"family {name} declared twice"
            assert help_text, f"{name} has an empty HELP"
            families[name] = {"help": help_text, "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert name == current and families[name]["type"] is None, f"TYPE {name} not right after its HELP"
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, kind
            families[name]["type"] = kind
        else:
            assert not line.startswith("#"), f"unexpected comment {line!r}"
            match = SAMPLE.match(line)
            assert match, f"not a valid sample line: {line!r}"
            assert match["name"] == current and families[current]["type"], f"{line!r} outside its family"
            labels = dict(LABEL.findall(match["labels"] or ""))
            value = float(match["value"].replace("Inf", "inf"))
            families[current]["samples"].append((labels, value))
    for name, family in families.items():
        assert family["samples"], f"{name} has no samples"
        if family["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
    return families


def value(families, name, **labels) -> float:
    matches = [v for lab, v in families[name]["samples"] if lab == labels]
    assert len(matches) == 1, f"{name}{labels}: {families[name]['samples']}"
    return matches[0]


def get_metrics(client, **extra):
    return client.get("/metrics", **extra)


# --- Format ----------------------------------------------------------------------------------------------


def test_an_empty_database_gives_a_complete_well_formed_exposition(client):
    response = get_metrics(client)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    families = parse(response.content.decode())
    for name in [
        "oversight_active_participants",
        "oversight_trials_in_progress",
        "oversight_trials_overdue",
        "oversight_generations_in_flight",
        "oversight_generations_stale",
        "oversight_recent_ttft_seconds_bucket",
        "oversight_recent_ttft_seconds_count",
        "oversight_recent_ttft_seconds_sum",
        "oversight_recent_deadline_lag_seconds_bucket",
        "oversight_recent_deadline_lag_seconds_max",
        "oversight_answers_total",
        "oversight_generation_errors_total",
        "oversight_metrics_window_seconds",
        "oversight_metrics_scrape_duration_seconds",
    ]:
        assert name in families, f"{name} missing"
    assert value(families, "oversight_trials_in_progress") == 0
    assert value(families, "oversight_recent_ttft_seconds_bucket", le="+Inf") == 0
    # The standard answer series exist before the first answer, so alerts and dashboards see them.
    assert value(families, "oversight_answers_total", status="answered", submit_kind="manual") == 0
    assert value(families, "oversight_answers_total", status="timed_out", submit_kind="server") == 0


def test_the_reference_prometheus_parser_reads_it(client):
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client (dev extra) not installed")
    build_activity()
    text = get_metrics(client).content.decode()
    families = {family.name: family for family in parser.text_string_to_metric_families(text)}
    # The parser strips _total from counter names.
    assert families["oversight_answers"].type == "counter"
    assert families["oversight_recent_ttft_seconds_bucket"].type == "gauge"
    assert families["oversight_generations_in_flight"].samples[0].value == 1


def test_label_values_and_help_text_are_escaped():
    out = metrics_module.Exposition()
    out.family("x_total", "counter", "line one\nback\\slash", [({"kind": 'a "quoted"\\ new\nline'}, 3)])
    text = out.render()
    assert "# HELP x_total line one\\nback\\\\slash" in text
    assert 'x_total{kind="a \\"quoted\\"\\\\ new\\nline"} 3' in text
    families = parse(text)
    assert families["x_total"]["samples"][0][1] == 3


@pytest.mark.parametrize(
    ("raw", "rendered"), [(3, "3"), (2.0, "2"), (0.25, "0.25"), (None, "NaN"), (math.inf, "+Inf"), (1e-7, "1e-07")]
)
def test_values_are_rendered_as_prometheus_numbers(raw, rendered):
    assert metrics_module.format_value(raw) == rendered


# --- The numbers -----------------------------------------------------------------------------------------


def build_activity():
    """One live study with three participants and a known set of trials and assistant replies."""
    now = timezone.now()
    study = make_study(slug="metrics", n_items=3, time_limit_s=60)
    walking, idle, done = (
        participant_join(study=study, params={"pid": pid}, consent=True) for pid in ("walking", "idle", "done")
    )
    # `idle` joined long ago and has not been heard from since; `done` finished.
    idle.events.update(at=now - timedelta(hours=1))
    Participant.objects.filter(pk=done.pk).update(status=Participant.Status.COMPLETED)

    t1, t2, t3 = walking.trials.order_by("position")[:3]
    # t1: in progress, deadline ahead. t2: in progress, deadline long gone (the sweep is behind).
    Trial.objects.filter(pk=t1.pk).update(
        status=Trial.Status.SHOWN, shown_at=now, deadline_at=now + timedelta(seconds=60)
    )
    Trial.objects.filter(pk=t2.pk).update(
        status=Trial.Status.SHOWN, shown_at=now - timedelta(seconds=90), deadline_at=now - timedelta(seconds=30)
    )
    # t3: answered by hand.
    Trial.objects.filter(pk=t3.pk).update(
        status=Trial.Status.ANSWERED, submit_kind=Trial.SubmitKind.MANUAL, submitted_at=now, choice=1
    )
    # The server finalised two of idle's trials 0.3 s and 1.5 s after their deadlines (in the window), and one
    # an hour ago (outside it); `done` auto-submitted one at zero.
    i1, i2, i3 = idle.trials.order_by("position")[:3]
    for trial, deadline, lag in (
        (i1, now - timedelta(seconds=60), 0.3),
        (i2, now - timedelta(seconds=20), 1.5),
        (i3, now - timedelta(hours=1), 9.0),
    ):
        Trial.objects.filter(pk=trial.pk).update(
            status=Trial.Status.TIMED_OUT,
            submit_kind=Trial.SubmitKind.SERVER,
            deadline_at=deadline,
            submitted_at=deadline + timedelta(seconds=lag),
        )
    d1 = done.trials.order_by("position").first()
    Trial.objects.filter(pk=d1.pk).update(
        status=Trial.Status.TIMED_OUT,
        submit_kind=Trial.SubmitKind.AUTO,
        deadline_at=now - timedelta(seconds=5),
        submitted_at=now,
    )

    def reply(seq, status, *, ttft_ms=None, finished_ago=None, heartbeat_ago=0.0, error_kind=""):
        finished = None if finished_ago is None else now - timedelta(seconds=finished_ago)
        return ChatMessage.objects.create(
            trial=t1,
            seq=seq,
            role=ChatMessage.Role.ASSISTANT,
            status=status,
            ttft_ms=ttft_ms,
            heartbeat_at=now - timedelta(seconds=heartbeat_ago),
            finished_at=finished,
            error_kind=error_kind,
            created_at=now - timedelta(seconds=heartbeat_ago),
        )

    ChatMessage.objects.create(trial=t1, seq=1, role=ChatMessage.Role.USER, content="hi")
    reply(2, ChatMessage.Status.COMPLETE, ttft_ms=80, finished_ago=10, heartbeat_ago=11)
    reply(3, ChatMessage.Status.COMPLETE, ttft_ms=400, finished_ago=20, heartbeat_ago=20)
    reply(4, ChatMessage.Status.COMPLETE, ttft_ms=3000, finished_ago=3600, heartbeat_ago=3600)  # outside window
    reply(5, ChatMessage.Status.FAILED, error_kind="timeout", finished_ago=30, heartbeat_ago=90)
    reply(6, ChatMessage.Status.FAILED, error_kind="timeout", finished_ago=7200, heartbeat_ago=7200)
    reply(7, ChatMessage.Status.FAILED, error_kind="unavailable", finished_ago=40, heartbeat_ago=40)
    reply(8, ChatMessage.Status.CANCELLED, error_kind="deadline", ttft_ms=1200, finished_ago=5, heartbeat_ago=5)
    reply(9, ChatMessage.Status.STREAMING, heartbeat_ago=0.2)
    return {"now": now}


def test_it_reports_the_live_state_counters_and_recent_distributions(client):
    build_activity()
    families = parse(get_metrics(client).content.decode())

    assert value(families, "oversight_active_participants") == 1  # walking: active and seen; idle: silent for 1 h
    assert value(families, "oversight_trials_in_progress") == 2
    assert value(families, "oversight_trials_overdue") == 1
    assert value(families, "oversight_generations_in_flight") == 1
    assert value(families, "oversight_generations_stale") == 0

    # TTFT of replies finished in the last 5 minutes: 0.08 s, 0.4 s, 1.2 s (the 3 s one is an hour old).
    assert value(families, "oversight_recent_ttft_seconds_count") == 3
    assert value(families, "oversight_recent_ttft_seconds_sum") == pytest.approx(1.68)
    assert value(families, "oversight_recent_ttft_seconds_bucket", le="0.1") == 1
    assert value(families, "oversight_recent_ttft_seconds_bucket", le="0.5") == 2
    assert value(families, "oversight_recent_ttft_seconds_bucket", le="2.0") == 3
    assert value(families, "oversight_recent_ttft_seconds_bucket", le="+Inf") == 3

    # Deadline lag of server finalisations in the window: 0.3 s and 1.5 s.
    assert value(families, "oversight_recent_deadline_lag_seconds_count") == 2
    assert value(families, "oversight_recent_deadline_lag_seconds_sum") == pytest.approx(1.8)
    assert value(families, "oversight_recent_deadline_lag_seconds_max") == pytest.approx(1.5)
    assert value(families, "oversight_recent_deadline_lag_seconds_bucket", le="0.25") == 0
    assert value(families, "oversight_recent_deadline_lag_seconds_bucket", le="0.5") == 1
    assert value(families, "oversight_recent_deadline_lag_seconds_bucket", le="2.0") == 2

    # Counters are all-time.
    assert value(families, "oversight_answers_total", status="answered", submit_kind="manual") == 1
    assert value(families, "oversight_answers_total", status="timed_out", submit_kind="server") == 3
    assert value(families, "oversight_answers_total", status="timed_out", submit_kind="auto") == 1
    assert value(families, "oversight_generation_errors_total", status="failed", kind="timeout") == 2
    assert value(families, "oversight_generation_errors_total", status="failed", kind="unavailable") == 1
    assert value(families, "oversight_generation_errors_total", status="cancelled", kind="deadline") == 1


@pytest.mark.parametrize("name", ["oversight_recent_ttft_seconds", "oversight_recent_deadline_lag_seconds"])
def test_distribution_buckets_are_cumulative_and_end_at_the_count(client, name):
    build_activity()
    families = parse(get_metrics(client).content.decode())
    buckets = families[f"{name}_bucket"]["samples"]
    bounds = [float(labels["le"].replace("+Inf", "inf")) for labels, _ in buckets]
    counts = [count for _, count in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    assert counts == sorted(counts), "bucket counts must not decrease"
    assert counts[-1] == value(families, f"{name}_count")


def test_a_silent_streaming_reply_is_reported_stale(client):
    build_activity()
    ChatMessage.objects.filter(status=ChatMessage.Status.STREAMING).update(
        heartbeat_at=timezone.now() - timedelta(seconds=60)
    )
    families = parse(get_metrics(client).content.decode())
    assert value(families, "oversight_generations_stale") == 1


def test_it_costs_a_handful_of_queries_whatever_the_data(client, django_assert_max_num_queries):
    build_activity()
    with django_assert_max_num_queries(8):
        assert get_metrics(client).status_code == 200


BIG_TABLES = ("core_trial", "assistant_chatmessage", "core_event")


def full_scans(sql: str) -> list[str]:
    """The plan lines of `sql` that read one of the big tables whole (SQLite or PostgreSQL)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            lines = [row[-1] for row in cursor.fetchall()]
            return [
                line for line in lines if re.match(rf"SCAN ({'|'.join(BIG_TABLES)})\b", line) and "USING" not in line
            ]
        # Tiny test tables make a sequential scan the cheapest plan; with it priced out, PostgreSQL still
        # falls back to one only where no index can serve the filter.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        lines = [row[0] for row in cursor.fetchall()]
        return [line for line in lines if re.search(rf"Seq Scan on ({'|'.join(BIG_TABLES)})\b", line)]


def test_the_big_tables_are_read_through_their_indexes(client):
    """No full scan of trials, chat messages or events: each filter starts from an index."""
    if connection.vendor not in {"sqlite", "postgresql"}:
        pytest.skip(f"query plans are checked on SQLite and PostgreSQL, not {connection.vendor}")
    build_activity()
    with CaptureQueriesContext(connection) as queries:
        assert get_metrics(client).status_code == 200
    selects = [query["sql"] for query in queries.captured_queries if query["sql"].lstrip().upper().startswith("SELECT")]
    assert len(selects) >= 6
    scans = [(line, sql) for sql in selects for line in full_scans(sql)]
    assert not scans, scans


# --- Access control --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "172.20.0.5", "192.168.1.9", "::1", "fd00::7", "::ffff:10.0.0.4"]
)
def test_direct_requests_from_loopback_and_private_networks_are_served(client, address):
    assert get_metrics(client, REMOTE_ADDR=address).status_code == 200


@pytest.mark.parametrize("address", ["203.0.113.9", "8.8.8.8", "2001:db8::1", "172.32.0.1", "", "not-an-ip"])
def test_public_addresses_are_refused_without_a_token(client, address):
    response = get_metrics(client, REMOTE_ADDR=address)
    assert response.status_code == 403
    assert b"oversight_" not in response.content


@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED"])
def test_a_request_relayed_by_the_proxy_is_not_trusted_for_its_private_peer_address(client, header):
    # nginx (or an ingress) sits on a private network; what it relays comes from anywhere.
    response = get_metrics(client, REMOTE_ADDR="172.18.0.4", **{header: "203.0.113.9"})
    assert response.status_code == 403


def test_with_a_token_configured_the_public_needs_the_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    public = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}

    missing = get_metrics(client, **public)
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert get_metrics(client, HTTP_AUTHORIZATION="Bearer wrong-token", **public).status_code == 401
    assert get_metrics(client, HTTP_AUTHORIZATION=f"Basic {TOKEN}", **public).status_code == 401
    assert get_metrics(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x", **public).status_code == 401

    ok = get_metrics(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **public)
    assert ok.status_code == 200
    assert "oversight_trials_in_progress" in ok.content.decode()
    assert get_metrics(client, HTTP_AUTHORIZATION=f"bearer {TOKEN}", **public).status_code == 200
    # The private network still needs no token.
    assert get_metrics(client, REMOTE_ADDR="10.0.0.8").status_code == 200


def test_the_view_reads_the_token_from_the_settings_not_the_environment(client, monkeypatch, settings):
    monkeypatch.setenv("METRICS_TOKEN", "from-the-environment")
    settings.METRICS_TOKEN = TOKEN
    public = {"REMOTE_ADDR": "203.0.113.9"}
    assert get_metrics(client, HTTP_AUTHORIZATION="Bearer from-the-environment", **public).status_code == 401
    assert get_metrics(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **public).status_code == 200


def test_an_empty_token_never_matches(client, settings):
    settings.METRICS_TOKEN = ""
    assert get_metrics(client, REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_only_get_is_allowed(client):
    assert client.post("/metrics").status_code == 405
