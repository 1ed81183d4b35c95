from django.urls import path

from oversight.realtime import consumers

websocket_urlpatterns = [
    path("ws/chat/<str:token>/<int:position>/", consumers.ChatConsumer.as_asgi()),
    path("ws/monitor/<slug:slug>/", consumers.MonitorConsumer.as_asgi()),
]
