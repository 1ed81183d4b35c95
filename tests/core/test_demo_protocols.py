"""The debate demo: seeded by default, live, and judged by bots end to end with no GPU."""

import pytest
from django.core.management import call_command

from oversight.analysis.report import build_report
from oversight.core.demo_protocols import DEBATE_STUDY_SLUG
from oversight.core.models import Study, Transcript
from oversight.reports.load import load_tables

pytestmark = pytest.mark.django_db


def test_seed_demo_adds_the_debate_demo_unless_told_not_to_and_only_once(capsys):
    call_command("seed_demo", "--no-debate")
    assert not Study.objects.filter(slug=DEBATE_STUDY_SLUG).exists()
    call_command("seed_demo")
    call_command("seed_demo", "--debate")
    study = Study.objects.get(slug=DEBATE_STUDY_SLUG)
    assert study.is_live and [c["kind"] for c in study.manifest["conditions"]] == ["unaided", "consultancy", "debate"]
    assert "Debate demo study:      http://127.0.0.1:8000/s/demo-debate/" in capsys.readouterr().out


def test_bots_judge_the_debate_demo_and_its_report_has_the_protocols(monkeypatch):
    call_command("seed_demo", "--debate")
    # The demo's advocates stream like a model; in the test they need not wait.
    from oversight.core.models import ModelEndpoint

    endpoint = ModelEndpoint.objects.get(name="Simulated advocate")
    endpoint.simulation = {**endpoint.simulation, "ttft_ms": 0, "tokens_per_s": 0}
    endpoint.save()
    call_command(
        "run_bots", DEBATE_STUDY_SLUG, "--in-process", "-n", "3", "--messages-per-item", "0", "--timeout-rate", "0"
    )
    study = Study.objects.get(slug=DEBATE_STUDY_SLUG)
    assert set(Transcript.objects.filter(study=study).values_list("status", flat=True)) == {"complete"}
    report = build_report(load_tables(study), resamples=20).to_dict()
    kinds = [c["kind"] for c in report["protocols"]["with_exclusions"]["conditions"]]
    assert kinds == ["unaided", "consultancy", "debate"]
