"""Bots judge the debate demo over HTTP, through the judge's page: they read its probability slider, post the
probability of answer A and the server stores the answer they leaned to."""

import json

import pytest

from tests.live_server import live_server


@pytest.mark.slow
def test_bots_judge_consultancy_and_debate_through_the_judges_page(tmp_path_factory, tmp_path):
    seed = ("--mmlu-time-limit", "20", "--quality-time-limit", "20")  # the debate demo is seeded by default
    with live_server(tmp_path_factory.mktemp("bots-judge-server"), seed_args=seed) as server:
        summary_path = tmp_path / "summary.json"
        proc = server.manage(
            "run_bots",
            "demo-debate",
            "--participants",
            "4",
            "--concurrency",
            "4",
            "--seed",
            "5",
            "--timeout-rate",
            "0",
            "--messages-per-item",
            "0",
            "--base-url",
            server.base_url,
            "--summary-json",
            str(summary_path),
            timeout=240,
            check=False,
        )
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}\n--- server\n{server.log_tail()}"
        summary = json.loads(summary_path.read_text())
        assert summary["errors"] == 0, summary["error_details"]
        assert summary["check"]["ok"], summary["check"]["problems"]
        db = server.query(
            "from oversight.core.models import Trial\n"
            "ts = Trial.objects.filter(participant__study__slug='demo-debate', transcript__isnull=False)\n"
            "result = [(t.status, t.choice, t.confidence, t.distribution, t.transcript.options)\n"
            "          for t in ts.select_related('transcript')]\n"
        )
    assert len(db) == 4 * 8  # four bots, four items in each of the two protocol conditions
    for status, choice, confidence, distribution, shown in db:
        assert status == "answered" and choice in shown and confidence > 50
        assert distribution[choice] == confidence and distribution[shown[0]] + distribution[shown[1]] == 100
