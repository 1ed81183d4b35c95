"""Judge runs for a study, as the console and `manage.py run_judge` ask for them: list, start (a run row, executed
by `tasks.run_judge` after commit), cancel."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from oversight.core.models import Condition, ModelEndpoint, Study

from .models import AnswerMethod, JudgeRun, Mode
from .runner import RunError
from .tasks import start_run

PARAMS = {"questions": int, "top_n": int, "temperature": float, "max_tokens": int, "max_retries": int}


def runs_for_study(study: Study) -> QuerySet[JudgeRun]:
    return JudgeRun.objects.filter(study=study).select_related("condition", "endpoint")


def judge_run_problems(*, study: Study, condition: Condition, endpoint: ModelEndpoint, mode: str, answer: str) -> list:
    """Why this run cannot be made, as sentences (empty: it can)."""
    problems = []
    if study.launched_at is None:
        problems.append("Launch the study first: a judge run judges a launched study's frozen items.")
    if condition.study_id != study.pk:
        problems.append("That condition belongs to another study.")
    if mode not in Mode.values:
        problems.append(f"Unknown mode {mode!r}.")
    if answer not in AnswerMethod.values:
        problems.append(f"Unknown answer method {answer!r}.")
    if mode == Mode.LIVE and condition.kind == Condition.Kind.ASSISTED and condition.endpoint_id is None:
        problems.append("This assisted condition has no assistant endpoint.")
    if mode == Mode.LIVE and not study.is_live:
        problems.append("Live judging asks the study's models, which answer only while the study is live.")
    return problems


def clean_params(params: dict | None) -> dict:
    """The run's knobs, as numbers; unknown keys are refused."""
    cleaned = {}
    for key, value in (params or {}).items():
        if key not in PARAMS and key not in {"retry_base_s", "retry_cap_s"}:
            raise RunError(f"unknown parameter {key!r}")
        try:
            cleaned[key] = PARAMS.get(key, float)(value)
        except (TypeError, ValueError):
            raise RunError(f"{key} must be a number") from None
    return cleaned


@transaction.atomic
def judge_run_request(
    *,
    study: Study,
    condition: Condition,
    endpoint: ModelEndpoint,
    mode: str = Mode.REPLAY,
    answer: str = AnswerMethod.AUTO,
    params: dict | None = None,
    by=None,
    enqueue: bool = True,
) -> JudgeRun:
    """Create a run and enqueue it after commit (`enqueue=False`: the caller executes it, as `run_judge` does).
    Raises RunError with the reasons it cannot run."""
    problems = judge_run_problems(study=study, condition=condition, endpoint=endpoint, mode=mode, answer=answer)
    if problems:
        raise RunError(" ".join(problems))
    run = JudgeRun.objects.create(
        study=study,
        condition=condition,
        endpoint=endpoint,
        mode=mode,
        answer=answer,
        params=clean_params(params),
        created_by=by,
    )
    if enqueue:
        start_run(run)
    return run


def judge_run_cancel(*, study: Study, run: JudgeRun) -> None:
    """Stop a run of this study after the answer in hand (the answers so far are kept). Idempotent."""
    if run.study_id != study.pk:
        raise RunError("this run belongs to another study")
    run.request_cancel()
