"""Question-bank importers: MMLU, QuALITY and custom CSV/JSONL banks.

Each importer reads and validates its whole input first (raising BankImportError, `file:line: problem`,
before anything is written), then writes it in one transaction, creating new rows, updating changed ones
and skipping unchanged ones by content hash. They return an ImportResult and take an optional progress
callback, so the management commands and the console's background job share them.
"""

from .base import BankImportError, ImportResult, ProgressCallback
from .custom import import_custom
from .mmlu import import_mmlu
from .quality import import_quality

__all__ = [
    "BankImportError",
    "ImportResult",
    "ProgressCallback",
    "import_custom",
    "import_mmlu",
    "import_quality",
]
