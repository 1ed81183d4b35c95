"""Small helpers for the participant tests: studies with introductions, enrolling, addresses."""

from django.urls import reverse

from oversight.core.models import Condition, Participant, Study
from oversight.core.services.studies import study_launch
from tests.factories import make_study

HX = {"HX-Request": "true"}  # what htmx sends with a boosted form or link
CHECK = [
    {"question": "May you use a search engine?", "options": ["Yes", "No"], "answer": 1},
    {"question": "What happens at zero?", "options": ["Nothing", "The selection is submitted", "A pause"], "answer": 1},
]


def make_unaided_study(**kwargs) -> Study:
    """Two unaided conditions: every page can be swapped in place (no chat)."""
    study = make_study(launch=False, **kwargs)
    Condition.objects.filter(study=study).update(kind=Condition.Kind.UNAIDED, endpoint=None)
    return study_launch(study=study)


def make_study_with_steps(*, condition_instructions=("Chat if you like.", "On your own now."), **kwargs) -> Study:
    """A study with instructions, a comprehension check and instructions per condition."""
    kwargs.setdefault("instructions", "Read each question, then answer.")
    kwargs.setdefault("comprehension_questions", CHECK)
    unaided = kwargs.pop("unaided", False)
    study = make_study(launch=False, **kwargs)
    for condition, text in zip(study.conditions.order_by("position"), condition_instructions, strict=True):
        condition.instructions = text
        if unaided:
            condition.kind, condition.endpoint = Condition.Kind.UNAIDED, None
        condition.save()
    return study_launch(study=study)


def join(client, study, params=None, consent="yes", **extra):
    params = {"PROLIFIC_PID": "5f00aa", "STUDY_ID": "st1", "SESSION_ID": "se1"} if params is None else params
    return client.post(
        reverse("participant:welcome", kwargs={"slug": study.slug}), {**params, "consent": consent}, **extra
    )


def enrol(client, study, params=None) -> Participant:
    response = join(client, study, params)
    assert response.status_code == 303, response
    return Participant.objects.get(token=response["Location"].split("/p/")[1].split("/")[0])


def url(name, p, **kwargs) -> str:
    return reverse(f"participant:{name}", kwargs={"token": p.token, **kwargs})


def item_url(p, position, name="trial") -> str:
    return url(name, p, position=position)


def right_answers() -> dict:
    return {f"q{i}": str(q["answer"]) for i, q in enumerate(CHECK)}
