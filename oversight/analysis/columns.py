"""The trials table as numpy columns: built in one pass, so the analysis never loops over trials in Python.

Missing values: -1 for integer columns (choice, gold, codes), NaN for float ones (confidence, correct, seconds).
Text columns (task, subject, submit kind) are integer codes into a list of names.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from oversight.analysis.tables import DISTRIBUTION, FINAL_STATUSES, SCORED, StudyTables


@dataclass
class TrialColumns:
    n: int
    participant: np.ndarray
    condition: np.ndarray
    item: np.ndarray
    choice: np.ndarray  # -1: no option selected
    confidence: np.ndarray  # stated percent for the chosen option; NaN: none (or no option)
    correct: np.ndarray  # 1.0 / 0.0; NaN: unknown
    gold: np.ndarray  # -1: unknown
    n_options: np.ndarray
    task: np.ndarray
    task_names: list[str]
    subject: np.ndarray
    subject_names: list[str]
    difficult: np.ndarray  # -1 unknown, 0, 1
    analysable: np.ndarray  # bool: a scored, final trial with a known right answer
    pilot: np.ndarray  # bool
    timed_out: np.ndarray  # bool
    seconds: np.ndarray  # NaN: not shown or not submitted
    turns: np.ndarray
    resets: np.ndarray
    quotes: np.ndarray
    quotes_verified: np.ndarray
    submit_kind: np.ndarray
    submit_kind_names: list[str]
    block_position: np.ndarray
    distribution: list  # per trial: the all-options answer (percent) or None


def _codes(values: list[str]) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(values))
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter(map(index.__getitem__, values), np.int64, len(values)), names


_FIELDS = (
    "participant_id",
    "condition_id",
    "item_id",
    "choice",
    "confidence",
    "correct",
    "gold",
    "n_options",
    "task",
    "subject",
    "difficult",
    "role",
    "status",
    "shown_at",
    "submitted_at",
    "turns",
    "resets",
    "quotes",
    "quotes_verified",
    "submit_kind",
    "block_position",
)


def _or(values, missing) -> list:
    return [missing if v is None else v for v in values]


def trial_columns(tables: StudyTables) -> TrialColumns:
    trials = tables.trials
    n = len(trials)
    raw = {f: list(map(attrgetter(f), trials)) for f in _FIELDS}

    def ints(values) -> np.ndarray:
        return np.asarray(values, dtype=np.int64).reshape(n)

    def floats(values) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(n)

    task, task_names = _codes(list(raw["task"]))
    subject, subject_names = _codes(list(raw["subject"]))
    kind, kind_names = _codes([k or "unknown" for k in raw["submit_kind"]])
    choice = ints(_or(raw["choice"], -1))
    confidence = floats(_or(raw["confidence"], np.nan))
    distribution = [t.distribution for t in trials]
    if tables.confidence_format == DISTRIBUTION:
        for i, t in enumerate(trials):
            if np.isnan(confidence[i]) and t.distribution:
                confidence[i] = float(max(t.distribution))
    confidence[choice < 0] = np.nan  # no option, nothing to be confident about
    correct = floats(_or(raw["correct"], np.nan))
    final = np.isin(np.asarray(raw["status"], dtype=object), list(FINAL_STATUSES))
    scored = np.asarray(raw["role"], dtype=object) == SCORED
    participant = ints(raw["participant_id"])
    seconds = floats(
        [
            np.nan if a is None or b is None else (b - a).total_seconds()
            for a, b in zip(raw["shown_at"], raw["submitted_at"], strict=True)
        ]
    )
    return TrialColumns(
        n=n,
        participant=participant,
        condition=ints(raw["condition_id"]),
        item=ints(raw["item_id"]),
        choice=choice,
        confidence=confidence,
        correct=correct,
        gold=ints(_or(raw["gold"], -1)),
        n_options=ints(raw["n_options"]),
        task=task,
        task_names=task_names,
        subject=subject,
        subject_names=subject_names,
        difficult=ints([-1 if d is None else int(d) for d in raw["difficult"]]),
        analysable=scored & final & ~np.isnan(correct),
        pilot=np.isin(participant, np.fromiter(tables.pilots, np.int64, len(tables.pilots))),
        timed_out=np.asarray(raw["status"], dtype=object) == "timed_out",
        seconds=seconds,
        turns=ints(raw["turns"]),
        resets=ints(raw["resets"]),
        quotes=ints(raw["quotes"]),
        quotes_verified=ints(raw["quotes_verified"]),
        submit_kind=kind,
        submit_kind_names=kind_names,
        block_position=ints(raw["block_position"]),
        distribution=distribution,
    )
