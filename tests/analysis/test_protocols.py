"""The protocol analysis against hand-computed fixtures: accuracy, p(correct), Brier and log scores, calibration,
the splits, quote statistics per side and paired comparisons; and the protocols' place in the report."""

import math

import pytest

from oversight.analysis.protocols import JudgementRow, ProtocolTables, TurnRow, protocol_analysis, sandwich_only
from oversight.analysis.report import build_report
from oversight.analysis.tables import ConditionRow, StudyTables, TrialRow

DEBATE, CONSULTANCY, UNAIDED, OPEN = 1, 2, 3, 4
CONDITIONS = [
    ConditionRow(id=DEBATE, kind="debate", name="Debate", position=0),
    ConditionRow(id=CONSULTANCY, kind="consultancy", name="Consultancy", position=1),
    ConditionRow(id=UNAIDED, kind="unaided", name="Unaided", position=2),
    ConditionRow(id=OPEN, kind="open_consultancy", name="Open", position=3),
]
KINDS = {c.id: c.kind for c in CONDITIONS}


def row(participant, condition, item, choice, confidence, gold, *, n_options=4, status="answered") -> TrialRow:
    return TrialRow(
        participant_id=participant,
        condition_id=condition,
        condition_kind=KINDS[condition],
        condition_name="",
        item_id=item,
        choice=choice,
        confidence=confidence,
        correct=choice == gold,
        gold=gold,
        n_options=n_options,
        status=status,
        task="QuALITY",
    )


def judgement(participant, condition, item, options, argues=(), transcript=None, **fields) -> JudgementRow:
    return JudgementRow(
        participant_id=participant,
        condition_id=condition,
        item_id=item,
        transcript_id=transcript or item,
        options=options,
        argues=argues,
        speakers=(0, 1) if KINDS[condition] == "debate" else (0,),
        **fields,
    )


TRIALS = [
    # Debate: item 10 shows the gold answer first, item 11 second.
    row(1, DEBATE, 10, 0, 80, 0),  # right, p(correct) .8
    row(1, DEBATE, 11, 3, 60, 1),  # wrong, .4
    row(2, DEBATE, 10, 2, 90, 0),  # wrong, .1
    row(2, DEBATE, 11, 1, 70, 1),  # right, .7
    # Consultancy: honest on item 20, dishonest on item 21.
    row(1, CONSULTANCY, 20, 1, 90, 1),  # right, .9
    row(1, CONSULTANCY, 21, 2, 80, 3),  # wrong, .2
    row(2, CONSULTANCY, 20, 1, 60, 1),  # right, .6
    row(2, CONSULTANCY, 21, None, None, 3, status="timed_out"),  # nothing selected: wrong, .5
    # Unaided, four options (slider 60 on the chosen one, .4/3 on each other).
    row(1, UNAIDED, 30, 2, 60, 2),  # right, .6
    row(2, UNAIDED, 30, 0, 40, 2),  # wrong, .2
]
JUDGEMENTS = [
    judgement(p, DEBATE, 10, (0, 2), (0, 1), transcript=100) for p in (1, 2)
] + [judgement(p, DEBATE, 11, (3, 1), (0, 1), transcript=101) for p in (1, 2)] + [
    judgement(p, CONSULTANCY, 20, (1, 0), (0,), transcript=200) for p in (1, 2)
] + [judgement(p, CONSULTANCY, 21, (2, 3), (0,), transcript=201) for p in (1, 2)]  # fmt: skip
TURNS = [
    TurnRow(100, DEBATE, 1, 0, "Debater A", "correct", 2, 2, 0, quoted_words=20, budget=50, words=100),
    TurnRow(
        100, DEBATE, 1, 1, "Debater B", "incorrect", 3, 1, 1, quoted_words=30, budget=50, words=140, truncated=True
    ),
    TurnRow(999, DEBATE, 1, 0, "Debater A", "correct", 9, 9, 0, quoted_words=40, budget=50, words=90),
]  # quotes, verified, over budget


def tables(trials=TRIALS, judgements=JUDGEMENTS, turns=TURNS, **fields) -> StudyTables:
    return StudyTables(
        slug="p",
        conditions=CONDITIONS,
        trials=list(trials),
        confidence_format="slider",
        protocols=ProtocolTables(judgements=list(judgements), turns=list(turns)),
        **fields,
    )


def analyse(t=None, resamples=0, **kw):
    t = t or tables()
    return protocol_analysis(t, t.protocols, apply_exclusions=True, seed=0, resamples=resamples, **kw)


def by_id(analysis):
    return {c["id"]: c for c in analysis["conditions"]}


def test_debate_accuracy_scores_and_calibration_as_computed_by_hand():
    debate = by_id(analyse())[DEBATE]
    assert debate["accuracy"]["value"] == pytest.approx(50)  # each judge 1 of 2
    assert debate["p_correct"]["value"] == pytest.approx(50)  # judge 1 (.8 + .4)/2, judge 2 (.1 + .7)/2
    assert debate["brier"]["value"] == pytest.approx((0.2 + 0.45) / 2)  # (.04 + .36)/2 and (.81 + .09)/2
    log = (math.log2(0.8) + math.log2(0.4)) / 2, (math.log2(0.1) + math.log2(0.7)) / 2
    assert debate["log_score"]["value"] == pytest.approx(sum(log) / 2)
    # Chosen answers at .8 right, .6 wrong, .9 wrong, .7 right: one per bin, |1 - .8|, .6, .9, |1 - .7|.
    assert debate["calibration"]["ece"]["value"] == pytest.approx(100 * (0.2 + 0.6 + 0.9 + 0.3) / 4)
    bins = {b["low"]: (b["n"], b["accuracy"], b["mean_probability"]) for b in debate["calibration"]["bins"] if b["n"]}
    assert bins == {60.0: (1, 0.0, 60.0), 70.0: (1, 100.0, 70.0), 80.0: (1, 100.0, 80.0), 90.0: (1, 0.0, 90.0)}
    assert (debate["n_participants"], debate["n_items"], debate["n_answers"]) == (2, 2, 4)


def test_debate_split_by_the_correct_debaters_position():
    splits = by_id(analyse())[DEBATE]["splits"]
    assert splits["correct_first"]["accuracy"]["value"] == pytest.approx(50)  # item 10: judge 1 right, 2 wrong
    assert splits["correct_second"]["accuracy"]["value"] == pytest.approx(50)  # item 11: judge 1 wrong, 2 right
    assert splits["correct_first"]["n_answers"] == 2


def test_consultancy_split_by_whether_the_consultant_argued_for_the_correct_answer():
    consultancy = by_id(analyse())[CONSULTANCY]
    assert consultancy["accuracy"]["value"] == pytest.approx(50)
    assert consultancy["splits"]["consultant_correct"]["accuracy"]["value"] == pytest.approx(100)
    assert consultancy["splits"]["consultant_incorrect"]["accuracy"]["value"] == pytest.approx(0)
    # A timeout with nothing selected is wrong and uninformative: p(correct) = 1/2.
    assert consultancy["p_correct"]["value"] == pytest.approx(100 * ((0.9 + 0.2) / 2 + (0.6 + 0.5) / 2) / 2)
    assert sum(b["n"] for b in consultancy["calibration"]["bins"]) == 3  # the timeout chose nothing


def test_an_unaided_condition_is_read_over_all_of_its_items_options():
    unaided = by_id(analyse())[UNAIDED]
    assert unaided["accuracy"]["value"] == pytest.approx(50)
    assert unaided["p_correct"]["value"] == pytest.approx(100 * (0.6 + (1 - 0.4) / 3) / 2)  # gold got (1 - .4)/3
    assert unaided["splits"] == {} and "quotes" not in unaided


def test_quote_statistics_per_side_and_position_count_each_shown_transcript_once():
    quotes = by_id(analyse())[DEBATE]["quotes"]
    correct, incorrect = quotes["by_side"]["correct"], quotes["by_side"]["incorrect"]
    assert (correct["turns"], correct["quotes"], correct["verified_share"], correct["budget_used_share"]) == (
        1,
        2,
        100.0,
        40.0,
    )  # transcript 999 was shown to nobody analysed
    assert (incorrect["verified"], incorrect["unverified"], incorrect["over_budget"]) == (1, 1, 1)
    assert incorrect["verified_share"] == pytest.approx(100 / 3) and incorrect["budget_used_share"] == 60.0
    assert incorrect["truncated_turns"] == 1 and set(quotes["by_position"]) == {"Debater A", "Debater B"}


def test_an_open_protocols_choices_are_analysed():
    trials = [row(1, OPEN, 40, 0, 80, 0), row(1, OPEN, 41, 1, 80, 0)]
    judgements = [
        judgement(1, OPEN, 40, (0, 1), (0,), transcript=400, chosen_by_model=True),  # chose gold, judge right
        judgement(1, OPEN, 41, (1, 0), (0,), transcript=401, chosen_by_model=True),  # chose the other, judge wrong
    ]
    open_ = by_id(analyse(tables(trials, judgements, [])))[OPEN]
    assert open_["model_choice"] == {"n_transcripts": 2, "correct_share": 50.0}
    assert open_["splits"]["model_chose_correct"]["accuracy"]["value"] == 100
    assert open_["splits"]["model_chose_incorrect"]["accuracy"]["value"] == 0


def test_protocols_sharing_items_are_compared_pair_by_pair():
    debate = [(1, 40, 0), (1, 41, 0), (2, 40, 1), (2, 41, 0)]  # (judge, item, choice); gold is 0
    unaided = [(1, 40, 1), (1, 41, 0), (2, 40, 1), (2, 41, 2)]
    trials = [row(p, DEBATE, i, c, 80, 0) for p, i, c in debate] + [row(p, UNAIDED, i, c, 60, 0) for p, i, c in unaided]
    judgements = [judgement(p, DEBATE, i, (0, 1), (0, 1)) for p in (1, 2) for i in (40, 41)]
    analysis = analyse(tables(trials, judgements, []), resamples=200)
    (pair,) = analysis["paired"]
    assert (pair["first"]["id"], pair["second"]["id"], pair["n_items"]) == (DEBATE, UNAIDED, 2)
    assert pair["difference"]["value"] == pytest.approx(75 - 25)  # judges (1 + .5)/2 against (.5 + 0)/2
    # Per item share right: debate .5 and 1, unaided 0 and .5; both differences +.5: 2 of 4 sign patterns as extreme.
    assert pair["test"]["mean_difference"] == pytest.approx(50) and pair["test"]["p_value"] == pytest.approx(0.5)
    lo, hi = pair["difference"]["ci95"]
    assert lo <= 50 <= hi


def test_disjoint_conditions_are_not_paired():
    assert analyse()["paired"] == [] and analyse()["shared_items"] is False


def test_intervals_come_from_the_seeded_two_way_bootstrap():
    first, again = analyse(resamples=300), analyse(resamples=300)
    debate = by_id(first)[DEBATE]["accuracy"]
    assert debate == by_id(again)[DEBATE]["accuracy"]
    assert debate["ci95"][0] <= debate["value"] <= debate["ci95"][1]


def test_excluded_and_pilot_judges_are_left_out():
    t = tables(excluded=frozenset({2}), pilots=frozenset())
    assert by_id(analyse(t))[DEBATE]["accuracy"]["value"] == pytest.approx(50)  # judge 1 alone: 1 of 2
    assert by_id(analyse(t))[DEBATE]["n_participants"] == 1


def test_the_report_keeps_table_1_for_the_sandwich_and_adds_a_protocols_section():
    t = tables()
    assert [c.kind for c in sandwich_only(t).conditions] == ["unaided"]
    report = build_report(t, resamples=50)
    data = report.to_dict()
    assert [r["label"] for r in data["with_exclusions"]["table"]["rows"]] == ["Unaided", "Unaided vote"]
    protocols = data["protocols"]["with_exclusions"]
    assert [c["kind"] for c in protocols["conditions"]] == ["debate", "consultancy", "unaided"]
    markdown = report.to_markdown()
    assert "## Protocols: judge accuracy by protocol" in markdown
    assert "| Debate | Debate | 50.0 [" in markdown
    assert "consultant argued for the incorrect answer: 0.0" in markdown
    report.to_json()  # JSON-safe (no NaN)


def test_a_study_without_protocols_has_no_protocols_section():
    t = tables(trials=[r for r in TRIALS if r.condition_id == UNAIDED], judgements=[], turns=[])
    t.conditions = [c for c in CONDITIONS if c.kind == "unaided"]
    assert "protocols" not in build_report(t, resamples=0).to_dict()
