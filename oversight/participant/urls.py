from django.urls import path

from oversight.participant import views

app_name = "participant"

urlpatterns = [
    path("p/<str:token>/", views.next_step, name="next"),
    path("p/<str:token>/instructions", views.instructions, name="instructions"),
    path("p/<str:token>/check", views.check, name="check"),
    path("p/<str:token>/part/<int:number>", views.block, name="block"),
    path("p/<str:token>/item/<int:position>/", views.trial_page, name="trial"),
    path("p/<str:token>/item/<int:position>/select", views.trial_select_view, name="select"),
    path("p/<str:token>/item/<int:position>/state", views.trial_state, name="state"),
    path("p/<str:token>/item/<int:position>/submit", views.trial_submit_view, name="submit"),
    path("p/<str:token>/item/<int:position>/feedback", views.feedback, name="feedback"),
    path("p/<str:token>/event", views.page_event, name="event"),
    path("p/<str:token>/done", views.done, name="done"),
    path("<slug:slug>/", views.welcome, name="welcome"),
]
