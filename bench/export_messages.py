#!/usr/bin/env python
"""Benchmark: export a study with 1,000,000 chat messages and report wall time and peak memory (bench/README.md).

    .venv/bin/python bench/export_messages.py                      # SQLite, a temporary database file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oversight_export_bench .venv/bin/python bench/export_messages.py

With DATABASE_URL the script creates (and afterwards drops) a fresh test_<name> database next to <name>, the way
the test runner does, so it never touches the database the URL names.

The study (2 conditions, 2,000 participants, 10 assisted trials each with 50 messages: 1,000,000 messages of
realistic lengths, JSON columns filled as the assistant fills them) is written with bulk_create in batches. Each
export then runs in a fresh child process, `manage.py export_study`'s code path (`export_study(..., zip_path=…)`),
and the child reports its own peak resident memory before and after the export: the kernel's high-water mark
of its resident set (`VmHWM` in /proc/self/status). Not `ru_maxrss`: Linux carries a parent's maximum into a
child across fork and exec, so a child of the process that generated the data would report the generator's
peak. The target is a peak under 300 MB.

With --keep the generated database is kept (SQLite: --sqlite-file; PostgreSQL: test_<name>) and reused by the next
run with --keep, which then skips the generation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MB = 300
SLUG = "export-bench"
WORDS = (
    "the",
    "passage",
    "says",
    "that",
    "answer",
    "option",
    "because",
    "author",
    "story",
    "character",
    "quote",
    "evidence",
    "likely",
    "however",
    "which",
    "would",
    "think",
    "reads",
    "second",
    "paragraph",
    "claims",
)


def setup_django() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def generate(*, participants: int, trials_per: int, messages_per: int, batch: int) -> dict:
    from django.db import transaction

    from oversight.assistant.models import ChatMessage
    from oversight.banks.models import Bank, Item, content_hash
    from oversight.core.models import Condition, ModelEndpoint, Participant, Study, Task, Trial
    from oversight.core.services.studies import study_launch

    rng = random.Random(0)
    started = time.perf_counter()
    bank = Bank.objects.create(name="bench bank")
    Item.objects.bulk_create(
        Item(
            bank=bank,
            external_id=f"q{i}",
            subject="bench",
            split="test",
            text=text(rng, 20),
            options=[text(rng, 5) for _ in range(4)],
            gold_index=i % 4,
            content_hash=content_hash({"i": i}),
        )
        for i in range(trials_per * 2)
    )
    endpoint = ModelEndpoint.objects.create(name="bench sim", kind="simulated", simulation={"accuracy": 0.8})
    study = Study.objects.create(slug=SLUG, title="Export benchmark", randomise_item_order=False)
    assisted = Condition.objects.create(study=study, kind="assisted", name="Assisted", position=0, endpoint=endpoint)
    Condition.objects.create(study=study, kind="unaided", name="Unaided", position=1)
    Task.objects.create(study=study, bank=bank, name="Main", sample_size=trials_per)
    study = study_launch(study=study)
    items = list(
        study.condition_items.filter(condition=assisted).order_by("position").values_list("item_id", flat=True)
    )

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    with transaction.atomic():
        people = Participant.objects.bulk_create(
            [
                Participant(
                    study=study,
                    status="completed",
                    external_id=f"prolific:bench{i}",
                    recruitment={"source": "prolific"},
                    condition_order=[assisted.pk],
                    order_seed=i,
                )
                for i in range(participants)
            ],
            batch_size=batch,
        )
        trials = Trial.objects.bulk_create(
            [
                Trial(
                    participant=p,
                    condition=assisted,
                    item_id=item_id,
                    role="scored",
                    position=n,
                    status="answered",
                    shown_at=t0,
                    submitted_at=t0 + timedelta(seconds=90),
                    submit_kind="manual",
                    choice=n % 4,
                    confidence=80,
                    correct=n % 3 == 0,
                )
                for p in people
                for n, item_id in enumerate(items)
            ],
            batch_size=batch,
        )
    if trials and trials[0].pk is None:
        trials = list(Trial.objects.filter(participant__study=study).order_by("pk"))

    written = 0
    pending: list = []
    next_id = (ChatMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    for trial in trials:
        context: list[int] = []
        for seq in range(messages_per):
            created = t0 + timedelta(seconds=seq)
            if seq % 2 == 0:
                pending.append(
                    ChatMessage(
                        pk=next_id,
                        trial_id=trial.pk,
                        seq=seq,
                        role="user",
                        content=text(rng, rng.randint(5, 30)),
                        client_id=f"c{next_id}",
                        created_at=created,
                    )
                )
            else:
                pending.append(
                    ChatMessage(
                        pk=next_id,
                        trial_id=trial.pk,
                        seq=seq,
                        role="assistant",
                        content=text(rng, rng.randint(40, 160)),
                        reply_to_id=next_id - 1,
                        endpoint_id=endpoint.pk,
                        model_id="bench-model",
                        sampling={"temperature": 0.7, "top_p": 0.95, "max_tokens": 512, "seed": seq},
                        context={"messages": context[-10:], "passage": True},
                        prompt_tokens=400 + 20 * seq,
                        completion_tokens=120,
                        ttft_ms=85.0,
                        total_ms=1450.5,
                        finish_reason="stop",
                        quotes=[{"text": text(rng, 6), "verified": rng.random() < 0.8}] if seq % 4 == 1 else [],
                        created_at=created,
                        finished_at=created + timedelta(seconds=1),
                    )
                )
            context.append(next_id)
            next_id += 1
            if len(pending) >= batch:
                ChatMessage.objects.bulk_create(pending)
                written += len(pending)
                pending = []
    if pending:
        ChatMessage.objects.bulk_create(pending)
        written += len(pending)
    return {
        "messages": written,
        "trials": len(trials),
        "participants": participants,
        "seconds": time.perf_counter() - started,
    }


def _status_mb(key: str) -> float | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (VmHWM), in MiB."""
    try:
        return _status_mb("VmHWM:")
    except OSError:  # not Linux: ru_maxrss, an upper bound (see the module docstring)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        return _status_mb("VmRSS:") or 0.0
    except OSError:
        return 0.0


def child(args) -> int:
    """Run one export in this fresh process and print {"seconds", "rss_before_mb", "peak_mb", …} as JSON."""
    setup_django()
    from oversight.core.models import Study
    from oversight.exports.services import export_study

    study = Study.objects.get(slug=SLUG)
    before = peak_rss_mb()
    # Which step the peak happens in: the export's progress messages, sampled with the resident set size.
    stage = ["starting"]
    highest = [0.0, ""]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            rss = rss_mb()
            if rss > highest[0]:
                highest[:] = [rss, stage[0]]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = export_study(
        study=study,
        formats=args.formats,
        zip_path=Path(args.out),
        batch_rows=args.batch_rows,
        progress=lambda d, t, message: stage.__setitem__(0, message.split(" (")[0]),
    )
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rss_before_mb": before,
                "peak_mb": peak,
                "peak_during": highest[1],
                "zip_mb": result.path.stat().st_size / 2**20,
                "rows": result.row_counts,
            }
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=10, help="assisted trials per participant")
    parser.add_argument("--messages", type=int, default=50, help="chat messages per trial")
    parser.add_argument(
        "--formats",
        nargs="+",
        default=["parquet", "all"],
        help="exports to time, each in its own child process: parquet, csv, jsonl or all",
    )
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--insert-batch", type=int, default=5_000)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the generated database for the next --keep run (which skips the generation)",
    )
    parser.add_argument(
        "--sqlite-file",
        type=Path,
        default=Path(tempfile.gettempdir()) / "oversight-export-bench.sqlite3",
        help="the SQLite database file with --keep (default: %(default)s)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.formats = args.formats[0]
        return child(args)

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        os.environ.setdefault("SQLITE_PATH", str(Path(tmp) / "unused.sqlite3"))
        setup_django()
        import django
        from django.conf import settings
        from django.db import connection
        from django.test.utils import setup_databases, teardown_databases

        if connection.vendor == "sqlite":
            db_file = args.sqlite_file if args.keep else Path(tmp) / "bench.sqlite3"
            settings.DATABASES["default"]["TEST"]["NAME"] = str(db_file)
        state = setup_databases(verbosity=0, interactive=False, keepdb=args.keep)
        try:
            with connection.cursor() as cursor:
                cursor.execute("select sqlite_version()" if connection.vendor == "sqlite" else "show server_version")
                db_version = cursor.fetchone()[0]
            print(
                f"{connection.vendor} {db_version} · Python {platform.python_version()} · Django "
                f"{django.get_version()} · {os.cpu_count()} CPUs"
            )
            from oversight.core.models import Study

            if args.keep and Study.objects.filter(slug=SLUG).exists():
                print("reusing the kept database")
            else:
                made = generate(
                    participants=args.participants,
                    trials_per=args.trials,
                    messages_per=args.messages,
                    batch=args.insert_batch,
                )
                print(
                    f"generated {made['messages']:,} messages in {made['trials']:,} trials of "
                    f"{made['participants']:,} participants in {made['seconds']:.0f} s"
                )
            # The child connects to the database the test runner just made.
            env = dict(os.environ)
            db_name = settings.DATABASES["default"]["NAME"]
            if connection.vendor == "sqlite":
                env["SQLITE_PATH"] = db_name
            else:
                url = os.environ["DATABASE_URL"]
                env["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + db_name
            connection.close()
            failed = False
            print(
                f"\n| export | rows | wall s | peak RSS MB (before export) | peak during | zip MB | "
                f"peak < {TARGET_MB} MB |"
            )
            print("|---|---:|---:|---:|---|---:|---|")
            for fmt in args.formats:
                out = Path(tmp) / f"export-{fmt}.zip"
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        "--formats",
                        fmt,
                        "--out",
                        str(out),
                        "--batch-rows",
                        str(args.batch_rows),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode:
                    print(proc.stdout, proc.stderr, file=sys.stderr)
                    return 2
                m = json.loads(proc.stdout.strip().splitlines()[-1])
                ok = m["peak_mb"] < TARGET_MB
                failed |= not ok
                print(
                    f"| {fmt} | {sum(m['rows'].values()):,} | {m['seconds']:.1f} | {m['peak_mb']:.0f} "
                    f"({m['rss_before_mb']:.0f}) | {m['peak_during']} | {m['zip_mb']:.0f} | "
                    f"{'met' if ok else 'MISSED'} |"
                )
                out.unlink(missing_ok=True)
            return 1 if failed else 0
        finally:
            if not args.keep:
                teardown_databases(state, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
