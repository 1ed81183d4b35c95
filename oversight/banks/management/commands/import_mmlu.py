import argparse

from django.core.management.base import BaseCommand

from oversight.banks.importers import import_mmlu
from oversight.banks.importers.mmlu import DEFAULT_BANK, SPLITS
from oversight.banks.importers.terminal import run_import


def split_list(value: str) -> list[str]:
    splits = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise argparse.ArgumentTypeError(f"splits are {','.join(SPLITS)}; got {value!r}")
    return splits


class Command(BaseCommand):
    help = (
        "Import MMLU from the official data.tar (or a .zip of it), its data/ directory, a directory holding "
        "test/ val/ dev/, one split directory or one <subject>_<split>.csv. auxiliary_train/ is ignored. "
        "Re-running it updates changed items and skips unchanged ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--splits", type=split_list, default=list(SPLITS), help="comma-separated (default: test,val,dev)"
        )
        parser.add_argument("--bank", default=DEFAULT_BANK, help=f"bank name (default: {DEFAULT_BANK})")

    def handle(self, *args, path, splits, bank, **options):
        run_import(self, lambda progress: import_mmlu(path=path, bank_name=bank, splits=splits, progress=progress))
