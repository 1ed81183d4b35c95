"""Participant bots: simulated participants that drive the real HTTP interface of a running server.

Like oTree's bots, but over the network: each bot is an HTTP client with its own cookie jar that joins
through the public link with a Prolific id, consents, answers every item (selection first, then submit),
passes the feedback pages and checks the completion code at the end. Bots know the answers — they read
the gold option from the database by (participant token, position), the way oTree bots are written with
the answers — so they can answer at a chosen accuracy. The browser never knows the gold option.

Entry points: `run_bots(BotConfig(...))` (a coroutine) and `check_run(...)` (sync, after the run);
`manage.py run_bots` wraps both. See docs/bots.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

from asgiref.sync import sync_to_async

try:  # huggingface_hub 2.x ships the client as `httpx2`; plain `httpx` where that is installed.
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the environment
    import httpx  # type: ignore[no-redef]

ATTENTION_CHECK_SUBJECT = "attention_check"
# Margin after a deadline before the bot comes back, so the server's clock has certainly passed it.
DEADLINE_MARGIN_S = 0.75

TRIAL_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/item/(?P<position>\d+)/$")
FEEDBACK_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/item/(?P<position>\d+)/feedback$")
DONE_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/done$")
NEXT_PATH = re.compile(r"/s/p/(?P<token>[^/]+)/$")
COMPLETION_CODE = re.compile(r'id="completion-code"[^>]*>\s*([^<]*?)\s*<')


# --- Configuration and results ------------------------------------------------------------------------


@dataclass(frozen=True)
class BotConfig:
    slug: str
    participants: int
    accuracy: float = 0.6
    seed: int = 0
    concurrency: int = 10
    base_url: str = "http://127.0.0.1:8000"
    timeout_rate: float = 0.05
    think_ms: float = 0.0
    request_timeout_s: float = 30.0

    def pid(self, i: int) -> str:
        return f"bot-{self.seed}-{i}"


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
class BotResult:
    bot: int
    pid: str
    token: str = ""
    finished: bool = False
    code: str = ""
    resumed_finished: bool = False  # landed on the done page without answering: a rerun with the same seed
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[BotError] = field(default_factory=list)

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
            "latency_ms": {"p50": round(statistics.median(lat) * 1000, 1) if lat else None,
                           "p95": pct(0.95), "max": round(lat[-1] * 1000, 1) if lat else None},
            "wall_s": round(self.wall_s, 2),
            "answers_per_s": round(committed / self.wall_s, 2) if self.wall_s else None,
        }


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
            self._form.inputs.append(FormInput(name=a.get("name", ""), type=a.get("type", "text").lower(),
                                               value=a.get("value", ""), checked="checked" in a, attrs=a))

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


@dataclass(frozen=True)
class Decision:
    choice: int
    confidence: float | None
    time_out: bool
    intended_correct: bool


LIKERT_WEIGHTS_RIGHT = (1, 2, 3, 4, 3)
LIKERT_WEIGHTS_WRONG = (3, 4, 3, 2, 1)


def decide(*, rng: random.Random, info: TrialInfo, accuracy: float, timeout_rate: float,
           confidence_levels: list[float] | None, slider: tuple[float, float] | None,
           has_deadline: bool) -> Decision:
    """Pick an option (right with probability `accuracy`; catch items always right), a confidence that is
    higher when right, and whether to let the deadline pass instead of submitting."""
    if info.gold_index is None:  # unlabeled item: nothing to aim for
        choice, right = rng.randrange(info.n_options), False
    elif info.is_catch or rng.random() < accuracy:
        choice, right = info.gold_index, True
    else:
        choice = rng.choice([i for i in range(info.n_options) if i != info.gold_index])
        right = False
    confidence: float | None = None
    if confidence_levels:
        levels = sorted(confidence_levels)
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


def distribution_for(choice: int, confidence: float, n_options: int) -> dict[str, str]:
    """For the "probability over all options" format: `confidence` on the choice, the rest spread evenly."""
    confidence = max(confidence, 100 / n_options + 1)  # strictly the largest, so the server reads `choice`
    rest = 100 - round(confidence)
    others = [i for i in range(n_options) if i != choice]
    values = {choice: round(confidence)}
    for k, i in enumerate(others):
        values[i] = rest // len(others) + (1 if k < rest % len(others) else 0)
    return {f"p{i}": str(v) for i, v in values.items()}


# --- The chat hook -------------------------------------------------------------------------------------


async def chat(*, bot: Bot, page_url: str, ws_path: str, info: TrialInfo, rng: random.Random) -> None:
    """Assisted conditions: talk to the assistant before answering.

    Does nothing yet — the chat issue extends bots to send messages here (open the websocket at `ws_path`
    with the bot's cookies, send a few questions, wait for the streamed replies). Bots never fake a chat.
    """
    return None


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

    # HTTP ------------------------------------------------------------------------------------------

    async def request(self, method: str, url: str, **kwargs):
        url = urljoin(self.config.base_url + "/", url)
        self.last_url = url
        start = time.perf_counter()
        try:
            response = await self.client.request(method, url, follow_redirects=True, **kwargs)
        except httpx.HTTPError as exc:
            raise BotFailure(url, f"{method} failed: {type(exc).__name__}: {exc}") from exc
        self.latencies.append(time.perf_counter() - start)
        for hop in [*response.history, response]:
            if not 200 <= hop.status_code < 400:
                raise BotFailure(str(hop.url), f"{method} {url} → HTTP {hop.status_code}: {_snippet(hop.text)}")
        self.last_url = str(response.url)
        return response

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
        params = {"PROLIFIC_PID": self.pid, "STUDY_ID": f"bots-{self.config.seed}",
                  "SESSION_ID": f"{self.pid}-session"}
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
        response = await self.request("POST", action, data={**consent.hidden(), "consent": "yes"})
        first = [h for h in response.history if "/s/p/" in h.headers.get("location", "")]
        match = re.search(r"/s/p/([^/]+)/", str(response.url))
        if not match:
            raise BotFailure(str(response.url), "consent did not lead to the participant's pages")
        self.result.token = match.group(1)
        if not first:
            raise BotFailure(str(response.url), "consent did not redirect to the participant link")
        await self.walk(response)

    async def walk(self, response) -> None:
        """Follow the participant's pages until the done page."""
        seen_positions: Counter[int] = Counter()
        for _ in range(2000):
            path = urlsplit(str(response.url)).path
            if m := TRIAL_PATH.search(path):
                position = int(m.group("position"))
                seen_positions[position] += 1
                if seen_positions[position] > 3:
                    raise BotFailure(str(response.url), f"stuck on item {position}: shown again after answering")
                response = await self.answer(response, position)
            elif FEEDBACK_PATH.search(path):
                page = parse_page(response.text)
                link = page.ids.get("next")
                if not link or not link.get("href"):
                    raise BotFailure(str(response.url), "feedback page without a #next link")
                await self.think(0.1)
                response = await self.request("GET", urljoin(str(response.url), link["href"]))
            elif DONE_PATH.search(path):
                shown = COMPLETION_CODE.search(response.text)
                self.result.code = shown.group(1) if shown else ""
                expected = await expected_code(self.result.token)
                if self.result.code != expected:
                    raise BotFailure(str(response.url), f"done page shows completion code {self.result.code!r}, "
                                                        f"expected {expected!r}")
                self.result.finished = True
                self.result.resumed_finished = not self.result.outcomes
                return
            else:
                raise BotFailure(str(response.url), f"unexpected page (HTTP {response.status_code}): "
                                                    f"{_snippet(response.text)}")
        raise BotFailure(str(response.url), "too many pages without reaching the done page")

    async def answer(self, response, position: int):
        url = str(response.url)
        page = parse_page(response.text)
        form = next((f for f in page.forms if f.attrs.get("id") == "answer-form"), None)
        if form is None:
            raise BotFailure(url, "trial page without #answer-form")
        info = await lookup_trial(self.result.token, position)
        if info is None:
            raise BotFailure(url, f"no trial at position {position} for this participant in the database")
        choices = form.values("choice")
        if sorted(int(v) for v in choices) != list(range(info.n_options)):
            raise BotFailure(url, f"page shows options {choices}, the item has {info.n_options}")
        levels = [float(v) for v in form.values("confidence")] if _is_radio(form, "confidence") else None
        slider_input = form.input("confidence")
        slider = None
        if slider_input is not None and slider_input.type == "range":
            slider = (float(slider_input.attrs.get("min", 5)), float(slider_input.attrs.get("max", 95)))
        distribution = form.input("p0") is not None
        seconds_left = form.attrs.get("data-seconds-left")
        decision = decide(
            rng=random.Random(f"{self.config.seed}:{self.index}:{info.item_id}"),
            info=info, accuracy=self.config.accuracy, timeout_rate=self.config.timeout_rate,
            confidence_levels=levels, slider=slider or ((5.0, 95.0) if distribution else None),
            has_deadline=seconds_left is not None and info.time_limit_s is not None,
        )
        if info.condition_kind == "assisted" and "chat" in page.ids:
            await chat(bot=self, page_url=url, ws_path=page.ids["chat"].get("data-ws-path", ""), info=info,
                       rng=self.rng)

        data = {"choice": str(decision.choice)}
        if decision.confidence is not None:
            if distribution:
                data = distribution_for(decision.choice, decision.confidence, info.n_options)
            else:
                data["confidence"] = _fmt(decision.confidence)
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
        outcome = Outcome(position=position, item_id=info.item_id, choice=decision.choice,
                          confidence=recorded_confidence, timed_out=decision.time_out,
                          intended_correct=decision.intended_correct)
        if decision.time_out:
            # Select, then sit out the deadline (not holding a slot) and come back: the server finalises.
            await self.slot.idle(float(seconds_left) + DEADLINE_MARGIN_S)
            response = await self.request("GET", url)
        else:
            await self.think(0.5)
            action = urljoin(url, form.attrs.get("action") or "")
            response = await self.request("POST", action, data={**form.hidden(), **data, "auto": "0"})
            if TRIAL_PATH.search(urlsplit(str(response.url)).path) and str(response.url) == url:
                raise BotFailure(url, "the submit did not move on from the item")
        self.result.outcomes.append(outcome)
        return response


def _is_radio(form: Form, name: str) -> bool:
    return any(i.name == name and i.type == "radio" for i in form.inputs)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _snippet(text: str, n: int = 160) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")
    return re.sub(r"\s+", " ", text).strip()[:n]


# --- Database access (the bots' "answer key") --------------------------------------------------------


def _lookup_trial_sync(token: str, position: int) -> TrialInfo | None:
    from oversight.core.models import ConditionItem, Trial

    trial = (
        Trial.objects.select_related("item", "condition")
        .filter(participant__token=token, position=position)
        .first()
    )
    if trial is None:
        return None
    return TrialInfo(
        item_id=trial.item_id,
        gold_index=trial.item.gold_index,
        n_options=len(trial.item.options),
        is_catch=trial.role == ConditionItem.Role.CATCH or trial.item.subject == ATTENTION_CHECK_SUBJECT,
        time_limit_s=trial.time_limit_s,
        condition_kind=trial.condition.kind,
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
    return RunReport(config=config, results=list(results), wall_s=time.perf_counter() - start,
                     latencies_s=latencies)


# --- Checking the database afterwards ------------------------------------------------------------------


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # participant status → count, for this run's bots
    trials: int = 0

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
        for p in Participant.objects.filter(study=study, external_id__in=[f"prolific:{r.pid}"
                                                                          for r in report.results])
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
        expected_code = (study.screenout_code if participant.status == Participant.Status.SCREENED_OUT
                         else study.completion_code)
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
            problems.append(f"{who}: trials differ from the study's items (extra {sorted(extra)}, "
                            f"missing {sorted(missing)})")
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
            want_kind = {Trial.SubmitKind.SERVER, Trial.SubmitKind.AUTO} if o.timed_out else {
                Trial.SubmitKind.MANUAL}
            if t.status != want_status or t.submit_kind not in want_kind:
                problems.append(f"{who}: trial #{o.position} is {t.status}/{t.submit_kind}, expected "
                                f"{want_status}/{'|'.join(sorted(want_kind))}")
            if t.choice != o.choice:
                problems.append(f"{who}: trial #{o.position} recorded choice {t.choice}, bot chose {o.choice}")
            if o.confidence is not None and t.confidence != o.confidence:
                problems.append(f"{who}: trial #{o.position} recorded confidence {t.confidence}, "
                                f"bot gave {o.confidence}")
            if t.item.gold_index is not None and t.correct != o.intended_correct:
                problems.append(f"{who}: trial #{o.position} scored correct={t.correct}, "
                                f"bot meant {o.intended_correct}")
        if result.finished and not result.resumed_finished and len(result.outcomes) != len(trials):
            problems.append(f"{who}: answered {len(result.outcomes)} items, participant has {len(trials)}")
    return check


def format_summary(report: RunReport, check: CheckResult | None) -> list[str]:
    s = report.summary()
    c = report.config
    statuses = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(check.statuses.items())) \
        if check else ""
    lines = [
        f"run_bots {c.slug}: {s['bots']} bots against {c.base_url} (concurrency {c.concurrency}, "
        f"accuracy {c.accuracy:g}, timeout rate {c.timeout_rate:g}, seed {c.seed})",
        f"  participants completed: {s['finished']}/{s['bots']}"
        + (f" ({statuses})" if statuses else "")
        + (f"; {s['resumed_finished']} had already finished (same seed run before?)" if s["resumed_finished"]
           else ""),
        f"  answers: {s['answers'] + s['timeouts']} ({s['answers']} submitted, {s['timeouts']} left to time out)",
        f"  requests: {s['requests']} (p50 {s['latency_ms']['p50']} ms, p95 {s['latency_ms']['p95']} ms, "
        f"max {s['latency_ms']['max']} ms)",
        f"  errors: {s['errors']}",
        f"  wall time: {s['wall_s']:.1f} s, {s['answers_per_s'] or 0:.1f} answers/s",
    ]
    if check is not None:
        lines.append(f"  check: {'OK' if check.ok else f'{len(check.problems)} problem(s)'} "
                     f"({sum(check.statuses.values())} participants, {check.trials} trials in the database)")
    return lines
