"""Who may do what in the Django admin, for every app's admin: raw data for superusers, read-only for other staff
(the console is where work happens).

A project module rather than an app's, so that each admin can share it without importing an app above its own
layer (banks imports no other app).
"""


class ReadOnlyUnlessSuperuser:
    def has_add_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff
