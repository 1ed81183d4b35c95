"""A participant's chat for one trial, at /ws/chat/<token>/<position>/: read the frame, ask the assistant's chat
service (assistant.chat), relay what the trial's group publishes.

Whatever a script sends (binary, not JSON, not an object, a megabyte of text, NUL characters) is answered with
an error frame and the socket stays open: an exception here would close it with 1011 and take the page's
chat down with it.
"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from oversight.assistant import pages
from oversight.assistant.chat import chat_act, chat_resume, chat_trial
from oversight.assistant.services import ChatRejected
from oversight.realtime.relay import RelayMixin

MAX_CLIENT_ID_CHARS = 64
UNREADABLE = "The chat could not read that message."


class ChatConsumer(RelayMixin, AsyncJsonWebsocketConsumer):
    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        self.trial = await chat_trial(token=kwargs["token"], position=int(kwargs["position"]))
        if self.trial is None:
            await self.close(code=4404)
            return
        self.group = pages.chat_group(self.trial.pk)
        # Join before the page asks for the history, so no frame falls between the snapshot and the live stream:
        # the group (frames from other processes), then this process's pages (frames generated here).
        await self.channel_layer.group_add(self.group, self.channel_name)
        await pages.join(self.trial.pk, self)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "trial", None) is not None:
            await pages.leave(self.trial.pk, self)
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def deliver(self, event):
        """A message or frame published in this process (assistant.pages): sent as if it came by the layer."""
        if event["type"] == "chat.delta":
            await self.chat_delta(event)
        else:
            await self.chat_message(event)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:  # a binary frame: the page never sends one
            await self.send_json({"type": "error", "message": UNREADABLE})
            return
        try:
            content = await self.decode_json(text_data)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            await self.send_json({"type": "error", "message": UNREADABLE})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        frame = content if isinstance(content, dict) else {}
        text = frame.get("text", "")
        try:
            if frame.get("type") == "hello":
                await self.send_json(
                    await chat_resume(trial=self.trial, reconnect=bool(frame.get("reconnect")), page=self)
                )
                return
            if not isinstance(text, str):
                raise ChatRejected(UNREADABLE)
            notice = await chat_act(
                trial_id=self.trial.pk,
                action=frame.get("type"),
                # The whole text: the service reports its real length if it is over the condition's cap.
                text=text,
                client_id=str(frame.get("client_id", ""))[:MAX_CLIENT_ID_CHARS],
            )
        except ChatRejected as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            return
        if notice:
            await self.send_json({"type": "notice", "message": notice})

    async def chat_message(self, event):
        await self.send_json({"type": "message", "message": event["message"]})

    async def chat_delta(self, event):
        await self.send_json({"type": "delta", "id": event["id"], "offset": event["offset"], "text": event["text"]})
