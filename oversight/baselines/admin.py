from django.contrib import admin

from .models import BaselineResult, BaselineRun, PromptTemplate


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "method", "chat", "short_hash", "created_at"]
    list_filter = ["method", "chat"]
    search_fields = ["name", "text"]
    readonly_fields = ["content_hash", "created_at"]

    @admin.display(description="hash")
    def short_hash(self, template):
        return template.content_hash[:12]


@admin.register(BaselineRun)
class BaselineRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "method",
        "endpoint",
        "bank",
        "split",
        "study",
        "status",
        "done",
        "total",
        "errors",
        "created_at",
    ]
    list_filter = ["status", "method", "endpoint"]
    list_select_related = ["endpoint", "bank", "study"]
    readonly_fields = [
        "template_hash",
        "total",
        "done",
        "errors",
        "progress",
        "summary",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "claimed_by",
        "job",
    ]


@admin.register(BaselineResult)
class BaselineResultAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "item", "predicted", "correct", "error_kind", "latency_ms"]
    list_filter = ["error_kind", "correct"]
    raw_id_fields = ["run", "item"]
    list_select_related = ["item"]
