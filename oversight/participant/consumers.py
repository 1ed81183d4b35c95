"""A participant's chat for one trial, at /ws/chat/<token>/<position>/: read the frame, ask the assistant's chat
service (assistant.chat), relay what the trial's group publishes."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from oversight.assistant.chat import chat_act, chat_resume, chat_trial
from oversight.assistant.services import ChatRejected, chat_group
from oversight.realtime.relay import RelayMixin

MAX_TEXT_CHARS = 100_000  # far above any condition's message cap: only bounds what a script can make us handle
MAX_CLIENT_ID_CHARS = 64


class ChatConsumer(RelayMixin, AsyncJsonWebsocketConsumer):
    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        self.trial = await chat_trial(token=kwargs["token"], position=int(kwargs["position"]))
        if self.trial is None:
            await self.close(code=4404)
            return
        self.group = chat_group(self.trial.pk)
        # Join before the page asks for the history, so no frame falls between the snapshot and the live stream.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "trial", None) is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        frame = content if isinstance(content, dict) else {}
        try:
            if frame.get("type") == "hello":
                await self.send_json(await chat_resume(trial=self.trial, reconnect=bool(frame.get("reconnect"))))
            else:
                await chat_act(
                    trial_id=self.trial.pk,
                    action=frame.get("type"),
                    text=str(frame.get("text", ""))[:MAX_TEXT_CHARS],
                    client_id=str(frame.get("client_id", ""))[:MAX_CLIENT_ID_CHARS],
                )
        except ChatRejected as exc:
            await self.send_json({"type": "error", "message": str(exc)})

    async def chat_message(self, event):
        await self.send_json({"type": "message", "message": event["message"]})

    async def chat_delta(self, event):
        await self.send_json({"type": "delta", "id": event["id"], "offset": event["offset"], "text": event["text"]})
