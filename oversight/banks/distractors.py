"""The two-option reduction (RESEARCH.md §9): the gold answer plus the *best distractor*.

Where the best distractor comes from, in order:

1. ``metadata["best_distractor"]`` on the item: a letter (``"C"``) or a 1-based option number, for custom banks
   that name it themselves;
2. with the ``validation`` rule, QuALITY's untimed validation: each untimed annotator named the option they
   would have been tempted by (``validation[].untimed_best_distractor``, 1-based, stored whole in the item's
   metadata by the QuALITY importer). Votes for the gold option are ignored (as Khan et al. 2024 did); the
   option with the most votes wins. **Ties** are broken by the tie rule: ``speed_validation`` (default) takes the
   tied option that QuALITY's 45-second speed validators chose most often (``speed_validation[].speed_answer``)
   — the distractor that actually fooled readers in a hurry — then the lowest-numbered; ``lowest`` takes the
   lowest-numbered at once (what Khan et al.'s code does in effect, iterating a set of small integers);
3. otherwise the fallback rule: ``speed_validation`` (the wrong option speed validators chose most, ties to the
   lowest-numbered; where there is no speed validation either, the lowest-numbered wrong option), ``seeded``
   (a wrong option drawn uniformly at random from a hash of the given seed key) or ``first_wrong`` (the
   lowest-numbered wrong option).

Pure Python on an item's plain values; the rule that was applied is returned with the answer, for the record.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping

VALIDATION = "validation"
SPEED_VALIDATION = "speed_validation"
SEEDED = "seeded"
FIRST_WRONG = "first_wrong"
LOWEST = "lowest"
METADATA = "metadata"


def _option_number(value, n_options: int) -> int | None:
    """A 0-based option index from a 1-based number or a letter; None when it is neither or out of range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.isalpha():
            index = ord(text.upper()) - ord("A")
            return index if 0 <= index < n_options else None
        if not text.isdigit():
            return None
        value = int(text)
    if isinstance(value, int) and 1 <= value <= n_options:
        return value - 1
    return None


def _votes(records, key: str, n_options: int, gold_index: int) -> Counter:
    votes: Counter = Counter()
    if not isinstance(records, list):
        return votes
    for record in records:
        if isinstance(record, Mapping):
            option = _option_number(record.get(key), n_options)
            if option is not None and option != gold_index:
                votes[option] += 1
    return votes


def _leaders(votes: Counter) -> list[int]:
    top = max(votes.values())
    return sorted(option for option, count in votes.items() if count == top)


def _seeded(wrong: list[int], seed_key: str) -> int:
    digest = hashlib.sha256(f"distractor:{seed_key}".encode()).digest()
    return wrong[int.from_bytes(digest[:8], "big") * len(wrong) >> 64]


def best_distractor(
    *,
    n_options: int,
    gold_index: int,
    metadata: Mapping | None,
    rule: str = VALIDATION,
    tie: str = SPEED_VALIDATION,
    fallback: str = SPEED_VALIDATION,
    seed_key: str = "",
) -> tuple[int, str]:
    """The option shown beside the gold one, and how it was chosen (e.g. ``"validation"``,
    ``"validation, tie: speed_validation"``, ``"fallback: seeded"``)."""
    if n_options < 2 or not 0 <= gold_index < n_options:
        raise ValueError("the two-option reduction needs a gold answer and at least one other option")
    metadata = metadata or {}
    wrong = [i for i in range(n_options) if i != gold_index]
    named = _option_number(metadata.get("best_distractor"), n_options)
    if named is not None and named != gold_index:
        return named, METADATA
    speed = _votes(metadata.get("speed_validation"), "speed_answer", n_options, gold_index)
    if rule == VALIDATION:
        votes = _votes(metadata.get("validation"), "untimed_best_distractor", n_options, gold_index)
        if votes:
            leaders = _leaders(votes)
            if len(leaders) == 1:
                return leaders[0], VALIDATION
            if tie == SPEED_VALIDATION and any(speed[o] for o in leaders):
                top = max(speed[o] for o in leaders)
                return min(o for o in leaders if speed[o] == top), f"{VALIDATION}, tie: {SPEED_VALIDATION}"
            return leaders[0], f"{VALIDATION}, tie: {LOWEST}"
        rule = fallback
        how = "fallback: "
    else:
        how = ""
    if rule == SPEED_VALIDATION:
        if speed:
            return _leaders(speed)[0], how + SPEED_VALIDATION
        return wrong[0], how + f"{SPEED_VALIDATION} (none recorded): {FIRST_WRONG}"
    if rule == SEEDED:
        return _seeded(wrong, seed_key), how + SEEDED
    if rule == FIRST_WRONG:
        return wrong[0], how + FIRST_WRONG
    raise ValueError(f"unknown distractor rule {rule!r}")
