"""The launched study's frozen parts, kept in each process: conditions, items and passages.

Launching freezes a study (its manifest is hashed, its sample fixed, its design no longer editable), so what a
participant's page needs of it besides the participant's own rows never changes: it is read once per process and
kept, keyed by the study, its manifest hash and its launch time. A new launch (a clone is a new study) is a new
key, so nothing is ever invalidated by hand. The study's status, and the recruitment settings that stay editable
while it is live, are not kept here: they come with the participant's row on every request (one join).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from oversight.banks.models import Item, Passage
from oversight.core.models import Condition, ConditionItem, Study

# Studies kept per process. Live studies are few; a bounded cache still keeps a long-running process small.
MAX_STUDIES = 32


@dataclass(frozen=True)
class LaunchedStudy:
    study_id: int
    manifest_hash: str
    conditions: dict[int, Condition]  # with their endpoint
    items: dict[int, Item]  # every item of the frozen sample, with its passage

    def condition(self, condition_id: int) -> Condition:
        return self.conditions[condition_id]

    def item(self, item_id: int) -> Item:
        return self.items[item_id]


_cache: OrderedDict[tuple, LaunchedStudy] = OrderedDict()
_lock = threading.Lock()


def _key(study: Study) -> tuple:
    return (study.pk, study.manifest_hash, study.launched_at)


def launched_study(study: Study) -> LaunchedStudy:
    """The frozen parts of a launched study (three queries the first time in this process, none after)."""
    if not study.manifest_hash:
        raise ValueError(f"study {study.pk} has not been launched: its parts are not frozen")
    key = _key(study)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    loaded = _load(study)
    with _lock:
        _cache[key] = loaded
        while len(_cache) > MAX_STUDIES:
            _cache.popitem(last=False)
    return loaded


def forget_launched_studies() -> None:
    """Empty this process's cache (tests that change a launched study's rows behind its back)."""
    with _lock:
        _cache.clear()


def _load(study: Study) -> LaunchedStudy:
    conditions = {c.pk: c for c in Condition.objects.filter(study_id=study.pk).select_related("endpoint")}
    items = {
        item.pk: item
        for item in Item.objects.filter(pk__in=ConditionItem.objects.filter(study_id=study.pk).values("item_id"))
    }
    # One Passage object per passage, however many of its questions were drawn (QuALITY passages are long).
    passage_ids = {item.passage_id for item in items.values() if item.passage_id}
    passages = Passage.objects.in_bulk(passage_ids) if passage_ids else {}
    for item in items.values():
        if item.passage_id:
            item.passage = passages[item.passage_id]
    return LaunchedStudy(study_id=study.pk, manifest_hash=study.manifest_hash, conditions=conditions, items=items)
