"""Where the letter distributions come from: TGI, an OpenAI-compatible server, or the simulated endpoint.

Every backend answers two questions for the runner, on its event loop:

* `distribution(prompt, item)`: the next-token log-probability of each option letter after `prompt`;
* `sample(prompt, item, j)`: the j-th sampled chain-of-thought reasoning after `prompt`.

TGI, raw-text prompts (the paper's templates): ONE `/generate` request per item with `top_n_tokens` and
`max_new_tokens=1` gives the exact next-token log-probabilities of the top n tokens. A letter that is not
among them is then scored explicitly: the prompt with the letter appended is sent with
`decoder_input_details=true` and the letter's prefill log-probability is read back (exact too, one more
request per missing letter). See docs/baselines.md for why this split.

Chat prompts (OpenAI-compatible servers, and TGI with a chat template): `/v1/chat/completions` with
`logprobs` and `top_logprobs`. The chat API has no prompt log-probabilities, so a letter missing from the top
list cannot be scored exactly: it gets an upper bound, recorded in `missing_letters` (method `upper_bound`).

Failures become `ItemError(kind, detail)`. Overload (429), connection failures and timeouts are retried
with bounded exponential backoff first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import zlib
from dataclasses import dataclass, field

from huggingface_hub import AsyncInferenceClient

from oversight.assistant.backends import GenerationRequest, classify
from oversight.assistant.simulated import SimulatedItem, SimulationSettings, believed_option

from .prompts import JUDGE_OPTIONS, Prompt, PromptItem, judge_template
from .scoring import CotSample, letters_in_top, spelling_for_missing
from .transport import JSONPoster

RETRYABLE = frozenset({"busy", "unavailable", "timeout"})
# Kinds that usually say more about the server or the run's configuration than about the item: many in a row
# trip the runner's breaker (an outage, a wrong URL or token, a parameter the server refuses).
TRANSIENT = RETRYABLE | {"invalid_request"}


class ItemError(Exception):
    def __init__(self, kind: str, detail: str = "", *, status: int | None = None, response: dict | None = None):
        self.kind = kind
        self.detail = detail[:4000]
        self.status = status
        self.response = response or {}
        super().__init__(f"{kind}: {detail}" if detail else kind)


# TGI's two length errors (validation.rs) and the usual OpenAI-compatible wording.
_LENGTH_RE = re.compile(
    r"`inputs` tokens \+ `max_new_tokens` must be|`inputs` must have less than|context length"
    r"|too many tokens|prompt is too long",
    re.IGNORECASE,
)


def item_error(exc: BaseException) -> ItemError:
    """A client exception as an ItemError, with the assistant's classification of HTTP/TGI failures."""
    if isinstance(exc, ItemError):
        return exc
    err = classify(exc)
    kind = err.kind
    if kind in ("too_long", "generation") and (err.status == 422 or "validation error" in err.detail.lower()):
        # classify reads any 422 mentioning "token" as too long; `top_n_tokens` must be <= 5 is a bad parameter.
        kind = "too_long" if _LENGTH_RE.search(err.detail) else "invalid_request"
    return ItemError(kind, err.detail, status=err.status)


def _http_error(status: int, body: bytes) -> ItemError:
    """An HTTP error answer from TGI (`{"error", "error_type"}`, or axum's text/plain) as an ItemError."""
    message, error_type = body.decode("utf-8", "replace")[:2000], ""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            message, error_type = str(parsed.get("error", message)), str(parsed.get("error_type") or "")
    except ValueError:
        pass
    detail = f"HTTP {status}: {message}"
    if status == 429 or error_type == "overloaded":
        return ItemError("busy", detail, status=status)
    if status == 422 or error_type == "validation":
        return ItemError("too_long" if _LENGTH_RE.search(message) else "invalid_request", detail, status=status)
    if status in (502, 503, 504):
        return ItemError("unavailable", detail, status=status)
    if status in (400, 401, 403, 404, 405, 413, 415):
        return ItemError("invalid_request", detail, status=status)
    return ItemError("generation", detail, status=status)


@dataclass(frozen=True)
class ItemSpec:
    """One item to score, as plain values (built on the database thread, read on the event loop)."""

    id: int
    key: str  # f"{bank_id}:{external_id}", as the simulated assistant keys its beliefs
    item: PromptItem
    gold_index: int | None
    examples: tuple[PromptItem, ...] = ()
    examples_error: str = ""


@dataclass
class Distribution:
    """The letter log-probabilities at one position (one per option, spellings merged)."""

    logprobs: list[float]
    response: dict
    missing: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    top_n: int = 5
    max_retries: int = 5
    retry_base_s: float = 0.5
    retry_cap_s: float = 8.0
    temperature: float = 0.7
    max_reasoning_tokens: int = 256
    seed: int = 0
    transport: str = "fast"  # TGI raw-text requests: "fast" (transport.JSONPoster) or "httpx" (huggingface_hub's pool)


def _get(obj, key):
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


class Backend:
    def __init__(self, request: GenerationRequest, settings: Settings):
        self.request = request
        self.settings = settings
        self.retries = 0

    async def distribution(self, prompt: Prompt, spec: ItemSpec, salt: str = "") -> Distribution:
        raise NotImplementedError

    async def sample(self, prompt: Prompt, spec: ItemSpec, j: int, stop: list[str]) -> tuple[str, dict]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    def sample_seed(self, spec: ItemSpec, j: int) -> int:
        return zlib.crc32(f"{self.settings.seed}:{spec.key}:{j}".encode())

    async def _call(self, make):
        """Await `make()`, retrying overload / connection / timeout failures with exponential backoff."""
        attempt = 0
        while True:
            try:
                return await make()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every client failure is classified
                err = item_error(exc)
                if err.kind in RETRYABLE and attempt < self.settings.max_retries:
                    delay = min(self.settings.retry_cap_s, self.settings.retry_base_s * 2**attempt)
                    attempt += 1
                    self.retries += 1
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto
                    continue
                if attempt:
                    err.detail = f"{err.detail} (after {attempt} retries)"
                if err is exc:
                    raise
                raise err from exc


class HTTPBackend(Backend):
    """TGI and OpenAI-compatible servers, through ONE AsyncInferenceClient (one connection pool)."""

    def __init__(self, request: GenerationRequest, settings: Settings):
        super().__init__(request, settings)
        self.client = AsyncInferenceClient(
            base_url=request.base_url, api_key=request.token or None, timeout=request.timeout_s
        )
        self.model = request.model_label or None
        self.generate_url = request.base_url.rstrip("/") + "/generate"
        self.headers = {"authorization": f"Bearer {request.token}"} if request.token else {}
        self._http = None
        self.poster: JSONPoster | None = None

    async def aclose(self) -> None:
        if self.poster is not None:
            await self.poster.aclose()
        await self.client.close()

    async def _pool(self):
        """The AsyncInferenceClient's own httpx connection pool (None when this huggingface_hub has no accessor;
        then the public, slower text_generation is used)."""
        if self._http is None:
            getter = getattr(self.client, "_get_async_client", None)
            self._http = (await getter()) if getter is not None else False
        return self._http or None

    async def _generate(self, text: str, **parameters) -> dict:
        """POST /generate and return the JSON answer as a dict.

        By default through `transport.JSONPoster` (see there for why); with transport="httpx" straight through
        the AsyncInferenceClient's own connection pool, still not `text_generation()`, which turns each answer
        into nested dataclasses (asdict + deepcopy) at more CPU than the HTTP exchange itself. Errors map to
        the same kinds as `assistant.backends.classify`."""
        if self.poster is not None:
            body = json.dumps({"inputs": text, "parameters": parameters}, ensure_ascii=False).encode()
            status, content = await self.poster.post("/generate", body)
            if status != 200:
                raise _http_error(status, content)
            try:
                data = json.loads(content)
            except ValueError as exc:
                raise ItemError("bad_response", f"{type(exc).__name__}: {exc} (body {content[:200]!r})") from exc
            return data[0] if isinstance(data, list) and data else data
        http = await self._pool()
        if http is None:
            return await self.client.text_generation(text, **parameters)  # a dict subclass
        response = await http.post(
            self.generate_url,
            json={"inputs": text, "parameters": parameters},
            headers=self.headers,
            timeout=self.request.timeout_s,
        )
        if response.status_code != 200:
            raise _http_error(response.status_code, response.content)
        try:
            data = response.json()
        except ValueError as exc:
            raise ItemError("bad_response", f"{type(exc).__name__}: {exc} (body {response.content[:200]!r})") from exc
        return data[0] if isinstance(data, list) and data else data

    # -- chat (both kinds) ------------------------------------------------------------------------------------

    def _messages(self, prompt: Prompt) -> list[dict]:
        if prompt.messages is not None:
            return list(prompt.messages)
        return [{"role": "user", "content": prompt.text or ""}]

    async def _chat_distribution(self, prompt: Prompt, spec: ItemSpec) -> Distribution:
        letters = spec.item.letters
        out = await self._call(
            lambda: self.client.chat_completion(
                self._messages(prompt),
                model=self.model,
                max_tokens=1,
                logprobs=True,
                top_logprobs=self.settings.top_n,
                temperature=0,
            )
        )
        try:
            choice = out.choices[0]
            content = _get(_get(choice, "logprobs"), "content")
            first = content[0] if content else None
            top = [(_get(t, "token"), _get(t, "logprob")) for t in (_get(first, "top_logprobs") or [])]
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise ItemError("bad_response", f"unexpected chat completion: {exc!r}") from exc
        response = {
            "api": "chat",
            "token": [_get(first, "token"), _get(first, "logprob")] if first else None,
            "top_tokens": [list(p) for p in top],
        }
        if not top:
            raise ItemError(
                "no_logprobs", "the server answered without top_logprobs (does it support logprobs?)", response=response
            )
        merged, spellings = letters_in_top(top, letters)
        response["letters"] = spellings
        missing = []
        absent = [letter for letter in letters if letter not in merged]
        if absent:
            listed = [lp for _, lp in top if lp is not None and math.isfinite(lp)]
            cutoff = min(listed)
            unlisted = max(0.0, 1.0 - sum(math.exp(lp) for lp in listed))
            bound = min(cutoff, math.log(max(unlisted, 1e-12) / len(absent)))
            for letter in absent:
                merged[letter] = bound
                missing.append(
                    {
                        "letter": letter,
                        "method": "upper_bound",
                        "logprob": bound,
                        "top_n_cutoff": cutoff,
                        "unlisted_mass": unlisted,
                    }
                )
        return Distribution([merged[letter] for letter in letters], response, missing)

    async def _chat_sample(self, prompt: Prompt, spec: ItemSpec, j: int) -> tuple[str, dict]:
        out = await self._call(
            lambda: self.client.chat_completion(
                self._messages(prompt),
                model=self.model,
                max_tokens=self.settings.max_reasoning_tokens,
                temperature=self.settings.temperature,
                seed=self.sample_seed(spec, j),
            )
        )
        try:
            choice = out.choices[0]
            text = _get(_get(choice, "message"), "content") or ""
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise ItemError("bad_response", f"unexpected chat completion: {exc!r}") from exc
        return text.strip(), {"finish_reason": _get(choice, "finish_reason")}


class TGIBackend(HTTPBackend):
    def __init__(self, request: GenerationRequest, settings: Settings):
        super().__init__(request, settings)
        if settings.transport == "fast":
            self.poster = JSONPoster(
                request.base_url, token=request.token, timeout_s=request.timeout_s, user_agent="oversight-baselines"
            )

    async def distribution(self, prompt: Prompt, spec: ItemSpec, salt: str = "") -> Distribution:
        if prompt.chat:
            return await self._chat_distribution(prompt, spec)
        letters = spec.item.letters
        text = prompt.text or ""
        out = await self._call(
            lambda: self._generate(
                text,
                max_new_tokens=1,
                details=True,
                top_n_tokens=self.settings.top_n,
                do_sample=False,
            )
        )
        try:
            details = _get(out, "details")
            tops = _get(details, "top_tokens")
            tokens = _get(details, "tokens")
            first = tokens[0] if tokens else None
            top = [(_get(t, "text"), _get(t, "logprob")) for t in (tops[0] if tops else [])]
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise ItemError("bad_response", f"unexpected /generate answer: {exc!r}") from exc
        response = {
            "api": "generate",
            "token": [_get(first, "text"), _get(first, "logprob")] if first else None,
            "top_tokens": [list(p) for p in top],
        }
        if not top:
            raise ItemError(
                "no_logprobs",
                "the server answered without details.top_tokens (is top_n_tokens allowed? TGI's --max-top-n-tokens)",
                response=response,
            )
        merged, spellings = letters_in_top(top, letters)
        response["letters"] = spellings
        missing = []
        absent = [letter for letter in letters if letter not in merged]
        if absent:
            space = spelling_for_missing(spellings, text[-1:].isspace())
            cutoff = min(lp for _, lp in top if lp is not None)
            for letter in absent:
                logprob, scored_tokens, exact = await self._prefill_score(text, space + letter)
                merged[letter] = logprob
                missing.append(
                    {
                        "letter": letter,
                        "method": "prefill",
                        "scored": space + letter,
                        "logprob": logprob,
                        "tokens": scored_tokens,
                        "exact": exact,
                        "top_n_cutoff": cutoff,
                    }
                )
        return Distribution([merged[letter] for letter in letters], response, missing)

    async def _prefill_score(self, text: str, candidate: str) -> tuple[float, list, bool]:
        """The log-probability of `candidate` after `text`: the prompt with the candidate appended, read from
        `details.prefill`. Sums the trailing tokens that make up the candidate; `exact` is False when the
        tokeniser merged the candidate with the end of the prompt."""
        out = await self._call(
            lambda: self._generate(
                text + candidate,
                max_new_tokens=1,
                details=True,
                decoder_input_details=True,
                do_sample=False,
            )
        )
        prefill = _get(_get(out, "details"), "prefill") or []
        covered, total, tokens = "", 0.0, []
        for tok in reversed(prefill):
            tok_text, logprob = _get(tok, "text") or "", _get(tok, "logprob")
            if logprob is None:
                break
            covered = tok_text + covered
            total += logprob
            tokens.insert(0, [tok_text, logprob])
            if len(covered) >= len(candidate):
                break
        if not tokens or len(covered) < len(candidate):
            raise ItemError(
                "no_logprobs",
                f"the server answered without prefill log-probabilities for {candidate!r} (decoder_input_details)",
            )
        return total, tokens, covered == candidate

    async def sample(self, prompt: Prompt, spec: ItemSpec, j: int, stop: list[str]) -> tuple[str, dict]:
        if prompt.chat:
            return await self._chat_sample(prompt, spec, j)
        temperature = self.settings.temperature
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        out = await self._call(
            lambda: self._generate(
                prompt.text or "",
                max_new_tokens=self.settings.max_reasoning_tokens,
                details=True,
                seed=self.sample_seed(spec, j),
                stop=list(stop),
                **sampling,
            )
        )
        text = _get(out, "generated_text") or ""
        for s in stop:
            if s and text.endswith(s):
                text = text[: -len(s)]
        details = _get(out, "details")
        return text.rstrip(), {
            "finish_reason": _get(details, "finish_reason"),
            "generated_tokens": _get(details, "generated_tokens"),
        }


class OpenAIBackend(HTTPBackend):
    async def distribution(self, prompt: Prompt, spec: ItemSpec, salt: str = "") -> Distribution:
        return await self._chat_distribution(prompt, spec)

    async def sample(self, prompt: Prompt, spec: ItemSpec, j: int, stop: list[str]) -> tuple[str, dict]:
        return await self._chat_sample(prompt, spec, j)


def _unit(*parts) -> float:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedBackend(Backend):
    """No HTTP. The distribution peaks on the simulated assistant's belief about the item
    (`simulated.believed_option`: the gold option with the endpoint's configured accuracy), so the
    baseline agrees with what the simulated assistant argues in chat. Deterministic per (seed, item, salt);
    more peaked when the belief is right, which makes the simulated model roughly calibrated."""

    def __init__(self, request: GenerationRequest, settings: Settings):
        super().__init__(request, settings)
        self.simulation = SimulationSettings.from_dict(request.simulation)

    async def distribution(self, prompt: Prompt, spec: ItemSpec, salt: str = "") -> Distribution:
        sim = self.simulation
        item = spec.item
        belief = believed_option(
            SimulatedItem(
                item_key=spec.key,
                question=item.question,
                options=list(item.options),
                gold_index=spec.gold_index,
                passage=item.passage,
            ),
            sim,
        )
        right = spec.gold_index is not None and belief == spec.gold_index
        u = _unit(sim.seed, spec.key, "baseline-margin", salt)
        margin = (0.5 + 3.0 * u) if right else (0.1 + 1.5 * u)
        logits = [_unit(sim.seed, spec.key, "baseline-noise", salt, i) for i in range(len(item.options))]
        logits[belief] = 1.0 + margin  # above every other logit (< 1): the belief is the prediction
        top = max(logits)
        norm = top + math.log(sum(math.exp(v - top) for v in logits))
        logprobs = [v - norm for v in logits]
        return Distribution(logprobs, {"api": "simulated", "believed": belief})

    async def sample(self, prompt: Prompt, spec: ItemSpec, j: int, stop: list[str]) -> tuple[str, dict]:
        return f" (simulated reasoning, sample {j + 1})", {"api": "simulated"}


# --------------------------------------------------------------------------------------------------- scorers


class Scorer:
    """Scores one chain-of-thought sample of an item, higher is better: the paper's preference model, for best of
    N. `score` answers (score, evidence for the result's response)."""

    name = ""

    async def score(self, spec: ItemSpec, prompt: Prompt, sample: CotSample, j: int) -> tuple[float, dict]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class RewardModelScorer(Backend, Scorer):
    """A reward model served over HTTP as a sequence classifier, in text-embeddings-inference's (TEI) format:
    `POST /predict {"inputs": [prompt, reasoning], "raw_scores": true, "truncate": true}` answers
    `[{"score": s, "label": "LABEL_0"}, …]`; the score is the raw logit of `label` (default: the only label).
    `pair=False` sends prompt + reasoning as one text instead, for models trained on whole conversations."""

    name = "reward"

    def __init__(self, request: GenerationRequest, settings: Settings, *, label: str = "", pair: bool = True):
        super().__init__(request, settings)
        self.label = label
        self.pair = pair
        self.poster = JSONPoster(
            request.base_url, token=request.token, timeout_s=request.timeout_s, user_agent="oversight-baselines"
        )

    async def aclose(self) -> None:
        await self.poster.aclose()

    async def score(self, spec: ItemSpec, prompt: Prompt, sample: CotSample, j: int) -> tuple[float, dict]:
        text = prompt.display()
        inputs = [text, sample.reasoning] if self.pair else text + sample.reasoning
        body = json.dumps({"inputs": inputs, "raw_scores": True, "truncate": True}, ensure_ascii=False).encode()

        async def post():
            status, content = await self.poster.post("/predict", body)
            if status != 200:
                raise _http_error(status, content)
            try:
                return json.loads(content)
            except ValueError as exc:
                raise ItemError("bad_response", f"the reward model's answer is not JSON: {content[:200]!r}") from exc

        answer = await self._call(post)
        predictions = answer[0] if isinstance(answer, list) and answer and isinstance(answer[0], list) else answer
        try:
            scores = {str(p["label"]): float(p["score"]) for p in predictions}
        except (KeyError, TypeError, ValueError) as exc:
            raise ItemError("bad_response", f"unexpected /predict answer: {str(answer)[:200]}") from exc
        if self.label:
            if self.label not in scores:
                raise ItemError("bad_response", f"the reward model has no label {self.label!r} ({', '.join(scores)})")
            return scores[self.label], {"label": self.label}
        if len(scores) != 1:
            raise ItemError(
                "invalid_request",
                f"the reward model answers {len(scores)} labels ({', '.join(scores)}): say which counts (reward_label)",
            )
        label, value = next(iter(scores.items()))
        return value, {"label": label}


class JudgeScorer(Scorer):
    """A judge prompt (`prompts.judge_template`) scored by log-probability on a backend: the sample's score is
    log P(A: sound) − log P(B: flawed) after the judge's question."""

    name = "judge"

    def __init__(self, backend: Backend, template, *, owns_backend: bool):
        self.backend = backend
        self.template = template
        self.owns_backend = owns_backend

    async def aclose(self) -> None:
        if self.owns_backend:
            await self.backend.aclose()

    async def score(self, spec: ItemSpec, prompt: Prompt, sample: CotSample, j: int) -> tuple[float, dict]:
        judged = self.template.render(spec.item, reasoning=sample.reasoning)
        question = ItemSpec(
            id=spec.id,
            key=f"{spec.key}:judge",
            item=PromptItem(question=spec.item.question, options=JUDGE_OPTIONS),
            gold_index=None,
        )
        dist = await self.backend.distribution(judged, question, salt=f"judge{j}")
        return dist.logprobs[0] - dist.logprobs[1], {"judge_logprobs": dist.logprobs}


class SimulatedScorer(Scorer):
    """A simulated endpoint as the scorer: a deterministic score per (seed, item, sample) in [0, 1). It stands in
    for a reward model in the demo and in tests; it knows nothing about the answer."""

    name = "simulated"

    def __init__(self, request: GenerationRequest):
        self.seed = SimulationSettings.from_dict(request.simulation).seed

    async def score(self, spec: ItemSpec, prompt: Prompt, sample: CotSample, j: int) -> tuple[float, dict]:
        return _unit(self.seed, spec.key, "reward", j, sample.reasoning), {"api": "simulated"}


def scorer_for(
    kind: str,
    *,
    run_backend: Backend,
    request: GenerationRequest | None,
    settings: Settings,
    label: str = "",
    pair: bool = True,
    judge_prompt: str = "",
) -> Scorer:
    """The scorer of a best-of-N run: `kind` "reward" or "judge" on `request` (the scorer's endpoint; a judge
    without one uses the run's own backend). A simulated scorer endpoint scores by `SimulatedScorer`."""
    if request is not None and request.kind == "simulated":
        return SimulatedScorer(request)
    if kind == "reward":
        if request is None:
            raise ValueError("a reward model needs its endpoint")
        return RewardModelScorer(request, settings, label=label, pair=pair)
    if request is None:
        backend, owns = run_backend, False
    else:
        backend, owns = backend_for(request, settings), True
    chat = request.kind == "openai" if request is not None else isinstance(run_backend, OpenAIBackend)
    return JudgeScorer(backend, judge_template(judge_prompt, chat=chat), owns_backend=owns)


def backend_for(request: GenerationRequest, settings: Settings) -> Backend:
    if request.kind == "simulated":
        return SimulatedBackend(request, settings)
    if request.kind == "openai":
        return OpenAIBackend(request, settings)
    return TGIBackend(request, settings)
