"""TGI's wire format, without any I/O: JSON as serde writes it, a toy tokenizer, payload builders, errors.

Everything here mirrors text-generation-inference v3.3.x (see shared/tgi-protocol/README.md): key order follows
the Rust structs in ``router/src/lib.rs``, floats are f32 printed the way ``ryu`` prints them, and error texts
are copied from ``validation.rs`` / ``infer/mod.rs`` and axum's JSON extractor. ``faketgi`` does the I/O.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------------------------------
# JSON exactly as serde_json writes it: compact, non-ASCII kept raw, `/` not escaped, floats as f32 via ryu.


def dumps(obj: Any) -> str:
    out: list[str] = []
    _encode(obj, out.append)
    return "".join(out)


_encode_str = json.encoder.encode_basestring  # escapes `"`, `\` and C0 controls only, like serde_json


def _encode(obj: Any, emit: Callable[[str], None]) -> None:
    if obj is None:
        emit("null")
    elif obj is True:
        emit("true")
    elif obj is False:
        emit("false")
    elif isinstance(obj, str):
        emit(_encode_str(obj))
    elif isinstance(obj, int):
        emit(str(obj))
    elif isinstance(obj, float):
        # Every float TGI puts in a body is an f32 logprob; NaN (the first prefill token) serializes as null.
        emit("null" if not math.isfinite(obj) else ryu(to_f32(obj), single=True))
    elif isinstance(obj, Mapping):
        emit("{")
        for i, (key, value) in enumerate(obj.items()):
            if i:
                emit(",")
            emit(_encode_str(str(key)))
            emit(":")
            _encode(value, emit)
        emit("}")
    elif isinstance(obj, Iterable):
        emit("[")
        for i, value in enumerate(obj):
            if i:
                emit(",")
            _encode(value, emit)
        emit("]")
    else:  # pragma: no cover - programming error
        raise TypeError(f"cannot encode {type(obj).__name__}")


def to_f32(x: float) -> float:
    """Round to the nearest IEEE single, as the Rust side stores logprobs."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _shortest_digits(v: float, single: bool) -> tuple[str, int]:
    """Shortest decimal digits d and exponent k with d·10^k reading back as v (v > 0)."""
    for precision in range(1, 18):
        text = f"{v:.{precision - 1}e}"
        back = float(text)
        if (to_f32(back) if single else back) == v:
            mantissa, exponent = text.split("e")
            digits = mantissa.replace(".", "").rstrip("0") or "0"
            return digits, int(exponent) - (len(digits) - 1)
    raise AssertionError("unreachable: 17 significant digits always round-trip")  # pragma: no cover


def ryu(v: float, *, single: bool) -> str:
    """Format a finite float like Rust's ``ryu`` (what serde_json uses): ``-2.877385``, ``1.0``, ``1e-7``."""
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    sign = "-" if v < 0 else ""
    digits, k = _shortest_digits(abs(v), single)
    length = len(digits)
    kk = length + k  # position of the decimal point relative to the first digit
    limit = 13 if single else 16
    if k >= 0 and kk <= limit:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= limit:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + text


# --------------------------------------------------------------------------------------------------------------
# A toy tokenizer. GPT-2-like pre-tokenization: a word keeps its leading space (" Paris"), digits are single
# tokens (as in Llama), each punctuation character is a token, and chat-template markers are special tokens.
# Concatenating the token texts always gives back the input. Ids are stable hashes, not a real vocabulary.


@dataclass(frozen=True)
class Tok:
    id: int
    text: str
    special: bool = False


EOS = Tok(2, "</s>", True)
_SPECIALS = {"<s>": 1, "</s>": 2}
_TOKEN_RE = re.compile(r"<\|[A-Za-z0-9_]{1,32}\|>|</s>|<s>| ?[^\W\d_]+| ?\d| ?[^\s\w]| ?_|\s+(?!\S)|\s+")


def token_id(text: str) -> int:
    if text in _SPECIALS:
        return _SPECIALS[text]
    if text.startswith("<|") and text.endswith("|>"):
        return 32000 + zlib.crc32(text.encode()) % 100
    return 1000 + zlib.crc32(text.encode()) % 30000


def tokenize(text: str) -> list[Tok]:
    toks = []
    for piece in _TOKEN_RE.findall(text):
        special = piece in _SPECIALS or (piece.startswith("<|") and piece.endswith("|>"))
        toks.append(Tok(token_id(piece), piece, special))
    return toks


def message_text(content: Any) -> str:
    """A chat message's content as text (a string, or a list of text / image_url chunks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for chunk in content:
        if not isinstance(chunk, Mapping):
            continue
        if chunk.get("type") == "text":
            parts.append(str(chunk.get("text", "")))
        elif chunk.get("type") == "image_url":
            parts.append(f"![]({(chunk.get('image_url') or {}).get('url', '')})")
    return "".join(parts)


def apply_chat_template(messages: list[Mapping[str, Any]]) -> str:
    """A Zephyr-style template (the recorded cassettes' model): ``<|role|>\\ncontent</s>\\n`` … ``<|assistant|>\\n``."""
    parts = [f"<|{m.get('role', 'user')}|>\n{message_text(m.get('content'))}</s>\n" for m in messages]
    parts.append("<|assistant|>\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------
# The default reply: plausible, deterministic, and when the conversation carries a passage it quotes one of its
# sentences verbatim in double quotes (what quote-verification tests need).

_PASSAGE_TAG_RE = re.compile(r"<passage>(.*?)</passage>", re.IGNORECASE | re.DOTALL)
_PASSAGE_HEADER_RE = re.compile(
    r"^(?:passage|story|article|text|context)\s*:\s*\n?(.*?)(?=^\s*(?:question|q:|choices|options|\(?[A-D][).:]\s)|\Z)",
    re.IGNORECASE | re.DOTALL | re.MULTILINE,
)
_SENTENCE_RE = re.compile(r"\S[^.!?]*?[.!?]+[\"'”’)\]]*(?=\s|\Z)", re.DOTALL)
_WORD_RE = re.compile(r"[^\W\d_]{4,}")


def find_passage(messages: list[Mapping[str, Any]]) -> str | None:
    """The passage a conversation is about: a ``<passage>`` block, a ``Passage:`` section, or a long message."""
    texts = [message_text(m.get("content")) for m in messages if m.get("role") != "assistant"]
    for text in texts:
        if match := _PASSAGE_TAG_RE.search(text):
            return match.group(1).strip()
    for text in texts:
        if (match := _PASSAGE_HEADER_RE.search(text)) and len(_SENTENCE_RE.findall(match.group(1))) >= 2:
            return match.group(1).strip()
    candidates = [t for t in texts if len(t) >= 300 and len(_SENTENCE_RE.findall(t)) >= 3]
    return max(candidates, key=len) if candidates else None


def pick_sentence(passage: str, question: str) -> str | None:
    """The passage sentence sharing most words with the question (earliest on ties), verbatim."""
    sentences = [s for s in _SENTENCE_RE.findall(passage) if not s.rstrip("\"'”’)]").endswith("?")]
    if not sentences:
        return None
    preferred = [s for s in sentences if "\n" not in s and 20 <= len(s) <= 300] or sentences
    asked = {w.lower() for w in _WORD_RE.findall(question)}
    return max(preferred, key=lambda s: (len(asked & {w.lower() for w in _WORD_RE.findall(s)}), -preferred.index(s)))


_STORY_RE = re.compile(r"<story>\n?(.*?)\n?</story>", re.DOTALL)
_ASSIGNED_RE = re.compile(r"^You argue that the answer is ([AB]): (.*)$", re.MULTILINE)


def advocate_reply(messages: list[Mapping[str, Any]]) -> str | None:
    """A protocol advocate's turn (oversight.assistant.advocates builds its context), or None for other requests:
    its choice of answer when asked for one, else a private scratchpad and an argument for the assigned answer
    (evidence only: no answer) quoting the story's most relevant sentence in <quote> tags, verbatim."""
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    context = users[-1] if users else ""
    story = _STORY_RE.search(context)
    if story is None or "The two answers:" not in context:
        return None
    if "Reply with the letter A or B only" in context:
        return "A"
    assigned = _ASSIGNED_RE.search(context)
    sentence = pick_sentence(story.group(1), assigned.group(2) if assigned else context)
    quote = f" <quote>{sentence.strip()}</quote>" if sentence else ""
    if assigned is None:
        return f"<thinking>Evidence only.</thinking>From the story:{quote}"
    letter = assigned.group(1)
    return f"<thinking>I defend {letter}.</thinking>The answer is {letter}, as the story shows:{quote}"


def default_reply(messages: list[Mapping[str, Any]]) -> str:
    if (turn := advocate_reply(messages)) is not None:
        return turn
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    question = users[-1] if users else ""
    passage = find_passage(messages)
    if passage:
        asked = question.replace(passage, " ")
        sentence = pick_sentence(passage, asked)
        if sentence:
            return (
                f'According to the passage, "{sentence}" '
                "That is the most relevant evidence I can find for your question."
            )
    words = re.sub(r"\s+", " ", question).strip().split(" ")[:8]
    topic = " ".join(words).rstrip(" ?.!,;:") or "that"
    return f"You asked about {topic}. Here is my best answer: it depends on the details, so let me explain."


# --------------------------------------------------------------------------------------------------------------
# Log-probabilities. Unscripted ones are stable pseudo-random values; scripted ones come from a mapping of token
# text → logprob (``letter_logprobs``), for the multiple-choice baseline scorer.

FILLER_TOKENS = ("\n", " The", " I", ".", " the", ",", " answer", " It", " is", ":")


def pseudo_logprob(text: str, salt: int = 0) -> float:
    """A stable logprob between -2.5 and -0.05 for a token nobody scripted."""
    return -(0.05 + (zlib.crc32(f"{salt}:{text}".encode()) % 2450) / 1000.0)


def ranked(mapping: Mapping[str, float]) -> list[tuple[str, float]]:
    """Mapping entries, most likely first (stable for ties)."""
    return sorted(mapping.items(), key=lambda kv: -kv[1])


def top_alternatives(
    chosen: Tok, logprob: float, n: int, mapping: Mapping[str, float] | None
) -> list[tuple[Tok, float]]:
    """The top-n list at one position, sorted descending, n entries long.

    With a mapping (the scored position) the entries are the mapping's, truncated to n (so a letter can be
    missing), padded with filler tokens below the mapping's minimum. Without one, the chosen token leads and
    fillers follow, each 1.25 nats lower.
    """
    if n <= 0:
        return []
    if mapping:
        entries = [(Tok(token_id(text), text), float(lp)) for text, lp in ranked(mapping)[:n]]
        floor = min(mapping.values())
    else:
        entries = [(chosen, logprob)]
        floor = logprob
    taken = {tok.text for tok, _ in entries}
    for filler in FILLER_TOKENS:
        if len(entries) >= n:
            break
        if filler not in taken:
            floor -= 1.25
            entries.append((Tok(token_id(filler), filler), floor))
    return entries[:n]


def scripted_suffix(tokens: list[Tok], mapping: Mapping[str, float]) -> tuple[int, float] | None:
    """Where a scripted candidate ends the prompt: (index of its first token, its logprob), or None.

    A key matches when the prompt's last tokens are the key's tokens; exact matches win, then matches that
    ignore the leading space of the first token ("A" matches a prompt ending in " A"), longer keys first.
    The first prompt token is never scored (TGI reports null for it), so a match may not include it.
    """
    best: tuple[int, int, int, float] | None = None  # (exactness, length, start, logprob)
    for key, lp in mapping.items():
        key_toks = [t.text for t in tokenize(key)]
        m = len(key_toks)
        if m == 0 or m >= len(tokens):
            continue
        tail = [t.text for t in tokens[-m:]]
        if tail == key_toks:
            exactness = 2
        elif tail[0].lstrip() == key_toks[0].lstrip() and tail[1:] == key_toks[1:]:
            exactness = 1
        else:
            continue
        candidate = (exactness, m, len(tokens) - m, float(lp))
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return None if best is None else (best[2], best[3])


def prefill_logprobs(tokens: list[Tok], mapping: Mapping[str, float] | None) -> list[float | None]:
    """Per-prompt-token logprobs: null first; a scripted candidate at the end gets its mapped value on its first
    token and 0.0 on the rest (so summing the candidate's tokens gives the mapped value); others pseudo-random."""
    values: list[float | None] = [None] + [pseudo_logprob(t.text, i) - 1.0 for i, t in enumerate(tokens) if i]
    if mapping and (match := scripted_suffix(tokens, mapping)):
        start, lp = match
        values[start] = lp
        for i in range(start + 1, len(tokens)):
            values[i] = 0.0
    return values[: len(tokens)]


# --------------------------------------------------------------------------------------------------------------
# Generation plan: which tokens come out, with which logprobs, and why generation stopped.


@dataclass
class GenToken:
    tok: Tok
    logprob: float
    top: list[tuple[Tok, float]] = field(default_factory=list)


@dataclass
class Plan:
    tokens: list[GenToken]
    finish_reason: str  # "length" | "eos_token" | "stop_sequence"

    @property
    def text(self) -> str:
        return "".join(g.tok.text for g in self.tokens if not g.tok.special)


Reply = str | Sequence[str | Mapping[str, Any]]


def scripted_tokens(reply: Reply) -> list[tuple[Tok, float | None]]:
    """A reply as (token, logprob or None): a string goes through the toy tokenizer; a list gives the tokens
    verbatim, each a text or a ``{"text", "id"?, "logprob"?, "special"?}`` object (to replay recorded output)."""
    if isinstance(reply, str):
        return [(tok, None) for tok in tokenize(reply)]
    out: list[tuple[Tok, float | None]] = []
    for item in reply:
        if isinstance(item, str):
            out.append((Tok(token_id(item), item), None))
        else:
            text = str(item["text"])
            tok = Tok(int(item.get("id", token_id(text))), text, bool(item.get("special", False)))
            out.append((tok, None if item.get("logprob") is None else float(item["logprob"])))
    return out


def plan_generation(
    reply: Reply,
    *,
    max_new_tokens: int,
    stop: list[str],
    top_n: int,
    letter_logprobs: Mapping[str, float] | None = None,
) -> Plan:
    """Tokens of ``reply`` until ``max_new_tokens``, a stop sequence or a scripted special token, then EOS if
    there is room ("eos_token"); cut short by ``max_new_tokens`` it is "length".

    When ``letter_logprobs`` is given (a scoring request), the reply is replaced by the mapping's argmax key,
    whose first token carries the mapped logprob and the mapped top-n list.
    """
    if letter_logprobs:
        best, best_lp = ranked(letter_logprobs)[0]
        script = [(tok, float(best_lp) if i == 0 else 0.0) for i, (tok, _) in enumerate(scripted_tokens(best))]
    else:
        script = scripted_tokens(reply)
    out: list[GenToken] = []
    text = ""
    finish = None
    for i, (tok, scripted_lp) in enumerate(script):
        if len(out) >= max_new_tokens:
            finish = "length"
            break
        lp = pseudo_logprob(tok.text, i) if scripted_lp is None else scripted_lp
        mapping = letter_logprobs if letter_logprobs and i == 0 else None
        out.append(GenToken(tok, lp, top_alternatives(tok, lp, top_n, mapping)))
        text += tok.text
        if tok.special:
            finish = "eos_token"
            break
        if any(s and text.endswith(s) for s in stop):
            finish = "stop_sequence"
            break
    if finish is None:
        if len(out) < max_new_tokens:
            lp = -0.01
            out.append(GenToken(EOS, lp, top_alternatives(EOS, lp, top_n, None)))
            finish = "eos_token"
        else:
            finish = "length"
    return Plan(out, finish)


# --------------------------------------------------------------------------------------------------------------
# Payloads, key order as in lib.rs.


def token_json(g: GenToken) -> dict[str, Any]:
    return {"id": g.tok.id, "text": g.tok.text, "logprob": g.logprob, "special": g.tok.special}


def top_json(top: list[tuple[Tok, float]]) -> list[dict[str, Any]]:
    return [{"id": t.id, "text": t.text, "logprob": lp, "special": t.special} for t, lp in top]


def details_json(plan: Plan, *, seed: int | None, prefill: list[dict[str, Any]], top_n: int) -> dict[str, Any]:
    details: dict[str, Any] = {
        "finish_reason": plan.finish_reason,
        "generated_tokens": len(plan.tokens),
        "seed": seed,
        "prefill": prefill,
        "tokens": [token_json(g) for g in plan.tokens],
    }
    if top_n > 0:  # `skip_serializing_if = "Vec::is_empty"`
        details["top_tokens"] = [top_json(g.top) for g in plan.tokens]
    return details


def prefill_json(tokens: list[Tok], logprobs: list[float | None]) -> list[dict[str, Any]]:
    return [{"id": t.id, "text": t.text, "logprob": lp} for t, lp in zip(tokens, logprobs, strict=True)]


def stream_event(
    index: int, g: GenToken, *, top_n: int, generated_text: str | None, details: dict[str, Any] | None
) -> dict[str, Any]:
    event: dict[str, Any] = {"index": index, "token": token_json(g)}
    if top_n > 0:
        event["top_tokens"] = top_json(g.top)
    event["generated_text"] = generated_text
    event["details"] = details
    return event


def chat_finish_reason(finish_reason: str) -> str:
    """``FinishReason::format(true)``: EOS reads "stop" in the chat API."""
    return "stop" if finish_reason == "eos_token" else finish_reason


def chat_logprobs(tokens: list[GenToken]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": g.tok.text,
                "logprob": g.logprob,
                "top_logprobs": [{"token": t.text, "logprob": lp} for t, lp in g.top],
            }
            for g in tokens
        ]
    }


def chat_completion(
    *, model: str, fingerprint: str, created: int, plan: Plan, logprobs: bool, prompt_tokens: int
) -> dict[str, Any]:
    completion_tokens = len(plan.tokens)
    return {
        "object": "chat.completion",
        "id": "",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": plan.text},
                "logprobs": chat_logprobs(plan.tokens) if logprobs else None,
                "finish_reason": chat_finish_reason(plan.finish_reason),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat_chunk(
    *, model: str, fingerprint: str, created: int, g: GenToken, logprobs: bool, finish_reason: str | None
) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "id": "",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {
                "index": 0,
                # A special token (EOS) streams as empty content; every chunk repeats the role.
                "delta": {"role": "assistant", "content": "" if g.tok.special else g.tok.text},
                "logprobs": chat_logprobs([g]) if logprobs else None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": None,
    }


def usage_chunk(*, model: str, fingerprint: str, created: int, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "object": "chat.completion.chunk",
        "id": "",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def info_json(
    *,
    model_id: str,
    max_concurrent_requests: int,
    max_input_tokens: int,
    max_total_tokens: int,
    version: str,
    max_best_of: int = 2,
    max_stop_sequences: int = 4,
    max_client_batch_size: int = 4,
    docker_label: str | None = None,
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": max_concurrent_requests,
        "max_best_of": max_best_of,
        "max_stop_sequences": max_stop_sequences,
        "max_input_tokens": max_input_tokens,
        "max_total_tokens": max_total_tokens,
        "validation_workers": 2,
        "max_client_batch_size": max_client_batch_size,
        "router": "text-generation-router",
        "version": version,
        "sha": None,
        "docker_label": docker_label,
    }


# --------------------------------------------------------------------------------------------------------------
# TGI errors (infer/mod.rs `InferError`, validation.rs `ValidationError`).


@dataclass
class InferError(Exception):
    status: int
    error_type: str
    message: str

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}

    def openai_event(self) -> dict[str, Any]:
        """The chat-stream error event since TGI 2.4.1 (`into_openai_event`): 422 whatever the cause."""
        return {"error": {"message": self.message, "http_status_code": 422}}


def validation_error(detail: str) -> InferError:
    return InferError(422, "validation", f"Input validation error: {detail}")


def overloaded() -> InferError:
    return InferError(429, "overloaded", "Model is overloaded")


def generation_error(detail: str) -> InferError:
    return InferError(424, "generation", f"Request failed during generation: {detail}")


def incomplete_generation() -> InferError:
    return InferError(500, "incomplete_generation", "Incomplete generation")


def incomplete_generation_stream() -> InferError:
    return InferError(500, "incomplete_generation_stream", "Incomplete generation stream")


def error_of_kind(kind: str, message: str | None = None) -> InferError:
    """An InferError by ``error_type`` (what the fault knobs name); ``message`` overrides the full text."""
    makers: dict[str, Callable[[], InferError]] = {
        "generation": lambda: generation_error("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "overloaded": overloaded,
        "validation": lambda: validation_error("`temperature` must be strictly positive"),
        "incomplete_generation": incomplete_generation,
        "incomplete_generation_stream": incomplete_generation_stream,
    }
    if kind not in makers:
        raise ValueError(f"unknown error kind {kind!r}; one of {sorted(makers)}")
    err = makers[kind]()
    if message:
        err.message = message
    return err


ERROR_KINDS = ("generation", "overloaded", "validation", "incomplete_generation", "incomplete_generation_stream")


def error_for_status(status: int, message: str | None = None) -> tuple[str, dict[str, str] | None]:
    """The body TGI (or, for 503, its health route) sends with an HTTP status: (content-type, body or None)."""
    by_status = {422: "validation", 424: "generation", 429: "overloaded", 500: "incomplete_generation"}
    if status in by_status:
        return "application/json", error_of_kind(by_status[status], message).body()
    if status == 503:
        return "application/json", {"error": message or "unhealthy", "error_type": "healthcheck"}
    return "text/plain; charset=utf-8", None


# --------------------------------------------------------------------------------------------------------------
# Request bodies as axum's `Json` extractor + serde see them: 415 / 400 / 422 text/plain rejections, with
# serde_json's messages and `serde_path_to_error` paths ("messages[0].role: …"). Good for the common cases,
# not a full serde.


@dataclass
class Rejection(Exception):
    status: int
    text: str


def _spec(kind: str, *args: Any) -> tuple:
    return (kind, *args)


STR = _spec("str")
BOOL = _spec("bool")
F32 = _spec("f32")
ANY = _spec("any")
U32 = _spec("int", "u32", 0, 2**32 - 1)
U64 = _spec("int", "u64", 0, 2**64 - 1)
USIZE = _spec("int", "usize", 0, 2**64 - 1)
I32 = _spec("int", "i32", -(2**31), 2**31 - 1)


def OPT(inner: tuple) -> tuple:  # noqa: N802 - reads like a type
    return _spec("opt", inner)


def SEQ(inner: tuple) -> tuple:  # noqa: N802
    return _spec("seq", inner)


def STRUCT(name: str, fields: dict[str, tuple], required: tuple[str, ...] = ()) -> tuple:  # noqa: N802
    return _spec("struct", name, fields, required)


def UNTAGGED(name: str, *variants: tuple) -> tuple:  # noqa: N802
    return _spec("untagged", name, variants)


GENERATE_PARAMETERS = STRUCT(
    "GenerateParameters",
    {
        "best_of": OPT(USIZE),
        "temperature": OPT(F32),
        "repetition_penalty": OPT(F32),
        "frequency_penalty": OPT(F32),
        "top_k": OPT(I32),
        "top_p": OPT(F32),
        "typical_p": OPT(F32),
        "do_sample": BOOL,
        "max_new_tokens": OPT(U32),
        "return_full_text": OPT(BOOL),
        "stop": SEQ(STR),
        "truncate": OPT(USIZE),
        "watermark": BOOL,
        "details": BOOL,
        "decoder_input_details": BOOL,
        "seed": OPT(U64),
        "top_n_tokens": OPT(U32),
        "grammar": OPT(ANY),
        "adapter_id": OPT(STR),
    },
)
GENERATE_REQUEST = STRUCT("GenerateRequest", {"inputs": STR, "parameters": GENERATE_PARAMETERS}, ("inputs",))
COMPAT_GENERATE_REQUEST = STRUCT(
    "CompatGenerateRequest", {"inputs": STR, "parameters": GENERATE_PARAMETERS, "stream": BOOL}, ("inputs",)
)
MESSAGE = STRUCT(
    "Message", {"role": STR, "content": UNTAGGED("MessageContent", STR, SEQ(ANY)), "name": OPT(STR)}, ("role",)
)
CHAT_REQUEST = STRUCT(
    "ChatRequest",
    {
        "model": OPT(STR),
        "messages": SEQ(MESSAGE),
        "frequency_penalty": OPT(F32),
        "logprobs": OPT(BOOL),
        "top_logprobs": OPT(U32),
        "max_tokens": OPT(U32),
        "max_completion_tokens": OPT(U32),
        "n": OPT(U32),
        "presence_penalty": OPT(F32),
        "stop": OPT(SEQ(STR)),
        "stream": BOOL,
        "seed": OPT(U64),
        "temperature": OPT(F32),
        "top_p": OPT(F32),
        "stream_options": OPT(STRUCT("StreamOptions", {"include_usage": BOOL}, ("include_usage",))),
    },
    ("messages",),
)


def _unexpected(v: Any) -> str:
    if isinstance(v, bool):
        return f"boolean `{'true' if v else 'false'}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{ryu(v, single=False) if math.isfinite(v) else v}`"
    if isinstance(v, str):
        return f"string {_rust_debug(v)}"
    if v is None:
        return "null"
    return "sequence" if isinstance(v, list) else "map"


def _rust_debug(s: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
    out = []
    for ch in s:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _expected(spec: tuple) -> str:
    kind = spec[0]
    return {
        "str": "a string",
        "bool": "a boolean",
        "f32": "f32",
        "seq": "a sequence",
    }.get(kind) or (spec[1] if kind == "int" else f"struct {spec[1]}")


# An error found in a body: (path, message, anchor) where anchor says where serde would report it:
# "end" of the value, "start" of a container it refused, or "close" of the struct missing a field.
_Found = tuple[tuple, str, str]


def _check(spec: tuple, v: Any, path: tuple) -> _Found | None:
    kind = spec[0]
    if kind == "any":
        return None
    if kind == "opt":
        return None if v is None else _check(spec[1], v, path)

    def invalid() -> _Found:
        anchor = "start" if isinstance(v, (list, dict)) else "end"
        return path, f"invalid type: {_unexpected(v)}, expected {_expected(spec)}", anchor

    if kind == "str":
        return None if isinstance(v, str) else invalid()
    if kind == "bool":
        return None if isinstance(v, bool) else invalid()
    if kind == "f32":
        return None if isinstance(v, (int, float)) and not isinstance(v, bool) else invalid()
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            return invalid()
        _, name, lo, hi = spec
        return None if lo <= v <= hi else (path, f"invalid value: integer `{v}`, expected {name}", "end")
    if kind == "seq":
        if not isinstance(v, list):
            return invalid()
        for i, item in enumerate(v):
            if found := _check(spec[1], item, (*path, i)):
                return found
        return None
    if kind == "untagged":
        if any(_check(variant, v, path) is None for variant in spec[2]):
            return None
        return path, f"data did not match any variant of untagged enum {spec[1]}", "end"
    if kind == "struct":
        if not isinstance(v, dict):
            return invalid()
        _, _, fields, required = spec
        for key, value in v.items():
            if key in fields and (found := _check(fields[key], value, (*path, key))):
                return found
        for key in required:
            if key not in v:
                return path, f"missing field `{key}`", "close"
        return None
    raise AssertionError(kind)  # pragma: no cover


def _spans(text: str) -> dict[tuple, tuple[int, int]]:
    """(start, end) offsets of every value in a valid JSON text, by path."""
    spans: dict[tuple, tuple[int, int]] = {}
    ws = re.compile(r"[ \t\n\r]*")
    decoder = json.JSONDecoder()

    def value(i: int, path: tuple) -> int:
        i = ws.match(text, i).end()
        start = i
        if text[i] in "{[":
            closing = "}" if text[i] == "{" else "]"
            i = ws.match(text, i + 1).end()
            index = 0
            while text[i] != closing:
                if closing == "}":
                    key, i = json.decoder.scanstring(text, i + 1)
                    i = ws.match(text, i).end() + 1  # the ':'
                    i = value(i, (*path, key))
                else:
                    i = value(i, (*path, index))
                    index += 1
                i = ws.match(text, i).end()
                if text[i] == ",":
                    i = ws.match(text, i + 1).end()
            i += 1
        else:
            _, i = decoder.raw_decode(text, i)
        spans[path] = (start, i)
        return i

    value(0, ())
    return spans


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    line_start = text.rfind("\n", 0, offset) + 1
    return line, len(text[line_start:offset].encode())


def _path_str(path: tuple) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def _syntax_message(err: json.JSONDecodeError, text: str) -> str:
    at_eof = err.pos >= len(text)
    containers: list[str] = []
    in_string = escaped = False
    for ch in text[: err.pos]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            containers.append(ch)
        elif ch in "}]" and containers:
            containers.pop()
    inside = containers[-1] if containers else None
    msg = err.msg
    if msg.startswith("Unterminated string"):
        what = "EOF while parsing a string"
    elif at_eof and msg == "Expecting value":
        what = "EOF while parsing a value"
    elif at_eof:
        what = "EOF while parsing an object" if inside == "{" else "EOF while parsing a list"
    elif msg == "Expecting value":
        what = "expected value"
    elif msg.startswith("Expecting property name"):
        what = "key must be a string"
    elif msg == "Expecting ':' delimiter":
        what = "expected `:`"
    elif msg == "Expecting ',' delimiter":
        what = "expected `,` or `}`" if inside == "{" else "expected `,` or `]`"
    elif msg == "Extra data":
        what = "trailing characters"
    elif msg.startswith("Invalid control character"):
        what = "control character (\\u0000-\\u001F) found while parsing a string"
    elif msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\u"):
        what = "invalid escape"
    else:
        what = msg[:1].lower() + msg[1:]
    line, col = _line_col(text, min(err.pos + (0 if at_eof else 1), len(text)))
    return f"{what} at line {line} column {col}"


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_body(body: bytes, content_type: str | None, spec: tuple) -> dict[str, Any]:
    """The request's JSON object, or raise a Rejection with axum's status and text."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))):
        raise Rejection(415, "Expected request with `Content-Type: application/json`")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejection(400, f"Failed to parse the request body as JSON: invalid unicode code point at {exc}") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise Rejection(400, f"Failed to parse the request body as JSON: {_syntax_message(exc, text)}") from exc
    except ValueError as exc:  # NaN / Infinity, which serde_json refuses
        raise Rejection(400, "Failed to parse the request body as JSON: expected value at line 1 column 1") from exc
    if found := _check(spec, value, ()):
        path, message, anchor = found
        start, end = _spans(text)[path]
        offset = {"start": start + 1, "end": end, "close": end}[anchor]
        line, col = _line_col(text, offset)
        where = f"{_path_str(path)}: " if path else ""
        raise Rejection(
            422,
            f"Failed to deserialize the JSON body into the target type: {where}{message} at line {line} column {col}",
        )
    return value
