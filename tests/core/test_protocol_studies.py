"""Protocol conditions in a study's life: the launch rules, the manifest, and the transcripts each trial shows
(the two answers, their order, who argues for which)."""

from collections import Counter
from pathlib import Path

import pytest

from oversight.banks import importers
from oversight.core.models import Advocate, Condition, ModelEndpoint, Study, Task, Transcript
from oversight.core.protocol_prompts import DEBATE
from oversight.core.services.participants import participant_join
from oversight.core.services.protocols import condition_protocol_problems
from oversight.core.services.studies import StudyDesignError, study_clone, study_design_problems, study_launch
from tests.factories import make_bank, make_protocol_study, prepare_and_launch

pytestmark = pytest.mark.django_db

DEMO = Path(importers.__file__).resolve().parent.parent / "demo" / "quality" / "demo.htmlstripped.jsonl"


def join(study, pid):
    return participant_join(study=study, params={"pid": pid}, consent=True)


def protocol_trials(participant):
    return list(participant.trials.filter(transcript__isnull=False).select_related("transcript", "item"))


# --- Launch rules -----------------------------------------------------------------------------------------


def test_a_well_formed_protocol_design_has_no_problems():
    study = make_protocol_study(conditions=(("debate", {}), ("consultancy", {}), ("evidence_only", {})), launch=False)
    assert study_design_problems(study) == []


def test_a_debate_needs_two_advocates_and_a_consultancy_exactly_one():
    study = make_protocol_study(conditions=(("debate", {}), ("consultancy", {})), launch=False)
    Advocate.objects.filter(condition__kind="debate", position=1).delete()
    extra = Advocate.objects.get(condition__kind="consultancy")
    Advocate.objects.create(condition=extra.condition, position=1, endpoint=extra.endpoint)
    problems = " ".join(study_design_problems(study))
    assert "The debate condition “Debate” needs two advocates" in problems and "it has 1" in problems
    assert "The consultancy condition “Consultancy” needs exactly one advocate" in problems
    with pytest.raises(StudyDesignError, match="needs two advocates"):
        study_launch(study=study)


def test_invalid_settings_stop_the_launch_in_the_validators_words():
    study = make_protocol_study(conditions=(("debate", {"rounds": 0}),), launch=False)
    assert study_design_problems(study) == ["The debate condition “Debate”: “rounds” must be between 1 and 10, not 0."]


def test_a_hidden_story_condition_needs_every_item_to_have_a_story():
    study = make_protocol_study(conditions=(("debate", {}),), launch=False)
    Task.objects.filter(study=study).update(bank=make_bank(name="No stories", n=12))
    assert any("hides the story from the judge" in p for p in study_design_problems(study))
    Condition.objects.filter(study=study).update(protocol={"judge_sees_story": True})
    assert study_design_problems(study) == []


def test_the_form_can_check_an_unsaved_condition_with_its_unsaved_advocates():
    study = make_protocol_study(conditions=(("unaided", {}),), launch=False)
    endpoint = ModelEndpoint.objects.create(name="m", kind="simulated")
    condition = Condition(study=study, kind="open_debate", name="Open", protocol={"word_limit": 80})
    one = [Advocate(condition=condition, position=0, endpoint=endpoint)]
    tasks = list(study.tasks.select_related("bank"))
    assert "needs two advocates" in " ".join(
        condition_protocol_problems(condition=condition, advocates=one, tasks=tasks)
    )
    two = [*one, Advocate(condition=condition, position=1, endpoint=endpoint)]
    assert condition_protocol_problems(condition=condition, advocates=two, tasks=tasks) == []


def test_the_manifest_freezes_the_settings_the_advocates_and_the_default_prompts_text():
    study = make_protocol_study(conditions=(("debate", {"word_limit": 120}), ("unaided", {})))
    debate = next(c for c in study.manifest["conditions"] if c["kind"] == "debate")
    assert debate["protocol"]["word_limit"] == 120 and debate["protocol"]["rounds"] == 3
    assert [a["position"] for a in debate["advocates"]] == [0, 1]
    assert debate["advocates"][0]["system_prompt"] == DEBATE and debate["advocates"][0]["default_prompt"] is True
    assert (
        debate["advocates"][0]["endpoint"]["kind"] == "simulated" and "token" not in debate["advocates"][0]["endpoint"]
    )
    unaided = next(c for c in study.manifest["conditions"] if c["kind"] == "unaided")
    assert "protocol" not in unaided


def test_clone_copies_the_advocates():
    study = make_protocol_study(conditions=(("debate", {}),), launch=False)
    copy = study_clone(study=study, slug="copy")
    assert list(Advocate.objects.filter(condition__study=copy).values_list("position", flat=True)) == [0, 1]


# --- Static transcripts ----------------------------------------------------------------------------------------


def test_a_static_condition_cannot_launch_before_self_play_wrote_its_transcripts():
    study = make_protocol_study(conditions=(("debate", {"transcripts": "static"}),), n_items=3, launch=False)
    with pytest.raises(StudyDesignError, match="3 of its 3 items have none"):
        study_launch(study=study)


def test_after_self_play_every_judge_of_an_item_reads_the_same_frozen_transcript():
    study = make_protocol_study(conditions=(("debate", {"transcripts": "static"}),), n_items=3)
    shared = Transcript.objects.filter(study=study, shared=True)
    assert shared.count() == 3 and all(t.frozen_at and t.status == "complete" and t.content_hash for t in shared)
    first, second = join(study, "one"), join(study, "two")
    by_item = lambda p: {t.item_id: t.transcript_id for t in protocol_trials(p)}  # noqa: E731
    assert by_item(first) == by_item(second) and set(by_item(first).values()) == set(
        shared.values_list("pk", flat=True)
    )
    frozen = study.manifest["transcripts"][str(shared[0].condition_id)]
    assert {int(i): v["transcript_id"] for i, v in frozen.items()} == {t.item_id: t.pk for t in shared}
    assert all(v["content_hash"] == Transcript.objects.get(pk=v["transcript_id"]).content_hash for v in frozen.values())


def test_changing_the_settings_after_self_play_asks_for_new_transcripts():
    study = make_protocol_study(conditions=(("debate", {"transcripts": "static"}),), n_items=2, launch=False)
    from oversight.assistant.selfplay import selfplay_request, selfplay_run

    selfplay_run(job_id=selfplay_request(study=study).pk)
    Condition.objects.filter(study=study).update(protocol={"transcripts": "static", "rounds": 2})
    with pytest.raises(StudyDesignError, match="2 of its 2 items have none made under its current settings"):
        study_launch(study=study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_static_debates_show_the_correct_answer_first_on_half_of_the_items():
    study = make_protocol_study(conditions=(("debate", {"transcripts": "static"}),), n_items=7)
    first = [t.options[0] == t.item.gold_index for t in Transcript.objects.filter(study=study).select_related("item")]
    assert sorted(Counter(first).values()) == [3, 4]


# --- Per-trial transcripts -----------------------------------------------------------------------------------


def test_each_judge_gets_their_own_transcript_of_a_live_condition_with_the_order_alternating():
    study = make_protocol_study(conditions=(("debate", {}),), n_items=6)
    judges = [join(study, f"j{i}") for i in range(4)]
    seen = set()
    for judge in judges:
        trials = sorted(protocol_trials(judge), key=lambda t: t.position)
        assert all(not t.transcript.shared and t.transcript.status == "pending" for t in trials)
        gold_first = [t.transcript.options[0] == t.item.gold_index for t in trials]
        assert gold_first.count(True) == 3  # alternating along the judge's own sequence
        assert all(a != b for a, b in zip(gold_first, gold_first[1:], strict=False))
        assert all(t.transcript.argues == [0, 1] and t.transcript.speakers == [0, 1] for t in trials)
        seen |= {t.transcript_id for t in trials}
    assert len(seen) == 24


def test_the_two_answers_are_the_gold_one_and_the_annotators_best_distractor():
    bank = importers.import_quality(path=DEMO, bank_name="Demo QuALITY").bank
    # Every item of the bank, so the one whose annotators tie is drawn.
    study = make_protocol_study(conditions=(("consultancy", {}),), n_items=bank.items.count(), launch=False)
    Task.objects.filter(study=study).update(bank=bank)
    study = study_launch(study=study)
    rules = {}
    for trial in protocol_trials(join(study, "q")):
        transcript, item = trial.transcript, trial.item
        assert item.gold_index in transcript.options and len(set(transcript.options)) == 2
        rules[item.external_id] = (transcript.options, transcript.distractor_rule)
    gold, rule = rules["DEMO-0001_SET1_4"][0], rules["DEMO-0001_SET1_4"][1]
    assert set(gold) == {2, 1} and rule == "validation, tie: speed_validation"


@pytest.mark.parametrize(("p", "honest"), [(1.0, True), (0.0, False)])
def test_the_consultant_argues_for_the_gold_answer_with_the_configured_probability(p, honest):
    study = make_protocol_study(conditions=(("consultancy", {"consultant_correct_p": p}),), n_items=5)
    for trial in protocol_trials(join(study, "c")):
        t = trial.transcript
        assert (t.options[t.argues[0]] == trial.item.gold_index) is honest


def test_at_one_half_about_half_of_the_consultants_are_honest_and_the_draw_is_seeded():
    study = make_protocol_study(conditions=(("consultancy", {}),), n_items=10)
    honest = []
    for i in range(8):
        for trial in protocol_trials(join(study, f"c{i}")):
            t = trial.transcript
            honest.append(t.options[t.argues[0]] == trial.item.gold_index)
            assert t.seed != 0
    assert 25 <= sum(honest) <= 55  # 80 draws at p = 0.5: outside this range has probability < 0.2%


def test_open_protocols_and_evidence_start_with_nobody_assigned():
    study = make_protocol_study(conditions=(("open_consultancy", {}), ("open_debate", {}), ("evidence_only", {})))
    transcripts = [t.transcript for t in protocol_trials(join(study, "o"))]
    assert {(t.protocol, tuple(t.argues)) for t in transcripts} == {
        ("open_consultancy", ()),
        ("open_debate", ()),
        ("evidence_only", ()),
    }


def test_practice_and_unaided_trials_show_no_transcript():
    study = make_protocol_study(conditions=(("debate", {}), ("unaided", {})), n_items=2, launch=False)
    pbank = make_bank(name="practice", n=2)
    Task.objects.create(study=study, bank=pbank, name="Practice", role=Task.Role.PRACTICE, sample_size=2, position=3)
    study = prepare_and_launch(study)
    participant = join(study, "p")
    kinds = Counter((t.role, t.condition.kind, t.transcript_id is not None) for t in participant.trials.all())
    assert kinds[("scored", "debate", True)] == 2 and kinds[("scored", "unaided", False)] == 2
    assert kinds[("practice", "debate", False)] == 2


def test_a_protocol_judge_can_only_choose_one_of_the_two_answers_shown():
    from oversight.core.services.trials import AnswerError, parse_answer, trial_show

    study = make_protocol_study(conditions=(("debate", {}),), n_items=1)
    trial = trial_show(trial=protocol_trials(join(study, "a"))[0])
    shown = trial.transcript.options
    hidden = next(i for i in range(4) if i not in shown)
    assert (
        parse_answer(trial=trial, data={"choice": shown[1], "confidence": "80"}, require_choice=True).choice == shown[1]
    )
    with pytest.raises(AnswerError, match="does not exist"):
        parse_answer(trial=trial, data={"choice": hidden, "confidence": "80"}, require_choice=True)


def test_a_protocol_judges_probabilities_are_over_the_two_answers_shown():
    from oversight.core.services.trials import AnswerError, parse_answer, trial_show

    study = make_protocol_study(conditions=(("debate", {}),), n_items=1, confidence_format="distribution")
    trial = trial_show(trial=protocol_trials(join(study, "d"))[0])
    first, second = trial.transcript.options
    data = {"choice": second, f"p{first}": "30", f"p{second}": "70"}
    answer = parse_answer(trial=trial, data=data, require_choice=True)
    assert (answer.choice, answer.confidence) == (second, 70.0)
    hidden = next(i for i in range(4) if i not in (first, second))
    with pytest.raises(AnswerError, match="Only the two answers shown"):
        parse_answer(trial=trial, data={"choice": first, f"p{first}": "30", f"p{hidden}": "70"}, require_choice=True)
