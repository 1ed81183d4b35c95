"""Protocol conditions in the study's record: their launch rules, the advocates' record, and the transcripts'
layout (which two answers the judge sees, in which order, and who argues for which).

Counterbalancing and assignment (docs/protocols.md):

* **Order of the two answers.** Shared transcripts: a condition's items are put in a seeded order and the gold
  answer is shown first on every other one, so exactly half (±1) of the items show it first. Per-trial
  transcripts: along each judge's own sequence of a condition's items, gold-first alternates, starting on a side
  drawn from the participant's seed, so every judge sees each order equally often (±1) and across judges each
  item is shown both ways.
* **Debate.** Debater A argues the first answer shown and Debater B the second: the position of the correct
  debater is the order above. In an open debate the protagonist (advocate 0) chooses its answer first and then
  speaks in that answer's position.
* **Consultancy.** The consultant is assigned the gold answer with probability `consultant_correct_p`, drawn from
  a hash of the study's sample seed (shared) or the participant's seed (per trial), the condition and the item.
  The draw's seed is stored on the transcript.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from oversight.banks.distractors import best_distractor
from oversight.banks.models import Item
from oversight.core import protocols
from oversight.core.models import Advocate, Condition, ModelEndpoint, Participant, Study, Task, Transcript
from oversight.core.protocol_prompts import system_prompt_for
from oversight.core.protocols import ProtocolSettings, ProtocolSettingsError
from oversight.core.services.samples import task_item_filters


def _unit(*parts) -> float:
    """A deterministic uniform number in [0, 1) from `parts`."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _seed(*parts) -> int:
    return int(_unit(*parts) * 2**62)


# --- Launch rules ------------------------------------------------------------------------------------------


def condition_protocol_problems(
    *, condition: Condition, advocates: Sequence[Advocate], tasks: Iterable[Task]
) -> list[str]:
    """What stops a protocol condition from running, in words a researcher can act on (none for other kinds).

    The console's design form calls this with the unsaved condition and advocates; `study_launch` calls it with
    the stored ones. Checked: the settings are valid; the number of advocates (two for a debate, one otherwise);
    every scored item can be reduced to two answers (it has a gold answer and another option); and when the
    judge does not see the story, every scored item has one to hide.
    """
    if not condition.is_protocol:
        return []
    name = condition.name or condition.get_kind_display()
    problems = []
    try:
        condition.protocol_settings()
        settings_ok = True
    except ProtocolSettingsError as exc:
        problems.append(f"The {condition.get_kind_display().lower()} condition “{name}”: {exc}")
        settings_ok = False
    needed = protocols.advocates_needed(condition.kind)
    positions = sorted(a.position for a in advocates)
    if positions != list(range(needed)):
        if needed == 2:
            problems.append(
                f"The debate condition “{name}” needs two advocates, one at position 0 (Debater A) and one at "
                f"position 1 (Debater B); it has {len(positions)}."
            )
        else:
            problems.append(
                f"The {condition.get_kind_display().lower()} condition “{name}” needs exactly one advocate (at "
                f"position 0); it has {len(positions)}."
            )
    hides_story = settings_ok and not condition.protocol_settings().judge_sees_story
    for task in tasks:
        if task.role != Task.Role.SCORED:
            continue
        items = task.bank.items.filter(**task_item_filters(task))
        if any(len(options or []) < 2 for options in items.values_list("options", flat=True)):
            problems.append(
                f"Task “{task.name}”: the two-option reduction of “{name}” needs items with at least two options."
            )
        if hides_story and items.filter(passage__isnull=True).exists():
            problems.append(
                f"Task “{task.name}”: “{name}” hides the story from the judge, so every item needs a story "
                f"(a passage); “{task.bank.name}” has items without one."
            )
    return problems


# --- The advocates' record and the settings hash ----------------------------------------------------------------


def endpoint_record(endpoint: ModelEndpoint | None) -> dict | None:
    """An endpoint as the manifest freezes it (never its token)."""
    if endpoint is None:
        return None
    return {
        "name": endpoint.name,
        "kind": endpoint.kind,
        "base_url": endpoint.base_url,
        "model_label": endpoint.model_label,
        "request_timeout_s": endpoint.request_timeout_s,
        "max_concurrency": endpoint.max_concurrency,
        "simulation": endpoint.simulation,
    }


def advocate_records(condition: Condition) -> list[dict]:
    """The condition's advocates as the manifest freezes them: endpoint, system prompt (the default's text when
    left empty), sampling and label."""
    return [
        {
            "position": a.position,
            "name": a.name,
            "endpoint": endpoint_record(a.endpoint),
            "system_prompt": a.system_prompt or system_prompt_for(condition.kind),
            "default_prompt": not a.system_prompt,
            "sampling": a.sampling,
        }
        for a in condition.advocates.select_related("endpoint").order_by("position")
    ]


def condition_settings_hash(condition: Condition) -> str:
    return protocols.settings_hash(condition.kind, condition.protocol_settings(), advocate_records(condition))


# --- The transcripts' layout ---------------------------------------------------------------------------------


def reduced_options(*, item: Item, settings: ProtocolSettings, seed_key: str) -> tuple[list[int], str]:
    """[gold, best distractor] (option indices of the item) and how the distractor was chosen."""
    distractor, how = best_distractor(
        n_options=len(item.options),
        gold_index=item.gold_index,
        metadata=item.metadata,
        rule=settings.distractor,
        tie=settings.distractor_tie,
        fallback=settings.distractor_fallback,
        seed_key=seed_key,
    )
    return [item.gold_index, distractor], how


def transcript_layout(
    *, condition: Condition, item: Item, settings: ProtocolSettings, gold_first: bool, seed: int, seed_key: str
) -> dict:
    """The fields of a new transcript: the answers in the order shown, who argues for which, who speaks where."""
    (gold, distractor), how = reduced_options(item=item, settings=settings, seed_key=seed_key)
    options = [gold, distractor] if gold_first else [distractor, gold]
    kind = condition.kind
    if kind in protocols.DEBATE_KINDS:
        argues, speakers = ([] if kind in protocols.OPEN_KINDS else [0, 1]), [0, 1]
    elif kind == protocols.CONSULTANCY:
        honest = _unit(seed, "consultant") < settings.consultant_correct_p
        argues, speakers = [options.index(gold if honest else distractor)], [0]
    else:  # open consultancy (the consultant chooses) and evidence only (nobody argues)
        argues, speakers = [], [0]
    return {
        "protocol": kind,
        "options": options,
        "argues": argues,
        "speakers": speakers,
        "seed": seed,
        "distractor_rule": how,
    }


def shared_transcripts_to_make(*, study: Study, condition: Condition, item_ids: Sequence[int]) -> list[Transcript]:
    """Unsaved shared transcripts for a condition's items (its frozen sample, or the sample launch will draw)."""
    settings = condition.protocol_settings()
    digest = condition_settings_hash(condition)
    items = Item.objects.in_bulk(list(item_ids))
    ordered = sorted(item_ids, key=lambda i: _unit(study.sample_seed, condition.pk, i, "order"))
    return [
        Transcript(
            study=study,
            condition=condition,
            item=items[item_id],
            shared=True,
            settings_hash=digest,
            **transcript_layout(
                condition=condition,
                item=items[item_id],
                settings=settings,
                gold_first=rank % 2 == 0,
                seed=_seed(study.sample_seed, condition.pk, item_id),
                seed_key=f"{study.sample_seed}:{condition.pk}:{item_id}",
            ),
        )
        for rank, item_id in enumerate(ordered)
    ]


def trial_transcripts(participant: Participant, sequence: Sequence[tuple[int, int, str]]) -> list[Transcript | None]:
    """For each (condition id, item id, role) of a participant's new sequence, the transcript its trial shows:
    the shared one of a static condition, a new saved one of a live condition's scored item, else None."""
    study = participant.study
    conditions = {c.pk: c for c in study.conditions.filter(kind__in=protocols.PROTOCOL_KINDS)}
    if not conditions:
        return [None] * len(sequence)
    settings = {cid: c.protocol_settings() for cid, c in conditions.items()}
    shared = {
        (t.condition_id, t.item_id): t
        for t in Transcript.objects.filter(study=study, shared=True, frozen_at__isnull=False)
    }
    live_items = Item.objects.in_bulk(
        [
            iid
            for cid, iid, role in sequence
            if cid in conditions and role == "scored" and settings[cid].transcripts == protocols.LIVE
        ]
    )
    digests = {
        cid: condition_settings_hash(c) for cid, c in conditions.items() if settings[cid].transcripts == protocols.LIVE
    }
    parity = participant.order_seed & 1
    seen: dict[int, int] = {}
    out: list[Transcript | None] = []
    new: list[Transcript] = []
    for cid, item_id, role in sequence:
        condition = conditions.get(cid)
        if condition is None or role != "scored":
            out.append(None)
            continue
        if settings[cid].transcripts == protocols.STATIC:
            out.append(shared[cid, item_id])
            continue
        k = seen.get(cid, 0)
        seen[cid] = k + 1
        transcript = Transcript(
            study=study,
            condition=condition,
            item=live_items[item_id],
            shared=False,
            settings_hash=digests[cid],
            **transcript_layout(
                condition=condition,
                item=live_items[item_id],
                settings=settings[cid],
                gold_first=(k + parity) % 2 == 0,
                seed=_seed(participant.order_seed, cid, item_id),
                seed_key=f"{participant.order_seed}:{cid}:{item_id}",
            ),
        )
        out.append(transcript)
        new.append(transcript)
    Transcript.objects.bulk_create(new)
    return out
