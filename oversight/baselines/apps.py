from django.apps import AppConfig


class BaselinesConfig(AppConfig):
    name = "oversight.baselines"
    label = "baselines"
    verbose_name = "Model-alone baselines"
