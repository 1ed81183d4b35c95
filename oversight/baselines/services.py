"""Model-alone baselines for a study, as the console asks for them: which runs feed its report, start one (a job:
created here, executed by `tasks.run_baseline` after commit), cancel one.

The runs that count for a study are the ones over exactly its items and the ones over one of its banks that belong to
no study (a bank or a split of it: the paper's number, shared by every study of that bank). The report, the exports
and the console list the same runs.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from oversight.banks.models import Bank
from oversight.core.models import ModelEndpoint, Study

from .models import BaselineRun
from .runner import RunError, create_run, execute, request_cancel
from .tasks import start_run

STUDY_ITEMS = "study"


def runs_for_study(study: Study) -> QuerySet[BaselineRun]:
    """The runs whose results the study's report reads (see the module docstring)."""
    banks = study.tasks.values("bank_id")
    return BaselineRun.objects.filter(Q(study=study) | Q(study__isnull=True, bank_id__in=banks))


def baseline_run_request(
    *,
    study: Study,
    endpoint: ModelEndpoint,
    method: str,
    items: str,
    params: dict | None = None,
    by=None,
) -> BaselineRun:
    """Start a run for `study`: `items` is STUDY_ITEMS (exactly its scored items: the paired comparison) or
    "bank:<bank id>:<split>" (one of its banks, a split of it or all of it when the split is empty: the paper's
    number). The run's job is filed under the study either way, so its people can follow it. Raises RunError."""
    if items == STUDY_ITEMS:
        run = create_run(endpoint=endpoint, method=method, study=study, params=params, created_by=by)
    else:
        kind, _, rest = items.partition(":")
        bank_id, _, split = rest.partition(":")
        bank = Bank.objects.filter(pk=int(bank_id) if bank_id.isdigit() else None, tasks__study=study).first()
        if kind != "bank" or bank is None:
            raise RunError("choose the study's items or one of its banks")
        run = create_run(
            endpoint=endpoint, method=method, bank=bank, split=split, params=params, created_by=by, for_study=study
        )
    start_run(run)
    return run


def started_for(study: Study, run: BaselineRun) -> bool:
    """Whether `run` was started for `study` (its items, or its job filed there): who may stop it from there."""
    return run.study_id == study.pk or (run.job is not None and run.job.study_id == study.pk)


def baseline_run_cancel(*, study: Study, run: BaselineRun) -> None:
    """Stop a run started for this study: in-flight items finish and are kept; a queued run is cancelled at once.
    Idempotent. A bank run another study started is that study's to stop."""
    if not started_for(study, run):
        raise RunError("this run was started for another study")
    request_cancel(run.pk)


def demo_baselines_seed(*, study: Study) -> list[BaselineRun]:
    """The demo's model-alone numbers (issue 13.10): the simulated assistant's zero-shot scoring over each of the
    study's banks (the split, when the bank has one), executed here, so the first report a new user opens shows all
    three numbers of the sandwich. Only with a simulated assistant (a real server's runs are the researcher's call,
    from the console), and only once: a bank the endpoint already scored is left alone."""
    condition = study.conditions.filter(endpoint__kind=ModelEndpoint.Kind.SIMULATED).select_related("endpoint").first()
    if condition is None:
        return []
    endpoint = condition.endpoint
    runs = []
    for task in study.tasks.filter(role="scored").select_related("bank").order_by("position", "pk"):
        bank = task.bank
        if BaselineRun.objects.filter(endpoint=endpoint, bank=bank, study=None).exists():
            continue
        splits = list(bank.items.order_by("split").values_list("split", flat=True).distinct())
        run = create_run(
            endpoint=endpoint,
            method="zero-shot",
            bank=bank,
            split=splits[0] if len(splits) == 1 else "",
            for_study=study,
        )
        execute(run.pk)
        runs.append(BaselineRun.objects.get(pk=run.pk))
    return runs
