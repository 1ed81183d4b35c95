"""The report's plots as SVG text, rendered server-side with matplotlib (no GUI, no pyplot, no ORM).

Each plot function takes the report (a `Report` or its dict, docs/report-schema.md) and the variant to draw
(`"with_exclusions"`, the primary analysis, or `"without_exclusions"`) and returns an SVG document:

* `sandwich_svg` — accuracy with 95% CIs per task: unaided, each model-alone baseline, assisted, and the
  experts' reference line where one is given (`experts`, e.g. from `expert_reference`);
* `reliability_svg` — a reliability diagram per condition: accuracy in each of the five confidence bins against
  the bin centre, the diagonal, the vote's bins, and the answers per bin;
* `confidence_svg` — accuracy at each confidence level, per task, one bar per condition;
* `participants_svg` — each participant's accuracy per condition, joined across conditions (paired lines),
  with the condition means and their 95% CIs. Per-participant accuracies are not part of the report's JSON;
  `participant_accuracy(tables, …)` computes them from the same tables with the report's definition.

The palette is Okabe–Ito (colour-blind safe), and every series also differs by marker or line style. Text is
kept as SVG `<text>` (searchable, selectable), and the output is deterministic (fixed hash salt, no date).
Series carry ids (matplotlib's `gid`, written as `<g id=…>`) so tests and readers can find them:
`sandwich-<panel>-<row key>` (and `…-ci`, `sandwich-<panel>-experts`), `reliability-<condition id>-answers|vote`
(and `…-count-<bin>`), `confidence-<panel>-<condition id>-<bin>`, `participants-up|down|same|single`,
`participants-mean-<condition id>`.

Plots are served as separate SVG files (`<img src>`), so the SVG's own style attributes are not subject to the
console page's Content-Security-Policy.
"""

from __future__ import annotations

import io
import math
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from oversight.analysis.report import analysed_trials
from oversight.analysis.tables import ASSISTED, BIN_CENTRES, EXPERT_ACCURACY, StudyTables

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
UNAIDED_COLOURS = [OKABE_ITO["orange"], OKABE_ITO["reddish_purple"]]
ASSISTED_COLOURS = [OKABE_ITO["blue"], OKABE_ITO["bluish_green"]]
MODEL_COLOURS = [OKABE_ITO["sky_blue"], OKABE_ITO["bluish_green"], OKABE_ITO["reddish_purple"], OKABE_ITO["black"]]
MODEL_MARKERS = ["s", "^", "v", "P", "X"]
EXPERT_COLOUR = OKABE_ITO["vermillion"]

PLOTS = {
    "sandwich": "The sandwich: accuracy with 95% CIs",
    "reliability": "Reliability diagram per condition",
    "confidence": "Accuracy by confidence level",
    "participants": "Per-participant accuracy, unaided vs assisted",
    "protocol_accuracy": "Judge accuracy by protocol",  # analysis/protocol_plots.py
    "protocol_reliability": "Reliability diagram per protocol",
    "persuasion": "Judge accuracy against advocate rating",  # analysis/protocol_plots.py
}
VARIANTS = ("with_exclusions", "without_exclusions")

_RC = {
    "svg.fonttype": "none",  # text as <text>, not paths
    "svg.hashsalt": "oversight-report",  # deterministic ids
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "sans-serif"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 9,
    "legend.frameon": False,
}
if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib is imported on the first render, not with the module (the URLconf imports this module, and
# matplotlib takes about a second to import): see `_render` and `_line`.

# rcParams are process-global: one render at a time keeps a concurrent request from seeing half-set values.
_LOCK = threading.Lock()


def _data(report) -> dict:
    return report.to_dict() if hasattr(report, "to_dict") else report


def _variant(report, variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    return _data(report)[variant]


def _svg(fig: Figure, title: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Title": title, "Date": None})
    return buf.getvalue()


def _render(draw, title: str, **figure) -> str:
    import matplotlib
    from matplotlib.figure import Figure

    with _LOCK, matplotlib.rc_context(_RC):
        fig = Figure(layout="constrained", **figure)
        draw(fig)
        return _svg(fig, title)


def _line(**kwargs):
    """A legend handle: a line with no data."""
    from matplotlib.lines import Line2D

    return Line2D([], [], **kwargs)


def _finite(value) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def _est(e: Mapping | None) -> tuple[float, float, float] | None:
    """(value, low, high) of an estimate; the interval collapses to the value when there is none."""
    if not e or not _finite(e.get("value")):
        return None
    value = float(e["value"])
    ci = e.get("ci95")
    if ci and _finite(ci[0]) and _finite(ci[1]):
        return value, float(ci[0]), float(ci[1])
    return value, value, value


def _empty(ax, text: str = "No analysed answers yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#5b6475")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(key))


def human_rows(analysis: dict) -> list[dict]:
    """The table's individual (non-vote) condition rows, in the paper's order: unaided first, then assisted."""
    return [r for r in analysis["table"]["rows"] if r["kind"] == "individual"]


def _condition_colours(analysis: dict) -> dict[int, str]:
    colours, seen = {}, defaultdict(int)
    for row in human_rows(analysis):
        kind = next((c["kind"] for c in analysis["conditions"] if c["id"] == row["condition_id"]), "")
        palette = ASSISTED_COLOURS if kind == ASSISTED else UNAIDED_COLOURS
        colours[row["condition_id"]] = palette[seen[kind] % len(palette)]
        seen[kind] += 1
    return colours


def expert_reference(task_formats: Mapping[str, str]) -> dict[str, float]:
    """`{task: expert accuracy}` for tasks whose bank format has a published expert number (MMLU, QuALITY): the
    reference line of the sandwich plot, the same values as the report's Expert row (`tables.EXPERT_ACCURACY`)."""
    return {task: EXPERT_ACCURACY[fmt] for task, fmt in task_formats.items() if fmt in EXPERT_ACCURACY}


# --- (a) The sandwich ---------------------------------------------------------------------------------------


def sandwich_svg(report, *, variant: str = "with_exclusions", experts: Mapping[str, float] | None = None) -> str:
    analysis = _variant(report, variant)
    experts = dict(experts or {})
    tasks = list(analysis["tasks"])
    rows = [r for r in analysis["table"]["rows"] if r["kind"] in ("individual", "model")]
    colours = _condition_colours(analysis)
    model_keys = [r["key"] for r in rows if r["kind"] == "model"]

    def style(row) -> dict:
        if row["kind"] == "model":
            i = model_keys.index(row["key"])
            return {"color": MODEL_COLOURS[i % len(MODEL_COLOURS)], "marker": MODEL_MARKERS[i % len(MODEL_MARKERS)]}
        kind = next((c["kind"] for c in analysis["conditions"] if c["id"] == row["condition_id"]), "")
        return {"color": colours.get(row["condition_id"], "#000"), "marker": "o" if kind == ASSISTED else "D"}

    def draw(fig: Figure) -> None:
        fig.suptitle("The sandwich: accuracy with 95% CIs, by task", fontweight="bold")
        if not tasks or not rows:
            _empty(fig.add_subplot())
            return
        axes = fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
        handles: dict[str, object] = {}
        for p, (ax, task) in enumerate(zip(axes, tasks, strict=True)):
            present = [r for r in rows if task in r["cells"]]
            for x, row in enumerate(present):
                e = _est(row["cells"][task]["accuracy"])
                s = style(row)
                gid = f"sandwich-{p}-{_slug(row['key'])}"
                if e is None:
                    continue
                value, lo, hi = e
                ax.vlines([x], [lo], [hi], color=s["color"], linewidth=2, gid=f"{gid}-ci")
                (line,) = ax.plot(
                    [x],
                    [value],
                    linestyle="none",
                    markersize=9,
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                    label=row["label"],
                    gid=gid,
                    **s,
                )
                ax.annotate(
                    f"{value:.1f}",
                    (x, value),
                    textcoords="offset points",
                    xytext=(8, 0),
                    ha="left",
                    va="center",
                    fontsize=8,
                )
                handles.setdefault(row["label"], line)
            if task in experts:
                ref = ax.axhline(
                    experts[task], color=EXPERT_COLOUR, linestyle="--", linewidth=1.3, gid=f"sandwich-{p}-experts"
                )
                ax.annotate(
                    f"experts {experts[task]:g}",
                    (0, experts[task]),
                    xycoords=("axes fraction", "data"),
                    textcoords="offset points",
                    xytext=(3, 3),
                    ha="left",
                    fontsize=8,
                    color=EXPERT_COLOUR,
                )
                handles.setdefault("Experts (reference)", ref)
            ax.set_xticks(range(len(present)), [r["label"].replace(" (", "\n(") for r in present], fontsize=8)
            ax.set_xlim(-0.6, max(len(present), 1) - 0.4)
            ax.set_ylim(0, 105)
            ax.set_title(task)
            ax.grid(axis="y", color="#dde1e8", linewidth=0.6)
            ax.set_axisbelow(True)
        axes[0].set_ylabel("Accuracy (%)")
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4))

    categories = sum(sum(1 for r in rows if t in r["cells"]) for t in tasks)
    return _render(draw, PLOTS["sandwich"], figsize=(min(max(7.0, 1.15 * categories + 1.5), 14), 4.8))


# --- (b) Reliability diagram ----------------------------------------------------------------------------------


def reliability_svg(report, *, variant: str = "with_exclusions") -> str:
    analysis = _variant(report, variant)
    rows = human_rows(analysis)
    blocks = {c["id"]: c for c in analysis["conditions"]}
    colours = _condition_colours(analysis)

    def draw(fig: Figure) -> None:
        fig.suptitle("Reliability diagram: accuracy in each confidence bin", fontweight="bold")
        if not rows:
            _empty(fig.add_subplot())
            return
        grid = fig.add_gridspec(2, len(rows), height_ratios=[3, 1])
        for k, row in enumerate(rows):
            cid = row["condition_id"]
            scope = blocks[cid]["all"]
            ax = fig.add_subplot(grid[0, k])
            counts = fig.add_subplot(grid[1, k], sharex=ax)
            colour = colours.get(cid, "#000")
            ax.plot(
                [15, 105],
                [15, 105],
                color="#888",
                linestyle=":",
                linewidth=1,
                label="Perfect calibration",
                gid=f"reliability-{cid}-diagonal",
            )
            bins = scope["calibration"]["bins"]
            xs = [b["centre"] for b in bins if b["n"] and _finite(b["accuracy"])]
            ys = [b["accuracy"] for b in bins if b["n"] and _finite(b["accuracy"])]
            ax.plot(
                xs,
                ys,
                color=colour,
                marker="o",
                markersize=7,
                linewidth=1.8,
                label="Individual answers",
                gid=f"reliability-{cid}-answers",
            )
            for b in bins:
                if b["n"] and _finite(b["accuracy"]):
                    ax.annotate(
                        f"n={b['n']}",
                        (b["centre"], b["accuracy"]),
                        textcoords="offset points",
                        xytext=(0, 7),
                        ha="center",
                        fontsize=7,
                        color="#333",
                    )
            vote_bins = scope["vote"]["calibration"]["bins"]
            vx = [b["centre"] for b in vote_bins if b["n"] and _finite(b["accuracy"])]
            vy = [b["accuracy"] for b in vote_bins if b["n"] and _finite(b["accuracy"])]
            ax.plot(
                vx,
                vy,
                color=colour,
                marker="s",
                markerfacecolor="white",
                markersize=6,
                linestyle="--",
                linewidth=1.2,
                label="Vote",
                gid=f"reliability-{cid}-vote",
            )
            ce = _est(scope["calibration"]["ce"])
            ax.set_title(f"{row['label']} (CE {ce[0]:.1f})" if ce else f"{row['label']} (CE –)")
            ax.set_xlim(15, 105)
            ax.set_ylim(-3, 108)
            ax.set_xticks(BIN_CENTRES)
            ax.tick_params(labelbottom=False)
            ax.grid(color="#eef1f5", linewidth=0.6)
            ax.set_axisbelow(True)
            answered = counts.bar(BIN_CENTRES, [b["n"] for b in bins], width=9, color=colour, alpha=0.55)
            voted = counts.bar(
                BIN_CENTRES, [b["n"] for b in vote_bins], width=4, color="white", edgecolor=colour, hatch="///"
            )
            for centre, bar, vote_bar in zip(BIN_CENTRES, answered.patches, voted.patches, strict=True):
                bar.set_gid(f"reliability-{cid}-count-{centre}")
                vote_bar.set_gid(f"reliability-{cid}-vote-count-{centre}")
            counts.set_xlabel("Confidence (%)")
            if k == 0:
                ax.set_ylabel("Accuracy (%)")
                counts.set_ylabel("Count")
            if not xs and not vx:
                ax.text(0.5, 0.5, "No answers", ha="center", va="center", transform=ax.transAxes, color="#5b6475")
        handles = [
            _line(color="#444", marker="o", linewidth=1.8, label="Answers (bars: count)"),
            _line(color="#444", marker="s", markerfacecolor="white", linestyle="--", label="Vote (hatched: items)"),
            _line(color="#888", linestyle=":", label="Perfect calibration"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=3 if len(rows) > 1 else 2)

    return _render(draw, PLOTS["reliability"], figsize=(max(6.0, 3.6 * max(len(rows), 1)), 5.4))


# --- (c) Accuracy by confidence level ---------------------------------------------------------------------------


def confidence_svg(report, *, variant: str = "with_exclusions") -> str:
    analysis = _variant(report, variant)
    rows = human_rows(analysis)
    blocks = {c["id"]: c for c in analysis["conditions"]}
    colours = _condition_colours(analysis)
    tasks = list(analysis["tasks"])
    panels = tasks if len(tasks) > 1 else (tasks or ["All"])

    def scope_of(cid: int, panel: str):
        block = blocks[cid]
        return block["all"] if panel == "All" or len(tasks) <= 1 else block["by_task"].get(panel)

    def draw(fig: Figure) -> None:
        fig.suptitle("Accuracy by confidence level", fontweight="bold")
        if not rows:
            _empty(fig.add_subplot())
            return
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        width = 0.8 / len(rows)
        handles = {}
        for p, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
            for k, row in enumerate(rows):
                cid = row["condition_id"]
                scope = scope_of(cid, panel)
                if scope is None:
                    continue
                mean = _est(blocks[cid]["all"]["mean_confidence"])
                label = f"{row['label']} (mean confidence {mean[0]:.0f}%)" if mean else row["label"]
                for i, b in enumerate(scope["calibration"]["bins"]):
                    if not b["n"] or not _finite(b["accuracy"]):
                        continue
                    x = i - 0.4 + width * (k + 0.5)
                    bars = ax.bar(
                        [x],
                        [b["accuracy"]],
                        width=width * 0.92,
                        color=colours.get(cid, "#000"),
                        edgecolor="black",
                        linewidth=0.4,
                        gid=f"confidence-{p}-{cid}-{b['centre']}",
                    )
                    ax.annotate(
                        f"n={b['n']}",
                        (x, b["accuracy"]),
                        textcoords="offset points",
                        xytext=(0, 2),
                        ha="center",
                        fontsize=7,
                    )
                    handles.setdefault(label, bars.patches[0])
            ax.plot(
                range(len(BIN_CENTRES)),
                BIN_CENTRES,
                color="#888",
                linestyle=":",
                marker="_",
                markersize=14,
                label="Stated confidence",
                gid=f"confidence-{p}-level",
            )
            ax.set_xticks(range(len(BIN_CENTRES)), [f"{c}%" for c in BIN_CENTRES])
            ax.set_xlabel("Confidence level")
            ax.set_ylim(0, 110)
            ax.set_title(panel)
            ax.grid(axis="y", color="#eef1f5", linewidth=0.6)
            ax.set_axisbelow(True)
        axes[0].set_ylabel("Accuracy (%)")
        handles["Accuracy if perfectly calibrated"] = _line(color="#888", linestyle=":", marker="_", markersize=14)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 2))

    return _render(draw, PLOTS["confidence"], figsize=(min(max(6.4, 4.8 * len(panels)), 14), 4.8))


# --- (d) Per-participant accuracy ----------------------------------------------------------------------------


def participant_accuracy(tables: StudyTables, *, apply_exclusions: bool = True) -> list[dict]:
    """Each analysed participant's accuracy per condition: `[{participant_id, accuracy: {cid: %}, n: {cid: n}}]`.

    The report's definition (RESEARCH.md §5): the share of the participant's analysed trials of the condition
    that were right (a timed-out trial without an option counts as wrong); the mean of these over participants is
    the condition's accuracy in the report. Same inclusion rules: scored, final, a known right answer, no pilots,
    and (with `apply_exclusions`) no participant with an active exclusion.
    """
    right: dict[tuple[int, int], int] = defaultdict(int)
    total: dict[tuple[int, int], int] = defaultdict(int)
    for t in analysed_trials(tables, apply_exclusions=apply_exclusions):
        total[t.participant_id, t.condition_id] += 1
        right[t.participant_id, t.condition_id] += bool(t.correct)
    people: dict[int, dict] = {}
    for (pid, cid), n in sorted(total.items()):
        entry = people.setdefault(pid, {"participant_id": pid, "accuracy": {}, "n": {}})
        entry["accuracy"][cid] = 100 * right[pid, cid] / n
        entry["n"][cid] = n
    return list(people.values())


def participants_svg(report, participants: Sequence[Mapping], *, variant: str = "with_exclusions") -> str:
    analysis = _variant(report, variant)
    rows = human_rows(analysis)
    blocks = {c["id"]: c for c in analysis["conditions"]}
    colours = _condition_colours(analysis)
    order = [r["condition_id"] for r in rows]
    position = {cid: x for x, cid in enumerate(order)}
    analysed = set(analysis.get("participant_ids", []))
    people = [p for p in participants if not analysed or p["participant_id"] in analysed]

    def jitter(pid: int) -> float:  # deterministic, so the same participant sits at the same x in every render
        return ((pid * 2654435761) % 1000 / 1000 - 0.5) * 0.16

    def draw(fig: Figure) -> None:
        fig.suptitle("Per-participant accuracy across conditions", fontweight="bold")
        ax = fig.add_subplot()
        if not rows or not people:
            _empty(ax)
            return
        segments: dict[str, list] = {"up": [], "down": [], "same": []}
        singles_x, singles_y = [], []
        for person in people:
            acc = {int(k): v for k, v in person["accuracy"].items()}
            points = [(position[c] + jitter(person["participant_id"]), acc[c]) for c in order if c in acc]
            if len(points) == 1:
                singles_x.append(points[0][0])
                singles_y.append(points[0][1])
                continue
            if not points:
                continue
            change = points[-1][1] - points[0][1]
            segments["up" if change > 0 else "down" if change < 0 else "same"].append(points)
        styles = {
            "up": (OKABE_ITO["blue"], "-", f"{rows[-1]['label']} higher"),
            "down": (OKABE_ITO["vermillion"], "--", f"{rows[-1]['label']} lower"),
            "same": ("#888888", ":", "No change"),
        }
        handles = []
        for key, lines in segments.items():
            colour, dash, label = styles[key]
            if not lines:
                continue
            alpha = 0.7 if len(people) <= 50 else max(0.12, 0.7 * 50 / len(people))
            from matplotlib.collections import LineCollection

            ax.add_collection(
                LineCollection(
                    lines, colors=colour, linestyles=dash, linewidths=1.1, alpha=alpha, gid=f"participants-{key}"
                )
            )
            xs = [x for line in lines for x, _ in line]
            ys = [y for line in lines for _, y in line]
            ax.plot(
                xs,
                ys,
                linestyle="none",
                marker="o",
                markersize=3.5,
                color=colour,
                alpha=alpha,
                gid=f"participants-{key}-points",
            )
            handles.append(
                _line(color=colour, linestyle=dash, marker="o", markersize=3.5, label=f"{label} ({len(lines)})")
            )
        if singles_x:
            ax.plot(
                singles_x,
                singles_y,
                linestyle="none",
                marker="o",
                markersize=3.5,
                color="#888888",
                gid="participants-single",
            )
            handles.append(
                _line(
                    color="#888888",
                    linestyle="none",
                    marker="o",
                    markersize=3.5,
                    label=f"In one condition only ({len(singles_x)})",
                )
            )
        for row in rows:
            cid = row["condition_id"]
            e = _est(blocks[cid]["all"]["accuracy"])
            if e is None:
                continue
            value, lo, hi = e
            x = position[cid] + (-0.3 if position[cid] == 0 and len(order) > 1 else 0.3)
            ax.vlines([x], [lo], [hi], color="black", linewidth=2, gid=f"participants-mean-{cid}-ci")
            ax.plot(
                [x],
                [value],
                marker="D",
                markersize=8,
                color=colours.get(cid, "#000"),
                markeredgecolor="black",
                linestyle="none",
                gid=f"participants-mean-{cid}",
            )
            left = x < position[cid]
            ax.annotate(
                f"{value:.1f}",
                (x, value),
                textcoords="offset points",
                xytext=(-8 if left else 8, 0),
                ha="right" if left else "left",
                va="center",
                fontsize=8,
                fontweight="bold",
            )
        handles.append(
            _line(color="black", marker="D", markerfacecolor="white", linestyle="-", label="Condition mean [95% CI]")
        )
        ax.set_xticks(range(len(order)), [r["label"] for r in rows])
        ax.set_xlim(-0.55, len(order) - 0.45)
        ax.set_ylim(-4, 104)
        ax.set_xlabel("Condition")
        ax.set_ylabel("Participant's accuracy (%)")
        ax.set_title(
            f"{len(people)} participants; lines join one participant's conditions", fontsize=9, color="#5b6475"
        )
        ax.grid(axis="y", color="#eef1f5", linewidth=0.6)
        ax.set_axisbelow(True)
        fig.legend(handles=handles, loc="outside lower center", ncol=2)

    return _render(draw, PLOTS["participants"], figsize=(max(6.4, 2.8 * max(len(rows), 2)), 5.0))


def render(
    name: str,
    report,
    *,
    variant: str = "with_exclusions",
    experts: Mapping[str, float] | None = None,
    participants: Sequence[Mapping] = (),
) -> str:
    """The plot called `name` (a key of `PLOTS`)."""
    if name == "sandwich":
        return sandwich_svg(report, variant=variant, experts=experts)
    if name == "reliability":
        return reliability_svg(report, variant=variant)
    if name == "confidence":
        return confidence_svg(report, variant=variant)
    if name == "participants":
        return participants_svg(report, participants, variant=variant)
    if name in ("protocol_accuracy", "protocol_reliability"):
        from oversight.analysis import protocol_plots  # it imports this module's helpers

        draw = protocol_plots.accuracy_svg if name == "protocol_accuracy" else protocol_plots.reliability_svg
        return draw(report, variant=variant)
    if name == "persuasion":
        from oversight.analysis import protocol_plots

        return protocol_plots.persuasion_svg(report)
    raise KeyError(name)
