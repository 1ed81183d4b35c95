from django.contrib.auth import views as auth_views
from django.urls import path

from oversight.console import (
    views,
    views_banks,
    views_baselines,
    views_design,
    views_endpoints,
    views_export,
    views_judges,
    views_report,
    views_run,
)
from oversight.console.auth import ThrottledLoginView

app_name = "console"

urlpatterns = [
    path("", views.study_list, name="studies"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("studies/<slug:slug>/", views.study_detail, name="study"),
    path("studies/<slug:slug>/manifest.json", views.study_manifest, name="manifest"),
    path("studies/<slug:slug>/launch", views.study_launch_view, name="launch"),
    path("studies/<slug:slug>/close", views.study_close_view, name="close"),
    path("studies/<slug:slug>/log/", views.study_log, name="log"),
    # design, banks, endpoints
    path("studies/new", views_design.study_create, name="study_create"),
    path("studies/<slug:slug>/design", views_design.study_design, name="design"),
    path("studies/<slug:slug>/preview", views_design.study_preview, name="preview"),
    path("studies/<slug:slug>/clone", views_design.study_clone_view, name="clone"),
    path("studies/<slug:slug>/recruitment", views_design.study_recruitment, name="recruitment"),
    path("studies/<slug:slug>/tasks/new", views_design.task_create, name="task_create"),
    path("studies/<slug:slug>/tasks/<int:pk>", views_design.task_edit, name="task_edit"),
    path("studies/<slug:slug>/tasks/<int:pk>/delete", views_design.task_delete, name="task_delete"),
    path("studies/<slug:slug>/conditions/new", views_design.condition_create, name="condition_create"),
    path("studies/<slug:slug>/conditions/<int:pk>", views_design.condition_edit, name="condition_edit"),
    path("studies/<slug:slug>/conditions/<int:pk>/delete", views_design.condition_delete, name="condition_delete"),
    path("studies/<slug:slug>/selfplay", views_design.study_selfplay, name="selfplay"),
    path("studies/<slug:slug>/collaborators", views_design.collaborators, name="collaborators"),
    path(
        "studies/<slug:slug>/collaborators/<int:pk>/remove",
        views_design.collaborator_remove,
        name="collaborator_remove",
    ),
    path("banks/", views_banks.bank_list, name="banks"),
    path("banks/upload", views_banks.bank_upload, name="bank_upload"),
    path("banks/<int:pk>/", views_banks.bank_detail, name="bank"),
    path("jobs/<int:pk>/", views_banks.job_detail, name="job"),
    path("endpoints/", views_endpoints.endpoint_list, name="endpoints"),
    path("endpoints/new", views_endpoints.endpoint_create, name="endpoint_create"),
    path("endpoints/<int:pk>/edit", views_endpoints.endpoint_edit, name="endpoint_edit"),
    path("endpoints/<int:pk>/test", views_endpoints.endpoint_test, name="endpoint_test"),
    # end design, banks, endpoints
    # running a study: monitor, transcripts, exclusions, pilot
    path("studies/<slug:slug>/monitor/", views_run.monitor, name="monitor"),
    path("studies/<slug:slug>/participants/<int:participant_id>/", views_run.transcript, name="transcript"),
    path("studies/<slug:slug>/participants/<int:participant_id>/exclude", views_run.exclude, name="exclude"),
    path("studies/<slug:slug>/exclusions/", views_run.exclusions, name="exclusions"),
    path("studies/<slug:slug>/exclusions/apply", views_run.apply_rule, name="apply_rule"),
    path(
        "studies/<slug:slug>/exclusions/<int:exclusion_id>/revoke", views_run.revoke_exclusion, name="revoke_exclusion"
    ),
    path("studies/<slug:slug>/pilot", views_run.pilot, name="pilot"),
    # report
    path("studies/<slug:slug>/report/", views_report.report, name="report"),
    path("studies/<slug:slug>/report/items/", views_report.report_items, name="report_items"),
    path("studies/<slug:slug>/report/<slug:name>.svg", views_report.report_plot, name="report_plot"),
    path("studies/<slug:slug>/baselines/", views_baselines.baselines, name="baselines"),
    path("studies/<slug:slug>/baselines/<int:run_id>/cancel", views_baselines.baseline_cancel, name="baseline_cancel"),
    path("studies/<slug:slug>/judges/", views_judges.judges, name="judges"),
    path("studies/<slug:slug>/judges/<int:run_id>/cancel", views_judges.judge_cancel, name="judge_cancel"),
    # end report
    # exports and payments
    path("studies/<slug:slug>/export/", views_export.export_page, name="export"),
    path("studies/<slug:slug>/export/<int:pk>/download", views_export.export_download, name="export_download"),
    path(
        "studies/<slug:slug>/export/prolific-bonus.csv",
        views_export.payments_file,
        {"which": "bonus"},
        name="export_bonus",
    ),
    path(
        "studies/<slug:slug>/export/statuses.csv",
        views_export.payments_file,
        {"which": "statuses"},
        name="export_statuses",
    ),
    # end exports and payments
]
