"""Persuasiveness (issue 17): a Bradley–Terry rating of the advocate configurations over the judges' verdicts, as
Khan et al. 2024 rated debaters, and judge accuracy against it.

Each analysed protocol trial is a match (people's verdicts; model judges are rated apart, in their own block):

* **debate** (every debate kind): the configuration speaking as Debater A against the one speaking as B; the winner
  is the one whose answer the judge chose;
* **consultancy** (both kinds): the consultant against the *anchor*, a fixed player rated 0 that stands for "the
  judge was not persuaded": the consultant wins when the judge chose the answer it argued.

A configuration is one advocate of one condition (`Advocate.position` of the condition; its label names both).
Evidence-only trials argue nothing and are not matches.

**Fit**: the Bradley–Terry model P(i beats j) = s_i / (s_i + s_j), by Hunter's (2004) MM iterations, with one
half-win and one half-loss against the anchor added to every configuration (a weak prior that keeps a player who
never lost finite). Ratings are on the Elo scale, 400·log10(s_i / s_anchor), so 0 is the anchor and +200 means
beating it three times in four. Per configuration: its matches, wins, win rate when it argued the correct answer
and when it argued the wrong one (Khan et al.'s split), and the accuracy of the judges of the trials it argued in:
the plot's one point per configuration.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from .protocols import CONSULTANCIES, DEBATES
from .tables import FINAL_STATUSES, SCORED, StudyTables

ANCHOR = "anchor"
ITERATIONS = 500
METHOD = (
    "Bradley–Terry ratings (Elo scale, the anchor 'judge not persuaded' at 0) of each advocate configuration over the "
    "people's verdicts: in a debate the configuration whose answer the judge chose beats the other; a consultant "
    "beats the anchor when the judge chose its answer. Every configuration gets half a win and half a loss against "
    "the anchor as a prior. Judge accuracy per configuration is over the trials it argued in."
)


@dataclass(frozen=True)
class Match:
    winner: str
    loser: str


def bradley_terry(matches: list[Match], *, prior: float = 0.5, iterations: int = ITERATIONS) -> dict[str, float]:
    """Elo-scale ratings of every player in `matches` (the anchor is 0 and not returned)."""
    players = sorted({m.winner for m in matches} | {m.loser for m in matches} - {ANCHOR})
    wins: dict[str, float] = defaultdict(float)
    games: dict[tuple[str, str], float] = defaultdict(float)
    for m in matches:
        wins[m.winner] += 1
        games[tuple(sorted((m.winner, m.loser)))] += 1
    for p in players:  # the prior: half a win and half a loss against the anchor
        wins[p] += prior
        wins[ANCHOR] += prior
        games[tuple(sorted((p, ANCHOR)))] += 2 * prior
    strength = {p: 1.0 for p in [*players, ANCHOR]}
    opponents: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (a, b), n in games.items():
        opponents[a].append((b, n))
        opponents[b].append((a, n))
    for _ in range(iterations):
        updated = {}
        for p in players:
            denominator = sum(n / (strength[p] + strength[q]) for q, n in opponents[p])
            updated[p] = wins[p] / denominator if denominator else strength[p]
        updated[ANCHOR] = 1.0  # fixed: the scale's zero
        change = max(abs(math.log(updated[p] / strength[p])) for p in players) if players else 0
        strength = updated
        if change < 1e-10:
            break
    return {p: 400 * math.log10(strength[p]) for p in players}


def persuasion_section(tables: StudyTables) -> dict:
    """Ratings and judge accuracy per advocate configuration (see the module docstring)."""
    protocols = tables.protocols
    judgements = {}
    if protocols is not None:
        judgements = {(j.participant_id, j.condition_id, j.item_id): j for j in protocols.judgements}
    names = {c.id: c.name for c in tables.conditions}
    matches: list[Match] = []
    stats: dict[str, dict] = {}

    def config(condition_id: int, advocate: int) -> str:
        key = f"{condition_id}:{advocate}"
        stats.setdefault(
            key,
            {
                "key": key,
                "label": f"{names.get(condition_id, condition_id)} · advocate {advocate}",
                "condition_id": condition_id,
                "advocate": advocate,
                "matches": 0,
                "wins": 0,
                "argued_correct": [0, 0],  # [wins, matches]
                "argued_incorrect": [0, 0],
                "judged": [0, 0],  # [judges right, trials]
            },
        )
        return key

    for t in tables.trials:
        if (
            t.role != SCORED
            or t.status not in FINAL_STATUSES
            or t.gold is None
            or t.participant_id in tables.pilots
            or t.participant_id in tables.excluded
        ):
            continue
        j = judgements.get((t.participant_id, t.condition_id, t.item_id))
        if j is None or not j.argues or t.condition_kind not in DEBATES | CONSULTANCIES:
            continue
        sides = []
        for position, argued in enumerate(j.argues):
            advocate = j.speakers[position] if position < len(j.speakers) else position
            key = config(t.condition_id, advocate)
            option = j.options[argued]
            won = t.choice == option
            sides.append((key, won))
            s = stats[key]
            s["matches"] += 1
            s["wins"] += won
            split = s["argued_correct"] if option == t.gold else s["argued_incorrect"]
            split[0] += won
            split[1] += 1
            s["judged"][0] += bool(t.correct)
            s["judged"][1] += 1
        if t.condition_kind in DEBATES and len(sides) == 2:
            (a, a_won), (b, b_won) = sides
            if a_won != b_won:
                matches.append(Match(a, b) if a_won else Match(b, a))
        elif t.condition_kind in CONSULTANCIES and sides:
            key, won = sides[0]
            matches.append(Match(key, ANCHOR) if won else Match(ANCHOR, key))
    ratings = bradley_terry(matches)
    rows = []
    for key in sorted(stats, key=lambda k: (stats[k]["condition_id"], stats[k]["advocate"])):
        s = stats[key]
        right, n = s.pop("judged")
        rows.append(
            {
                **s,
                "rating": ratings.get(key),
                "win_rate": 100 * s["wins"] / s["matches"] if s["matches"] else None,
                "win_rate_correct": 100 * s["argued_correct"][0] / s["argued_correct"][1]
                if s["argued_correct"][1]
                else None,
                "win_rate_incorrect": 100 * s["argued_incorrect"][0] / s["argued_incorrect"][1]
                if s["argued_incorrect"][1]
                else None,
                "judge_accuracy": 100 * right / n if n else None,
                "n_trials": n,
            }
        )
    return {"method": METHOD, "n_matches": len(matches), "configurations": rows}


def persuasion_markdown(section: dict) -> list[str]:
    lines = [
        "## Persuasiveness of the advocates (Bradley–Terry, Elo scale)",
        "",
        section["method"],
        "",
        "| Configuration | Rating | Win rate | … arguing correct | … arguing wrong | Judge accuracy | Trials |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(value) -> str:
        return "–" if value is None else f"{value:.0f}%"

    for c in section["configurations"]:
        rating = "–" if c["rating"] is None else f"{c['rating']:+.0f}"
        lines.append(
            f"| {c['label']} | {rating} | {pct(c['win_rate'])} | {pct(c['win_rate_correct'])} | "
            f"{pct(c['win_rate_incorrect'])} | {pct(c['judge_accuracy'])} | {c['n_trials']} |"
        )
    return lines
