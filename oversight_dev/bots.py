"""Participant bots: simulated participants that drive the real HTTP interface of a running server.

Like oTree's bots, but over the network: each bot is an HTTP client with its own cookie jar that joins
through the public link with a Prolific id, consents, answers every item (selection first, then submit),
passes the feedback pages and checks the completion code at the end. Bots know the answers — they read
the gold option from the database by (participant token, position), the way oTree bots are written with
the answers — so they can answer at a chosen accuracy. The browser never knows the gold option.

On assisted items a bot also chats: it opens the trial's websocket as the page does, sends a few messages one
after another, rebuilds each streamed reply from its `delta` frames (by offset, as the page does) and checks
the result against the stored reply.

The same bots can also run in process, without a server (`run_bots_in_process`): the same decisions under the
same seeds, made through the service functions the participant views call — for synthetic studies far larger
than a test could drive over HTTP (tests/analysis/test_bot_study_coverage.py).

Entry points: `run_bots(BotConfig(...))` (a coroutine), `run_bots_in_process(BotConfig(...))` (sync) and
`check_run(...)` (sync, after either run); `manage.py run_bots` wraps them. See docs/bots.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import statistics
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from asgiref.sync import sync_to_async

try:  # huggingface_hub 2.x ships the client as `httpx2`; plain `httpx` where that is installed.
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the environment
    import httpx  # type: ignore[no-redef]

ATTENTION_CHECK_SUBJECT = "attention_check"
# Margin after a deadline before the bot comes back, so the server's clock has certainly passed it.
DEADLINE_MARGIN_S = 0.75

TRIAL_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/item/(?P<position>\d+)/$")
INTRO_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/(?:instructions|part/\d+)$")  # a page passed with its button
CHECK_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/check$")
FEEDBACK_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/item/(?P<position>\d+)/feedback$")
DONE_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/done$")
NEXT_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/$")
COMPLETION_CODE = re.compile(r'id="completion-code"[^>]*>\s*([^<]*?)\s*<')


# --- Configuration and results ------------------------------------------------------------------------


@dataclass(frozen=True)
class BotConfig:
    slug: str
    participants: int
    accuracy: float = 0.6  # P(gold) on items of a condition kind that `condition_accuracy` does not name
    seed: int = 0
    concurrency: int = 10
    base_url: str = "http://127.0.0.1:8000"
    timeout_rate: float = 0.05
    think_ms: float = 0.0
    request_timeout_s: float = 30.0
    messages_per_item: int = 1  # chat messages on each assisted item (0: the bots do not chat)
    reply_timeout_s: float = 60.0  # from sending a chat message to its final reply
    # P(gold) per condition kind ("unaided", "assisted"): a synthetic study with a known accuracy per condition.
    condition_accuracy: Mapping[str, float] = field(default_factory=dict)
    in_process: bool = False  # run by `run_bots_in_process` (no server): for the summary
    # As a browser with JavaScript: forms and links go through htmx, and a submit answers with the next page (one
    # round trip per answer). False: as a browser without it (POST → 303 → GET).
    javascript: bool = True

    def pid(self, i: int) -> str:
        return f"bot-{self.seed}-{i}"

    def accuracy_for(self, condition_kind: str) -> float:
        return self.condition_accuracy.get(condition_kind, self.accuracy)

    def accuracy_text(self) -> str:
        """`0.6`, or `0.6 (unaided 0.5, assisted 0.75)` with per-condition accuracies."""
        if not self.condition_accuracy:
            return f"{self.accuracy:g}"
        named = ", ".join(f"{kind} {value:g}" for kind, value in self.condition_accuracy.items())
        return f"{self.accuracy:g} ({named})"


def parse_accuracy(text: str, *, default: float = 0.6) -> tuple[float, dict[str, float]]:
    """`--accuracy`: `0.6` (every condition), `unaided=0.5,assisted=0.75` (per condition kind; others get
    `default`), or both, `0.6,assisted=0.8`. Raises ValueError with the reason."""
    from oversight.core.models import Condition

    kinds = Condition.Kind.values
    overall, per_kind, bare = default, {}, False
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ValueError(f"empty entry in {text!r}")
        kind, sep, value = part.rpartition("=")
        kind = kind.strip()
        if sep and kind not in kinds:
            raise ValueError(f"{kind!r} is not a condition kind (one of {', '.join(kinds)})")
        if (sep and kind in per_kind) or (not sep and bare):
            raise ValueError(f"{kind or 'the overall accuracy'} is given twice")
        try:
            x = float(value)
        except ValueError:
            raise ValueError(f"{value.strip()!r} is not a number") from None
        if not 0 <= x <= 1:
            raise ValueError(f"{value.strip()} is not between 0 and 1")
        if sep:
            per_kind[kind] = x
        else:
            overall, bare = x, True
    return overall, per_kind


@dataclass
class BotError:
    bot: int
    pid: str
    url: str
    message: str

    def __str__(self) -> str:
        return f"bot {self.bot} ({self.pid}): {self.message} [{self.url}]"


@dataclass
class Outcome:
    """What a bot did on one trial, for the consistency check to compare with the database."""

    position: int
    item_id: int
    choice: int
    confidence: float | None
    timed_out: bool
    intended_correct: bool


@dataclass
class ChatReply:
    """One chat message a bot sent and the reply it got, as the bot saw them over the websocket."""

    position: int
    item_id: int
    client_id: str
    text: str  # what the bot sent
    accepted: bool = False  # the server stored the message (its `message` frame came back)
    user_message_id: int | None = None
    message_id: int | None = None  # the assistant reply
    status: str = ""  # the reply's final status; "refused" (an `error` frame) or "no_reply" (timed out) otherwise
    error: str = ""
    ttft_s: float | None = None  # send → first delta frame with text, as the client sees it
    total_s: float | None = None  # send → the reply's final `message` frame
    received: str = ""  # the reply rebuilt from delta frames (offsets applied as the page does)
    stored_chars: int | None = None  # length of ChatMessage.content once final
    gaps: int = 0  # delta frames that started past the text the bot had: frames were lost
    lost_chars: int = 0  # characters skipped by gaps, plus stored characters the rebuilt text lacks

    @property
    def failed(self) -> bool:
        return self.status != "complete"

    @property
    def mismatched(self) -> bool:
        return self.stored_chars is not None and (self.lost_chars > 0 or self.stored_chars != len(self.received))


@dataclass
class BotResult:
    bot: int
    pid: str
    token: str = ""
    finished: bool = False
    code: str = ""
    resumed_finished: bool = False  # landed on the done page without answering: a rerun with the same seed
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[BotError] = field(default_factory=list)
    replies: list[ChatReply] = field(default_factory=list)

    @property
    def answers(self) -> int:
        return sum(not o.timed_out for o in self.outcomes)

    @property
    def timeouts(self) -> int:
        return sum(o.timed_out for o in self.outcomes)


@dataclass
class RunReport:
    config: BotConfig
    results: list[BotResult]
    wall_s: float
    latencies_s: list[float]

    @property
    def errors(self) -> list[BotError]:
        return [e for r in self.results for e in r.errors]

    @property
    def finished(self) -> int:
        return sum(r.finished for r in self.results)

    @property
    def answers(self) -> int:
        return sum(r.answers for r in self.results)

    @property
    def timeouts(self) -> int:
        return sum(r.timeouts for r in self.results)

    @property
    def replies(self) -> list[ChatReply]:
        return [c for r in self.results for c in r.replies]

    def chat_summary(self) -> dict:
        replies = self.replies
        ttft = [c.ttft_s for c in replies if c.ttft_s is not None]
        total = [c.total_s for c in replies if c.total_s is not None and not c.failed]
        return {
            "messages_per_item": self.config.messages_per_item,
            "replies": len(replies),
            "failed_replies": sum(c.failed for c in replies),
            "failed_by_status": dict(Counter(c.status for c in replies if c.failed)),
            "ttft_ms": {"p50": _pct_ms(ttft, 0.5), "p95": _pct_ms(ttft, 0.95), "max": _pct_ms(ttft, 1.0)},
            "reply_ms": {"p50": _pct_ms(total, 0.5), "p95": _pct_ms(total, 0.95), "max": _pct_ms(total, 1.0)},
            "chars": sum(len(c.received) for c in replies),
            "lost_chars": sum(c.lost_chars for c in replies),
            "gaps": sum(c.gaps for c in replies),
            "mismatched_replies": sum(c.mismatched for c in replies),
        }

    def summary(self) -> dict:
        lat = sorted(self.latencies_s)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

        committed = self.answers + self.timeouts
        return {
            "slug": self.config.slug,
            "base_url": self.config.base_url,
            "bots": len(self.results),
            "finished": self.finished,
            "resumed_finished": sum(r.resumed_finished for r in self.results),
            "answers": self.answers,
            "timeouts": self.timeouts,
            "errors": len(self.errors),
            "requests": len(lat),
            "latency_ms": {
                "p50": round(statistics.median(lat) * 1000, 1) if lat else None,
                "p95": pct(0.95),
                "max": round(lat[-1] * 1000, 1) if lat else None,
            },
            "wall_s": round(self.wall_s, 2),
            "answers_per_s": round(committed / self.wall_s, 2) if self.wall_s else None,
            "chat": self.chat_summary(),
        }


def _pct_ms(values: list[float], p: float) -> float | None:
    """The p-quantile (nearest rank, p=0.5 the median) of seconds, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    if p == 0.5:
        return round(statistics.median(ordered) * 1000, 1)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)


class BotFailure(Exception):
    """Stops one bot: a non-2xx/3xx response, an unexpected page, or a transport error."""

    def __init__(self, url: str, message: str):
        super().__init__(message)
        self.url = url
        self.message = message


# --- Reading pages ------------------------------------------------------------------------------------


@dataclass
class FormInput:
    name: str
    type: str
    value: str
    checked: bool
    attrs: dict


@dataclass
class Form:
    attrs: dict
    inputs: list[FormInput] = field(default_factory=list)

    def hidden(self) -> dict[str, str]:
        return {i.name: i.value for i in self.inputs if i.type == "hidden" and i.name}

    def values(self, name: str) -> list[str]:
        return [i.value for i in self.inputs if i.name == name]

    def input(self, name: str) -> FormInput | None:
        return next((i for i in self.inputs if i.name == name), None)


class PageParser(HTMLParser):
    """Forms with their inputs, and the href of every element with an id (enough for the participant pages)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.ids: dict[str, dict] = {}
        self._form: Form | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if "id" in a:
            self.ids[a["id"]] = {"tag": tag, **a}
        if tag == "form":
            self._form = Form(attrs=a)
            self.forms.append(self._form)
        elif tag in {"input", "button", "select", "textarea"} and self._form is not None:
            self._form.inputs.append(
                FormInput(
                    name=a.get("name", ""),
                    type=a.get("type", "text").lower(),
                    value=a.get("value", ""),
                    checked="checked" in a,
                    attrs=a,
                )
            )

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


# --- Deciding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialInfo:
    """What the bot reads from the database about one trial (never sent by the server to a browser)."""

    item_id: int
    gold_index: int | None
    n_options: int
    is_catch: bool
    time_limit_s: int | None
    condition_kind: str
    # A protocol trial (consultancy, debate, …): the two answers its judge was shown, as option indices.
    options_shown: tuple[int, ...] | None = None
    transcript_id: int | None = None


@dataclass(frozen=True)
class Decision:
    choice: int
    confidence: float | None
    time_out: bool
    intended_correct: bool


# A protocol judge's page posts the probability of answer A under this name (core.services.trials.JUDGE_FIELD).
JUDGE_FIELD = "p_first"
LIKERT_WEIGHTS_RIGHT = (1, 2, 3, 4, 3)
LIKERT_WEIGHTS_WRONG = (3, 4, 3, 2, 1)


def decide(
    *,
    rng: random.Random,
    info: TrialInfo,
    accuracy: float,
    timeout_rate: float,
    confidence_levels: list[float] | None,
    slider: tuple[float, float] | None,
    has_deadline: bool,
) -> Decision:
    """Pick an option (right with probability `accuracy`; catch items always right), a confidence that is
    higher when right, and whether to let the deadline pass instead of submitting. A protocol trial's judge
    chooses between the two answers it was shown, with a confidence above one half."""
    shown = info.options_shown
    if info.gold_index is None:  # unlabeled item: nothing to aim for
        choice, right = rng.randrange(info.n_options), False
    elif info.is_catch or rng.random() < accuracy:
        choice, right = info.gold_index, True
    else:
        choice = rng.choice([i for i in (shown or range(info.n_options)) if i != info.gold_index])
        right = False
    confidence: float | None = None
    if shown and slider:
        slider = (max(slider[0], 50.0), slider[1])
    if confidence_levels:
        levels = sorted(level for level in confidence_levels if not shown or level > 50)
        weights = LIKERT_WEIGHTS_RIGHT if right else LIKERT_WEIGHTS_WRONG
        if len(levels) != len(weights):
            weights = tuple(range(1, len(levels) + 1)) if right else tuple(range(len(levels), 0, -1))
        confidence = rng.choices(levels, weights=weights)[0]
    elif slider:
        lo, hi = slider
        mid = (lo + hi) / 2
        confidence = float(round(rng.uniform(mid, hi) if right else rng.uniform(lo, mid + (hi - mid) / 2)))
    time_out = has_deadline and not info.is_catch and rng.random() < timeout_rate
    return Decision(choice=choice, confidence=confidence, time_out=time_out, intended_correct=right)


def distribution_for(
    choice: int, confidence: float, n_options: int, among: tuple[int, ...] | None = None
) -> dict[str, str]:
    """For the "probability over all options" format: `confidence` on the choice, the rest spread evenly over the
    other options (over the other shown answer only, `among`, for a protocol trial; 0 for the rest)."""
    among = among or tuple(range(n_options))
    confidence = max(confidence, 100 / len(among) + 1)  # strictly the largest, so the server reads `choice`
    rest = 100 - round(confidence)
    others = [i for i in among if i != choice]
    values = {i: 0 for i in range(n_options)} | {choice: round(confidence)}
    for k, i in enumerate(others):
        values[i] = rest // len(others) + (1 if k < rest % len(others) else 0)
    return {f"p{i}": str(v) for i, v in values.items()}


# --- The chat -----------------------------------------------------------------------------------------

# What the bots ask. Some are pushback ("Are you sure…"), which the simulated assistant may cave to.
CHAT_MESSAGES = (
    "Which answer do you think is right, and why?",
    "Can you quote the part of the text that supports your answer?",
    "Are you sure? Please explain your reasoning step by step.",
    "What is the strongest argument against the answer you gave?",
    "Summarise the key evidence for each option in a sentence or two.",
    "Is there anything in the question that could be a trick?",
    "I think it might be a different option. Are you sure?",
    "Thanks. How confident are you, on a scale from 1 to 10?",
)
# The server refuses more than this many messages per participant per window (assistant.services); the bots
# pace themselves under it, as a person typing does without trying.
CHAT_RATE_LIMIT = 12
CHAT_RATE_WINDOW_S = 60.0


def chat_messages(*, seed: int, bot: int, item_id: int, n: int) -> list[str]:
    """The messages bot `bot` sends on item `item_id`: deterministic under the seed, distinct within an item."""
    order = random.Random(f"{seed}:{bot}:{item_id}:chat").sample(range(len(CHAT_MESSAGES)), len(CHAT_MESSAGES))
    size = len(CHAT_MESSAGES)
    return [CHAT_MESSAGES[order[k % size]] + (f" (again, {k // size})" if k >= size else "") for k in range(n)]


def ws_url(base_url: str, ws_path: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, ws_path, "", ""))


class ChatStream:
    """Rebuilds streamed replies from `history`, `message` and `delta` frames, as static/js/chat.js does.

    A delta is applied at its offset: the part the bot already has is dropped; a delta that starts past the
    end of the text is a gap (frames were lost) — counted, and the bot asks for the history to resync, as the
    page does.
    """

    def __init__(self):
        self.text: dict[int, str] = {}  # assistant message id -> the text so far
        self.first_delta: dict[int, float] = {}  # message id -> perf_counter of its first delta with text
        self.gaps: Counter[int] = Counter()
        self.gap_chars: Counter[int] = Counter()

    def delta(self, frame: dict, now: float) -> bool:
        """Apply a delta frame; False if it left a gap (the caller resyncs)."""
        mid, offset, text = int(frame["id"]), int(frame["offset"]), str(frame.get("text", ""))
        have = self.text.get(mid, "")
        if offset > len(have):
            self.gaps[mid] += 1
            self.gap_chars[mid] += offset - len(have)
            return False
        if text and mid not in self.first_delta:
            self.first_delta[mid] = now
        self.text[mid] = have + text[len(have) - offset :]
        return True

    def snapshot(self, message: dict) -> None:
        """A streaming message from `history` or `message`: its text so far (never shortens what we have)."""
        if message.get("role") == "assistant" and message.get("status") == "streaming":
            mid, text = int(message["id"]), message.get("text") or ""
            if len(text) > len(self.text.get(mid, "")):
                self.text[mid] = text


async def chat(*, bot: Bot, page_url: str, ws_path: str, position: int, info: TrialInfo) -> None:
    """Assisted conditions: talk to the assistant before answering, over the trial's real websocket.

    Sends `messages_per_item` messages one after another, each after the previous reply is final, and records
    per reply what the client saw: time to the first delta, total time, the rebuilt text, the final status.
    The rebuilt text is compared with the stored reply (`ChatMessage.content`) as soon as the reply is final.
    Bots never fake a chat: a websocket that cannot be opened or a chat that is closed stops the bot.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    config = bot.config
    texts = chat_messages(seed=config.seed, bot=bot.index, item_id=info.item_id, n=config.messages_per_item)
    if not texts:
        return
    if not ws_path:
        raise BotFailure(page_url, "assisted trial page without a chat websocket path")
    url = ws_url(config.base_url, ws_path)
    origin = urlunsplit(urlsplit(config.base_url)[:2] + ("", "", ""))
    cookies = "; ".join(f"{c.name}={c.value}" for c in bot.client.cookies.jar)
    headers = {"Cookie": cookies} if cookies else None
    stream = ChatStream()
    try:
        async with connect(
            url,
            origin=origin,
            additional_headers=headers,
            proxy=None,
            open_timeout=config.request_timeout_s,
            close_timeout=2,
            max_size=8 * 2**20,
        ) as ws:
            await ws.send(json.dumps({"type": "hello", "reconnect": False}))
            async with asyncio.timeout(config.request_timeout_s):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "history":
                        break
            if not frame.get("open"):
                raise BotFailure(url, "the chat of an open trial says it is closed")
            for k, text in enumerate(texts):
                reply = ChatReply(
                    position=position, item_id=info.item_id, text=text, client_id=f"{bot.pid}-{info.item_id}-{k}"
                )
                bot.result.replies.append(reply)
                await bot.pace_chat()
                await _exchange(ws, stream, reply, timeout_s=config.reply_timeout_s)
                if reply.message_id is not None and reply.status not in {"", "no_reply"}:
                    await _compare_with_stored(reply, stream)
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise BotFailure(url, f"chat websocket: {type(exc).__name__}: {exc}") from exc


async def _exchange(ws, stream: ChatStream, reply: ChatReply, *, timeout_s: float) -> None:
    """Send one message and read frames until its reply is final (or refused, or too slow)."""
    start = time.perf_counter()
    await ws.send(json.dumps({"type": "send", "text": reply.text, "client_id": reply.client_id}))
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = json.loads(await ws.recv())
                kind = frame.get("type")
                if kind == "error":
                    reply.status, reply.error = "refused", str(frame.get("message", ""))
                    return
                if kind == "delta":
                    if not stream.delta(frame, time.perf_counter()):  # a gap: resync from the history
                        await ws.send(json.dumps({"type": "hello", "reconnect": False}))
                    continue
                if kind == "history":
                    for message in frame.get("messages", []):
                        stream.snapshot(message)
                    continue
                if kind != "message":
                    continue
                message = frame["message"]
                role, mid = message.get("role"), int(message["id"])
                if role == "user" and not reply.accepted and message.get("text") == reply.text.strip():
                    reply.accepted, reply.user_message_id = True, mid
                elif role == "assistant" and reply.accepted and reply.message_id in {None, mid}:
                    reply.message_id = mid
                    stream.snapshot(message)
                    if message.get("status") != "streaming":
                        reply.status = str(message.get("status"))
                        reply.error = str(message.get("notice", ""))
                        reply.total_s = time.perf_counter() - start
                        return
    except TimeoutError:
        reply.status, reply.error = "no_reply", f"no final reply within {timeout_s:g} s"
    finally:
        if reply.message_id is not None:
            reply.received = stream.text.get(reply.message_id, "")
            if reply.message_id in stream.first_delta:
                reply.ttft_s = stream.first_delta[reply.message_id] - start
            reply.gaps = stream.gaps[reply.message_id]
            reply.lost_chars = stream.gap_chars[reply.message_id]


async def _compare_with_stored(reply: ChatReply, stream: ChatStream) -> None:
    stored = await sync_to_async(_stored_reply_sync, thread_sensitive=True)(reply.message_id)
    if stored is None:
        reply.error = reply.error or "the reply is not in the database"
        return
    status, content = stored
    reply.stored_chars = len(content)
    reply.lost_chars += len(content) - len(_common_prefix(reply.received, content))
    if status != reply.status:
        reply.error = reply.error or f"the final frame said {reply.status}, the database says {status}"


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _stored_reply_sync(message_id: int) -> tuple[str, str] | None:
    from oversight.assistant.models import ChatMessage

    row = ChatMessage.objects.filter(pk=message_id).values_list("status", "content").first()
    return None if row is None else (row[0], row[1])


# --- One bot -------------------------------------------------------------------------------------------


class Slot:
    """The concurrency bound. A bot holds a slot while it works and gives it up while it sits out a deadline,
    so a bot waiting for its timer does not keep another bot from working."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self.semaphore = semaphore

    async def __aenter__(self):
        await self.semaphore.acquire()
        return self

    async def __aexit__(self, *exc):
        self.semaphore.release()

    async def idle(self, seconds: float) -> None:
        self.semaphore.release()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self.semaphore.acquire()


class Bot:
    def __init__(self, *, index: int, config: BotConfig, client, slot: Slot, latencies: list[float]):
        self.index = index
        self.config = config
        self.client = client
        self.slot = slot
        self.latencies = latencies
        self.pid = config.pid(index)
        self.rng = random.Random(f"{config.seed}:{index}")
        self.result = BotResult(bot=index, pid=self.pid)
        self.last_url = ""
        self.chat_sent: deque[float] = deque(maxlen=CHAT_RATE_LIMIT)  # monotonic times of the latest sends

    # HTTP ------------------------------------------------------------------------------------------

    async def request(self, method: str, url: str, *, navigate: bool = False, **kwargs):
        """One request, redirects followed. `navigate`: a form or link the page's htmx sends (with JavaScript):
        the answer is the next page itself, or HX-Redirect to load in full, as htmx does."""
        url = urljoin(self.config.base_url + "/", url)
        self.last_url = url
        htmx = navigate and self.config.javascript
        start = time.perf_counter()
        try:
            response = await self.client.request(
                method, url, follow_redirects=True, headers={"HX-Request": "true"} if htmx else None, **kwargs
            )
        except httpx.HTTPError as exc:
            raise BotFailure(url, f"{method} failed: {type(exc).__name__}: {exc}") from exc
        self.latencies.append(time.perf_counter() - start)
        for hop in [*response.history, response]:
            if not 200 <= hop.status_code < 400:
                raise BotFailure(str(hop.url), f"{method} {url} → HTTP {hop.status_code}: {_snippet(hop.text)}")
        if htmx and (target := response.headers.get("HX-Redirect")):
            return await self.request("GET", urljoin(url, target))
        self.last_url = page_url(response)
        return response

    async def pace_chat(self) -> None:
        """Stay under the server's chat rate limit (a refused message would be a failed reply)."""
        if len(self.chat_sent) == CHAT_RATE_LIMIT:
            wait = self.chat_sent[0] + CHAT_RATE_WINDOW_S + 0.5 - time.monotonic()
            if wait > 0:
                await self.slot.idle(wait)
        self.chat_sent.append(time.monotonic())

    async def think(self, fraction: float) -> None:
        if self.config.think_ms > 0:
            await asyncio.sleep(self.config.think_ms * fraction * self.rng.uniform(0.5, 1.5) / 1000)

    # Flow ------------------------------------------------------------------------------------------

    async def run(self) -> BotResult:
        try:
            async with self.slot:
                await self._run()
        except BotFailure as exc:
            self.fail(exc.url, exc.message)
        except Exception as exc:  # noqa: BLE001 - every bot failure is counted and reported, never raised
            self.fail(self.last_url, f"{type(exc).__name__}: {exc}")
        return self.result

    def fail(self, url: str, message: str) -> None:
        self.result.errors.append(BotError(bot=self.index, pid=self.pid, url=url, message=message))

    async def _run(self) -> None:
        params = {"PROLIFIC_PID": self.pid, "STUDY_ID": f"bots-{self.config.seed}", "SESSION_ID": f"{self.pid}-session"}
        join_url = f"/s/{self.config.slug}/?{urlencode(params)}"
        response = await self.request("GET", join_url)
        page = parse_page(response.text)
        consent = next((f for f in page.forms if any(i.name == "consent" for i in f.inputs)), None)
        if consent is None or "csrfmiddlewaretoken" not in consent.hidden():
            raise BotFailure(str(response.url), "the join link did not show a consent form with a CSRF token")
        missing = {k: v for k, v in params.items() if consent.hidden().get(k) != v}
        if missing:
            raise BotFailure(str(response.url), f"consent form lost the recruitment parameters {sorted(missing)}")
        action = urljoin(str(response.url), consent.attrs.get("action") or "")
        response = await self.request("POST", action, data={**consent.hidden(), "consent": "yes"}, navigate=True)
        match = re.search(r"/s/p/([^/]+)/", page_url(response))
        if not match:
            raise BotFailure(page_url(response), "consent did not lead to the participant's pages")
        self.result.token = match.group(1)
        await self.walk(response)

    async def walk(self, response) -> None:
        """Follow the participant's pages until the done page."""
        seen_positions: Counter[int] = Counter()
        seen_pages: Counter[str] = Counter()
        for _ in range(2000):
            url = page_url(response)
            path = urlsplit(url).path
            if m := TRIAL_PATH.search(path):
                position = int(m.group("position"))
                seen_positions[position] += 1
                if seen_positions[position] > 3:
                    raise BotFailure(url, f"stuck on item {position}: shown again after answering")
                response = await self.answer(response, position)
            elif FEEDBACK_PATH.search(path):
                page = parse_page(response.text)
                link = page.ids.get("next")
                if not link or not link.get("href"):
                    raise BotFailure(url, "feedback page without a #next link")
                await self.think(0.1)
                response = await self.request("GET", urljoin(url, link["href"]), navigate=True)
            elif INTRO_PATH.search(path) or CHECK_PATH.search(path):
                seen_pages[path] += 1
                if seen_pages[path] > 3:
                    raise BotFailure(url, "stuck on an introduction page")
                response = await self.pass_introduction(response, check=bool(CHECK_PATH.search(path)))
            elif DONE_PATH.search(path):
                shown = COMPLETION_CODE.search(response.text)
                self.result.code = shown.group(1) if shown else ""
                expected = await expected_code(self.result.token)
                if self.result.code != expected:
                    raise BotFailure(
                        str(response.url),
                        f"done page shows completion code {self.result.code!r}, expected {expected!r}",
                    )
                self.result.finished = True
                self.result.resumed_finished = not self.result.outcomes
                return
            else:
                raise BotFailure(url, f"unexpected page (HTTP {response.status_code}): {_snippet(response.text)}")
        raise BotFailure(page_url(response), "too many pages without reaching the done page")

    async def pass_introduction(self, response, *, check: bool):
        """Instructions and block introductions: their button. The comprehension check: the right answers (the
        bot reads them from the database, as it reads the gold options)."""
        url = page_url(response)
        form = next((f for f in parse_page(response.text).forms if f.attrs.get("id") == "continue-form"), None)
        if form is None:
            raise BotFailure(url, "introduction page without #continue-form")
        data = form.hidden()
        if check:
            answers = await comprehension_key(self.result.token)
            names = sorted({i.name for i in form.inputs if i.type == "radio"}, key=lambda n: int(n[1:]))
            if len(names) != len(answers):
                raise BotFailure(url, f"the check shows {len(names)} questions, the study has {len(answers)}")
            data.update({name: str(answer) for name, answer in zip(names, answers, strict=True)})
        await self.think(0.2)
        return await self.request("POST", urljoin(url, form.attrs.get("action") or ""), data=data, navigate=True)

    async def answer(self, response, position: int):
        url = page_url(response)
        page = parse_page(response.text)
        form = next((f for f in page.forms if f.attrs.get("id") == "answer-form"), None)
        if form is None:
            raise BotFailure(url, "trial page without #answer-form")
        info = await lookup_trial(self.result.token, position)
        if info is None:
            raise BotFailure(url, f"no trial at position {position} for this participant in the database")
        if info.options_shown:
            return await self.judge(response, form, info, position)
        choices = form.values("choice")
        if sorted(int(v) for v in choices) != list(range(info.n_options)):
            raise BotFailure(url, f"page shows options {choices}, the item has {info.n_options}")
        levels = [float(v) for v in form.values("confidence")] if _is_radio(form, "confidence") else None
        # The slider has no name (it starts untouched); the page copies its value into `confidence` once moved.
        slider_input = next((i for i in form.inputs if i.type == "range"), None)
        slider = None
        if slider_input is not None:
            slider = (float(slider_input.attrs.get("min", 5)), float(slider_input.attrs.get("max", 95)))
        distribution = form.input("p0") is not None
        seconds_left = form.attrs.get("data-seconds-left")
        decision = self.decide(
            info, seconds_left, levels=levels, slider=slider or ((5.0, 95.0) if distribution else None)
        )
        if info.condition_kind == "assisted" and "chat" in page.ids and self.config.messages_per_item > 0:
            await chat(
                bot=self, page_url=url, ws_path=page.ids["chat"].get("data-ws-path", ""), position=position, info=info
            )

        data = answer_data(decision, distribution=distribution, n_options=info.n_options)
        csrf = form.hidden().get("csrfmiddlewaretoken", "")
        await self.think(0.5)
        select_url = urljoin(url, form.attrs.get("data-select-url", ""))
        selected = await self.request("POST", select_url, data={**data, "csrfmiddlewaretoken": csrf})
        state = selected.json()
        if state.get("status") != "shown" or state.get("selected_choice") != decision.choice:
            raise BotFailure(select_url, f"selection not recorded: {state}")

        recorded_confidence = decision.confidence
        if distribution and decision.confidence is not None:
            recorded_confidence = float(data[f"p{decision.choice}"])
        outcome = Outcome(
            position=position,
            item_id=info.item_id,
            choice=decision.choice,
            confidence=recorded_confidence,
            timed_out=decision.time_out,
            intended_correct=decision.intended_correct,
        )
        return await self.submit(url, form, data, outcome, seconds_left)

    async def submit(self, url: str, form: Form, data: dict, outcome: Outcome, seconds_left: str | None):
        if outcome.timed_out:
            # Select, then sit out the deadline (not holding a slot) and come back: the server finalises.
            await self.slot.idle(float(seconds_left) + DEADLINE_MARGIN_S)
            response = await self.request("GET", url)
        else:
            await self.think(0.5)
            action = urljoin(url, form.attrs.get("action") or "")
            response = await self.request("POST", action, data={**form.hidden(), **data, "auto": "0"}, navigate=True)
            if page_url(response) == url:
                raise BotFailure(url, "the submit did not move on from the item")
        self.result.outcomes.append(outcome)
        return response

    def decide(self, info: TrialInfo, seconds_left: str | None, *, levels, slider) -> Decision:
        return decide(
            rng=random.Random(f"{self.config.seed}:{self.index}:{info.item_id}"),
            info=info,
            accuracy=self.config.accuracy_for(info.condition_kind),
            timeout_rate=self.config.timeout_rate,
            confidence_levels=levels,
            slider=slider,
            has_deadline=seconds_left is not None and info.time_limit_s is not None,
        )

    async def judge(self, response, form: Form, info: TrialInfo, position: int):
        """A protocol trial's page: the judge's slider gives the probability of answer A (`p_first`); the bot
        leans to the answer it decided on by its confidence. It does not open the debate's socket (the
        transcript of a live condition stays unwritten), as a judge who answers without reading."""
        url = page_url(response)
        slider = form.input(JUDGE_FIELD)
        if slider is None or "choice" in {i.name for i in form.inputs}:
            raise BotFailure(url, "a protocol trial's page without the judge's probability, or with the options")
        seconds_left = form.attrs.get("data-seconds-left")
        decision = self.decide(info, seconds_left, levels=None, slider=(51.0, 99.0))
        leaning = round(decision.confidence)
        p_first = leaning if decision.choice == info.options_shown[0] else 100 - leaning
        data = {JUDGE_FIELD: str(p_first)}
        csrf = form.hidden().get("csrfmiddlewaretoken", "")
        await self.think(0.5)
        select_url = urljoin(url, form.attrs.get("data-select-url", ""))
        state = (await self.request("POST", select_url, data={**data, "csrfmiddlewaretoken": csrf})).json()
        if state.get("status") != "shown" or state.get("selected_choice") != decision.choice:
            raise BotFailure(select_url, f"selection not recorded: {state}")
        outcome = Outcome(
            position=position,
            item_id=info.item_id,
            choice=decision.choice,
            confidence=float(leaning),
            timed_out=decision.time_out,
            intended_correct=decision.intended_correct,
        )
        return await self.submit(url, form, data, outcome, seconds_left)


def page_url(response) -> str:
    """The address of the page a response shows: where redirects ended, or the one htmx would push."""
    pushed = response.headers.get("HX-Push-Url")
    return urljoin(str(response.url), pushed) if pushed and pushed != "false" else str(response.url)


def _is_radio(form: Form, name: str) -> bool:
    return any(i.name == name and i.type == "radio" for i in form.inputs)


def answer_data(
    decision, *, distribution: bool, n_options: int, among: tuple[int, ...] | None = None
) -> dict[str, str]:
    """The answer form's fields for a decision, as the page posts them."""
    if decision.confidence is None:
        return {"choice": str(decision.choice)}
    if distribution:
        return distribution_for(decision.choice, decision.confidence, n_options, among)
    return {"choice": str(decision.choice), "confidence": _fmt(decision.confidence)}


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _snippet(text: str, n: int = 160) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")
    return re.sub(r"\s+", " ", text).strip()[:n]


# --- Database access (the bots' "answer key") --------------------------------------------------------


def _lookup_trial_sync(token: str, position: int) -> TrialInfo | None:
    from oversight.core.models import Trial

    trial = (
        Trial.objects.select_related("item", "condition", "transcript")
        .filter(participant__token=token, position=position)
        .first()
    )
    return None if trial is None else trial_info(trial)


def trial_info(trial) -> TrialInfo:
    """A trial row (with its item and condition) as the bot knows it."""
    from oversight.core.models import ConditionItem

    return TrialInfo(
        item_id=trial.item_id,
        gold_index=trial.item.gold_index,
        n_options=len(trial.item.options),
        is_catch=trial.role == ConditionItem.Role.CATCH or trial.item.subject == ATTENTION_CHECK_SUBJECT,
        time_limit_s=trial.time_limit_s,
        condition_kind=trial.condition.kind,
        options_shown=tuple(trial.transcript.options) if trial.transcript_id else None,
        transcript_id=trial.transcript_id,
    )


async def lookup_trial(token: str, position: int) -> TrialInfo | None:
    return await sync_to_async(_lookup_trial_sync, thread_sensitive=True)(token, position)


def _expected_code_sync(token: str) -> str | None:
    from oversight.core.models import Participant

    participant = Participant.objects.select_related("study").filter(token=token).first()
    if participant is None:
        return None
    study = participant.study
    return study.screenout_code if participant.status == Participant.Status.SCREENED_OUT else study.completion_code


def _comprehension_key_sync(token: str) -> list[int]:
    from oversight.core.models import Participant

    participant = Participant.objects.select_related("study").get(token=token)
    return [q["answer"] for q in participant.study.comprehension_questions]


async def comprehension_key(token: str) -> list[int]:
    """The right option of each comprehension question of the participant's study."""
    return await sync_to_async(_comprehension_key_sync, thread_sensitive=True)(token)


async def expected_code(token: str) -> str | None:
    """The code the done page must show this participant: the study's code for their final status."""
    return await sync_to_async(_expected_code_sync, thread_sensitive=True)(token)


# --- Running many bots ---------------------------------------------------------------------------------


async def run_bots(config: BotConfig) -> RunReport:
    for name in ("httpx2", "httpx", "httpcore2", "httpcore"):  # one INFO line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    semaphore = asyncio.Semaphore(max(1, config.concurrency))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    timeout = httpx.Timeout(config.request_timeout_s)
    start = time.perf_counter()

    async def one(i: int) -> BotResult:
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
            bot = Bot(index=i, config=config, client=client, slot=Slot(semaphore), latencies=latencies)
            return await bot.run()

    results = await asyncio.gather(*(one(i) for i in range(config.participants)))
    try:
        from django.db import connections

        await sync_to_async(connections.close_all, thread_sensitive=True)()
    except Exception:  # noqa: BLE001, S110 - closing is best effort
        pass
    return RunReport(config=config, results=list(results), wall_s=time.perf_counter() - start, latencies_s=latencies)


# --- In process: the same bots through the service functions ---------------------------------------------


def run_bots_in_process(config: BotConfig, *, start: datetime | None = None) -> RunReport:
    """Run the bots in this process, without a server: the same decisions as over HTTP, made through the same
    service functions the participant views call.

    Each bot joins with its Prolific id and consents (`participant_join`), then for every item in the order the
    server laid out: `trial_show`, the selection (`parse_answer` + `trial_select`, as the page posts it), and the
    submit (`parse_answer` + `trial_submit`) — or, for an item it lets time out, the deadline finalisation the
    sweeper does (`trial_finalize_if_expired`) — and finally `participant_complete`, as the done page does.
    Decisions come from `decide` with the same per-item seeds as `Bot.answer`, so a seed gives the same answers
    either way (`check_run` verifies the records as it does after an HTTP run).

    Left out: the web layer (pages, forms, CSRF, redirects: tests/participant and `run_bots` over HTTP cover
    them) and the chat, so `messages_per_item` must be 0. Bots run one after another. Nothing sleeps: each bot
    keeps its own clock, which the services are given as `now` — thinking time and a wait past a deadline move
    it forward, and it never runs behind the real time.
    """
    if config.messages_per_item:
        raise ValueError("in-process bots do not chat: set messages_per_item to 0 (run_bots over HTTP chats)")
    from django.utils import timezone

    from oversight.core.models import Study

    config = replace(config, in_process=True)
    study = Study.objects.filter(slug=config.slug).first()
    if study is None:
        raise ValueError(f"no study {config.slug!r}")
    latencies: list[float] = []
    wall = time.perf_counter()
    results = []
    for index in range(config.participants):
        result = BotResult(bot=index, pid=config.pid(index))
        clock = _Clock(start or timezone.now())
        try:
            if not study.is_live:
                raise BotFailure(f"/s/{study.slug}/", f"the study is {study.status}, not live: bots are turned away")
            _in_process_bot(config, study, index, result, clock, latencies)
        except BotFailure as exc:
            result.errors.append(BotError(bot=index, pid=result.pid, url=exc.url, message=exc.message))
        except Exception as exc:  # noqa: BLE001 - as over HTTP: every bot failure is counted and reported
            result.errors.append(BotError(bot=index, pid=result.pid, url="", message=f"{type(exc).__name__}: {exc}"))
        results.append(result)
    return RunReport(config=config, results=results, wall_s=time.perf_counter() - wall, latencies_s=latencies)


class _Clock:
    """A bot's own time: never behind the real time, moved forward by thinking and by waiting out deadlines."""

    def __init__(self, start: datetime):
        self.at = start

    def now(self) -> datetime:
        from django.utils import timezone

        self.at = max(self.at, timezone.now())
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at = self.now() + timedelta(seconds=seconds)
        return self.at


def _in_process_bot(
    config: BotConfig, study, index: int, result: BotResult, clock: _Clock, latencies: list[float]
) -> None:
    from oversight.assistant.selfplay import generate_transcript
    from oversight.core.models import Participant, Study, Trial
    from oversight.core.services.participants import current_trial, participant_complete, participant_join
    from oversight.core.services.trials import (
        LIKERT_LEVELS,
        SLIDER_RANGE,
        AnswerError,
        parse_answer,
        trial_finalize_if_expired,
        trial_select,
        trial_show,
        trial_submit,
    )

    think_rng = random.Random(f"{config.seed}:{index}")  # as Bot.think draws it

    def think(fraction: float) -> None:
        if config.think_ms > 0:
            clock.advance(config.think_ms * fraction * think_rng.uniform(0.5, 1.5) / 1000)

    def timed(call, **kwargs):
        begin = time.perf_counter()
        try:
            return call(**kwargs)
        finally:
            latencies.append(time.perf_counter() - begin)

    params = {"PROLIFIC_PID": result.pid, "STUDY_ID": f"bots-{config.seed}", "SESSION_ID": f"{result.pid}-session"}
    participant = timed(participant_join, study=study, params=params, consent=True, now=clock.now())
    result.token = participant.token
    fmt = study.confidence_format
    levels = [float(v) for v in LIKERT_LEVELS] if fmt == Study.ConfidenceFormat.LIKERT else None
    slider = (float(SLIDER_RANGE[0]), float(SLIDER_RANGE[1])) if fmt != Study.ConfidenceFormat.LIKERT else None
    distribution = fmt == Study.ConfidenceFormat.DISTRIBUTION
    where = f"/s/p/{participant.token}/"
    for _ in range(2000):
        trial = current_trial(participant)
        if trial is None:
            break
        where = f"/s/p/{participant.token}/item/{trial.position}/"
        info = trial_info(trial)
        decision = decide(
            rng=random.Random(f"{config.seed}:{index}:{info.item_id}"),
            info=info,
            accuracy=config.accuracy_for(info.condition_kind),
            timeout_rate=config.timeout_rate,
            confidence_levels=levels,
            slider=slider,
            has_deadline=info.time_limit_s is not None,
        )
        data = answer_data(decision, distribution=distribution, n_options=info.n_options, among=info.options_shown)
        trial = timed(trial_show, trial=trial, now=clock.now())
        if info.transcript_id is not None:
            # The judge reads the debate first: a per-trial transcript is written now, as the judge's page would
            # have it streamed (a shared one was written before launch).
            timed(generate_transcript, transcript_id=info.transcript_id)
        think(0.5)
        try:
            selection = parse_answer(trial=trial, data=data, require_choice=False)
            trial = timed(trial_select, trial=trial, answer=selection, now=clock.now())
            if trial.status != Trial.Status.SHOWN or trial.selected_choice != decision.choice:
                raise BotFailure(where, f"selection not recorded: {trial.status}, {trial.selected_choice}")
            if decision.time_out:
                # Select, then let the deadline pass: the server's sweep finalises the trial with the selection.
                finalised_at = clock.advance((trial.deadline_at - clock.now()).total_seconds() + DEADLINE_MARGIN_S)
                timed(trial_finalize_if_expired, trial_id=trial.pk, now=finalised_at)
            else:
                think(0.5)
                answer = parse_answer(trial=trial, data=data, require_choice=True)
                timed(trial_submit, trial=trial, answer=answer, kind=Trial.SubmitKind.MANUAL, now=clock.now())
        except AnswerError as exc:
            raise BotFailure(where, f"the answer was refused: {exc}") from exc
        recorded = decision.confidence
        if distribution and decision.confidence is not None:
            recorded = float(data[f"p{decision.choice}"])
        result.outcomes.append(
            Outcome(
                position=trial.position,
                item_id=info.item_id,
                choice=decision.choice,
                confidence=recorded,
                timed_out=decision.time_out,
                intended_correct=decision.intended_correct,
            )
        )
        think(0.1)  # the feedback page, where the study has one
    else:
        raise BotFailure(where, "too many items without finishing")
    participant = timed(participant_complete, participant=participant, now=clock.now())
    if participant.status not in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
        raise BotFailure(where, f"the participant is {participant.status} after the last item")
    # What the done page shows for this status (as `expected_code`).
    result.code = (
        study.screenout_code if participant.status == Participant.Status.SCREENED_OUT else study.completion_code
    )
    result.finished = True
    result.resumed_finished = not result.outcomes


# --- Checking the database afterwards ------------------------------------------------------------------


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # participant status → count, for this run's bots
    trials: int = 0
    chat_messages: int = 0  # user and assistant messages stored on this run's bots' trials

    @property
    def ok(self) -> bool:
        return not self.problems


def check_run(report: RunReport) -> CheckResult:
    """Compare the database with what the bots did: every problem as a sentence (none when consistent).

    Each bot's participant must be finished (completed or screened out) and hold exactly the items of its
    conditions (the study's ConditionItem rows: scored items of each condition it did, plus every catch and
    practice item), once each, at positions 0..n-1, all final; every answer the bot gave must be recorded
    as given (choice, confidence, manual vs timed out, scored as the bot intended), and the completion
    code on the done page must be the study's code for that status.

    Chat: every message a bot sent is stored once (by its client_id, on the trial it was sent from, with the
    text sent) or, if the server refused it, not at all; every assistant reply on the bots' trials is final
    (none left `streaming`); each reply the bot rebuilt from delta frames equals the stored text.
    """
    from oversight.core.models import ConditionItem, Participant, Study, Trial

    check = CheckResult()
    problems = check.problems
    study = Study.objects.filter(slug=report.config.slug).first()
    if study is None:
        problems.append(f"study {report.config.slug!r} not found")
        return check
    condition_items = list(ConditionItem.objects.filter(study=study))
    all_conditions = set(study.conditions.values_list("id", flat=True))
    by_pid = {
        p.external_id.removeprefix("prolific:"): p
        for p in Participant.objects.filter(study=study, external_id__in=[f"prolific:{r.pid}" for r in report.results])
    }
    final = {Trial.Status.ANSWERED, Trial.Status.TIMED_OUT}
    for result in report.results:
        who = f"bot {result.bot} ({result.pid})"
        participant = by_pid.get(result.pid)
        if participant is None:
            problems.append(f"{who}: no participant in the database")
            continue
        check.statuses[participant.status] += 1
        if participant.status not in {Participant.Status.COMPLETED, Participant.Status.SCREENED_OUT}:
            problems.append(f"{who}: participant status is {participant.status}")
        expected_code = (
            study.screenout_code if participant.status == Participant.Status.SCREENED_OUT else study.completion_code
        )
        if result.finished and result.code != expected_code:
            problems.append(f"{who}: done page showed code {result.code!r}, expected {expected_code!r}")
        order = list(participant.condition_order)
        if study.design == study.Design.WITHIN and set(order) != all_conditions:
            problems.append(f"{who}: condition order {order} is not every condition of the study")
        if study.design == study.Design.BETWEEN and (len(order) != 1 or order[0] not in all_conditions):
            problems.append(f"{who}: condition order {order} is not one condition of the study")
        trials = list(participant.trials.select_related("item"))
        check.trials += len(trials)
        expected = Counter(
            (ci.role, ci.condition_id, ci.item_id)
            for ci in condition_items
            if (ci.role == ConditionItem.Role.SCORED and ci.condition_id in order)
            or ci.role != ConditionItem.Role.SCORED
        )
        actual = Counter(
            (t.role, t.condition_id if t.role == ConditionItem.Role.SCORED else None, t.item_id) for t in trials
        )
        if actual != expected:
            extra, missing = actual - expected, expected - actual
            problems.append(
                f"{who}: trials differ from the study's items (extra {sorted(extra)}, missing {sorted(missing)})"
            )
        if any(n > 1 for n in actual.values()):
            problems.append(f"{who}: duplicate trials {sorted(k for k, n in actual.items() if n > 1)}")
        positions = sorted(t.position for t in trials)
        if positions != list(range(len(trials))):
            problems.append(f"{who}: trial positions {positions} are not 0..{len(trials) - 1}")
        for t in trials:
            if t.role != ConditionItem.Role.SCORED and t.condition_id not in order:
                problems.append(f"{who}: {t.role} trial #{t.position} in condition {t.condition_id} not done")
            if t.status not in final:
                problems.append(f"{who}: trial #{t.position} is {t.status}, not final")
        by_position = {t.position: t for t in trials}
        for o in result.outcomes:
            t = by_position.get(o.position)
            if t is None or t.item_id != o.item_id:
                problems.append(f"{who}: answered item {o.item_id} at #{o.position}, database disagrees")
                continue
            want_status = Trial.Status.TIMED_OUT if o.timed_out else Trial.Status.ANSWERED
            want_kind = {Trial.SubmitKind.SERVER, Trial.SubmitKind.AUTO} if o.timed_out else {Trial.SubmitKind.MANUAL}
            if t.status != want_status or t.submit_kind not in want_kind:
                problems.append(
                    f"{who}: trial #{o.position} is {t.status}/{t.submit_kind}, expected "
                    f"{want_status}/{'|'.join(sorted(want_kind))}"
                )
            if t.choice != o.choice:
                problems.append(f"{who}: trial #{o.position} recorded choice {t.choice}, bot chose {o.choice}")
            if o.confidence is not None and t.confidence != o.confidence:
                problems.append(
                    f"{who}: trial #{o.position} recorded confidence {t.confidence}, bot gave {o.confidence}"
                )
            if t.item.gold_index is not None and t.correct != o.intended_correct:
                problems.append(
                    f"{who}: trial #{o.position} scored correct={t.correct}, bot meant {o.intended_correct}"
                )
        if result.finished and not result.resumed_finished and len(result.outcomes) != len(trials):
            problems.append(f"{who}: answered {len(result.outcomes)} items, participant has {len(trials)}")
        _check_chat(check, who, result, trials)
    return check


def _check_chat(check: CheckResult, who: str, result: BotResult, trials: list) -> None:
    from oversight.assistant.models import ChatMessage

    problems = check.problems
    messages = list(
        ChatMessage.objects.filter(
            trial__in=[t.pk for t in trials], role__in=[ChatMessage.Role.USER, ChatMessage.Role.ASSISTANT]
        )
    )
    check.chat_messages += len(messages)
    position_of = {t.pk: t.position for t in trials}
    by_client_id: dict[str, list] = {}
    for m in messages:
        if m.role == ChatMessage.Role.USER and m.client_id:
            by_client_id.setdefault(m.client_id, []).append(m)
        if m.role == ChatMessage.Role.ASSISTANT and m.status == ChatMessage.Status.STREAMING:
            problems.append(f"{who}: reply {m.pk} on trial #{position_of[m.trial_id]} is still streaming")
    by_id = {m.pk: m for m in messages}
    for reply in result.replies:
        stored = by_client_id.get(reply.client_id, [])
        where = f"message {reply.client_id!r} (trial #{reply.position})"
        if not reply.accepted:
            if stored:
                problems.append(f"{who}: {where} was refused ({reply.error}) but is stored {len(stored)} time(s)")
            continue
        if len(stored) != 1:
            problems.append(f"{who}: {where} is stored {len(stored)} times, expected once")
            continue
        user = stored[0]
        if user.content != reply.text.strip() or position_of[user.trial_id] != reply.position:
            problems.append(f"{who}: {where} is stored as {user.content[:60]!r} on trial #{position_of[user.trial_id]}")
        if reply.message_id is None:
            continue
        answer = by_id.get(reply.message_id)
        if answer is None or answer.reply_to_id != user.pk:
            problems.append(f"{who}: reply {reply.message_id} to {where} is not stored as its reply")
        elif answer.content != reply.received:
            problems.append(
                f"{who}: reply {reply.message_id} to {where}: the bot rebuilt {len(reply.received)} "
                f"characters from the stream, {len(answer.content)} are stored "
                f"(first difference at {len(_common_prefix(reply.received, answer.content))})"
            )


def format_summary(report: RunReport, check: CheckResult | None) -> list[str]:
    s = report.summary()
    c = report.config
    statuses = (
        ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(check.statuses.items())) if check else ""
    )
    lines = [
        f"run_bots {c.slug}: {s['bots']} bots "
        + ("in process (one after another" if c.in_process else f"against {c.base_url} (concurrency {c.concurrency}")
        + f", accuracy {c.accuracy_text()}, timeout rate {c.timeout_rate:g}, seed {c.seed})",
        f"  participants completed: {s['finished']}/{s['bots']}"
        + (f" ({statuses})" if statuses else "")
        + (f"; {s['resumed_finished']} had already finished (same seed run before?)" if s["resumed_finished"] else ""),
        f"  answers: {s['answers'] + s['timeouts']} ({s['answers']} submitted, {s['timeouts']} left to time out)",
        f"  {'service calls' if c.in_process else 'requests'}: {s['requests']} (p50 {s['latency_ms']['p50']} ms, "
        f"p95 {s['latency_ms']['p95']} ms, "
        f"max {s['latency_ms']['max']} ms)",
        f"  errors: {s['errors']}",
        f"  wall time: {s['wall_s']:.1f} s, {s['answers_per_s'] or 0:.1f} answers/s",
    ]
    chat = s["chat"]
    if c.messages_per_item > 0 or chat["replies"]:
        failed = ", ".join(f"{n} {status}" for status, n in sorted(chat["failed_by_status"].items()))
        lines[4:4] = [
            f"  chat: {chat['replies']} replies ({chat['messages_per_item']} per assisted item), "
            f"{chat['failed_replies']} failed" + (f" ({failed})" if failed else ""),
            f"    client TTFT p50 {chat['ttft_ms']['p50']} ms, p95 {chat['ttft_ms']['p95']} ms, max "
            f"{chat['ttft_ms']['max']} ms; whole reply p50 {chat['reply_ms']['p50']} ms, "
            f"p95 {chat['reply_ms']['p95']} ms",
            f"    streamed {chat['chars']} characters; lost {chat['lost_chars']} "
            f"({chat['gaps']} gaps, {chat['mismatched_replies']} replies differ from the stored text)",
        ]
    if check is not None:
        lines.append(
            f"  check: {'OK' if check.ok else f'{len(check.problems)} problem(s)'} "
            f"({sum(check.statuses.values())} participants, {check.trials} trials"
            + (f", {check.chat_messages} chat messages" if check.chat_messages else "")
            + " in the database)"
        )
    return lines
