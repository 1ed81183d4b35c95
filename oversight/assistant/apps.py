from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "oversight.assistant"
    label = "assistant"
