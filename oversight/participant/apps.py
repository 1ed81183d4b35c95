from django.apps import AppConfig


class ParticipantConfig(AppConfig):
    name = "oversight.participant"
    label = "participant"
