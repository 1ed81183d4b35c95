from django.contrib.auth import views as auth_views
from django.urls import path

from oversight.console import views

app_name = "console"

urlpatterns = [
    path("", views.study_list, name="studies"),
    path("login/", auth_views.LoginView.as_view(template_name="console/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("studies/<slug:slug>/", views.study_detail, name="study"),
    path("studies/<slug:slug>/manifest.json", views.study_manifest, name="manifest"),
    path("studies/<slug:slug>/launch", views.study_launch_view, name="launch"),
    path("studies/<slug:slug>/close", views.study_close_view, name="close"),
]
