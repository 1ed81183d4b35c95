"""Hand-made analysis rows for the tests: a trial is one line, its correctness follows from choice and gold."""

from oversight.analysis.tables import ASSISTED, UNAIDED, BaselineRow, ConditionRow, StudyTables, TrialRow

UNAIDED_ID, ASSISTED_ID = 1, 2
CONDITIONS = [
    ConditionRow(id=UNAIDED_ID, kind=UNAIDED, name="Unaided", position=0),
    ConditionRow(id=ASSISTED_ID, kind=ASSISTED, name="Assisted", position=1),
]


def trial(
    participant,
    item,
    choice,
    confidence=60,
    *,
    gold=0,
    assisted=False,
    task="MMLU",
    n_options=4,
    block_position=0,
    **fields,
) -> TrialRow:
    condition = CONDITIONS[1] if assisted else CONDITIONS[0]
    return TrialRow(
        participant_id=participant,
        condition_id=condition.id,
        condition_kind=condition.kind,
        condition_name=condition.name,
        task=task,
        item_id=item,
        choice=choice,
        confidence=confidence,
        correct=None if gold is None else choice == gold,
        gold=gold,
        n_options=n_options,
        block_position=block_position,
        **fields,
    )


def model(method, item, correct, probabilities=None, predicted=None, **fields) -> BaselineRow:
    fields.setdefault("endpoint", "sim")
    fields.setdefault("run_id", 1)
    return BaselineRow(
        method=method, item_id=item, probabilities=probabilities, predicted=predicted, correct=correct, **fields
    )


def tables(trials, *, baselines=(), excluded=(), pilots=(), confidence_format="likert", **fields) -> StudyTables:
    return StudyTables(
        slug="t",
        title="Test study",
        conditions=CONDITIONS,
        trials=list(trials),
        baselines=list(baselines),
        excluded=frozenset(excluded),
        pilots=frozenset(pilots),
        confidence_format=confidence_format,
        **fields,
    )
