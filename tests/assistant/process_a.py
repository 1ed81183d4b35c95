"""Run as a separate process by test_cross_process: start a reply, drop the socket, keep generating (and with
`hold`, stay alive afterwards until killed)."""

import asyncio
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
django.setup()

from channels.routing import URLRouter  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402

from oversight.assistant import generation  # noqa: E402
from oversight.realtime.routing import websocket_urlpatterns  # noqa: E402


async def main(token: str, position: int, hold: bool = False) -> None:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/chat/{token}/{position}/")
    await ws.connect()
    await ws.send_json_to({"type": "hello"})
    await ws.receive_json_from(timeout=10)
    await ws.send_json_to({"type": "send", "text": "Tell me everything."})
    deltas = 0
    while deltas < 3:
        frame = await ws.receive_json_from(timeout=10)
        deltas += frame["type"] == "delta"
    await ws.disconnect()
    print("DETACHED", flush=True)
    if hold:  # the test kills this process mid-reply
        await asyncio.Event().wait()
    while generation._running:  # the reply outlives the socket that asked for it
        await asyncio.sleep(0.05)
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), hold=sys.argv[3:] == ["hold"]))
