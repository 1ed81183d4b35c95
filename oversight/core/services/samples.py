"""The draw: which items each condition of a study shows. Deterministic, so it can be computed before launch
(self-play generates the shared transcripts of exactly the items launch will draw) and repeated at launch."""

from oversight.banks.sampling import sample_disjoint, sample_items
from oversight.core.models import ConditionItem, Study, Task


def task_filters(task: Task) -> dict:
    """The sampling filters of a task (banks.sampling's keywords)."""
    return {
        "splits": task.splits or None,
        "subjects": task.subjects or None,
        "difficult": True if task.difficult_only else None,
        # Only items with a gold answer can be scored (QuALITY's test split has none).
        "labeled": True,
    }


def task_item_filters(task: Task) -> dict:
    """The same filters as ORM lookups on the task's bank's items."""
    filters = task_filters(task)
    orm = {"gold_index__isnull": False}
    if filters["splits"]:
        orm["split__in"] = filters["splits"]
    if filters["subjects"]:
        orm["subject__in"] = filters["subjects"]
    if filters["difficult"] is not None:
        orm["difficult"] = filters["difficult"]
    return orm


def task_seed(study: Study, index: int) -> int:
    """The seed of the study's `index`-th task: each task gets its own stream, so adding a task does not reshuffle
    the others."""
    return study.sample_seed * 1000 + index


def draw_samples(study: Study) -> list[ConditionItem]:
    """The study's sample as unsaved ConditionItem rows: each scored task drawn per condition (disjointly if the
    study says so), practice and catch tasks once for the study. The same study and banks give the same draw."""
    conditions = list(study.conditions.all())
    rows = []
    for index, task in enumerate(study.tasks.select_related("bank")):
        seed = task_seed(study, index)
        filters = task_filters(task)
        if task.role == Task.Role.SCORED:
            if study.disjoint_samples:
                samples = sample_disjoint(
                    bank=task.bank,
                    sizes=[task.sample_size] * len(conditions),
                    seed=seed,
                    separate_passages=task.separate_stories,
                    **filters,
                )
            else:
                shared = sample_items(bank=task.bank, n=task.sample_size, seed=seed, **filters)
                samples = [shared] * len(conditions)
            for condition, items in zip(conditions, samples, strict=True):
                rows += [
                    ConditionItem(study=study, condition=condition, task=task, item=item, role=task.role, position=i)
                    for i, item in enumerate(items)
                ]
        else:
            items = sample_items(bank=task.bank, n=task.sample_size, seed=seed, **filters)
            rows += [
                ConditionItem(study=study, condition=None, task=task, item=item, role=task.role, position=i)
                for i, item in enumerate(items)
            ]
    return rows
