from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "oversight.realtime"
    label = "realtime"
