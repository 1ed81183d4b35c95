"""Bots with an accuracy per condition, and bots in process: the same decisions through the service functions the
participant views call, checked against the database like an HTTP run."""

import io

import pytest
from django.core.management import CommandError, call_command

from oversight.core.models import Participant, Trial
from oversight_dev.bots import BotConfig, check_run, format_summary, parse_accuracy, run_bots_in_process
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "text,expected",
    [
        ("0.7", (0.7, {})),
        ("unaided=0.5,assisted=0.75", (0.6, {"unaided": 0.5, "assisted": 0.75})),
        ("0.9, assisted=1", (0.9, {"assisted": 1.0})),
    ],
)
def test_the_accuracy_is_one_number_or_one_per_condition_kind(text, expected):
    assert parse_accuracy(text) == expected


@pytest.mark.parametrize(
    "text,reason",
    [
        ("1.5", "not between 0 and 1"),
        ("helped=0.5", "'helped' is not a condition kind"),
        ("unaided=0.5,unaided=0.6", "unaided is given twice"),
        ("0.5,0.6", "the overall accuracy is given twice"),
        ("assisted=lots", "'lots' is not a number"),
        ("0.5,", "empty entry"),
    ],
)
def test_a_bad_accuracy_is_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_accuracy(text)


def test_each_condition_gets_its_own_accuracy_and_the_records_match_what_the_bots_did():
    study = make_study(slug="bots", n_items=4, catch=1, practice=1)
    config = BotConfig(
        slug="bots",
        participants=3,
        seed=5,
        messages_per_item=0,
        accuracy=0.5,
        condition_accuracy={"assisted": 1.0, "unaided": 0.0},
    )
    report = run_bots_in_process(config)

    assert report.errors == [] and report.finished == 3 and report.config.in_process
    check = check_run(report)
    assert check.ok, check.problems
    assert check.statuses == {Participant.Status.COMPLETED: 3}
    scored = Trial.objects.filter(participant__study=study, role="scored")
    assert scored.count() == 3 * 8
    assert set(scored.filter(condition__kind="assisted").values_list("correct", flat=True)) == {True}
    assert set(scored.filter(condition__kind="unaided").values_list("correct", flat=True)) == {False}
    # Attention checks are always right, practice items follow the default accuracy like any other.
    assert set(Trial.objects.filter(role="catch").values_list("correct", flat=True)) == {True}
    summary = "\n".join(format_summary(report, check))
    assert "in process (one after another, accuracy 0.5 (assisted 1, unaided 0)" in summary
    assert "service calls:" in summary


def test_the_same_seed_gives_the_same_answers_whatever_order_the_items_come_in():
    """Decisions are keyed by (seed, bot, item), not by the order the server shows the items in."""
    make_study(slug="again", n_items=6, randomise_item_order=True)
    runs = []
    for _ in range(2):
        Participant.objects.all().delete()  # the same Prolific ids would resume the finished participants
        report = run_bots_in_process(BotConfig(slug="again", participants=2, seed=3, messages_per_item=0))
        assert report.errors == []
        runs.append(
            {(r.bot, o.item_id): (o.choice, o.confidence, o.position) for r in report.results for o in r.outcomes}
        )
    first, second = runs
    assert first.keys() == second.keys() and len(first) == 2 * 12
    assert {k: v[:2] for k, v in first.items()} == {k: v[:2] for k, v in second.items()}
    assert [v[2] for v in first.values()] != [second[k][2] for k in first]  # shown in another order


def test_an_item_left_to_time_out_is_finalised_with_the_selection_without_waiting():
    study = make_study(slug="timed", n_items=2, time_limit_s=60)
    report = run_bots_in_process(BotConfig(slug="timed", participants=1, timeout_rate=1.0, messages_per_item=0))

    assert report.errors == [] and report.wall_s < 30  # four 60-second deadlines, none of them waited out
    assert check_run(report).ok
    trials = list(Trial.objects.filter(participant__study=study).order_by("position"))
    assert {(t.status, t.submit_kind) for t in trials} == {(Trial.Status.TIMED_OUT, Trial.SubmitKind.SERVER)}
    for before, after in zip(trials, trials[1:], strict=False):
        assert before.deadline_at < before.submitted_at <= after.shown_at  # each bot's clock only moves forward
    participant = Participant.objects.get(study=study)
    assert participant.completed_at >= trials[-1].submitted_at


def test_bots_are_turned_away_from_a_study_that_is_not_live():
    make_study(slug="draft", n_items=2, launch=False)
    report = run_bots_in_process(BotConfig(slug="draft", participants=2, messages_per_item=0))
    assert [e.message for e in report.errors] == ["the study is draft, not live: bots are turned away"] * 2
    assert not Participant.objects.exists()


def test_in_process_bots_do_not_chat():
    make_study(slug="chat", n_items=2)
    with pytest.raises(ValueError, match="do not chat"):
        run_bots_in_process(BotConfig(slug="chat", participants=1))


def test_the_command_runs_them_in_process():
    make_study(slug="cmd", n_items=3)
    out = io.StringIO()
    call_command(
        "run_bots",
        "cmd",
        "-n",
        "2",
        "--in-process",
        "--messages-per-item",
        "0",
        "--accuracy",
        "unaided=0,assisted=1",
        stdout=out,
    )
    assert "All bots finished without errors." in out.getvalue()
    assert "check: OK (2 participants, 12 trials" in out.getvalue()
    scored = Trial.objects.filter(role="scored")
    assert scored.filter(correct=True).count() == scored.filter(condition__kind="assisted").count() == 6

    with pytest.raises(CommandError, match="do not chat"):
        call_command("run_bots", "cmd", "-n", "1", "--in-process")
    with pytest.raises(CommandError, match="not a condition kind"):
        call_command("run_bots", "cmd", "-n", "1", "--in-process", "--messages-per-item", "0", "--accuracy", "x=1")
