"""The protocols' rows loaded from the database, and a bot study mixing consultancy, debate and unaided whose
report recovers the bots' configured per-protocol accuracies within their intervals."""

import pytest

from oversight.analysis.report import build_report
from oversight.assistant.models import TranscriptTurn
from oversight.core.models import Transcript, Trial
from oversight.reports.load import load_tables
from oversight.reports.protocols import load_protocol_tables
from oversight_dev.bots import BotConfig, check_run, run_bots_in_process
from tests.factories import make_protocol_study, make_study

pytestmark = pytest.mark.django_db

ACCURACY = {"unaided": 0.5, "consultancy": 0.7, "debate": 0.9}


@pytest.mark.slow
def test_a_bot_study_of_consultancy_debate_and_unaided_recovers_each_configured_accuracy():
    study = make_protocol_study(
        slug="bots",
        conditions=(("unaided", {}), ("consultancy", {"transcripts": "static"}), ("debate", {"transcripts": "static"})),
        n_items=10,
        disjoint=False,
        confidence_format="slider",
    )
    run = run_bots_in_process(
        BotConfig(
            slug="bots", participants=40, seed=5, timeout_rate=0.0, messages_per_item=0, condition_accuracy=ACCURACY
        )
    )
    assert run.errors == [] and check_run(run).ok
    report = build_report(load_tables(study), resamples=1000).to_dict()
    conditions = {c["kind"]: c for c in report["protocols"]["with_exclusions"]["conditions"]}
    assert set(conditions) == set(ACCURACY)
    for kind, configured in ACCURACY.items():
        accuracy = conditions[kind]["accuracy"]
        lo, hi = accuracy["ci95"]
        assert lo <= 100 * configured <= hi, (kind, accuracy)
        assert conditions[kind]["n_participants"] == 40 and conditions[kind]["n_items"] == 10
    assert conditions["debate"]["accuracy"]["value"] > conditions["unaided"]["accuracy"]["value"]
    assert set(conditions["consultancy"]["splits"]) == {"consultant_correct", "consultant_incorrect"}
    assert set(conditions["debate"]["splits"]) == {"correct_first", "correct_second"}
    assert conditions["debate"]["quotes"]["by_side"]["correct"]["turns"] == 10 * 3  # 10 shared transcripts × 3 rounds
    pairs = {(p["first"]["kind"], p["second"]["kind"]) for p in report["protocols"]["with_exclusions"]["paired"]}
    assert pairs == {("unaided", "consultancy"), ("unaided", "debate"), ("consultancy", "debate")}
    # Table 1 is the sandwich's: the protocols are not in it.
    assert [r["label"] for r in report["with_exclusions"]["table"]["rows"]] == ["Unaided", "Unaided vote"]


def test_bots_judge_live_transcripts_written_as_they_open_each_trial():
    study = make_protocol_study(
        slug="live", conditions=(("consultancy", {"rounds": 2}), ("open_debate", {"rounds": 1})), n_items=2
    )
    run = run_bots_in_process(BotConfig(slug="live", participants=3, seed=1, timeout_rate=0.0, messages_per_item=0))
    assert run.errors == [] and check_run(run).ok
    transcripts = Transcript.objects.filter(study=study)
    assert transcripts.count() == 3 * 4 and set(transcripts.values_list("status", flat=True)) == {"complete"}
    for trial in Trial.objects.filter(participant__study=study).select_related("transcript"):
        assert trial.choice in trial.transcript.options  # the judge chose one of the two answers shown


def test_the_loaded_rows_say_what_each_trial_showed_and_which_side_each_turn_argued():
    study = make_protocol_study(
        slug="rows", conditions=(("debate", {"rounds": 1, "transcripts": "static"}),), n_items=2
    )
    run_bots_in_process(BotConfig(slug="rows", participants=2, seed=1, timeout_rate=0.0, messages_per_item=0))
    tables = load_protocol_tables(study)
    trials = Trial.objects.filter(participant__study=study, transcript__isnull=False).select_related(
        "transcript", "item"
    )
    assert {(j.participant_id, j.item_id, j.options) for j in tables.judgements} == {
        (t.participant_id, t.item_id, tuple(t.transcript.options)) for t in trials
    }
    for turn_row in tables.turns:
        turn = TranscriptTurn.objects.select_related("transcript__item").get(
            transcript_id=turn_row.transcript_id, position=turn_row.position, round=turn_row.round
        )
        argued = turn.transcript.options[turn.transcript.argues[turn.position]]
        assert turn_row.side == ("correct" if argued == turn.transcript.item.gold_index else "incorrect")
        assert turn_row.budget == 50 and turn_row.quotes == len(turn.quotes)
    assert len(tables.turns) == 2 * 2  # two shared transcripts, one round of two debaters, each counted once


def test_a_study_without_protocols_loads_no_protocol_rows():
    assert load_protocol_tables(make_study(slug="plain")) is None


def test_the_consoles_report_bundle_and_every_plot_work_for_a_study_with_protocols(empty_cache):
    from oversight.analysis import plots
    from oversight.reports.services import report_bundle, report_plot_svg

    study = make_protocol_study(slug="bundle", conditions=(("unaided", {}), ("debate", {"rounds": 1})), n_items=2)
    run_bots_in_process(BotConfig(slug="bundle", participants=3, seed=2, timeout_rate=0.0, messages_per_item=0))
    bundle = report_bundle(study=study, resamples=20)
    assert [c["kind"] for c in bundle["report"]["protocols"]["with_exclusions"]["conditions"]] == ["unaided", "debate"]
    for name in plots.PLOTS:
        assert report_plot_svg(study=study, name=name, variant="with_exclusions", resamples=20).startswith("<?xml")
