from django.apps import AppConfig


class DevConfig(AppConfig):
    # An app only so that `manage.py run_bots` is found; it has no models.
    name = "oversight_dev"
    label = "oversight_dev"
    verbose_name = "oversight development tools"
