from django.apps import AppConfig


class BanksConfig(AppConfig):
    name = "oversight.banks"
    label = "banks"
