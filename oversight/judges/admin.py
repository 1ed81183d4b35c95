from django.contrib import admin

from oversight.admin_access import ReadOnlyUnlessSuperuser

from .models import JudgeRun, JudgeVerdict


@admin.register(JudgeRun)
class JudgeRunAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["id", "study", "condition", "endpoint", "mode", "answer", "status", "done", "total", "errors"]
    list_filter = ["mode", "answer", "status"]
    raw_id_fields = ["study", "condition", "endpoint", "created_by"]


@admin.register(JudgeVerdict)
class JudgeVerdictAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["id", "run", "trial", "source_trial", "method"]
    list_filter = ["method"]
    raw_id_fields = ["run", "trial", "source_trial"]
