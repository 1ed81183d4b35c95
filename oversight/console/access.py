"""Every console view starts here: the study *for this user*, or 404 (outsiders never learn it exists)."""

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
