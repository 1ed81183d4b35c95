#!/usr/bin/env python
"""Benchmark: import all of MMLU into a fresh database and report seconds (see bench/README.md).

    .venv/bin/python bench/import_mmlu.py                      # SQLite, a temporary database file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oversight_bench .venv/bin/python bench/import_mmlu.py

With DATABASE_URL the script creates (and afterwards drops) a fresh test_<name> database next to <name>,
the way the test runner does, so it never touches the database the URL names.

Each round imports into new banks of the same fresh database: the test split alone (the target is ≤10 s
for its 14,042 items), then all three splits, then all three again (every item unchanged). "parse only"
is the reading and validation without the database.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MMLU = REPO / ".." / "shared" / "datasets" / "mmlu"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmlu", type=Path, default=DEFAULT_MMLU, help="MMLU directory (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds to run; the median is reported")
    args = parser.parse_args()
    if not (args.mmlu / "test").is_dir():
        parser.error(f"no MMLU test/ directory under {args.mmlu.resolve()}")

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="bench-mmlu-") as tmp:
        # Only read without DATABASE_URL; it keeps the embedded default from touching var/db.sqlite3.
        os.environ.setdefault("SQLITE_PATH", str(Path(tmp) / "unused.sqlite3"))
        import django

        django.setup()
        from django.conf import settings
        from django.db import connection
        from django.test.utils import setup_databases, teardown_databases

        if connection.vendor == "sqlite":
            # A file, as in production, not the test runner's in-memory default.
            settings.DATABASES["default"]["TEST"]["NAME"] = str(Path(tmp) / "bench.sqlite3")
        state = setup_databases(verbosity=0, interactive=False)
        try:
            return run(args.mmlu, args.rounds)
        finally:
            teardown_databases(state, verbosity=0)


def run(mmlu: Path, rounds: int) -> int:
    import django
    from django.db import connection

    from oversight.banks.importers import import_mmlu
    from oversight.banks.importers.mmlu import parse_mmlu

    with connection.cursor() as cursor:
        cursor.execute("select sqlite_version()" if connection.vendor == "sqlite" else "show server_version")
        db_version = cursor.fetchone()[0]
    print(
        f"{connection.vendor} {db_version} · Python {platform.python_version()} · Django {django.get_version()} · "
        f"{os.cpu_count()} CPUs · {mmlu.resolve()}"
    )

    timings: dict[str, list[float]] = {"parse only (all)": [], "test split": [], "all splits": [], "re-import": []}
    for round_ in range(1, rounds + 1):
        started = time.perf_counter()
        parsed = parse_mmlu(path=mmlu)
        timings["parse only (all)"].append(time.perf_counter() - started)
        assert len(parsed.items) == 15_858, len(parsed.items)

        started = time.perf_counter()
        result = import_mmlu(path=mmlu, bank_name=f"test-{round_}", splits=["test"])
        timings["test split"].append(time.perf_counter() - started)
        assert result.items_new == 14_042, result.items_new

        started = time.perf_counter()
        result = import_mmlu(path=mmlu, bank_name=f"all-{round_}")
        timings["all splits"].append(time.perf_counter() - started)
        assert result.items_new == 15_858, result.items_new

        started = time.perf_counter()
        result = import_mmlu(path=mmlu, bank_name=f"all-{round_}")
        timings["re-import"].append(time.perf_counter() - started)
        assert result.items_unchanged == 15_858, result.items_unchanged

        print(f"round {round_}: " + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in timings.items()))

    print("median: " + ", ".join(f"{name} {statistics.median(v):.2f} s" for name, v in timings.items()))
    target = statistics.median(timings["test split"])
    print(f"test split (14,042 items): {target:.2f} s — target ≤ 10 s: {'met' if target <= 10 else 'MISSED'}")
    return 0 if target <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
