from django.contrib import admin
from django.urls import include, path

from oversight.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("", include("oversight.ops.urls")),  # /healthz, /readyz, /metrics
    path("admin/", admin.site.urls),
    path("s/", include("oversight.participant.urls")),
    path("console/", include("oversight.console.urls")),
]
