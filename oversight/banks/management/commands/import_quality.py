import argparse

from django.core.management.base import BaseCommand

from oversight.banks.importers import import_quality
from oversight.banks.importers.base import SPLIT_MAX
from oversight.banks.importers.quality import DEFAULT_BANK, UNKNOWN_SPLIT
from oversight.banks.importers.terminal import run_import


def split_name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > SPLIT_MAX:
        raise argparse.ArgumentTypeError(f"a split name has 1 to {SPLIT_MAX} characters")
    return value


class Command(BaseCommand):
    help = (
        "Import QuALITY v1.0.1 JSON Lines: one QuALITY.v1.0.1[.htmlstripped].{train,dev,test} file, a "
        "directory of them or the official zip. HTML articles are converted to text; where a split comes in "
        "both forms, only the htmlstripped file is read. Each article is stored once."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--bank", default=DEFAULT_BANK, help=f"bank name (default: {DEFAULT_BANK})")
        parser.add_argument(
            "--split",
            type=split_name,
            default=None,
            help="split for files whose name does not end in .train/.dev/.test "
            f"(default: {UNKNOWN_SPLIT}); names that do always win",
        )

    def handle(self, *args, path, bank, split, **options):
        run_import(self, lambda progress: import_quality(path=path, bank_name=bank, split=split, progress=progress))
