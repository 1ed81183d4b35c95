"""The report's plots: valid SVG with the expected titles, labels, series and points; no crash on empty data."""

import xml.etree.ElementTree as ET

import pytest

from oversight.analysis import plots
from oversight.analysis.report import build_report
from tests.analysis.rows import ASSISTED_ID, UNAIDED_ID, model, tables, trial

SVG = "{http://www.w3.org/2000/svg}"
UNAIDED_ITEMS = {"MMLU": (1, 2), "QuALITY": (3, 4)}
ASSISTED_ITEMS = {"MMLU": (5, 6), "QuALITY": (7, 8)}


def small_tables(**kw):
    """P1–P3 do both conditions (2 MMLU + 2 QuALITY items each); P4 only the unaided one. Two model baselines.

    Unaided: P1 right on all (80%), P2 on items 1 and 3 (60%), P3 on none (42%) → P1 100, P2 50, P3 0.
    Assisted: everyone right except P3 on item 8 → P1 100, P2 100, P3 75 (all at 100% confidence but P3's 80%).
    """
    rows = []
    unaided_right = {1: {1, 2, 3, 4}, 2: {1, 3}, 3: set(), 4: {2}}
    unaided_conf = {1: 80, 2: 60, 3: 42, 4: 25}
    for p, right in unaided_right.items():
        for task, items in UNAIDED_ITEMS.items():
            for i in items:
                rows.append(trial(p, i, 0 if i in right else 1, unaided_conf[p], task=task, block_position=i))
    for p in (1, 2, 3):
        for task, items in ASSISTED_ITEMS.items():
            for i in items:
                wrong = p == 3 and i == 8
                rows.append(
                    trial(p, i, 2 if wrong else 0, 80 if p == 3 else 100, assisted=True, task=task, block_position=i)
                )
    baselines = [model("zero-shot", i, i % 2 == 0) for i in range(1, 9)]
    baselines += [model("cot", i, i != 3) for i in range(1, 9)]
    return tables(rows, baselines=baselines, tasks=["MMLU", "QuALITY"], **kw)


@pytest.fixture(scope="module")
def report():
    return build_report(small_tables(), resamples=50)


@pytest.fixture(scope="module")
def participants():
    return plots.participant_accuracy(small_tables())


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert "nan" not in svg.lower()  # no NaN coordinates
    return root


def texts(root: ET.Element) -> str:
    return " | ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def group(root: ET.Element, gid: str) -> ET.Element | None:
    return next((g for g in root.iter(f"{SVG}g") if g.get("id") == gid), None)


def points(root: ET.Element, gid: str) -> int:
    """Markers drawn by the series `gid` (matplotlib writes each marker as a <use>)."""
    g = group(root, gid)
    assert g is not None, f"no series {gid}"
    return sum(1 for _ in g.iter(f"{SVG}use"))


def ids(root: ET.Element, prefix: str) -> list[str]:
    return [g.get("id") for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith(prefix)]


def test_the_sandwich_chart_has_a_panel_per_task_with_each_series_and_the_experts_line(report):
    root = parse(plots.sandwich_svg(report, experts={"MMLU": 90.0}))
    text = texts(root)
    assert "The sandwich: accuracy with 95% CIs, by task" in text
    assert "Accuracy (%)" in text and "MMLU" in text and "QuALITY" in text
    for label in ("Unaided", "Assisted", "Model (zero-shot)", "Model (CoT)", "Experts (reference)"):
        assert label in text, label  # legend entries
    assert "experts 90" in text and "experts 93.5" not in text
    for panel in (0, 1):
        series = [gid for gid in ids(root, f"sandwich-{panel}-") if not gid.endswith(("-ci", "-experts"))]
        assert series == [
            f"sandwich-{panel}-condition-{UNAIDED_ID}",
            f"sandwich-{panel}-model-zero-shot",
            f"sandwich-{panel}-model-cot",
            f"sandwich-{panel}-condition-{ASSISTED_ID}",
        ]
        assert all(points(root, gid) == 1 for gid in series)
        assert all(group(root, f"{gid}-ci") is not None for gid in series)  # each with its interval
    assert group(root, "sandwich-0-experts") is not None and group(root, "sandwich-1-experts") is None
    # The known point estimates are annotated: unaided MMLU (100 + 50 + 0 + 50)/4 = 50.0; assisted MMLU 100.0.
    assert "50.0" in text and "100.0" in text


def test_the_expert_reference_follows_the_banks_format():
    assert plots.expert_reference({"MMLU": "mmlu", "Stories": "quality", "Own": "custom"}) == {
        "MMLU": 90.0,
        "Stories": 93.5,
    }


def test_the_reliability_diagram_has_a_panel_per_condition_with_a_point_per_non_empty_bin(report):
    root = parse(plots.reliability_svg(report))
    text = texts(root)
    assert "Reliability diagram: accuracy in each confidence bin" in text
    assert "Confidence (%)" in text and "Accuracy (%)" in text and "Count" in text
    assert "Unaided (CE" in text and "Assisted (CE" in text
    assert "Perfect calibration" in text and "Vote (hatched: items)" in text
    analysis = report.to_dict()["with_exclusions"]
    for c in analysis["conditions"]:
        bins = c["all"]["calibration"]["bins"]
        assert points(root, f"reliability-{c['id']}-answers") == sum(1 for b in bins if b["n"])
        assert group(root, f"reliability-{c['id']}-diagonal") is not None
        assert len(ids(root, f"reliability-{c['id']}-count-")) == 5  # a count bar per bin (empty ones at 0)
    # Unaided answers sit at 25, 42, 60 and 80; assisted at 80 and 100.
    assert points(root, f"reliability-{UNAIDED_ID}-answers") == 4
    assert points(root, f"reliability-{ASSISTED_ID}-answers") == 2


def test_accuracy_by_confidence_level_has_a_bar_per_condition_and_non_empty_level_per_task(report):
    root = parse(plots.confidence_svg(report))
    text = texts(root)
    assert "Accuracy by confidence level" in text and "Confidence level" in text and "Accuracy (%)" in text
    assert "Unaided (mean confidence" in text and "Assisted (mean confidence" in text
    analysis = report.to_dict()["with_exclusions"]
    for p, task in enumerate(analysis["tasks"]):
        for c in analysis["conditions"]:
            expected = [b["centre"] for b in c["by_task"][task]["calibration"]["bins"] if b["n"]]
            assert sorted(int(g.rsplit("-", 1)[1]) for g in ids(root, f"confidence-{p}-{c['id']}-")) == expected
    unaided_mmlu = sorted(ids(root, f"confidence-0-{UNAIDED_ID}-"))
    assert unaided_mmlu == [f"confidence-0-{UNAIDED_ID}-{b}" for b in (25, 42, 60, 80)]


def test_per_participant_lines_join_each_participants_conditions(report, participants):
    root = parse(plots.participants_svg(report, participants))
    text = texts(root)
    assert "Per-participant accuracy across conditions" in text
    assert "Participant's accuracy (%)" in text and "Condition" in text and "Condition mean [95% CI]" in text
    # P1 100 → 100 (same), P2 50 → 100 (up), P3 0 → 75 (up); P4 did only the unaided condition.
    lines = {
        key: sum(1 for _ in (group(root, f"participants-{key}") or ET.Element("g")).iter(f"{SVG}path"))
        for key in ("up", "down", "same")
    }
    assert lines == {"up": 2, "down": 0, "same": 1}
    assert points(root, "participants-single") == 1
    assert "Assisted higher (2)" in text and "No change (1)" in text and "In one condition only (1)" in text
    assert points(root, f"participants-mean-{UNAIDED_ID}") == points(root, f"participants-mean-{ASSISTED_ID}") == 1


def test_participant_accuracy_averages_to_the_reports_accuracy(report, participants):
    by_condition = {}
    for person in participants:
        for cid, value in person["accuracy"].items():
            by_condition.setdefault(cid, []).append(value)
    analysis = report.to_dict()["with_exclusions"]
    for c in analysis["conditions"]:
        values = by_condition[c["id"]]
        assert sum(values) / len(values) == pytest.approx(c["all"]["accuracy"]["value"])
    assert {p["participant_id"]: p["accuracy"][UNAIDED_ID] for p in participants} == {1: 100, 2: 50, 3: 0, 4: 25}


def test_exclusions_and_pilots_leave_the_per_participant_plot():
    t = small_tables(excluded=[2], pilots=[4])
    report = build_report(t, resamples=0)
    primary = plots.participant_accuracy(t, apply_exclusions=True)
    everyone = plots.participant_accuracy(t, apply_exclusions=False)
    assert [p["participant_id"] for p in primary] == [1, 3] and [p["participant_id"] for p in everyone] == [1, 2, 3]
    root = parse(plots.participants_svg(report, everyone, variant="without_exclusions"))
    assert "3 participants" in texts(root)
    root = parse(plots.participants_svg(report, everyone, variant="with_exclusions"))  # the variant's people only
    assert "2 participants" in texts(root)


@pytest.mark.parametrize("name", list(plots.PLOTS))
def test_an_empty_study_renders_a_message_not_a_crash(name):
    report = build_report(tables([]), resamples=0)
    root = parse(plots.render(name, report, participants=[]))
    assert "No analysed answers yet" in texts(root)


@pytest.mark.parametrize("name", list(plots.PLOTS))
def test_conditions_without_intervals_or_with_empty_bins_still_render(name):
    # One unaided answer without a confidence, a timed-out assisted trial without an option: empty bins, no
    # vote confidence, CIs undefined (no resamples).
    rows = [trial(1, 1, 0, None), trial(1, 2, None, None, assisted=True, status="timed_out")]
    t = tables(rows, baselines=[model("zero-shot", 1, None)])
    report = build_report(t, resamples=0)
    svg = plots.render(name, report, participants=plots.participant_accuracy(t), experts={"MMLU": 90.0})
    parse(svg)


def test_the_output_is_deterministic(report, participants):
    for name in plots.PLOTS:
        first = plots.render(name, report, participants=participants, experts={"MMLU": 90.0})
        assert plots.render(name, report, participants=participants, experts={"MMLU": 90.0}) == first


def test_it_takes_the_report_or_its_dict_and_rejects_an_unknown_variant_or_plot(report):
    assert plots.sandwich_svg(report) == plots.sandwich_svg(report.to_dict())
    with pytest.raises(ValueError):
        plots.sandwich_svg(report, variant="everyone")
    with pytest.raises(KeyError):
        plots.render("pie", report)
