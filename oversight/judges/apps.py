from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "oversight.judges"
    label = "judges"
    verbose_name = "Model judges"
