from django.contrib import admin
from django.urls import include, path

from oversight.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", include("oversight.core.metrics")),  # Prometheus text format; see oversight/core/metrics.py
    path("admin/", admin.site.urls),
    path("s/", include("oversight.participant.urls")),
    path("console/", include("oversight.console.urls")),
]
