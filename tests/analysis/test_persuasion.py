"""Persuasiveness (issue 17): Bradley–Terry ratings of advocate configurations over the judges' verdicts, and the
plot of judge accuracy against them."""

import math

import pytest

from oversight.analysis import plots
from oversight.analysis.persuasion import ANCHOR, Match, bradley_terry
from oversight.analysis.report import build_report
from tests.analysis.test_protocols import CONSULTANCY, DEBATE, tables


def test_three_wins_in_four_put_a_player_400_log10_3_above_the_other():
    matches = [Match("a", "b")] * 3 + [Match("b", "a")]
    ratings = bradley_terry(matches, prior=0)
    assert ratings["a"] - ratings["b"] == pytest.approx(400 * math.log10(3), abs=1e-6)  # 190.8…


def test_a_consultant_persuading_three_judges_in_four_rates_400_log10_3_above_the_anchor():
    matches = [Match("c", ANCHOR)] * 3 + [Match(ANCHOR, "c")]
    assert bradley_terry(matches, prior=0)["c"] == pytest.approx(400 * math.log10(3), abs=1e-6)


def test_the_prior_keeps_a_player_who_never_lost_finite():
    rating = bradley_terry([Match("c", ANCHOR)] * 5)["c"]
    # 5.5 wins, 0.5 losses against the anchor: s = 11.
    assert rating == pytest.approx(400 * math.log10(11), abs=1e-6)


def test_the_report_rates_each_advocate_configuration_and_the_plot_has_one_point_each():
    report = build_report(tables(), resamples=0)
    section = report.to_dict()["persuasion"]
    configurations = {c["key"]: c for c in section["configurations"]}
    assert {c["condition_id"] for c in configurations.values()} == {DEBATE, CONSULTANCY}
    for c in configurations.values():
        assert c["matches"] == c["argued_correct"][1] + c["argued_incorrect"][1] and c["rating"] is not None
    svg = plots.render("persuasion", report)
    for key in configurations:
        assert f'id="persuasion-{key.replace(":", "-")}"' in svg
    assert "## Persuasiveness of the advocates" in report.to_markdown()
