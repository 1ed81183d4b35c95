"""Every console view starts here: the study *for this user*, or 404 (outsiders never learn it exists).

Also who may use the lab's shared resources (staff) and who is blind to accuracy while a study runs.
"""

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from oversight.core.models import Collaborator, ModelEndpoint, Study
from oversight.core.services.endpoints import endpoint_studies


def studies_for_user(user) -> QuerySet[Study]:
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(Q(owner=user) | Q(collaborators__user=user)).distinct()


def get_study_for_user(user, slug: str, *, write: bool = False) -> Study:
    study = studies_for_user(user).filter(slug=slug).first()
    if study is None:
        raise Http404("No such study")
    if write and not can_edit(user, study):
        raise PermissionDenied("Viewers cannot change this study")
    return study


def can_edit(user, study: Study) -> bool:
    if user.is_superuser or study.owner_id == user.pk:
        return True
    return Collaborator.objects.filter(study=study, user=user, role=Collaborator.Role.EDITOR).exists()


def require_staff(user) -> None:
    """Shared lab resources (banks, endpoints) and creating studies: staff accounts only."""
    if not (user.is_staff or user.is_superuser):
        raise PermissionDenied("Only staff accounts may use the lab's banks and endpoints")


def get_endpoint_for_user(user, pk: int) -> ModelEndpoint:
    require_staff(user)
    return get_object_or_404(ModelEndpoint, pk=pk)


def endpoint_change_refusal(user, endpoint: ModelEndpoint) -> str | None:
    """Why `user` may not change `endpoint`, or None.

    Where a live study's participants send their messages is that study's owner's decision: an endpoint in use
    by a live study can be changed only by the owners of its live studies (all of them) and by superusers. Any
    staff account may change the others (each change is recorded in the log of every study using it).
    """
    if user.is_superuser:
        return None
    others = [s for s in endpoint_studies(endpoint, live_only=True).select_related("owner") if s.owner_id != user.pk]
    if not others:
        return None
    studies = ", ".join(f"“{s.title}” ({s.owner.username if s.owner else 'no owner'})" for s in others)
    return (
        f"Live studies of other researchers use this endpoint: {studies}. Only a study's owner can change the "
        f"endpoint its participants are talking to; ask them, or add a new endpoint for your own studies."
    )


def viewer_is_blind(user, study: Study) -> bool:
    if user.is_superuser or study.owner_id == user.pk:
        return False
    if study.blind_collaborators:
        return True
    return Collaborator.objects.filter(study=study, user=user, blind=True).exists()


def results_hidden(user, study: Study) -> bool:
    """A viewer blind to accuracy sees no results until the study is closed."""
    return study.status != Study.Status.CLOSED and viewer_is_blind(user, study)
