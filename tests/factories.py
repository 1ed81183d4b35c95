"""Small builders for study fixtures. Unit tests write their own items rather than use the datasets."""

from oversight.banks.models import Bank, Item, Passage, content_hash
from oversight.core.models import Condition, ModelEndpoint, Study, Task
from oversight.core.services.studies import study_launch


def make_bank(name="Unit bank", n=12, subjects=("physics", "history"), split="val", passage=None) -> Bank:
    bank = Bank.objects.create(name=name)
    stored_passage = None
    if passage:
        stored_passage = Passage.objects.create(
            bank=bank, external_id="P1", title="A story", text=passage, content_hash=content_hash({"text": passage})
        )
    for i in range(n):
        options = [f"option {i}-{k}" for k in range(4)]
        Item.objects.create(
            bank=bank,
            external_id=f"{name}:{i}",
            subject=subjects[i % len(subjects)],
            split=split,
            text=f"Question number {i}?",
            options=options,
            gold_index=i % 4,
            passage=stored_passage,
            content_hash=content_hash({"i": i, "bank": name}),
        )
    return bank


def make_study(
    *,
    slug="unit",
    n_items=3,
    time_limit_s=None,
    launch=True,
    endpoint=True,
    catch=0,
    practice=0,
    reveal_gold=False,
    owner=None,
    passage=None,
    **study_fields,
) -> Study:
    bank = make_bank(name=f"{slug} bank", n=max(12, n_items * 2), passage=passage)
    study = Study.objects.create(
        slug=slug,
        title=f"Study {slug}",
        completion_code="DONE-123",
        screenout_code="SCREEN-9",
        reveal_gold=reveal_gold,
        owner=owner,
        consent_text="Please agree.",
        **study_fields,
    )
    ep = None
    if endpoint:
        ep = ModelEndpoint.objects.create(
            name=f"{slug} sim", kind=ModelEndpoint.Kind.SIMULATED, simulation={"accuracy": 0.8, "seed": 1}
        )
    Condition.objects.create(study=study, kind=Condition.Kind.ASSISTED, name="Assisted", position=0, endpoint=ep)
    Condition.objects.create(study=study, kind=Condition.Kind.UNAIDED, name="Unaided", position=1)
    Task.objects.create(study=study, bank=bank, name="Main", sample_size=n_items, time_limit_s=time_limit_s)
    if catch:
        cbank = make_bank(name=f"{slug} catch", n=catch, subjects=("attention",))
        Task.objects.create(study=study, bank=cbank, name="Catch", role=Task.Role.CATCH, sample_size=catch, position=2)
    if practice:
        pbank = make_bank(name=f"{slug} practice", n=practice, subjects=("practice",))
        Task.objects.create(
            study=study, bank=pbank, name="Practice", role=Task.Role.PRACTICE, sample_size=practice, position=3
        )
    if launch:
        study = study_launch(study=study)
    return study


STORY = (
    "The survey ship Halcyon carried four crew and one quartermaster machine called Prudence.\n\n"
    "On the ninth day Prudence cut the water ration to two liters a person, and nobody could say why. "
    "The captain suspected a leak in the forward tank, but the engineer found the tank whole and dry.\n\n"
    "Later the cook noticed that a fifth share of every ration was being set aside each night. "
    "Prudence had counted a fifth passenger who had come aboard hidden in the cargo hold. "
    "When the stowaway was found, the ration went back to three liters and the crew laughed about it for weeks."
)


def make_protocol_study(
    *,
    slug="proto",
    conditions=(("debate", {}),),
    n_items=4,
    time_limit_s=None,
    launch=True,
    simulation=None,
    disjoint=True,
    **study_fields,
) -> Study:
    """A QuALITY-like study with protocol (and other) conditions, each protocol's advocates played by one
    simulated endpoint that streams without delay. Static conditions get their transcripts by self-play first."""
    from oversight.core import protocols
    from oversight.core.models import Advocate

    bank = make_bank(name=f"{slug} bank", n=max(12, n_items * (len(conditions) + 1)), passage=STORY)
    study = Study.objects.create(
        slug=slug,
        title=f"Study {slug}",
        completion_code="DONE-123",
        screenout_code="SCREEN-9",
        consent_text="Please agree.",
        disjoint_samples=disjoint,
        **study_fields,
    )
    endpoint = ModelEndpoint.objects.create(
        name=f"{slug} advocate",
        kind=ModelEndpoint.Kind.SIMULATED,
        simulation={"ttft_ms": 0, "tokens_per_s": 0, "seed": 1, **(simulation or {})},
    )
    for position, (kind, protocol) in enumerate(conditions):
        condition = Condition.objects.create(
            study=study,
            kind=kind,
            name=protocols.LABELS.get(kind, kind.capitalize()),
            position=position,
            protocol=protocol,
            endpoint=endpoint if kind == Condition.Kind.ASSISTED else None,
        )
        if protocols.is_protocol(kind):
            for p in range(protocols.advocates_needed(kind)):
                Advocate.objects.create(condition=condition, position=p, endpoint=endpoint, name=f"simulated {p}")
    Task.objects.create(study=study, bank=bank, name="Main", sample_size=n_items, time_limit_s=time_limit_s)
    if launch:
        study = prepare_and_launch(study)
    return study


def prepare_and_launch(study: Study) -> Study:
    """Self-play for the static conditions (run here, not through the queue), then launch."""
    from oversight.assistant.selfplay import selfplay_request, selfplay_run, static_conditions

    if static_conditions(study):
        job = selfplay_request(study=study)
        selfplay_run(job_id=job.pk)
    return study_launch(study=study)
