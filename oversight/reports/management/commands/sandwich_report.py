"""`manage.py sandwich_report <slug>`: the study's sandwiching report (RESEARCH.md §5) as Markdown or JSON."""

from django.core.management.base import BaseCommand, CommandError

from oversight.analysis.metrics import RANDOM, TIE_RULES
from oversight.analysis.report import DEFAULT_RESAMPLES, DEFAULT_SEED, build_report
from oversight.core.models import Study
from oversight.reports.load import load_tables


class Command(BaseCommand):
    help = (
        "Print a study's sandwiching report: the paper-style table with bootstrap intervals and every metric of "
        "RESEARCH.md §5, with and without exclusions (pilots never included). JSON fields: docs/report-schema.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The study's slug")
        parser.add_argument("--format", choices=["md", "json"], default="md", help="Markdown (default) or JSON")
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help=f"Bootstrap seed, recorded in the report (default {DEFAULT_SEED})",
        )
        parser.add_argument(
            "--resamples",
            type=int,
            default=DEFAULT_RESAMPLES,
            help=f"Bootstrap resamples; 0 for point estimates only (default {DEFAULT_RESAMPLES})",
        )
        parser.add_argument(
            "--tie-rule",
            choices=[rule.replace("_", "-") for rule in TIE_RULES],
            default=RANDOM,
            help="How the vote breaks a tie the plurality leaves: a draw seeded by --seed (default) or the lowest "
            "option (the old rule; it favours A)",
        )

    def handle(self, *args, slug, format, seed, resamples, tie_rule, **options):
        if resamples < 0:
            raise CommandError("--resamples must be 0 or more.")
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with the slug “{slug}”.")
        report = build_report(load_tables(study), seed=seed, resamples=resamples, tie_rule=tie_rule.replace("-", "_"))
        text = report.to_json() + "\n" if format == "json" else report.to_markdown()
        self.stdout.write(text, ending="")
