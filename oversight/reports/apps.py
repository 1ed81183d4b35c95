from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "oversight.reports"
    label = "reports"
    verbose_name = "Sandwich reports"
