"""The edge-case study (issue 14): timeouts with nothing selected, ties, a one-participant condition and items with a
single answer, as plain analysis rows. Its report values are computed by hand in tests/analysis/test_edge_case_study.py.

Unaided (P1, P2; items 1–4, MMLU):

| item | gold | P1                           | P2                           |
|------|------|------------------------------|------------------------------|
| 1    | A    | timed out, nothing selected  | timed out, nothing selected  |
| 2    | B    | A at 60%                     | B at 60%  (a tie)            |
| 3    | C    | C at 80%                     | still on the page (not final)|
| 4    | D    | D at 100%, timed out with it | A at 42%                     |

Assisted (P3 alone; items 5–7): item 5 (gold A) A at 80%; items 6 (gold B) and 7 (gold A) timed out with nothing
selected. The zero-shot model answered items 1, 2 and 5 right and 3, 4, 6, 7 wrong, and its run over the bank's
val split scored 25 of 100 items (probability of the predicted option 0.3 on each: all in the 25% bin).
"""

from oversight.analysis.tables import SUMMARY_CONFIDENCE, BaselineRow, baseline_run
from tests.analysis.rows import model, tables, trial

A, B, C, D = range(4)
SPLIT_RUN = baseline_run(
    id=7,
    method="zero-shot",
    endpoint="sim",
    split="val",
    scope="bank",
    status="done",
    params={"concurrency": 32},
    tasks=["MMLU"],
    summary={
        "confidence": SUMMARY_CONFIDENCE,
        "labelled": 100,
        "n_correct": 25,
        "errors": 0,
        "calibration_bins": [{"centre": 25, "n": 100, "right": 25}]
        + [{"centre": c, "n": 0, "right": 0} for c in (42, 60, 80, 100)],
    },
)


def empty(participant, item, *, gold, assisted=False, block_position=0):
    """A trial that timed out with no option selected."""
    return trial(
        participant,
        item,
        None,
        None,
        gold=gold,
        assisted=assisted,
        block_position=block_position,
        status="timed_out",
        submit_kind="server",
    )


def edge_case_trials():
    return [
        # Unaided, P1: items 1–4 in this order.
        empty(1, 1, gold=A, block_position=0),
        trial(1, 2, A, 60, gold=B, block_position=1),
        trial(1, 3, C, 80, gold=C, block_position=2),
        trial(1, 4, D, 100, gold=D, block_position=3, status="timed_out", submit_kind="server"),
        # Unaided, P2: item 3 is still on the page, so P2 has three analysed trials (1, 2, 4).
        empty(2, 1, gold=A, block_position=0),
        trial(2, 2, B, 60, gold=B, block_position=1),
        trial(2, 3, None, None, gold=C, block_position=2, status="shown"),
        trial(2, 4, A, 42, gold=D, block_position=3),
        # Assisted, P3 alone.
        trial(3, 5, A, 80, gold=A, assisted=True, block_position=0),
        empty(3, 6, gold=B, assisted=True, block_position=1),
        empty(3, 7, gold=A, assisted=True, block_position=2),
    ]


def edge_case_baselines() -> list[BaselineRow]:
    right = {1, 2, 5}
    return [model("zero-shot", item, item in right, run_id=SPLIT_RUN["id"]) for item in range(1, 8)]


def edge_case_tables(**fields):
    return tables(
        edge_case_trials(),
        baselines=edge_case_baselines(),
        baseline_runs=[SPLIT_RUN],
        tasks=["MMLU"],
        task_formats={"MMLU": "mmlu"},
        **fields,
    )


# Table 1's rows for this study, in the paper's order (the console test's study has the same ones).
TABLE_1_LABELS = [
    "Unaided",
    "Unaided vote",
    "Model (zero-shot) on its split",
    "Model (zero-shot) on the study's items",
    "Assisted",
    "Assisted vote",
    "Expert human (published)",
]
