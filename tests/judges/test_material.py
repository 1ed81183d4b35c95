"""What a model judge reads of an item page: the question, every option under its letter, the story, and for an
assisted trial the chat as the page shows it; never the gold answer."""

import pytest

from oversight.assistant.models import ChatMessage
from oversight.core.services.participants import participant_join
from oversight.judges.material import material_for
from tests.factories import STORY, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def assisted_trial():
    study = make_study(slug="mat", passage=STORY)
    person = participant_join(study=study, params={}, consent=True)
    trial = person.trials.get(condition__kind="assisted", position=0)
    said = [
        ("user", "What is the ration?"),
        ("assistant", "Two liters, I think."),
        ("reset", ""),
        ("user", "Who was hidden in the hold?"),
        ("assistant", "A fifth passenger, a stowaway."),
    ]
    for seq, (role, content) in enumerate(said, start=1):
        ChatMessage.objects.create(trial=trial, seq=seq, role=role, content=content)
    return trial


def test_an_assisted_item_reads_as_its_page_question_options_story_and_the_chat_since_the_last_reset(assisted_trial):
    material = material_for(assisted_trial)
    item = assisted_trial.item
    assert material.text.startswith(f"Question: {item.text}\n\nAnswers:\nA: {item.options[0]}\nB: {item.options[1]}")
    assert f"<story>\n{STORY.strip()}\n</story>" in material.text
    assert material.text.endswith(
        "<chat>\nParticipant: Who was hidden in the hold?\n\nAssistant: A fifth passenger, a stowaway.\n</chat>"
    )
    assert "Two liters" not in material.text  # reset away, as on the page
    assert material.letters == "ABCD" and material.options == (0, 1, 2, 3)


def test_the_gold_answer_changes_nothing_the_judge_reads(assisted_trial):
    before = material_for(assisted_trial).text
    item = assisted_trial.item
    item.gold_index = (item.gold_index + 1) % 4
    item.save(update_fields=["gold_index"])
    assert material_for(assisted_trial).text == before
