"""The protocols' plots: judge accuracy by protocol and a reliability diagram per protocol, as SVG."""

from oversight.analysis import plots
from oversight.analysis.report import build_report
from tests.analysis.test_protocols import tables


def test_accuracy_by_protocol_draws_each_condition_with_its_interval():
    report = build_report(tables(), resamples=50)
    svg = plots.render("protocol_accuracy", report)
    for cid in (1, 2, 3):
        assert f'id="protocols-accuracy-{cid}"' in svg and f'id="protocols-accuracy-{cid}-ci"' in svg
    assert "Judge accuracy by protocol" in svg and "Debate" in svg


def test_a_reliability_diagram_per_protocol():
    svg = plots.render("protocol_reliability", build_report(tables(), resamples=0))
    assert all(f'id="protocols-reliability-{cid}"' in svg for cid in (1, 2, 3))
    assert "ECE 50.0 pp" in svg  # the debate fixture's ECE


def test_without_protocols_the_plots_say_so():
    report = build_report(tables(judgements=[]), resamples=0).to_dict()
    report.pop("protocols")
    assert "No analysed answers yet" in plots.render("protocol_accuracy", report)
    assert "No analysed answers yet" in plots.render("protocol_reliability", report)
