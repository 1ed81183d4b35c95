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
BEST_OF_N = "best-of-n"
SELF_CONSISTENCY = "self-consistency"
SCORER_LABELS = {"reward": "reward model", "judge": "judge"}

# RESEARCH.md §2 / Bowman et al. (2022), Table 1: published expert accuracy per benchmark (bank format). Reference
# values, not measured in the study.
EXPERT_ACCURACY = {"mmlu": 90.0, "quality": 93.5}
EXPERT_SOURCE = "published estimates quoted by Bowman et al. (2022), Table 1; not measured in this study"

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
class ModelMethod:
    """How a model-alone baseline answered: the method and what makes two runs of it different numbers (shots,
    the number of chain-of-thought samples and how one answer is chosen from them). Unknown details stay 0 / ""."""

    method: str  # "zero-shot" | "few-shot" | "cot"
    shots: int = 0
    samples: int = 0  # chain of thought: N
    selector: str = ""  # chain of thought: BEST_OF_N | SELF_CONSISTENCY
    scorer: str = ""  # best of N: "reward" | "judge"

    @property
    def key(self) -> str:
        """A stable identifier: the method alone when nothing more is known (e.g. "zero-shot", "cot")."""
        parts = [self.method]
        if self.method == "few-shot" and self.shots:
            parts.append(str(self.shots))
        if self.method == "cot":
            if self.shots:
                parts.append(f"{self.shots}-shot")
            if self.selector == BEST_OF_N:
                parts.append(f"best-of-{self.samples}-{self.scorer or 'scorer'}")
            elif self.selector:
                parts.append(f"{self.selector}-{self.samples}")
        return ":".join(parts)

    @property
    def label(self) -> str:
        """The row's name, in the paper's words where it has them: "Model (5-shot)", "Model (best-of-20 CoT, …)"."""
        if self.method == "few-shot":
            return f"Model ({self.shots}-shot)" if self.shots else "Model (few-shot)"
        if self.method != "cot":
            return METHOD_LABELS.get(self.method, f"Model ({self.method})")
        shots = f"{self.shots}-shot " if self.shots else ""
        if self.selector == BEST_OF_N:
            return f"Model ({shots}best-of-{self.samples} CoT, {SCORER_LABELS.get(self.scorer, self.scorer)})"
        if self.selector == SELF_CONSISTENCY:
            return f"Model ({shots}CoT, self-consistency of {self.samples})"
        return f"Model ({shots}CoT)"

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "shots": self.shots,
            "samples": self.samples,
            "selector": self.selector,
            "scorer": self.scorer,
        }


def model_method_of(method: str, params: dict | None) -> ModelMethod:
    """The model method a run's parameters describe (what the runner stored in `BaselineRun.params`)."""
    params = params or {}
    shots = int(params.get("shots") or 0) if method in ("few-shot", "cot") else 0
    samples = int(params.get("samples") or 0) if method == "cot" else 0
    selector = str(params.get("selector") or "") if method == "cot" else ""
    scorer = str(params.get("scorer") or "") if selector == BEST_OF_N else ""
    return ModelMethod(method, shots, samples, selector, scorer)


# A run summary whose calibration bins hold the predicted option's probability and a count of right answers (the
# runner writes it so since issue 14; `baselines` migration 0002 rewrote the older summaries).
SUMMARY_CONFIDENCE = "probability of the predicted option"


def baseline_run(
    *,
    id: int,
    method: str,
    endpoint: str,
    split: str,
    scope: str,
    status: str,
    params: dict | None,
    summary: dict | None,
    tasks: list[str],
) -> dict:
    """One entry of `StudyTables.baseline_runs`, from a run's record (the database or an export's baseline_runs)."""
    summary = summary or {}
    current = summary.get("confidence") == SUMMARY_CONFIDENCE and summary.get("n_correct") is not None
    return {
        "id": id,
        "method": method,
        "model": model_method_of(method, params).to_dict(),
        "endpoint": endpoint,
        "split": split,
        "scope": scope,  # "bank" (a bank or one split of it) | "study" (exactly the study's items)
        "status": status,
        "tasks": list(tasks),
        "n_items": summary.get("labelled") if current else None,
        "n_correct": summary.get("n_correct") if current else None,
        "n_errors": summary.get("errors") if current else None,
        "bins": [{"centre": b["centre"], "n": b["n"], "right": b["right"]} for b in summary.get("calibration_bins", [])]
        if current
        else [],
    }


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
    shots: int = 0
    samples: int = 0
    selector: str = ""
    scorer: str = ""

    @property
    def model_method(self) -> ModelMethod:
        return ModelMethod(self.method, self.shots, self.samples, self.selector, self.scorer)


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
    # One dict per model-alone run that touches the study's banks (`baseline_run`): its method, split and scope, the
    # study's tasks on its bank, and over ALL its labelled results (from its summary): n_items, n_correct and bins.
    baseline_runs: list[dict] = field(default_factory=list)
    task_formats: dict[str, str] = field(default_factory=dict)  # task → its bank's format ("mmlu", "quality", …)
    excluded: frozenset[int] = frozenset()  # participants with an active (unrevoked) exclusion
    pilots: frozenset[int] = frozenset()
    participant_status: dict[int, str] = field(default_factory=dict)
    # Protocol conditions (consultancy, debate, …): what each trial's transcript showed (`protocols.ProtocolTables`).
    protocols: object | None = None
    # Model judges (issue 17): their trials, kept out of `trials` so nothing above pools them with people's, and
    # per model participant its label and record (`model_judge`).
    model_trials: list[TrialRow] = field(default_factory=list)
    model_judges: dict[int, dict] = field(default_factory=dict)


def model_judge(participant_id: int, record: dict | None) -> dict:
    """One entry of `StudyTables.model_judges`: a model participant's record and the label its rows carry."""
    record = dict(record or {})
    endpoint = record.get("endpoint") or {}
    name = record.get("model_id") or endpoint.get("name") or f"model {participant_id}"
    mode = record.get("mode", "")
    label = f"Model judge: {name}" + (f" ({mode})" if mode else "")
    return {
        "participant_id": participant_id,
        "label": label,
        "run_id": record.get("judge_run"),
        "mode": mode,
        "method": record.get("method", ""),
        "endpoint": endpoint.get("name", ""),
        "model_id": record.get("model_id", ""),
    }
