"""Study lifecycle: validate a design, launch it (draw the samples, freeze the manifest), close, clone."""

import hashlib
import json

from django.db import transaction
from django.utils import timezone

from oversight.banks.sampling import sample_disjoint
from oversight.core.models import Advocate, Condition, ConditionItem, Study, StudyLogEntry, Task, Transcript
from oversight.core.protocols import STATIC
from oversight.core.services.protocols import (
    advocate_records,
    condition_protocol_problems,
    condition_settings_hash,
    endpoint_record,
)
from oversight.core.services.samples import draw_samples, task_filters, task_item_filters, task_seed
from oversight.core.services.study_log import study_log_add


class StudyDesignError(ValueError):
    """A design that cannot run; the message says what to change."""


def study_design_problems(study: Study) -> list[str]:
    """Everything that would stop `study_launch`, in words a researcher can act on."""
    return _design_problems(
        study, list(study.conditions.select_related("endpoint")), list(study.tasks.select_related("bank"))
    )


def study_design_problems_added(
    *, study: Study, change: Study | Task | Condition, advocates: list[Advocate] | None = None
) -> list[str]:
    """The launch problems `change` would add to `study`: an edited copy of the study, or a new or edited task or
    condition of it, not saved. Nothing is written: the launch rules run over the study's stored parts with the
    change in place, so a design form refuses an edit in the very words launch would use. `advocates`: a changed
    protocol condition's advocates as the form has them (unsaved), in place of its stored ones."""
    conditions = list(study.conditions.select_related("endpoint"))
    tasks = list(study.tasks.select_related("bank"))
    if isinstance(change, Study):
        after = _design_problems(change, conditions, tasks)
    elif isinstance(change, Task):
        after = _design_problems(study, conditions, _with_change(tasks, change))
    elif isinstance(change, Condition):
        changed = None if advocates is None else (change, advocates)
        after = _design_problems(study, _with_change(conditions, change), tasks, changed_advocates=changed)
    else:
        raise TypeError(f"cannot check a change of {type(change).__name__}")
    before = set(_design_problems(study, conditions, tasks))
    return [problem for problem in after if problem not in before]


def _with_change(parts: list, change) -> list:
    """`parts` with `change` in place of the row it edits (or added, last among its position, as a new row's id
    would place it), in the order the study's tasks and conditions have (position, id)."""
    kept = [part for part in parts if change.pk is None or part.pk != change.pk]
    return sorted([*kept, change], key=lambda part: (part.position, part.pk is None, part.pk or 0))


def _design_problems(
    study: Study, conditions: list[Condition], tasks: list[Task], *, changed_advocates: tuple | None = None
) -> list[str]:
    problems = []
    if not conditions:
        problems.append("Add at least one condition.")
    if not any(t.role == Task.Role.SCORED for t in tasks):
        problems.append("Add at least one task with scored items.")
    advocates: dict = {}
    if any(c.is_protocol for c in conditions):
        for advocate in Advocate.objects.filter(condition__in=[c for c in conditions if c.pk]):
            advocates.setdefault(advocate.condition_id, []).append(advocate)
    for condition in conditions:
        if condition.kind == Condition.Kind.ASSISTED and condition.endpoint is None:
            problems.append(f"The assisted condition “{condition.name}” needs a model endpoint.")
        if changed_advocates is not None and condition is changed_advocates[0]:
            mine = changed_advocates[1]
        else:
            mine = advocates.get(condition.pk, [])
        problems += condition_protocol_problems(condition=condition, advocates=mine, tasks=tasks)
    for index, task in enumerate(tasks):
        filters = task_filters(task)
        available = task.bank.items.filter(**task_item_filters(task)).count()
        if task.role == Task.Role.SCORED and study.disjoint_samples and conditions:
            needed = task.sample_size * len(conditions)
            if needed > available:
                problems.append(
                    f"Task “{task.name}”: {len(conditions)} disjoint samples of {task.sample_size} need "
                    f"{needed} items but the bank has {available} matching items."
                )
            elif task.separate_stories:
                # Whether whole stories fill every condition depends on the draw itself: make it (nothing is
                # stored), with the seed the launch will use.
                try:
                    sample_disjoint(
                        bank=task.bank,
                        sizes=[task.sample_size] * len(conditions),
                        seed=task_seed(study, index),
                        separate_passages=True,
                        **filters,
                    )
                except ValueError:
                    problems.append(
                        f"Task “{task.name}”: keeping each story in one condition, {len(conditions)} samples of "
                        f"{task.sample_size} cannot be drawn from the stories of “{task.bank.name}”; draw fewer "
                        f"items per condition or allow a story in several conditions."
                    )
        elif task.sample_size > available:
            problems.append(
                f"Task “{task.name}”: a sample of {task.sample_size} is larger than the {available} matching "
                f"items in “{task.bank.name}”."
            )
    return problems


@transaction.atomic
def study_launch(*, study: Study, now=None, by=None) -> Study:
    """Draw every sample, freeze the manifest and go live. Items are fixed from here on. `by`: who launched it
    (the study's log)."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.DRAFT:
        raise StudyDesignError("Only a draft study can be launched.")
    problems = study_design_problems(study)
    if problems:
        raise StudyDesignError(" ".join(problems))

    study.condition_items.all().delete()
    ConditionItem.objects.bulk_create(draw_samples(study))
    _freeze_shared_transcripts(study, now=now or timezone.now())

    study.manifest = build_manifest(study)
    study.manifest_hash = manifest_hash(study.manifest)
    study.status = Study.Status.LIVE
    study.launched_at = now or timezone.now()
    study.save(update_fields=["manifest", "manifest_hash", "status", "launched_at"])
    n_items = sum(len(items) for items in study.manifest["items"].values())
    study_log_add(
        study=study,
        action=StudyLogEntry.Action.LAUNCHED,
        by=by,
        summary=f"Launched: {n_items} items drawn, manifest frozen (sha256 {study.manifest_hash[:12]}…)",
    )
    return study


def _freeze_shared_transcripts(study: Study, *, now) -> None:
    """Static protocol conditions show transcripts made by self-play before launch: every drawn item must have a
    finished one made under the condition's current settings and advocates; they are frozen from here on."""
    for condition in study.conditions.all():
        if not condition.is_protocol or condition.protocol_settings().transcripts != STATIC:
            continue
        item_ids = set(study.condition_items.filter(condition=condition).values_list("item_id", flat=True))
        ready = Transcript.objects.filter(
            condition=condition,
            shared=True,
            settings_hash=condition_settings_hash(condition),
            status=Transcript.Status.COMPLETE,
            item_id__in=item_ids,
        )
        missing = len(item_ids) - ready.count()
        if missing:
            raise StudyDesignError(
                f"The condition “{condition.name}” shows pre-generated transcripts, and {missing} of its "
                f"{len(item_ids)} items have none made under its current settings: generate them (self-play) "
                "before launching."
            )
        ready.update(frozen_at=now)


def build_manifest(study: Study) -> dict:
    """The full configuration as it was at launch: what a paper's methods section must be able to cite."""

    def endpoint_settings(condition: Condition):
        return endpoint_record(condition.endpoint)

    def protocol_settings(condition: Condition) -> dict:
        if not condition.is_protocol:
            return {}
        return {"protocol": condition.protocol_settings().as_dict(), "advocates": advocate_records(condition)}

    items = study.condition_items.select_related("item", "task").order_by("condition_id", "role", "position")
    by_condition: dict = {}
    for ci in items:
        key = str(ci.condition_id) if ci.condition_id else ci.role
        by_condition.setdefault(key, []).append(
            {
                "item_id": ci.item_id,
                "external_id": ci.item.external_id,
                "task": ci.task.name,
                "content_hash": ci.item.content_hash,
            }
        )
    return {
        "schema": 1,
        "study": {
            "slug": study.slug,
            "title": study.title,
            "design": study.design,
            "order": study.order,
            "disjoint_samples": study.disjoint_samples,
            "sample_seed": study.sample_seed,
            "randomise_item_order": study.randomise_item_order,
            "confidence_format": study.confidence_format,
            "reveal_gold": study.reveal_gold,
            "catch_pass_threshold": study.catch_pass_threshold,
            "consent_text": study.consent_text,
            "instructions": study.instructions,
            "comprehension_questions": study.comprehension_questions,
            "comprehension_max_attempts": study.comprehension_max_attempts,
        },
        "tasks": [
            {
                "name": t.name,
                "role": t.role,
                "bank": t.bank.name,
                "sample_size": t.sample_size,
                "time_limit_s": t.time_limit_s,
                "splits": t.splits,
                "subjects": t.subjects,
                "difficult_only": t.difficult_only,
                "separate_stories": t.separate_stories,
            }
            for t in study.tasks.select_related("bank")
        ],
        "conditions": [
            {
                "id": c.pk,
                "name": c.name,
                "kind": c.kind,
                "position": c.position,
                "system_prompt": c.system_prompt,
                "sampling": c.sampling,
                "inject_passage": c.inject_passage,
                "send_question": c.send_question,
                "max_message_chars": c.max_message_chars,
                "max_turns": c.max_turns,
                "instructions": c.instructions,
                "endpoint": endpoint_settings(c),
                **protocol_settings(c),
            }
            for c in study.conditions.select_related("endpoint")
        ],
        "items": by_condition,
        **shared_transcripts_manifest(study),
    }


def shared_transcripts_manifest(study: Study) -> dict:
    """The frozen self-play transcripts, per condition and item: which one every judge of the item reads, and
    a hash of its turns (empty when the study has none)."""
    frozen = Transcript.objects.filter(study=study, shared=True, frozen_at__isnull=False).order_by("condition", "item")
    out: dict = {}
    for t in frozen:
        out.setdefault(str(t.condition_id), {})[str(t.item_id)] = {
            "transcript_id": t.pk,
            "content_hash": t.content_hash,
            "options": t.options,
            "argues": t.argues,
            "speakers": t.speakers,
            "distractor_rule": t.distractor_rule,
        }
    return {"transcripts": out} if out else {}


def manifest_hash(manifest: dict) -> str:
    blob = json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@transaction.atomic
def study_close(*, study: Study, now=None, by=None) -> Study:
    updated = Study.objects.filter(pk=study.pk, status=Study.Status.LIVE).update(
        status=Study.Status.CLOSED, closed_at=now or timezone.now()
    )
    if not updated:
        raise StudyDesignError("Only a live study can be closed.")
    study.refresh_from_db()
    study_log_add(study=study, action=StudyLogEntry.Action.CLOSED, by=by, summary="Closed: no more answers accepted")
    return study


@transaction.atomic
def study_clone(*, study: Study, slug: str, title: str | None = None, owner=None) -> Study:
    """A new draft with the same design (not the same participants or samples). `study` itself is left as it is."""
    study = Study.objects.get(pk=study.pk)  # a fresh copy becomes the clone: the caller's object stays the original
    tasks = list(study.tasks.all())
    conditions = list(study.conditions.all())
    source = f"“{study.title}” ({study.slug})"
    advocates = {c.pk: list(c.advocates.all()) for c in conditions if c.is_protocol}
    study.pk = None
    study.id = None
    study.slug = slug
    study.title = title or f"{study.title} (copy)"
    study.status = Study.Status.DRAFT
    study.manifest = None
    study.manifest_hash = ""
    study.launched_at = None
    study.closed_at = None
    if owner is not None:
        study.owner = owner
    study.save()
    for obj in [*tasks, *conditions]:
        original = obj.pk
        obj.pk = None
        obj.id = None
        obj.study = study
        obj.save()
        for advocate in advocates.get(original, []) if isinstance(obj, Condition) else []:
            advocate.pk = None
            advocate.condition = obj
            advocate.save()
    study_log_add(study=study, action=StudyLogEntry.Action.CREATED, by=owner, summary=f"Cloned from {source}")
    return study
