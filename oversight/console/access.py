"""Every console view starts here: the study *for this user*, or 404 (outsiders never learn it exists).

Also who may use the lab's shared resources (staff) and who is blind to accuracy while a study runs.
"""

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from oversight.core.models import Collaborator, Study


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


def viewer_is_blind(user, study: Study) -> bool:
    if user.is_superuser or study.owner_id == user.pk:
        return False
    if study.blind_collaborators:
        return True
    return Collaborator.objects.filter(study=study, user=user, blind=True).exists()


def results_hidden(user, study: Study) -> bool:
    """A viewer blind to accuracy sees no results until the study is closed."""
    return study.status != Study.Status.CLOSED and viewer_is_blind(user, study)
