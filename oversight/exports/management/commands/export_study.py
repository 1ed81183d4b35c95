"""`manage.py export_study <slug> --format parquet|csv|jsonl|all --out DIR`: a study's data export from the shell.

Writes the zip `DIR/<slug>-export-<UTC time>.zip` (one folder inside, as the console's export job makes), or with
`--unzipped` the folder `DIR/<slug>-export-<UTC time>/` itself. Prints the path and the row counts.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from oversight.core.models import Study
from oversight.exports.services import BATCH_ROWS, ExportError, export_name, export_study
from oversight.exports.writers import FORMATS


class Command(BaseCommand):
    help = (
        "Export a study's data (trials, chat messages, events, participants, items, passages, baselines, "
        "exclusions, manifest) with a README and the data dictionary. Pilots are left out unless "
        "--include-pilots; recruitment ids only with --include-external-ids on a study that allows it. "
        "See docs/export.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The study's slug")
        parser.add_argument(
            "--format", choices=[*FORMATS, "all"], default="all", help="Table format (default: all three)"
        )
        parser.add_argument("--out", required=True, type=Path, help="Directory to write the export into")
        parser.add_argument(
            "--unzipped",
            action="store_true",
            help="Write a folder DIR/<slug>-export-<time>/ instead of the zip DIR/<…>.zip",
        )
        parser.add_argument(
            "--include-external-ids",
            action="store_true",
            help="Include recruitment platform ids (only if the study allows their export)",
        )
        parser.add_argument("--include-pilots", action="store_true", help="Include pilot participants and their data")
        parser.add_argument(
            "--batch-rows",
            type=int,
            default=BATCH_ROWS,
            help=f"Rows per write batch / Parquet row group (default {BATCH_ROWS:,})",
        )

    def handle(self, *args, slug, format, out, unzipped, include_external_ids, include_pilots, batch_rows, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with the slug “{slug}”.")
        if batch_rows < 1:
            raise CommandError("--batch-rows must be at least 1.")
        now = timezone.now()
        name = export_name(study, now)
        target = {"out_dir": out / name} if unzipped else {"zip_path": out / f"{name}.zip"}
        try:
            result = export_study(
                study=study,
                formats=format,
                include_external_ids=include_external_ids,
                include_pilots=include_pilots,
                now=now,
                batch_rows=batch_rows,
                **target,
            )
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(result.path))
        for table, n in result.row_counts.items():
            self.stderr.write(f"  {table}: {n:,} rows")
