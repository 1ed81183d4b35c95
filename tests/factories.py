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
