"""A protocol condition's settings: defaults per kind, every value checked, and the rules between them."""

import pytest

from oversight.core import protocols
from oversight.core.protocols import ProtocolSettings, ProtocolSettingsError


def test_the_defaults_are_khan_et_al_s_human_judge_conditions():
    s = ProtocolSettings.for_kind("debate", {})
    assert (s.rounds, s.turn_order, s.word_limit, s.quote_budget) == (3, "simultaneous", 150, 50)
    assert s.judge_sees_story is False and s.judge_questions is False and s.consultant_correct_p == 0.5
    assert s.transcripts == "live" and s.distractor == "validation"


def test_each_kind_fills_its_own_defaults_and_a_stored_value_wins():
    assert ProtocolSettings.for_kind("interactive_debate").judge_questions is True
    assert ProtocolSettings.for_kind("evidence_only").rounds == 1
    assert ProtocolSettings.for_kind("evidence_only", {"rounds": 2}).rounds == 2
    assert ProtocolSettings.for_kind("consultancy", {"consultant_correct_p": 0.25}).consultant_correct_p == 0.25


def test_as_dict_holds_every_setting_so_the_manifest_freezes_them_all():
    settings = ProtocolSettings.for_kind("consultancy", {"word_limit": 100})
    frozen = settings.as_dict()
    assert frozen["word_limit"] == 100 and set(frozen) == {f for f in ProtocolSettings.__dataclass_fields__}
    assert ProtocolSettings.for_kind("consultancy", frozen) == settings


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("debate", {"rounds": 0}, "“rounds” must be between 1 and 10"),
        ("debate", {"rounds": 2.5}, "whole number"),
        ("debate", {"turn_order": "alternating"}, "“turn_order” must be one of simultaneous, sequential"),
        ("debate", {"word_limit": 5}, "“word_limit” must be between 10"),
        ("debate", {"quote_budget": -1}, "“quote_budget” must be between 0"),
        ("consultancy", {"consultant_correct_p": 1.5}, "between 0 and 1"),
        ("consultancy", {"consultant_correct_p": True}, "must be a number"),
        ("debate", {"judge_sees_story": "no"}, "true or false"),
        ("debate", {"distractor": "random"}, "“distractor” must be one of"),
        ("debate", {"sycophany": 0.3}, "Unknown protocol setting(s) sycophany"),
        ("debate", {"judge_questions": True, "transcripts": "static"}, "cannot answer the judge's questions"),
        ("interactive_debate", {"judge_questions": False}, "An interactive debate needs the judge's questions on"),
        ("unaided", {}, "is not a protocol"),
    ],
)
def test_it_refuses_settings_a_protocol_cannot_run_with(kind, data, message):
    with pytest.raises(ProtocolSettingsError) as caught:
        ProtocolSettings.for_kind(kind, data)
    assert message in str(caught.value)


def test_the_judge_may_question_after_every_nth_round_but_not_after_the_last():
    s = ProtocolSettings.for_kind("interactive_debate", {"rounds": 4, "question_every": 2})
    assert [s.question_after(r) for r in (1, 2, 3, 4)] == [False, True, False, False]
    assert not ProtocolSettings.for_kind("debate").question_after(1)


def test_debates_have_two_advocates_and_the_others_one():
    assert {k: protocols.advocates_needed(k) for k in protocols.PROTOCOL_KINDS} == {
        "consultancy": 1,
        "debate": 2,
        "open_consultancy": 1,
        "open_debate": 2,
        "interactive_debate": 2,
        "evidence_only": 1,
    }


def test_the_settings_hash_changes_with_any_setting_or_advocate():
    s = ProtocolSettings.for_kind("debate")
    base = protocols.settings_hash("debate", s, [{"position": 0}])
    assert base == protocols.settings_hash("debate", ProtocolSettings.for_kind("debate", {}), [{"position": 0}])
    assert base != protocols.settings_hash(
        "debate", ProtocolSettings.for_kind("debate", {"rounds": 2}), [{"position": 0}]
    )
    assert base != protocols.settings_hash("debate", s, [{"position": 0, "system_prompt": "x"}])
