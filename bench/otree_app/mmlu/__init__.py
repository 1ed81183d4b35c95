"""Twenty multiple-choice items, one per round, answer plus confidence, 300 s per item (bench only)."""

import json
from pathlib import Path

from otree.api import BaseConstants, BaseGroup, BasePlayer, BaseSubsession, Page, models, widgets

ITEMS = json.loads((Path(__file__).parent / "items.json").read_text())
LIKERT = [
    [25, "Guessing (25%)"],
    [42, "Unsure (42%)"],
    [60, "Somewhat sure (60%)"],
    [80, "Fairly sure (80%)"],
    [100, "Certain (100%)"],
]


class C(BaseConstants):
    NAME_IN_URL = "mmlu"
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 20


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    choice = models.IntegerField(widget=widgets.RadioSelect, label="Your answer")
    confidence = models.IntegerField(choices=LIKERT, widget=widgets.RadioSelect, label="How sure are you?")
    correct = models.BooleanField()


def item(player: Player) -> dict:
    return ITEMS[(player.round_number - 1) % len(ITEMS)]


def choice_choices(player: Player):
    return [[i, f"{'ABCD'[i]}. {text}"] for i, text in enumerate(item(player)["options"])]


class Question(Page):
    form_model = "player"
    form_fields = ["choice", "confidence"]
    timeout_seconds = 300

    @staticmethod
    def vars_for_template(player: Player):
        return dict(question=item(player)["question"], number=player.round_number, total=C.NUM_ROUNDS)

    @staticmethod
    def before_next_page(player: Player, timeout_happened):
        if player.field_maybe_none("choice") is not None:
            player.correct = player.choice == item(player)["answer"]


class Done(Page):
    @staticmethod
    def is_displayed(player: Player):
        return player.round_number == C.NUM_ROUNDS


page_sequence = [Question, Done]
