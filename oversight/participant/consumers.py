"""A participant's sockets: the chat of an assisted trial, and a protocol trial's live transcript for its judge.

The chat for one trial, at /ws/chat/<token>/<position>/: read the frame, ask the assistant's chat
service (assistant.chat), relay what the trial's group publishes.

Whatever a script sends (binary, not JSON, not an object, a megabyte of text, NUL characters) is answered with
an error frame and the socket stays open: an exception here would close it with 1011 and take the page's
chat down with it.
"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string

from oversight.assistant import pages
from oversight.assistant.chat import chat_act, chat_resume, chat_trial
from oversight.assistant.debate import transcript_group
from oversight.assistant.judging import judge_act, judge_resume, judge_trial
from oversight.assistant.services import ChatRejected
from oversight.realtime.relay import RelayMixin

MAX_CLIENT_ID_CHARS = 64
UNREADABLE = "The chat could not read that message."


def state_text(state: dict) -> str:
    """Where the debate is, in the judge's words: the same partial the page is rendered with."""
    return render_to_string("participant/_debate_state.html", {"state": state}).strip()


class ReadsFrames:
    """Whatever arrives is answered, never raised: an exception would close the socket with 1011."""

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


class ChatConsumer(ReadsFrames, RelayMixin, AsyncJsonWebsocketConsumer):
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


class JudgeConsumer(ReadsFrames, RelayMixin, AsyncJsonWebsocketConsumer):
    """A protocol trial's judge, at /ws/judge/<token>/<position>/: the page says hello (the history, and the
    transcript's next step starts), asks a question, goes on without one or ends the debate
    (assistant.judging); the advocates' turns come back as the trial's group publishes them. Only a per-trial
    (live) transcript has a socket: a static one is complete before launch and its page is read as rendered.

    Frames to the page: `history` (the judge's view: question, two answers, turns, state), `message` (a turn),
    `delta` (a streaming turn's public text from an offset), `state` (rounds, whether the judge may ask or end),
    `error` (a refused action, for this page only)."""

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        self.trial = await judge_trial(token=kwargs["token"], position=int(kwargs["position"]))
        if self.trial is None or self.trial.transcript.shared:
            await self.close(code=4404)
            return
        self.group = transcript_group(transcript_id=self.trial.transcript_id, trial_id=self.trial.pk)
        # Joined before the page asks for the history, so no frame falls between the snapshot and the stream.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None) is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        frame = content if isinstance(content, dict) else {}
        text = frame.get("text", "")
        try:
            if frame.get("type") == "hello":
                history = await judge_resume(trial=self.trial, reconnect=bool(frame.get("reconnect")))
                await self.send_json({**history, "state_text": state_text(history["transcript"]["state"])})
                return
            if not isinstance(text, str):
                raise ChatRejected(UNREADABLE)
            await judge_act(
                trial_id=self.trial.pk,
                transcript_id=self.trial.transcript_id,
                action=frame.get("type"),
                text=text,
                client_id=str(frame.get("client_id", ""))[:MAX_CLIENT_ID_CHARS],
            )
        except ChatRejected as exc:
            await self.send_json({"type": "error", "message": str(exc)})

    async def chat_message(self, event):
        await self.send_json({"type": "message", "message": event["message"]})

    async def chat_delta(self, event):
        await self.send_json({"type": "delta", "id": event["id"], "offset": event["offset"], "text": event["text"]})

    async def debate_state(self, event):
        await self.send_json({"type": "state", "state": event["state"], "text": state_text(event["state"])})
