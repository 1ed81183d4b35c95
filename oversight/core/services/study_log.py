"""A study's log: who changed what, and when (`StudyLogEntry`). Services and views call `study_log_add` in the
transaction that makes the change, so the log never claims a change that was rolled back."""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.db import models
from django.utils.text import capfirst

from oversight.core.models import Study, StudyLogEntry

# Recorded as set, replaced or removed; never their value.
SECRET_FIELDS = frozenset({"token"})
SHOWN_MAX = 300


def study_log_add(*, study: Study, action: str, by, summary: str, changes: Iterable[dict] = ()) -> StudyLogEntry:
    """Record one change to `study` made by `by` (a user, or None for the system)."""
    return StudyLogEntry.objects.create(
        study=study,
        actor=by if by is not None and by.pk else None,
        actor_name=getattr(by, "username", "") or "",
        action=action,
        summary=summary[:300],
        changes=list(changes),
    )


def field_values(obj: models.Model, names: Iterable[str]) -> dict:
    """The stored values of `obj`'s fields `names` (foreign keys as ids): what `field_changes` compares with."""
    return {name: getattr(obj, obj._meta.get_field(name).attname) for name in names}


def field_changes(obj: models.Model, before: dict, labels: dict | None = None) -> list[dict]:
    """What changed in `obj` since `before` (from `field_values`), as the log shows it: label, before, after.
    `labels`: the names the researcher knows the fields by (a form's labels); else the model's."""
    labels = labels or {}
    changes = []
    for name, old in before.items():
        field = obj._meta.get_field(name)
        new = getattr(obj, field.attname)
        if new == old:
            continue
        if name in SECRET_FIELDS:
            shown = ("set" if old else "none", ("replaced" if old else "set") if new else "removed")
        else:
            shown = (_shown(field, old), _shown(field, new))
        label = str(labels.get(name) or capfirst(field.verbose_name))
        changes.append({"field": name, "label": label, "before": shown[0], "after": shown[1]})
    return changes


def changed_names(changes: list[dict]) -> str:
    """ "Sample size, Time limit per item": the changed fields for a one-line summary (without the parenthetical
    hints some labels carry)."""
    return ", ".join(change["label"].split(" (")[0] for change in changes)


def _shown(field: models.Field, value) -> str:
    if value is None or value == "":
        return "—"
    if field.is_relation:
        related = field.related_model._default_manager.filter(pk=value).first()
        text = str(related) if related is not None else f"#{value}"
    elif field.choices:
        text = str(dict(field.flatchoices).get(value, value))
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"
