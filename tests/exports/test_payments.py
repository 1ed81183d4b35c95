"""Prolific bonus payments per correct scored answer, and the list of whom to approve."""

import csv
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oversight.exports.payments import (
    parse_amount,
    payment_rows,
    prolific_bonus_lines,
    unpayable,
    write_statuses_csv,
)

pytestmark = pytest.mark.django_db

# The fixture's study: 3 conditions (assisted, unaided, debate) × 3 scored items, 1 catch item, 1 practice item per
# participant. A judge's correct answers in a protocol condition earn the bonus like any other scored answer.
SCORED = 9


def by_person(study, rows):
    index = {f"P{p.pk}": name for name, p in study.people.items()}
    return {index[r.participant_id]: r for r in rows}


def test_completed_participants_earn_the_amount_per_correct_scored_answer(study):
    rows = by_person(study, payment_rows(study=study, per_correct="0.10"))
    assert (rows["right"].n_scored, rows["right"].n_correct, rows["right"].bonus) == (SCORED, 9, Decimal("0.90"))
    assert (rows["assisted_only"].n_correct, rows["assisted_only"].bonus) == (3, Decimal("0.30"))
    assert rows["right"].action == rows["assisted_only"].action == "approve"


def test_practice_and_attention_check_answers_earn_nothing(study):
    rows = by_person(study, payment_rows(study=study, per_correct="1"))
    # "outlier" got every catch and practice item right and every scored item wrong.
    assert rows["outlier"].status == "completed" and rows["outlier"].n_correct == 0
    assert rows["outlier"].bonus == Decimal("0.00")


def test_screened_out_unfinished_and_pilot_participants_get_no_bonus(study):
    rows = by_person(study, payment_rows(study=study, per_correct="0.10"))
    screened, unfinished, pilot = rows["screened"], rows["unfinished"], rows["pilot"]
    assert (screened.status, screened.action, screened.n_correct, screened.bonus) == (
        "screened_out",
        "screened_out",
        9,
        Decimal("0.00"),
    )
    assert (unfinished.status, unfinished.action, unfinished.bonus) == ("active", "not_finished", Decimal("0.00"))
    assert (pilot.is_pilot, pilot.action, pilot.bonus) == (True, "pilot", Decimal("0.00"))


def test_excluded_participants_keep_their_bonus_unless_it_is_withheld(study, alice):
    from oversight.core.models import Exclusion

    Exclusion.objects.create(participant=study.people["right"], reason="too fast", rule="too_fast", created_by=alice)
    paid = by_person(study, payment_rows(study=study, per_correct="0.10"))["right"]
    assert paid.excluded and paid.bonus == Decimal("0.90") and "Excluded from analysis" in paid.note
    withheld = by_person(study, payment_rows(study=study, per_correct="0.10", withhold_excluded=True))["right"]
    assert withheld.bonus == Decimal("0.00") and "bonus withheld" in withheld.note
    # A revoked exclusion is no exclusion.
    forgiven = by_person(study, payment_rows(study=study, per_correct="0.10", withhold_excluded=True))["forgiven"]
    assert not forgiven.excluded and forgiven.bonus == Decimal("0.90")


def test_the_prolific_lines_are_pid_comma_amount_with_two_decimals_and_no_header(study):
    lines = prolific_bonus_lines(payment_rows(study=study, per_correct="0.125"))
    assert lines == ["PIDRIGHT,1.13", "PIDASSIST,0.38"]  # 9 × 0.125 = 1.125 → 1.13 and 3 × 0.125 → 0.38 (half up)


def test_zero_bonuses_and_participants_without_a_prolific_id_are_not_in_the_file(study):
    rows = payment_rows(study=study, per_correct="0.10")
    lines = prolific_bonus_lines(rows)
    assert not any(line.startswith(("PIDOUTLIER", "PIDSCREEN", "PIDPILOT", "PIDUNFINISHED")) for line in lines)
    owed = unpayable(rows)
    assert [r.external_id for r in owed] == ["pid:panel-7"]


def test_the_statuses_file_says_whom_to_approve(study):
    out = StringIO()
    assert write_statuses_csv(payment_rows(study=study, per_correct="0.10"), out) == len(study.people)
    rows = {r["prolific_pid"] or r["external_id"]: r for r in csv.DictReader(StringIO(out.getvalue()))}
    assert rows["PIDRIGHT"]["action"] == "approve" and rows["PIDRIGHT"]["bonus"] == "0.90"
    assert rows["PIDSCREEN"]["action"] == "screened_out"
    assert rows["PIDUNFINISHED"]["action"] == "not_finished"
    assert rows["PIDPILOT"]["action"] == "pilot" and rows["PIDPILOT"]["is_pilot"] == "true"
    assert rows["PIDOUTLIER"]["excluded"] == "true"


def test_a_negative_or_malformed_amount_is_refused():
    for bad in ("-0.10", "ten", "NaN"):
        with pytest.raises(ValueError):
            parse_amount(bad)
    assert parse_amount("0.10") == Decimal("0.10")


def test_the_command_writes_the_bonus_file_and_the_statuses(study, tmp_path):
    err = StringIO()
    call_command(
        "prolific_bonus",
        "exp",
        "--per-correct",
        "0.10",
        "--out",
        str(tmp_path / "bonus.csv"),
        "--statuses",
        str(tmp_path / "statuses.csv"),
        stderr=err,
    )
    assert (tmp_path / "bonus.csv").read_text() == "PIDRIGHT,0.90\nPIDASSIST,0.30\n"
    assert len((tmp_path / "statuses.csv").read_text().splitlines()) == len(study.people) + 1
    assert "2 Prolific bonus line(s), 1.20 in total" in err.getvalue()
    assert "pid:panel-7" in err.getvalue() and "pay them another way" in err.getvalue()


def test_the_command_prints_the_lines_without_out(study):
    out = StringIO()
    call_command("prolific_bonus", "exp", "--per-correct", "0.10", "--withhold-excluded", stdout=out, stderr=StringIO())
    assert out.getvalue() == "PIDRIGHT,0.90\nPIDASSIST,0.30\n"


def test_the_command_refuses_a_bad_amount_and_an_unknown_study(study):
    with pytest.raises(CommandError, match="0 or more"):
        call_command("prolific_bonus", "exp", "--per-correct", "-1", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="No study"):
        call_command("prolific_bonus", "nope", "--per-correct", "1", stdout=StringIO(), stderr=StringIO())
