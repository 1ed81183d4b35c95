from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "oversight.exports"
    label = "exports"
    verbose_name = "Data exports"
