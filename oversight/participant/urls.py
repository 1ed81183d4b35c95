app_name = "participant"

urlpatterns: list = []
