from django.contrib.auth import views as auth_views
from django.urls import path

from oversight.console import views, views_run

app_name = "console"

urlpatterns = [
    path("", views.study_list, name="studies"),
    path("login/", auth_views.LoginView.as_view(template_name="console/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("studies/<slug:slug>/", views.study_detail, name="study"),
    path("studies/<slug:slug>/manifest.json", views.study_manifest, name="manifest"),
    path("studies/<slug:slug>/launch", views.study_launch_view, name="launch"),
    path("studies/<slug:slug>/close", views.study_close_view, name="close"),
    # running a study: monitor, transcripts, exclusions, pilot
    path("studies/<slug:slug>/monitor/", views_run.monitor, name="monitor"),
    path("studies/<slug:slug>/participants/<int:participant_id>/", views_run.transcript, name="transcript"),
    path("studies/<slug:slug>/participants/<int:participant_id>/exclude", views_run.exclude, name="exclude"),
    path("studies/<slug:slug>/exclusions/", views_run.exclusions, name="exclusions"),
    path("studies/<slug:slug>/exclusions/apply", views_run.apply_rule, name="apply_rule"),
    path("studies/<slug:slug>/exclusions/<int:exclusion_id>/revoke", views_run.revoke_exclusion,
         name="revoke_exclusion"),
    path("studies/<slug:slug>/pilot", views_run.pilot, name="pilot"),
]
