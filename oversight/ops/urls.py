"""The operators' endpoints, at the site's root where probes and scrapers expect them."""

from django.urls import path

from oversight.ops import metrics, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),  # Prometheus text format; see oversight/ops/metrics.py
]
