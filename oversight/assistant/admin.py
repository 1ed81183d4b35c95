from django.contrib import admin

from oversight.admin_access import ReadOnlyUnlessSuperuser
from oversight.assistant.models import ChatMessage


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["pk", "trial", "seq", "role", "status", "model_id", "ttft_ms", "error_kind", "created_at"]
    list_filter = ["role", "status", "error_kind"]
    raw_id_fields = ["trial", "reply_to"]
