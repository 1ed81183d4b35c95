"""The analysis's input: plain rows, built from the database by `oversight.reports.load` or by hand (tests, benchmarks).

Nothing here touches Django. A `StudyTables` holds everything the report needs: every trial of the study (all
roles and statuses, pilots included — the analysis filters), the model-alone baseline results, and who is a
pilot or has an active exclusion.

Units: `confidence` is the percent level the participant set (25/42/60/80/100 on the Likert scale, 5–95 on the
slider, the chosen option's share for the all-options format); `distribution` is in percent over the options;
baseline `probabilities` are fractions that sum to 1. `choice`, `gold` and `predicted` are 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# RESEARCH.md §3: the five Likert points, which are also the calibration bins' centres.
LIKERT_LEVELS = (25, 42, 60, 80, 100)
BIN_CENTRES = LIKERT_LEVELS

SCORED = "scored"
FINAL_STATUSES = frozenset({"answered", "timed_out"})
UNAIDED = "unaided"
ASSISTED = "assisted"

# The model-alone baselines of RESEARCH.md §4, in the paper's row order.
METHODS = ("zero-shot", "few-shot", "cot")
METHOD_LABELS = {"zero-shot": "Model (zero-shot)", "few-shot": "Model (few-shot)", "cot": "Model (CoT)"}

LIKERT = "likert"
SLIDER = "slider"
DISTRIBUTION = "distribution"


@dataclass(frozen=True)
class ConditionRow:
    id: int
    kind: str  # "unaided" | "assisted"
    name: str
    position: int = 0


@dataclass(frozen=True)
class TrialRow:
    """One participant × one item, with what happened in its chat."""

    participant_id: int
    condition_id: int
    item_id: int
    choice: int | None
    confidence: float | None
    correct: bool | None
    gold: int | None = None
    condition_kind: str = UNAIDED
    condition_name: str = ""
    task: str = ""
    subject: str = ""
    difficult: bool | None = None
    n_options: int = 4
    role: str = SCORED
    status: str = "answered"
    distribution: tuple[float, ...] | None = None
    shown_at: datetime | None = None
    submitted_at: datetime | None = None
    submit_kind: str = ""
    turns: int = 0  # the participant's chat messages
    resets: int = 0
    quotes: int = 0  # quotations in the model's replies
    quotes_verified: int = 0
    # 0-based rank among this participant's scored trials of this condition, in the order they were shown.
    block_position: int = 0

    @property
    def seconds_used(self) -> float | None:
        if self.shown_at is None or self.submitted_at is None:
            return None
        return (self.submitted_at - self.shown_at).total_seconds()


@dataclass(frozen=True)
class BaselineRow:
    """One model-alone answer to one item (a `BaselineResult`)."""

    method: str  # "zero-shot" | "few-shot" | "cot"
    item_id: int
    probabilities: tuple[float, ...] | None
    predicted: int | None
    correct: bool | None
    endpoint: str = ""
    run_id: int | None = None
    error: str = ""


@dataclass
class StudyTables:
    slug: str
    conditions: list[ConditionRow]
    trials: list[TrialRow]
    title: str = ""
    confidence_format: str = LIKERT
    design: str = "within"
    order: str = "fixed"
    tasks: list[str] = field(default_factory=list)  # scored tasks in the study's order (else: as found)
    baselines: list[BaselineRow] = field(default_factory=list)
    baseline_runs: list[dict] = field(default_factory=list)
    excluded: frozenset[int] = frozenset()  # participants with an active (unrevoked) exclusion
    pilots: frozenset[int] = frozenset()
    participant_status: dict[int, str] = field(default_factory=dict)
    # Protocol conditions (consultancy, debate, …): what each trial's transcript showed (`protocols.ProtocolTables`).
    protocols: object | None = None
