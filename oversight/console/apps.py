from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "oversight.console"
    label = "console"
