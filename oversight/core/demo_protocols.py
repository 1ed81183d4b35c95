"""The debate demo: a live study of unaided, consultancy and debate conditions on the demo story, argued by the
simulated assistant, so a protocol study runs end to end with no GPU (`manage.py seed_demo` seeds it unless told
`--no-debate`; bots judge it with `manage.py run_bots demo-debate --in-process -n 20 --messages-per-item 0`)."""

from oversight.banks.models import Bank
from oversight.core.demo import DEBATE_DEMO_SLUG
from oversight.core.models import Advocate, Condition, ModelEndpoint, Study, Task
from oversight.core.services.studies import study_launch

DEBATE_STUDY_SLUG = DEBATE_DEMO_SLUG

CONSENT = """This is a demonstration of a research study on judging arguments about a story you cannot read.

For each question you see two possible answers. Sometimes you answer alone; sometimes an AI consultant argues
for one answer, or two AI debaters argue for one answer each. They may argue for the wrong answer. Quotes they
check against the story are marked as verified. No personal information is asked for."""


def seed_debate_demo(*, quality: Bank, owner) -> Study:
    """Create and launch the debate demo (once; an existing one is returned)."""
    existing = Study.objects.filter(slug=DEBATE_STUDY_SLUG).first()
    if existing is not None:
        return existing
    advocate, _ = ModelEndpoint.objects.get_or_create(
        name="Simulated advocate",
        defaults={
            "kind": ModelEndpoint.Kind.SIMULATED,
            "model_label": "simulated",
            # Argues for its side and quotes the story, misquoting about one time in five.
            "simulation": {"accuracy": 0.75, "seed": 1, "ttft_ms": 300, "tokens_per_s": 40, "quote_rate": 0.8,
                           "misquote_rate": 0.2},
        },
    )  # fmt: skip
    study = Study.objects.create(
        slug=DEBATE_STUDY_SLUG,
        title="Demo: judging consultancy and debate without the story",
        owner=owner,
        consent_text=CONSENT,
        instructions="Decide which of the two answers is correct, and how sure you are.",
        completion_message="Thank you for trying the debate demo.",
        design=Study.Design.WITHIN,
        order=Study.Order.COUNTERBALANCED,
        disjoint_samples=False,  # the demo story has four questions: every condition shows all of them
        sample_seed=2024,
        confidence_format=Study.ConfidenceFormat.SLIDER,
        completion_code="DEBATE-DONE",
        screenout_code="DEBATE-SCREENED",
    )
    Condition.objects.create(study=study, kind=Condition.Kind.UNAIDED, name="Unaided", position=0)
    consultancy = Condition.objects.create(
        study=study, kind=Condition.Kind.CONSULTANCY, name="Consultancy", position=1, protocol={"rounds": 2}
    )
    debate = Condition.objects.create(
        study=study, kind=Condition.Kind.DEBATE, name="Debate", position=2, protocol={"rounds": 3}
    )
    Advocate.objects.create(condition=consultancy, position=0, endpoint=advocate, name="simulated consultant")
    for position in (0, 1):
        Advocate.objects.create(condition=debate, position=position, endpoint=advocate, name="simulated debater")
    Task.objects.create(study=study, bank=quality, name="QuALITY", position=0, sample_size=4, time_limit_s=300)
    return study_launch(study=study)
