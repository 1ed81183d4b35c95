from pathlib import Path

from django.core.management.base import BaseCommand

from oversight.banks.importers import import_custom
from oversight.banks.importers.custom import FORMATS
from oversight.banks.importers.terminal import run_import


class Command(BaseCommand):
    help = (
        "Import a custom bank from a CSV file (with a header row) or a JSON Lines file; the columns are in "
        "docs/banks.md. Re-running it updates changed items and skips unchanged ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--bank", help="bank name (default: the file name without its extension)")
        parser.add_argument("--format", choices=FORMATS, help="default: from the extension (.csv; .jsonl or .ndjson)")

    def handle(self, *args, path, bank, format, **options):
        bank_name = bank or Path(path).stem
        run_import(
            self,
            lambda progress: import_custom(path=path, bank_name=bank_name, format=format, progress=progress),
        )
