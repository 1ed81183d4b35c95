"""The Django admin: raw data for superusers; read-only for everyone else (the console is where work happens)."""

from django.contrib import admin

from oversight.admin_access import ReadOnlyUnlessSuperuser
from oversight.core.models import (
    Collaborator,
    Event,
    Exclusion,
    Job,
    ModelEndpoint,
    Participant,
    Study,
    StudyLogEntry,
    Task,
    Trial,
)


@admin.register(Study)
class StudyAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["slug", "title", "status", "owner", "launched_at"]
    list_filter = ["status"]
    search_fields = ["slug", "title"]


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["pk", "study", "status", "is_pilot", "created_at", "completed_at"]
    list_filter = ["status", "is_pilot", "study"]
    # The external recruitment id is personal data: searchable by superusers only through the admin.
    exclude = ["token"]


@admin.register(Trial)
class TrialAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["pk", "participant", "position", "status", "choice", "confidence", "correct", "submit_kind"]
    list_filter = ["status", "submit_kind", "role"]
    raw_id_fields = ["participant", "item"]


@admin.register(Event)
class EventAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["at", "participant", "trial", "kind"]
    list_filter = ["kind"]
    raw_id_fields = ["participant", "trial"]


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "model_label"]
    # Tokens are write-only (set in the console): never shown, not even read-only to staff.
    exclude = ["token"]


@admin.register(StudyLogEntry)
class StudyLogEntryAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["at", "study", "actor_name", "action", "summary"]
    list_filter = ["action"]

    # Append-only: not even a superuser rewrites history (deleting the study deletes its log).
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


for model in (Task, Collaborator, Exclusion, Job):
    admin.site.register(model, type(f"{model.__name__}Admin", (ReadOnlyUnlessSuperuser, admin.ModelAdmin), {}))
