"""Creating and executing baseline runs.

Execution (`execute`) is split across two threads so that the ORM stays on an ordinary synchronous thread
(a Celery worker's, the management command's, a test's) while the HTTP fan-out runs on an asyncio loop:

* the **engine** thread runs one event loop with one backend (one AsyncInferenceClient, one connection
  pool) and `concurrency` worker coroutines pulling items from a shared iterator, each request bounded by
  one semaphore; finished items go into a thread-safe queue;
* the **calling** thread claims the run (a conditional UPDATE), then drains the queue and writes results in
  batches (`bulk_create(ignore_conflicts=True)` on the (run, item) constraint), updating progress and the
  heartbeat, and reading `cancel_requested`, about once a second.

Resumable by construction: items that already have a result are never sent again, and the unique
constraint makes a duplicate write a no-op. A run left "running" by a killed process is claimed again once
its heartbeat is older than STALE_AFTER_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import reset_queries, transaction
from django.db.models import Count, Q
from django.utils import timezone

from oversight.analysis.tables import BEST_OF_N, SELF_CONSISTENCY
from oversight.assistant.backends import request_for_endpoint
from oversight.banks.models import Bank, Item, Passage
from oversight.core.models import ConditionItem, Job, JobLifecycle, ModelEndpoint, Study

from .clients import TRANSIENT, Backend, ItemError, ItemSpec, Scorer, Settings, backend_for, item_error, scorer_for
from .models import STALE_AFTER_S, BaselineResult, BaselineRun, Method, PromptTemplate
from .prompts import PromptItem, Template, default_template_name, ensure_default_templates, judge_template
from .scoring import SELECTORS, CotSample, ResultRow, best_of_n, normalise, predict, summarise

log = logging.getLogger(__name__)

BATCH_SIZE = 500  # results per bulk insert
FLUSH_INTERVAL_S = 1.0  # write, heartbeat and read cancel_requested at least this often
GRACE_S = 10.0  # on a graceful stop, how long in-flight items may take before they are cancelled
PROGRESS_INTERVAL_S = 0.2  # how often on_progress (the command's progress bar) is called

DEFAULT_PARAMS = {
    "concurrency": 32,
    "top_n": 5,
    "max_retries": 5,
    "retry_base_s": 0.5,
    "retry_cap_s": 8.0,
    "breaker": 20,  # this many items in a row failing with an outage-like error stop the run
    "seed": 0,
    "transport": "fast",  # TGI raw-text requests: "fast" (baselines.transport) or "httpx" (huggingface_hub)
}
# Examples (few-shot, and chain of thought with shots): from this split of the item's bank, of the item's subject
# (and story), never an item the run scores or its study shows. Items with a story (QuALITY) get examples only when
# `passage_examples` says so: the paper defines few-shot for MMLU alone.
EXAMPLE_PARAMS = {"examples_split": "dev", "passage_examples": False}
METHOD_PARAMS = {
    Method.ZERO_SHOT: {},
    Method.FEW_SHOT: {"shots": 5, **EXAMPLE_PARAMS},
    Method.COT: {
        "samples": 20,
        "temperature": 0.7,
        "max_reasoning_tokens": 256,
        # "self-consistency" (a vote of the samples) or "best-of-n" (the paper's: the sample a scorer rates best).
        "selector": SELF_CONSISTENCY,
        "scorer": "",  # best of N: "reward" (a reward model's /predict, TEI's format) or "judge" (a judge prompt)
        "scorer_endpoint": "",  # the ModelEndpoint (by name) that serves the reward model or the judge
        "reward_label": "",  # the reward model's label whose score counts (default: its only one)
        "reward_input": "pair",  # "pair": [prompt, reasoning]; "text": prompt + reasoning as one text
        "judge_prompt": "",  # the judge's text (default: prompts.JUDGE_TEXT / JUDGE_CHAT)
        "shots": 0,  # MMLU 5-shot chain of thought: 5
        **EXAMPLE_PARAMS,
    },
}
_INT_PARAMS = {"concurrency", "top_n", "max_retries", "breaker", "seed", "shots", "samples", "max_reasoning_tokens"}
_FLOAT_PARAMS = {"retry_base_s", "retry_cap_s", "temperature"}
_BOOL_PARAMS = {"passage_examples"}
SCORERS = ("reward", "judge")


class RunError(Exception):
    """A run cannot be created or resumed as asked (a message for the researcher)."""


# --------------------------------------------------------------------------------------------------- creation


def normalise_params(method: str, params: dict | None) -> dict:
    allowed = {**DEFAULT_PARAMS, **METHOD_PARAMS[method]}
    given = {k: v for k, v in (params or {}).items() if v is not None}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise RunError(
            f"unknown parameter(s) for {method}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    out = dict(allowed)
    for key, value in given.items():
        try:
            if key in _BOOL_PARAMS:
                value = value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
            elif key in _INT_PARAMS:
                value = int(value)
            elif key in _FLOAT_PARAMS:
                value = float(value)
            else:
                value = str(value)
        except (TypeError, ValueError) as exc:
            raise RunError(f"parameter {key}={value!r} is not a valid number") from exc
        out[key] = value
    positive = {"concurrency", "top_n", "samples", "max_reasoning_tokens", "breaker"} & set(out)
    if method == Method.FEW_SHOT:
        positive.add("shots")
    for key in positive:
        if out[key] < 1:
            raise RunError(f"parameter {key} must be at least 1, got {out[key]}")
    if out.get("shots", 0) < 0:
        raise RunError("parameter shots cannot be negative")
    if out["max_retries"] < 0:
        raise RunError("parameter max_retries cannot be negative")
    if "temperature" in out and not 0 <= out["temperature"] <= 5:
        raise RunError("parameter temperature must be between 0 and 5")
    if out["transport"] not in ("fast", "httpx"):
        raise RunError("parameter transport must be 'fast' or 'httpx'")
    if "selector" in out:
        check_selection(out)
    return out


def check_selection(params: dict) -> None:
    """A chain of thought's selector and scorer make sense together (the scorer's endpoint is checked at creation)."""
    known = [*SELECTORS, BEST_OF_N]
    if params["selector"] not in known:
        raise RunError(f"unknown selector {params['selector']!r}; known: {', '.join(known)}")
    if params["selector"] != BEST_OF_N:
        if params["scorer"]:
            raise RunError(f"a scorer chooses the best of N samples: use selector {BEST_OF_N!r} with it")
        return
    if params["scorer"] not in SCORERS:
        raise RunError(f"best of N needs a scorer: one of {', '.join(SCORERS)} (parameter scorer)")
    if params["scorer"] == "reward" and not params["scorer_endpoint"]:
        raise RunError("a reward model needs its endpoint: parameter scorer_endpoint (a model endpoint's name)")
    if params["reward_input"] not in ("pair", "text"):
        raise RunError("parameter reward_input must be 'pair' or 'text'")
    if params["judge_prompt"]:
        try:
            judge_template(params["judge_prompt"], chat=False)
        except ValueError as exc:
            raise RunError(f"judge_prompt: {exc}") from exc


def run_items(run: BaselineRun):
    """The items a run scores: a bank (or one split of it), or exactly the scored items of a study."""
    if run.study_id:
        ids = ConditionItem.objects.filter(study_id=run.study_id, role=ConditionItem.Role.SCORED).values("item_id")
        items = Item.objects.filter(pk__in=ids)
        if run.bank_id:
            items = items.filter(bank_id=run.bank_id)
    else:
        items = Item.objects.filter(bank_id=run.bank_id)
    if run.split:
        items = items.filter(split=run.split)
    return items


def create_run(
    *,
    endpoint: ModelEndpoint,
    method: str,
    bank: Bank | None = None,
    split: str = "",
    study: Study | None = None,
    params: dict | None = None,
    template: PromptTemplate | str | None = None,
    created_by=None,
    for_study: Study | None = None,
) -> BaselineRun:
    """A queued run (and its Job). Validates everything that can be checked before any request is sent.

    `study` makes the run score exactly that study's items; `for_study` (a run over a bank started from a study's
    console page) only files its Job under that study, so the study's people can follow it, and keeps the study's
    items out of its examples."""
    if method not in Method.values:
        raise RunError(f"unknown method {method!r}; one of {', '.join(Method.values)}")
    if bank is None and study is None:
        raise RunError("a run needs a bank or a study")
    if endpoint.kind != ModelEndpoint.Kind.SIMULATED and not endpoint.base_url.startswith(("http://", "https://")):
        raise RunError(f"endpoint {endpoint.name!r} has no http(s) base URL")
    if study is not None and not study.condition_items.exists():
        raise RunError(f"study {study.slug!r} has no frozen items yet (launch it first)")
    ensure_default_templates()
    if template is None:
        template = default_template_name(method, chat=endpoint.kind == ModelEndpoint.Kind.OPENAI)
    if isinstance(template, str):
        row = PromptTemplate.objects.filter(name=template).first()
        if row is None:
            raise RunError(f"no prompt template named {template!r}")
        template = row
    if template.method != method:
        raise RunError(f"template {template.name!r} is for {template.method}, not {method}")
    try:
        Template.from_row(template)
    except ValueError as exc:
        raise RunError(f"template {template.name!r}: {exc}") from exc
    if template.content_hash != template.compute_hash():
        template.save(update_fields=["content_hash"])
    params = normalise_params(method, params)
    if params.get("scorer_endpoint") and not ModelEndpoint.objects.filter(name=params["scorer_endpoint"]).exists():
        raise RunError(f"no endpoint named {params['scorer_endpoint']!r} (parameter scorer_endpoint)")
    with transaction.atomic():
        run = BaselineRun(
            endpoint=endpoint,
            bank=bank,
            split=split or "",
            study=study,
            method=method,
            params=params,
            template=template,
            template_hash=template.content_hash,
            created_by=created_by,
        )
        run.total = run_items(run).count()
        if run.total == 0:
            raise RunError("no items match (check the bank, split and study)")
        if params.get("shots") and not params["passage_examples"] and run_items(run).exclude(passage=None).exists():
            raise RunError(
                "few-shot examples are off for items with a story (QuALITY): the paper defines few-shot for MMLU "
                "only. To use examples from the same story anyway, set the parameter passage_examples"
            )
        run.job = Job.objects.create(
            kind=Job.Kind.BASELINE,
            study=study or for_study,
            created_by=created_by,
            total=run.total,
            params={"method": method, "endpoint": endpoint.name},
        )
        run.save()
        Job.objects.filter(pk=run.job_id).update(params={**run.job.params, "baseline_run": run.pk})
    return run


def request_cancel(run_id: int) -> None:
    """Ask a run to stop after its current batch; a run nobody executes yet is cancelled at once."""
    run = BaselineRun.objects.filter(pk=run_id).first()
    if run is not None:
        run.request_cancel()
        _mirror_job(run_id)


def prepare_resume(run: BaselineRun, *, retry_errors: bool = False, force: bool = False) -> BaselineRun:
    """Make a cancelled, failed or interrupted run runnable again. With `retry_errors`, items whose result is
    an error are scored again (their rows are deleted first)."""
    now = timezone.now()
    run.refresh_from_db()
    fresh = run.heartbeat_at is not None and (now - run.heartbeat_at).total_seconds() < STALE_AFTER_S
    if run.status == BaselineRun.Status.RUNNING and fresh and not force:
        raise RunError(f"run {run.pk} is being executed elsewhere (heartbeat {(now - run.heartbeat_at).seconds}s ago)")
    if retry_errors:
        run.results.exclude(error_kind="").delete()
    BaselineRun.objects.filter(pk=run.pk).update(
        status=BaselineRun.Status.QUEUED,
        cancel_requested=False,
        claimed_by="",
        finished_at=None,
        message="",
        total=run_items(run).count(),
    )
    run.refresh_from_db()
    _mirror_job(run.pk)
    return run


# --------------------------------------------------------------------------------------------------- the job


def _mirror_job(run_id: int) -> None:
    """The run's Job says what the run says: the console shows every long action from its Job row."""
    state = BaselineRun.objects.filter(pk=run_id).values("job_id", *JobLifecycle.STATE_FIELDS).first()
    if state and state["job_id"]:
        Job.objects.filter(pk=state.pop("job_id")).update(**state)


# --------------------------------------------------------------------------------------------------- item specs


def _natural(external_id: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", external_id)]


def examples_excluded(run: BaselineRun) -> set[int]:
    """Items that may never be a run's example: those it scores, and every item its study shows (the study it
    scores, or the one it was started for)."""
    excluded = set(run_items(run).values_list("pk", flat=True))
    study_id = run.study_id or (Job.objects.filter(pk=run.job_id).values_list("study_id", flat=True).first())
    if study_id:
        excluded |= set(ConditionItem.objects.filter(study_id=study_id).values_list("item_id", flat=True))
    return excluded


_SPEC_FIELDS = ("pk", "bank_id", "external_id", "text", "options", "gold_index", "subject", "passage_id")


def load_specs(run: BaselineRun, exclude: set[int]) -> list[ItemSpec]:
    """Plain-value specs of the run's items not in `exclude`, in id order, with passages and examples.

    Examples (few-shot; chain of thought with shots) come from the same bank's `examples_split`, of the item's
    subject and, for an item with a story, of its story; never an item of `examples_excluded`; in the source
    file's row order (the natural order of their external ids)."""
    rows = [r for r in run_items(run).order_by("pk").values_list(*_SPEC_FIELDS) if r[0] not in exclude]
    shots = run.params.get("shots", 0) if run.method in (Method.FEW_SHOT, Method.COT) else 0
    split = run.params.get("examples_split", "dev")
    pool: list = []
    if shots:
        wanted = {(r[1], r[6]) for r in rows}
        pool = list(
            Item.objects.filter(
                bank_id__in={b for b, _ in wanted},
                subject__in={s for _, s in wanted},
                split=split,
                gold_index__isnull=False,
            )
            .exclude(pk__in=examples_excluded(run))
            .values_list(*_SPEC_FIELDS)
        )
    passage_ids = {r[7] for r in [*rows, *pool] if r[7] is not None}
    passages = dict(Passage.objects.filter(pk__in=passage_ids).values_list("pk", "text"))

    def prompt_item(text, options, gold, subject, passage_id) -> PromptItem:
        passage = passages.get(passage_id) if passage_id else None
        return PromptItem(question=text, options=tuple(options), subject=subject, gold_index=gold, passage=passage)

    examples: dict[tuple, list[tuple[str, PromptItem]]] = defaultdict(list)
    for _pk, bank_id, ext, text, options, gold, subject, passage_id in pool:
        examples[bank_id, subject, passage_id].append((ext, prompt_item(text, options, gold, subject, passage_id)))
    for found in examples.values():
        found.sort(key=lambda e: _natural(e[0]))
    specs = []
    for pk, bank_id, ext, text, options, gold, subject, passage_id in rows:
        shots_for, error = (), ""
        if shots:
            candidates = [e[1] for e in examples.get((bank_id, subject, passage_id), [])]
            if len(candidates) < shots:
                error = (
                    f"only {len(candidates)} labelled {split!r} examples of subject {subject!r}"
                    f"{' and its story' if passage_id else ''} in this bank outside the items scored or shown; "
                    f"{shots} needed"
                )
            shots_for = tuple(candidates[:shots])
        specs.append(
            ItemSpec(
                id=pk,
                key=f"{bank_id}:{ext}",
                item=prompt_item(text, options, gold, subject, passage_id),
                gold_index=gold,
                examples=shots_for,
                examples_error=error,
            )
        )
    return specs


# --------------------------------------------------------------------------------------------------- the engine


@dataclass
class Outcome:
    item_id: int
    gold_index: int | None
    prompt: str
    latency_ms: float
    probabilities: list[float] | None = None
    predicted: int | None = None
    response: dict = field(default_factory=dict)
    missing_letters: list = field(default_factory=list)
    error: str = ""
    error_kind: str = ""

    def to_row(self, run_id: int) -> BaselineResult:
        correct = None
        if self.predicted is not None and self.gold_index is not None:
            correct = self.predicted == self.gold_index
        return BaselineResult(
            run_id=run_id,
            item_id=self.item_id,
            probabilities=self.probabilities,
            predicted=self.predicted,
            correct=correct,
            prompt=self.prompt,
            response=self.response,
            latency_ms=self.latency_ms,
            error=self.error,
            error_kind=self.error_kind,
            missing_letters=self.missing_letters,
        )


_DONE = object()


def _consume(specs: list):
    """Yield the list's items in order, removing each from the list as it goes."""
    specs.reverse()
    while specs:
        yield specs.pop()


class Engine:
    """The event-loop side: scores specs with bounded concurrency and hands Outcomes to the calling thread."""

    def __init__(
        self,
        specs: list[ItemSpec],
        *,
        backend_factory: Callable[[], Backend],
        method: str,
        template: Template,
        params: dict,
        concurrency: int,
        scorer_factory: Callable[[Backend], Scorer] | None = None,
    ):
        self.count = len(specs)
        self.scorer_factory = scorer_factory
        self._items = _consume(specs)  # specs are freed as they are taken: memory stays flat
        self.backend_factory = backend_factory
        self.method = method
        self.template = template
        self.params = params
        self.concurrency = max(1, concurrency)
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.failure: str | None = None  # set when the breaker trips or the engine crashes
        self._backend: Backend | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._held: list[Outcome] = []  # outage-like errors, released once an item succeeds again
        self._thread = threading.Thread(target=self._thread_main, name="baseline-engine", daemon=True)
        self._started = threading.Event()

    @property
    def retries(self) -> int:
        return self._backend.retries if self._backend is not None else 0

    # -- control from the calling thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def stop(self, *, graceful: bool) -> None:
        """Stop taking items; with graceful=False also cancel the items in flight."""
        self._stopping = True
        if not graceful and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already finished
                self._loop.call_soon_threadsafe(self._cancel_all)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the loop -----------------------------------------------------------------------------------------------

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the calling thread
            log.exception("baseline engine crashed")
            self.failure = self.failure or f"engine crashed: {type(exc).__name__}: {exc}"
            self._started.set()
        finally:
            self.results.put(_DONE)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        backend = self._backend = self.backend_factory()
        semaphore = asyncio.Semaphore(self.concurrency)
        items = self._items
        selector = SELECTORS.get(self.params.get("selector", SELF_CONSISTENCY), SELECTORS[SELF_CONSISTENCY])()
        scorer = self.scorer_factory(backend) if self.scorer_factory is not None else None

        async def worker() -> None:
            for spec in items:
                if self._stopping:
                    return
                outcome = await self._score(backend, semaphore, selector, spec, scorer)
                self._emit(outcome)

        try:
            self._tasks = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, self.count) or 1)]
            self._started.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            for outcome in self._held if self.failure is None else ():
                self.results.put(outcome)
            if scorer is not None:
                await scorer.aclose()
            await backend.aclose()

    def _emit(self, outcome: Outcome) -> None:
        if outcome.error_kind in TRANSIENT:
            self._held.append(outcome)
            if len(self._held) >= self.params.get("breaker", DEFAULT_PARAMS["breaker"]) and self.failure is None:
                last = self._held[-1]
                what = "refuses the requests" if last.error_kind == "invalid_request" else "looks down"
                self.failure = (
                    f"the endpoint {what}: {len(self._held)} items in a row failed "
                    f"({last.error_kind}: {last.error[:300]})"
                )
                self._held.clear()  # not recorded: a resume scores them again
                self.stop(graceful=False)
                self._cancel_all()
            return
        if self._held:
            for held in self._held:
                self.results.put(held)
            self._held.clear()
        self.results.put(outcome)

    async def _score(
        self, backend: Backend, semaphore: asyncio.Semaphore, selector, spec: ItemSpec, scorer: Scorer | None = None
    ) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome(item_id=spec.id, gold_index=spec.gold_index, prompt="", latency_ms=0.0)
        try:
            if spec.examples_error:
                raise ItemError("no_examples", spec.examples_error)
            if self.method == Method.COT:
                await self._score_cot(backend, semaphore, selector, spec, outcome, scorer)
            else:
                prompt = self.template.render(spec.item, examples=spec.examples)
                outcome.prompt = prompt.display()
                async with semaphore:
                    dist = await backend.distribution(prompt, spec)
                outcome.probabilities = normalise(dist.logprobs)
                outcome.predicted = predict(outcome.probabilities)
                outcome.response = {**dist.response, "logprobs": dist.logprobs}
                outcome.missing_letters = dist.missing
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the item
            err = item_error(exc)
            outcome.probabilities = outcome.predicted = None
            outcome.error, outcome.error_kind = err.detail or str(err), err.kind
            outcome.response = {**outcome.response, **err.response}
        outcome.latency_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def _score_cot(
        self,
        backend: Backend,
        semaphore: asyncio.Semaphore,
        selector,
        spec: ItemSpec,
        outcome: Outcome,
        scorer: Scorer | None = None,
    ) -> None:
        reasoning_prompt = self.template.reasoning_prompt(spec.item, examples=spec.examples)
        outcome.prompt = reasoning_prompt.display()
        stop = self.template.stop_sequences

        async def one(j: int) -> tuple[CotSample, list]:
            async with semaphore:
                reasoning, info = await backend.sample(reasoning_prompt, spec, j, stop)
            prompt = self.template.render(spec.item, examples=spec.examples, reasoning=reasoning)
            async with semaphore:
                dist = await backend.distribution(prompt, spec, salt=f"cot{j}")
            probabilities = normalise(dist.logprobs)
            sample = CotSample(
                reasoning=reasoning,
                probabilities=probabilities,
                predicted=predict(probabilities),
                response={**info, **dist.response, "logprobs": dist.logprobs},
            )
            return sample, [{**m, "sample": j} for m in dist.missing]

        n = self.params.get("samples", 1)
        done = await asyncio.gather(*(one(j) for j in range(n)), return_exceptions=True)
        for item in done:
            if isinstance(item, asyncio.CancelledError):
                raise item
        samples = [d for d in done if not isinstance(d, BaseException)]
        failures = [item_error(d) for d in done if isinstance(d, BaseException)]
        if not samples:
            raise failures[0]
        if scorer is None:
            selection = selector.select([s for s, _ in samples])
        else:
            samples, selection = await self._best_of_n(scorer, semaphore, spec, reasoning_prompt, samples, failures)
        outcome.probabilities = selection.probabilities
        outcome.predicted = selection.predicted
        outcome.missing_letters = [m for _, missing in samples for m in missing]
        outcome.response = {
            **selection.detail,
            "samples": [
                {"reasoning": s.reasoning, "probabilities": s.probabilities, "predicted": s.predicted, **s.response}
                for s, _ in samples
            ],
            "failed_samples": [{"kind": f.kind, "detail": f.detail[:500]} for f in failures],
        }

    async def _best_of_n(self, scorer: Scorer, semaphore, spec: ItemSpec, prompt, samples: list, failures: list):
        """Score every sample (a sample whose scoring fails is left out, and listed with the failed samples) and
        keep the best: the paper's best of N."""

        async def one(j: int, sample: CotSample):
            async with semaphore:
                return await scorer.score(spec, prompt, sample, j)

        scored = await asyncio.gather(*(one(j, s) for j, (s, _m) in enumerate(samples)), return_exceptions=True)
        for item in scored:
            if isinstance(item, asyncio.CancelledError):
                raise item
        kept = [
            (sample, got) for sample, got in zip(samples, scored, strict=True) if not isinstance(got, BaseException)
        ]
        failures += [item_error(got) for got in scored if isinstance(got, BaseException)]
        if not kept:
            raise failures[-1]
        selection = best_of_n([s for (s, _m), _got in kept], [got[0] for _s, got in kept])
        selection.detail.update(scorer=scorer.name, score_detail=[got[1] for _s, got in kept])
        return [s for s, _got in kept], selection


# --------------------------------------------------------------------------------------------------- execute


@dataclass
class Progress:
    done: int
    total: int
    errors: int
    rate: float  # items/s in this execution
    eta_s: float | None
    errors_by_kind: dict


@dataclass
class ExecutionResult:
    outcome: str  # done | cancelled | failed | yielded | not_claimed | lost
    run: BaselineRun | None = None
    message: str = ""
    scored: int = 0  # items scored by this execution
    interrupted: bool = False


def _counts(run_id: int) -> tuple[int, int, dict]:
    by_kind = dict(
        BaselineResult.objects.filter(run_id=run_id).values_list("error_kind").annotate(n=Count("id")).order_by()
    )
    done = sum(by_kind.values())
    errors = {k: v for k, v in by_kind.items() if k}
    return done, sum(errors.values()), errors


def run_summary(run: BaselineRun) -> dict:
    return summary_of(BaselineResult.objects.filter(run=run))


def summary_of(results) -> dict:
    """The summary of a queryset of one run's results (`scoring.summarise`); migrations pass historical models."""
    rows = results.values_list(
        "item__subject", "item__gold_index", "probabilities", "predicted", "correct", "error_kind"
    )
    return summarise(
        ResultRow(subject=s, labelled=g is not None, probabilities=p, predicted=pr, correct=c, error_kind=k)
        for s, g, p, pr, c, k in rows
    )


def execute(
    run_id: int,
    *,
    slice_s: float | None = None,
    should_yield: Callable[[], bool] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    backend_factory: Callable[[], Backend] | None = None,
) -> ExecutionResult:
    """Execute a run until it is done, cancelled, failed, or (after `slice_s` seconds, or when
    `should_yield()` says so) yields: the claim is released with the run queued, to be continued elsewhere.

    Safe to call twice for the same run: the second caller does not get the claim ("not_claimed").
    A KeyboardInterrupt stops the run as cancelled, after writing what was finished (resumable).
    """
    token = uuid.uuid4().hex
    run = BaselineRun.objects.select_related("endpoint", "template").filter(pk=run_id).first()
    if run is None or not run.claim(token):
        return ExecutionResult("not_claimed", BaselineRun.objects.filter(pk=run_id).first())
    status = BaselineRun.Status
    engine = None
    try:
        template = Template.from_row(run.template)
        if run.template.content_hash != run.template_hash or template.text != run.template.text:
            raise RunError(
                f"prompt template {run.template.name!r} changed since the run was created "
                f"(hash {run.template_hash[:12]}…); create a new run"
            )
        done_ids = set(BaselineResult.objects.filter(run_id=run_id).values_list("item_id", flat=True))
        specs = load_specs(run, done_ids)
        total = len(done_ids) + len(specs)
        concurrency = min(run.params.get("concurrency", 32), max(1, run.endpoint.max_concurrency))
        request = request_for_endpoint(run.endpoint)
        settings = Settings(
            **{
                k: run.params[k]
                for k in (
                    "top_n",
                    "max_retries",
                    "retry_base_s",
                    "retry_cap_s",
                    "seed",
                    "temperature",
                    "max_reasoning_tokens",
                    "transport",
                )
                if k in run.params
            }
        )
        factory = backend_factory or (lambda: backend_for(request, settings))
        scorer_factory = _scorer_factory(run, settings)
        run.set_progress(
            where=Q(claimed_by=token), total=total, progress={**(run.progress or {}), "concurrency": concurrency}
        )
        engine = Engine(
            specs,
            backend_factory=factory,
            method=run.method,
            template=template,
            params=run.params,
            concurrency=concurrency,
            scorer_factory=scorer_factory,
        )
        del specs
        return _drive(run, token, engine, total, slice_s=slice_s, should_yield=should_yield, on_progress=on_progress)
    except KeyboardInterrupt:  # before the engine ran: nothing to keep
        if engine is not None:
            engine.stop(graceful=False)
        _finish(run, token, status.CANCELLED, "interrupted (Ctrl-C)")
        return ExecutionResult("cancelled", BaselineRun.objects.get(pk=run_id), "interrupted", interrupted=True)
    except BaseException as exc:
        if engine is not None:
            engine.stop(graceful=False)
        message = str(exc) if isinstance(exc, RunError) else f"{type(exc).__name__}: {exc}"
        _finish(run, token, status.FAILED, message[:2000])
        if isinstance(exc, RunError):
            return ExecutionResult("failed", BaselineRun.objects.get(pk=run_id), message)
        raise


def _scorer_factory(run: BaselineRun, settings: Settings) -> Callable[[Backend], Scorer] | None:
    """Best of N: how the engine makes its scorer (on its loop), with the scorer's endpoint read here."""
    params = run.params
    if run.method != Method.COT or params.get("selector") != BEST_OF_N:
        return None
    request = None
    if params.get("scorer_endpoint"):
        endpoint = ModelEndpoint.objects.filter(name=params["scorer_endpoint"]).first()
        if endpoint is None:
            raise RunError(f"the scorer's endpoint {params['scorer_endpoint']!r} no longer exists")
        request = request_for_endpoint(endpoint)
    return lambda backend: scorer_for(
        params["scorer"],
        run_backend=backend,
        request=request,
        settings=settings,
        label=params.get("reward_label", ""),
        pair=params.get("reward_input", "pair") == "pair",
        judge_prompt=params.get("judge_prompt", ""),
    )


def _finish(run: BaselineRun, token: str, new_status: str, message: str = "", summary: dict | None = None) -> None:
    """End this execution: the run finishes (done, failed, cancelled), or yields back to the queue (queued)."""
    done, errors, by_kind = _counts(run.pk)
    progress = BaselineRun.objects.filter(pk=run.pk).values_list("progress", flat=True).first() or {}
    now = timezone.now()
    fields = {
        "claimed_by": "",
        "done": done,
        "errors": errors,
        "heartbeat_at": now,
        "progress": {**progress, "errors_by_kind": by_kind, "eta_s": None},
    }
    if summary is not None:
        fields["summary"] = summary
    mine = Q(claimed_by=token)
    if new_status == BaselineRun.Status.QUEUED:
        run.update_if(mine, status=new_status, message=message, **fields)  # its results stay: resumable
    else:
        run.finish(new_status, message=message, now=now, where=mine, **fields)
    _mirror_job(run.pk)


def _take(results: queue.SimpleQueue, buffer: list, timeout: float) -> bool:
    """Move what the engine finished into `buffer` (waiting up to `timeout` for the first). True at the end."""
    try:
        got = results.get(timeout=timeout)
    except queue.Empty:
        return False
    while got is not _DONE:
        buffer.append(got)
        try:
            got = results.get_nowait()
        except queue.Empty:
            return False
    return True


def _drive(run: BaselineRun, token: str, engine: Engine, total: int, *, slice_s, should_yield, on_progress):
    status = BaselineRun.Status
    run_id = run.pk
    started = time.monotonic()
    buffer: list[Outcome] = []
    scored = 0  # written by this execution
    done_before, _, _ = _counts(run_id)
    last_flush = last_report = started
    stopping: str | None = None  # None | "yield" | "cancel" | "lost"
    stop_deadline = None
    interrupted = False
    by_kind: Counter = Counter()

    def flush() -> bool:
        """Write the buffer, heartbeat, publish progress. False when the claim was lost."""
        nonlocal last_flush, scored
        if buffer:
            BaselineResult.objects.bulk_create(
                [o.to_row(run_id) for o in buffer], ignore_conflicts=True, batch_size=BATCH_SIZE
            )
            scored += len(buffer)
            by_kind.update(o.error_kind for o in buffer if o.error_kind)
            buffer.clear()
        last_flush = time.monotonic()
        done, errors, kinds = _counts(run_id)
        rate = (done - done_before) / max(last_flush - started, 1e-9)
        eta = (total - done) / rate if rate > 0 else None
        kept = run.set_progress(
            where=Q(claimed_by=token),
            done=done,
            errors=errors,
            heartbeat_at=timezone.now(),
            progress={
                "rate": round(rate, 2),
                "eta_s": None if eta is None else round(eta, 1),
                "errors_by_kind": kinds,
                "concurrency": engine.concurrency,
                "retries": engine.retries,
            },
        )
        _mirror_job(run_id)
        reset_queries()  # with DEBUG on, Django keeps every query (bulk inserts are large): stay flat
        return kept

    engine.start()
    try:
        while not _take(engine.results, buffer, timeout=0.1):
            now = time.monotonic()
            if len(buffer) >= BATCH_SIZE or now - last_flush >= FLUSH_INTERVAL_S:
                if not flush():
                    stopping = "lost"
                    engine.stop(graceful=False)
                elif stopping is None:
                    cancel = BaselineRun.objects.filter(pk=run_id).values_list("cancel_requested", flat=True).first()
                    if cancel:  # finish (and keep) the items in flight, within GRACE_S
                        stopping = "cancel"
                        stop_deadline = now + GRACE_S
                        engine.stop(graceful=True)
                    elif (slice_s is not None and now - started >= slice_s) or (should_yield and should_yield()):
                        stopping = "yield"
                        stop_deadline = now + GRACE_S
                        engine.stop(graceful=True)
            if stop_deadline is not None and now > stop_deadline:
                engine.stop(graceful=False)  # in-flight items took too long: drop them (they are redone later)
                stop_deadline = None
            if on_progress is not None and now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                done = done_before + scored + len(buffer)
                rate = (done - done_before) / max(now - started, 1e-9)
                errors = sum(by_kind.values()) + sum(1 for o in buffer if o.error_kind)
                on_progress(
                    Progress(done, total, errors, rate, (total - done) / rate if rate > 0 else None, dict(by_kind))
                )
    except KeyboardInterrupt:
        interrupted = True
        stopping = "cancel"
        engine.stop(graceful=False)
        engine.join(timeout=GRACE_S)
        _take(engine.results, buffer, timeout=0)  # keep what finished before the interrupt
    engine.join(timeout=GRACE_S)
    kept = flush()
    if stopping == "lost" or not kept:
        return ExecutionResult(
            "lost", BaselineRun.objects.get(pk=run_id), "another executor took the run over", scored=scored
        )
    if engine.failure is not None:
        message = f"{engine.failure} (resume with: manage.py run_baseline --resume {run_id})"
        _finish(run, token, status.FAILED, message)
        return ExecutionResult("failed", BaselineRun.objects.get(pk=run_id), message, scored=scored)
    if stopping == "cancel":
        message = "interrupted (Ctrl-C)" if interrupted else "cancelled"
        _finish(run, token, status.CANCELLED, message)
        return ExecutionResult(
            "cancelled", BaselineRun.objects.get(pk=run_id), message, scored=scored, interrupted=interrupted
        )
    done, _, _ = _counts(run_id)
    if done < total:
        if stopping == "yield":
            _finish(run, token, status.QUEUED)
            return ExecutionResult("yielded", BaselineRun.objects.get(pk=run_id), scored=scored)
        message = f"{total - done} items have no result"
        _finish(run, token, status.FAILED, message)
        return ExecutionResult("failed", BaselineRun.objects.get(pk=run_id), message, scored=scored)
    _finish(run, token, status.DONE, summary=run_summary(run))
    return ExecutionResult("done", BaselineRun.objects.get(pk=run_id), scored=scored)
