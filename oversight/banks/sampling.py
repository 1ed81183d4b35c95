"""Deterministic item sampling: the same bank content, filters and seed give the same items everywhere.

Reproducible on SQLite and PostgreSQL alike because nothing depends on the database's row order, collation
or primary keys: the candidates are sorted in Python by external id (unique within a bank) and drawn with a
partial Fisher–Yates shuffle driven only by random.Random(seed).random(), the one part of the random module
whose output Python promises to keep across versions (random.sample's algorithm carries no such promise).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from .models import Bank, Item

Seed = int | str | bytes


def sample_items(
    *,
    bank: Bank | int,
    n: int,
    seed: Seed,
    splits: Iterable[str] | None = None,
    subjects: Iterable[str] | None = None,
    difficult: bool | None = None,
    labeled: bool | None = None,
    exclude: Iterable[Item | int] = (),
) -> list[Item]:
    """`n` items drawn from the bank's items that pass the filters, in draw order.

    `None` filters are off; `labeled=True` keeps items with a gold answer. `exclude` (items or ids) keeps
    this sample disjoint from an earlier one. Raises ValueError when fewer than `n` items match.
    """
    return sample_disjoint(
        bank=bank,
        sizes=[n],
        seed=seed,
        splits=splits,
        subjects=subjects,
        difficult=difficult,
        labeled=labeled,
        exclude=exclude,
    )[0]


def sample_disjoint(
    *,
    bank: Bank | int,
    sizes: list[int],
    seed: Seed,
    splits: Iterable[str] | None = None,
    subjects: Iterable[str] | None = None,
    difficult: bool | None = None,
    labeled: bool | None = None,
    exclude: Iterable[Item | int] = (),
    separate_passages: bool = False,
) -> list[list[Item]]:
    """Several samples with no item in common (e.g. practice and main blocks), one per entry of `sizes`.

    One draw of sum(sizes) items is cut into consecutive pieces, so the pieces are disjoint by construction.

    `separate_passages`: no passage (a QuALITY story) has items in two samples either, so a participant who
    meets a story in one condition never meets it again in another. Passages, and items without one, are drawn
    in a seeded order, and each sample takes whole passages' items (in a seeded order within the passage) until
    it is full; what is left of the passage that completes a sample is not used. Without passages in the pool
    this is exactly the plain draw.
    """
    if any(size < 0 for size in sizes):
        raise ValueError(f"sample sizes must be non-negative, got {sizes}")
    splits, subjects = _as_list(splits), _as_list(subjects)
    candidates = Item.objects.filter(bank=bank)
    if splits is not None:
        candidates = candidates.filter(split__in=splits)
    if subjects is not None:
        candidates = candidates.filter(subject__in=subjects)
    if difficult is not None:
        candidates = candidates.filter(difficult=difficult)
    if labeled is not None:
        candidates = candidates.filter(gold_index__isnull=not labeled)
    excluded = {item.pk if isinstance(item, Item) else int(item) for item in exclude}
    rows = [
        (external_id, pk, passage)
        for pk, external_id, passage in candidates.values_list("pk", "external_id", "passage__external_id")
        if pk not in excluded
    ]
    pool = sorted((external_id, pk) for external_id, pk, _ in rows)

    total = sum(sizes)
    what = f"{total} items" if len(sizes) == 1 else f"{total} items ({' + '.join(map(str, sizes))})"
    if total > len(pool):
        scope = _describe(bank, splits, subjects, difficult, labeled, excluded)
        raise ValueError(f"asked for {what} but only {len(pool)} match ({scope})")

    if separate_passages and any(passage is not None for _, _, passage in rows):
        pieces = _draw_by_passage(rows, sizes, seed)
        if pieces is None:
            scope = _describe(bank, splits, subjects, difficult, labeled, excluded)
            n_passages = len({passage for _, _, passage in rows if passage is not None})
            raise ValueError(
                f"asked for {what} with no story in two samples, but the {len(pool)} matching items are on "
                f"{n_passages} stories, too few to fill every sample ({scope})"
            )
    else:
        picked = [pk for _, pk in _draw(pool, total, seed)]
        pieces, start = [], 0
        for size in sizes:
            pieces.append(picked[start : start + size])
            start += size
    items = Item.objects.in_bulk([pk for piece in pieces for pk in piece])
    return [[items[pk] for pk in piece] for piece in pieces]


def _draw_by_passage(rows: list[tuple[str, int, str | None]], sizes: list[int], seed: Seed) -> list[list[int]] | None:
    """Pieces of item pks, each made of whole passages' items (see `sample_disjoint`); None when they run out.
    Units are keyed by external ids (the passage's, or a lone item's), never by database ids."""
    units: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for external_id, pk, passage in rows:
        key = ("passage", passage) if passage is not None else ("item", external_id)
        units.setdefault(key, []).append((external_id, pk))
    order = _draw(sorted(units), len(units), seed)
    pieces: list[list[int]] = []
    next_unit = iter(order)
    for size in sizes:
        piece: list[int] = []
        while len(piece) < size:
            key = next(next_unit, None)
            if key is None:
                return None
            members = sorted(units[key])
            piece += [pk for _, pk in _draw(members, len(members), f"{seed}:{key[0]}:{key[1]}")][: size - len(piece)]
        pieces.append(piece)
    return pieces


def _draw(pool: list, k: int, seed: Seed) -> list:
    """The first k elements of a seeded Fisher–Yates shuffle of pool."""
    rng = random.Random(seed)
    pool = list(pool)
    for i in range(k):
        # int(random() * m) is uniform to within m / 2**53, negligible for any bank size.
        j = i + int(rng.random() * (len(pool) - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def _as_list(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):  # a bare "test" would otherwise filter on the letters t, e, s
        return [values]
    return list(values)


def _describe(bank, splits, subjects, difficult, labeled, excluded) -> str:
    name = bank.name if isinstance(bank, Bank) else f"#{bank}"
    parts = [f"bank {name!r}"]
    if splits is not None:
        parts.append(f"splits {', '.join(splits)}")
    if subjects is not None:
        shown = ", ".join(subjects[:5]) + (f" and {len(subjects) - 5} more" if len(subjects) > 5 else "")
        parts.append(f"subjects {shown}")
    if difficult is not None:
        parts.append("difficult" if difficult else "not difficult")
    if labeled is not None:
        parts.append("labeled" if labeled else "unlabeled")
    if excluded:
        parts.append(f"{len(excluded)} excluded")
    return "; ".join(parts)
