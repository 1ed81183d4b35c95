from django.contrib import admin
from django.db.models import Count

from oversight.admin_access import ReadOnlyUnlessSuperuser

from .models import Bank, Item, Passage


@admin.register(Bank)
class BankAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["name", "format", "item_count", "passage_count", "updated_at"]
    list_filter = ["format"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        # distinct=True: the two joins multiply each other's rows otherwise.
        return (
            super()
            .get_queryset(request)
            .annotate(item_count=Count("items", distinct=True), passage_count=Count("passages", distinct=True))
        )

    @admin.display(ordering="item_count", description="items")
    def item_count(self, bank):
        return bank.item_count

    @admin.display(ordering="passage_count", description="passages")
    def passage_count(self, bank):
        return bank.passage_count


@admin.register(Passage)
class PassageAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["external_id", "title", "author", "bank"]
    list_filter = ["bank"]
    search_fields = ["external_id", "title", "author"]
    list_select_related = ["bank"]
    readonly_fields = ["content_hash"]


@admin.register(Item)
class ItemAdmin(ReadOnlyUnlessSuperuser, admin.ModelAdmin):
    list_display = ["external_id", "bank", "split", "subject", "gold_letter", "difficult"]
    list_filter = ["bank", "split", "difficult"]
    search_fields = ["external_id", "text", "subject"]
    list_select_related = ["bank"]
    # A select box over every passage of every bank would load all of their texts.
    raw_id_fields = ["passage"]
    readonly_fields = ["content_hash", "created_at", "updated_at"]
    show_full_result_count = False  # COUNT(*) over a text search of 15k+ items on each page load

    @admin.display(description="gold")
    def gold_letter(self, item):
        return item.gold_letter
