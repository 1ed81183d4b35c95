from django.contrib import admin
from django.urls import include, path

from oversight.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("s/", include("oversight.participant.urls")),
    path("console/", include("oversight.console.urls")),
]
