from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Running the platform: health and readiness probes, Prometheus metrics, JSON logs, the embedded sweeper."""

    name = "oversight.ops"
    label = "ops"
