"""The report the console shows: computed on request, cached under a fingerprint of the data.

A bundle is the report (`load_tables` → `build_report`) and what the pages need beside it: the expert
reference lines, each participant's accuracy and the per-item rows, for both variants. It is cached under a key
made of the study, the number of resamples and a cheap fingerprint of the data (counts and latest timestamps of
trials, participants, exclusions and model-alone results), so a reload is fast and any new answer, exclusion or
baseline result makes a fresh report. The plots are cached the same way, as SVG text. docs/report.md explains
the pages.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.db.models import Count, Max, Q
from django.utils import timezone

from oversight.analysis import plots
from oversight.analysis.report import DEFAULT_SEED, analysed_trials, build_report
from oversight.banks.models import Item
from oversight.baselines.models import BaselineResult, BaselineRun
from oversight.baselines.services import runs_for_study
from oversight.core.models import Exclusion, Participant, Study, Trial
from oversight.reports.items import item_rows
from oversight.reports.load import load_tables

CACHE_SECONDS = 24 * 3600
CACHE_FORMAT = 3  # bump when the cached bundle's shape changes (3: model judges, persuasion)


def data_version(study: Study, *, now=None) -> str:
    """A cheap fingerprint of everything the report reads: it changes with any new answer, exclusion or result,
    and when an open trial passes its deadline (the report then counts it as timed out: `load`)."""
    now = now or timezone.now()
    final = [Trial.Status.ANSWERED, Trial.Status.TIMED_OUT]
    runs = runs_for_study(study)
    parts = [
        Trial.objects.filter(participant__study=study).aggregate(
            n=Count("id"),
            final=Count("id", filter=Q(status__in=final)),
            last=Max("submitted_at"),
            right=Count("id", filter=Q(correct=True)),
            expired=Count("id", filter=Q(status=Trial.Status.SHOWN, deadline_at__lte=now)),
        ),
        Participant.objects.filter(study=study).aggregate(
            n=Count("id"),
            pilots=Count("id", filter=Q(is_pilot=True)),
            done=Max("completed_at"),
            screened=Count("id", filter=Q(status=Participant.Status.SCREENED_OUT)),
            completed=Count("id", filter=Q(status=Participant.Status.COMPLETED)),
        ),
        Exclusion.objects.filter(participant__study=study).aggregate(
            n=Count("id"), revoked=Count("revoked_at"), last=Max("created_at"), last_revoked=Max("revoked_at")
        ),
        BaselineResult.objects.filter(run__in=runs).aggregate(n=Count("id"), last=Max("id"), runs=Max("run_id")),
        # A run's summary (its split's numbers) is written when it finishes, after its last result.
        runs.aggregate(
            n=Count("id"), done=Count("id", filter=Q(status=BaselineRun.Status.DONE)), last=Max("finished_at")
        ),
    ]
    text = repr([sorted(p.items()) for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cache_key(study: Study, resamples: int, version: str, *rest) -> str:
    return ":".join(["console-report", str(CACHE_FORMAT), str(study.pk), str(resamples), version, *map(str, rest)])


def report_bundle(*, study: Study, resamples: int, version: str | None = None) -> dict:
    """The report and what the pages need beside it, from the cache when the data has not changed."""
    version = version or data_version(study)
    key = _cache_key(study, resamples, version)
    bundle = cache.get(key)
    if bundle is None:
        bundle = build_bundle(study, resamples)
        bundle["version"] = version
        cache.set(key, bundle, CACHE_SECONDS)
    return bundle


def report_plot_svg(*, study: Study, name: str, variant: str, resamples: int) -> str:
    """One plot of the report (`plots.PLOTS`) as SVG text, for a variant and a number of resamples; cached."""
    version = data_version(study)
    key = _cache_key(study, resamples, version, "svg", name, variant)
    svg = cache.get(key)
    if svg is None:
        bundle = report_bundle(study=study, resamples=resamples, version=version)
        svg = plots.render(
            name,
            bundle["report"],
            variant=variant,
            experts=bundle["experts"],
            participants=bundle["participants"][variant],
        )
        cache.set(key, svg, CACHE_SECONDS)
    return svg


def build_bundle(study: Study, resamples: int) -> dict:
    tables = load_tables(study)
    report = build_report(tables, seed=DEFAULT_SEED, resamples=resamples).to_dict()
    item_ids = {t.item_id for t in analysed_trials(tables, apply_exclusions=False)}
    info = {row["id"]: row for row in Item.objects.filter(pk__in=item_ids).values("id", "external_id", "subject")}
    positions = {
        (p, c, i): pos
        for p, c, i, pos in Trial.objects.filter(
            participant__study=study, item_id__in=item_ids, role="scored"
        ).values_list("participant_id", "condition_id", "item_id", "position")
    }
    formats = dict(study.tasks.filter(role="scored").values_list("name", "bank__format"))
    return {
        "report": report,
        "experts": plots.expert_reference(formats),
        "participants": {
            variant: plots.participant_accuracy(tables, apply_exclusions=variant == "with_exclusions")
            for variant in plots.VARIANTS
        },
        "items": {
            variant: item_rows(tables, apply_exclusions=variant == "with_exclusions", positions=positions, info=info)
            for variant in plots.VARIANTS
        },
    }
