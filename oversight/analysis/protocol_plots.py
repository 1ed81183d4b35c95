"""The protocols' plots as SVG text (matplotlib, server-side, like `plots.py`): judge accuracy by protocol with
95% intervals, and a reliability diagram per protocol. Both read the report's `protocols` block
(`analysis.protocols`); a report without one draws an empty panel saying so.

Series carry ids for tests and readers: `protocols-accuracy-<condition id>` (and `…-ci`),
`protocols-reliability-<condition id>` (and `…-diagonal`), `persuasion-<configuration key>` (issue 17: judge
accuracy against the advocate configuration's Bradley–Terry rating, one point per configuration).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oversight.analysis.plots import OKABE_ITO, _data, _empty, _est, _finite, _render

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# One colour per kind of help, the same in both plots (Okabe–Ito: colour-blind safe).
KIND_COLOURS = {
    "unaided": OKABE_ITO["orange"],
    "assisted": OKABE_ITO["blue"],
    "consultancy": OKABE_ITO["reddish_purple"],
    "open_consultancy": OKABE_ITO["vermillion"],
    "debate": OKABE_ITO["bluish_green"],
    "open_debate": OKABE_ITO["sky_blue"],
    "interactive_debate": OKABE_ITO["black"],
    "evidence_only": OKABE_ITO["yellow"],
}


def _conditions(report, variant: str) -> list[dict]:
    section = _data(report).get("protocols")
    return section[variant]["conditions"] if section else []


def accuracy_svg(report, *, variant: str = "with_exclusions") -> str:
    conditions = _conditions(report, variant)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.set_title("Judge accuracy by protocol, with 95% intervals", fontweight="bold")
        shown = [(c, e) for c in conditions if (e := _est(c["accuracy"]))]
        if not shown:
            _empty(ax)
            return
        for x, (c, (value, lo, hi)) in enumerate(shown):
            colour = KIND_COLOURS.get(c["kind"], "#000")
            ax.bar(x, value, color=colour, width=0.6, gid=f"protocols-accuracy-{c['id']}")
            ax.errorbar(
                x,
                value,
                yerr=[[value - lo], [hi - value]],
                color="#000",
                capsize=5,
                gid=f"protocols-accuracy-{c['id']}-ci",
            )
            ax.annotate(f"{value:.0f}%", (x, hi), textcoords="offset points", xytext=(0, 4), ha="center")
        ax.axhline(50, color="#888", linestyle=":", linewidth=1)
        ax.set_xticks(
            range(len(shown)), [f"{c['name']}\n({c['kind_label']}, n={c['n_participants']})" for c, _ in shown]
        )
        ax.set_ylim(0, 105)
        ax.set_ylabel("Accuracy (%): mean over judges")

    return _render(draw, "Judge accuracy by protocol", figsize=(max(5.0, 1.8 * max(len(conditions), 1)), 4.2))


def reliability_svg(report, *, variant: str = "with_exclusions") -> str:
    conditions = _conditions(report, variant)

    def draw(fig: Figure) -> None:
        fig.suptitle(
            "Reliability per protocol: share right by the probability given to the chosen answer", fontweight="bold"
        )
        if not conditions:
            _empty(fig.add_subplot())
            return
        axes = fig.subplots(1, len(conditions), sharey=True, squeeze=False)[0]
        for ax, c in zip(axes, conditions, strict=True):
            ax.plot(
                [0, 100],
                [0, 100],
                color="#888",
                linestyle=":",
                linewidth=1,
                gid=f"protocols-reliability-{c['id']}-diagonal",
            )
            bins = [b for b in c["calibration"]["bins"] if b["n"] and _finite(b["accuracy"])]
            ax.plot(
                [b["mean_probability"] for b in bins],
                [b["accuracy"] for b in bins],
                color=KIND_COLOURS.get(c["kind"], "#000"),
                marker="o",
                linewidth=1.8,
                gid=f"protocols-reliability-{c['id']}",
            )
            for b in bins:
                ax.annotate(f"n={b['n']}", (b["mean_probability"], b["accuracy"]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
            ece = c["calibration"]["ece"]["value"]
            ax.set_title(f"{c['name']}\nECE {ece:.1f} pp" if _finite(ece) else c["name"])
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 105)
            ax.set_xlabel("Probability of the chosen answer (%)")
        axes[0].set_ylabel("Share right (%)")

    return _render(draw, "Reliability per protocol", figsize=(max(5.0, 3.6 * max(len(conditions), 1)), 4.2))


def persuasion_svg(report) -> str:
    """Judge accuracy against advocate rating: one point per advocate configuration (the report's `persuasion`)."""
    configurations = [
        c
        for c in (_data(report).get("persuasion") or {}).get("configurations", [])
        if _finite(c.get("rating")) and _finite(c.get("judge_accuracy"))
    ]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.set_title("Judge accuracy against advocate rating", fontweight="bold")
        if not configurations:
            _empty(ax)
            return
        for c in configurations:
            colour = KIND_COLOURS.get("debate", "#000")
            ax.scatter(
                c["rating"],
                c["judge_accuracy"],
                s=40 + 4 * c["n_trials"] ** 0.5,
                color=colour,
                gid=f"persuasion-{c['key'].replace(':', '-')}",
            )
            ax.annotate(c["label"], (c["rating"], c["judge_accuracy"]), textcoords="offset points", xytext=(5, 4))
        ax.axhline(50, color="#888", linestyle=":", linewidth=1)
        ax.set_ylim(0, 105)
        ax.set_xlabel("Advocate rating (Bradley–Terry, Elo scale; 0 = judge not persuaded)")
        ax.set_ylabel("Judge accuracy (%) in the trials it argued")

    return _render(draw, "Judge accuracy against advocate rating", figsize=(6.4, 4.6))
