# Websocket routes; the participant chat and the researcher monitor register here.
websocket_urlpatterns: list = []
