from django.urls import path

from oversight.console.consumers import MonitorConsumer
from oversight.participant.consumers import ChatConsumer, JudgeConsumer

websocket_urlpatterns = [
    path("ws/chat/<str:token>/<int:position>/", ChatConsumer.as_asgi()),
    path("ws/judge/<str:token>/<int:position>/", JudgeConsumer.as_asgi()),
    path("ws/monitor/<slug:slug>/", MonitorConsumer.as_asgi()),
]
