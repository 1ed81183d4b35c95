"""Changing a model endpoint: one row shared by every study that uses it, so each change is recorded in their logs."""

from __future__ import annotations

from django.db import transaction

from oversight.core.models import ModelEndpoint, Study, StudyLogEntry
from oversight.core.services.study_log import changed_names, field_changes, field_values, study_log_add


def endpoint_studies(endpoint: ModelEndpoint, *, live_only: bool = False):
    """The studies whose conditions use `endpoint` and are not closed (a closed study calls no model)."""
    studies = Study.objects.filter(conditions__endpoint=endpoint).distinct()
    if live_only:
        return studies.filter(status=Study.Status.LIVE)
    return studies.exclude(status=Study.Status.CLOSED)


@transaction.atomic
def endpoint_update(*, endpoint: ModelEndpoint, values: dict, by, labels: dict | None = None) -> ModelEndpoint:
    """Apply `values` (field name → new value) and record what changed in the log of each draft and live study
    that uses the endpoint. Who may do this is the caller's rule (the console's `endpoint_for_change`). Saving
    the same values again changes and records nothing. `labels`: the fields' names in the log (a form's)."""
    locked = ModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = field_values(locked, values)
    for name, value in values.items():
        setattr(locked, name, value)
    changes = field_changes(locked, before, labels)
    if not changes:
        return locked
    locked.save(update_fields=[change["field"] for change in changes])
    for study in endpoint_studies(locked):
        study_log_add(
            study=study,
            action=StudyLogEntry.Action.ENDPOINT,
            by=by,
            summary=f"Model endpoint “{locked.name}” changed: {changed_names(changes)}",
            changes=changes,
        )
    return locked
