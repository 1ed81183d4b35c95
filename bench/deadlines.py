"""500 trials reaching their deadline at the same moment while the pages are under load (issue 15, lever 5).

The embedded default as `make run` serves it (one web process, SQLite, the in-process deadline sweeper), on a
fresh temp database:

1. `--expiring` participants (500) join a study with a 300 s limit and open their first item (through
   `manage.py shell`, before the server starts: they are not part of the load);
2. the server starts and `--load` participants (bench/otree_compare.py's client and flow: zero think time,
   answers as fast as the server takes them) keep it busy;
3. a few seconds into the load, one UPDATE moves every one of the 500 deadlines to the same moment, 2 s ahead;
4. when the load is done, each trial's lag is read: its finalisation time (`submitted_at`, stamped per trial)
   minus its deadline. The target: every trial finalised, each within 2 s of its deadline.

    .venv/bin/python bench/deadlines.py                       # 500 expiring, 100 participants of load
    .venv/bin/python bench/deadlines.py --expiring 200 --load 50

Exit status 1 if a trial was not finalised or one was more than 2 s late.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from otree_compare import (
    ITEMS_PER_PARTICIPANT,
    REPO,
    SLUG,
    STUDY,
    Stats,
    embedded_env,
    free_port,
    generate_items,
    loadavg,
    manage,
    pct,
    platform_participant,
    shell,
    stop_group,
    wait_up,
    write_items_jsonl,
)

from oversight_dev.servers import DEFAULT, group_cpu_s, web_command

EXPIRING = """
from oversight.core.models import Condition, Study, Task
from oversight.banks.models import Bank
from oversight.core.services.participants import current_trial, participant_join
from oversight.core.services.studies import study_launch
from oversight.core.services.trials import trial_show
load = Study.objects.get(slug={slug!r})
study = Study.objects.create(slug='deadline-bench', title='Deadlines', owner=load.owner, sample_seed=2,
    completion_code='X', confidence_format='likert')
Condition.objects.create(study=study, kind='unaided', name='Unaided', position=0)
Task.objects.create(study=study, bank=Bank.objects.get(name='Generated (otree_compare)'), name='t', position=0,
    sample_size=5, time_limit_s=300)
study_launch(study=study)
ids = []
for i in range({n}):
    p = participant_join(study=study, params={{'PROLIFIC_PID': f'expiring{{i}}'}}, consent=True)
    ids.append(trial_show(trial=current_trial(p)).pk)
result = ids
"""


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=UTC)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--expiring", type=int, default=500)
    ap.add_argument("--load", type=int, default=100, help="participants answering as fast as they can meanwhile")
    ap.add_argument("--server", default=DEFAULT)
    ap.add_argument("--lead", type=float, default=4.0, help="seconds of load before the deadlines are set")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-deadlines-"))
    proc = None
    try:
        env = embedded_env(tmp)
        items_path = tmp / "items.jsonl"
        write_items_jsonl(generate_items(), items_path)
        manage(env, "migrate", "--noinput", "-v", "0")
        shell(env, STUDY.format(path=str(items_path), slug=SLUG, n=ITEMS_PER_PARTICIPANT, limit=300))
        ids = shell(env, EXPIRING.format(slug=SLUG, n=args.expiring))
        db_path = tmp / "var" / "db.sqlite3"
        port = free_port()
        log = tmp / "server.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                web_command(args.server, "127.0.0.1", port),
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base_url = f"http://127.0.0.1:{port}"
        wait_up(base_url + "/healthz", proc, log)
        print(
            f"deadlines: {args.expiring} expiring, {args.load} participants of load, {args.server}; "
            f"load average {loadavg()}",
            flush=True,
        )

        async def run() -> tuple[Stats, float, datetime]:
            stats = Stats()
            rng = random.Random(1)
            load = asyncio.ensure_future(
                asyncio.gather(
                    *(
                        platform_participant(base_url, i, stats, random.Random(rng.random()), 120, True)
                        for i in range(args.load)
                    )
                )
            )
            t0 = time.perf_counter()
            await asyncio.sleep(args.lead)
            deadline = datetime.now(UTC) + timedelta(seconds=2)
            with sqlite3.connect(db_path, timeout=30) as db:
                placeholders = ",".join("?" * len(ids))
                db.execute(
                    f"UPDATE core_trial SET deadline_at = ? WHERE id IN ({placeholders})",  # noqa: S608
                    [deadline.strftime("%Y-%m-%d %H:%M:%S.%f"), *ids],
                )
            answers_at_deadline = stats.answers
            await load
            wall = time.perf_counter() - t0
            print(f"  load: {stats.answers} answers ({answers_at_deadline} before the deadlines were set)", flush=True)
            return stats, wall, deadline

        cpu0 = group_cpu_s(proc.pid)
        stats, wall, deadline = asyncio.run(run())
        cpu = group_cpu_s(proc.pid) - cpu0
        time.sleep(3)
        with sqlite3.connect(db_path, timeout=30) as db:
            placeholders = ",".join("?" * len(ids))
            rows = db.execute(
                f"SELECT status, submitted_at, deadline_at FROM core_trial WHERE id IN ({placeholders})",  # noqa: S608
                ids,
            ).fetchall()
    finally:
        if proc is not None:
            stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    final = [r for r in rows if r[0] == "timed_out" and r[1]]
    lags = sorted((parse_time(r[1]) - parse_time(r[2])).total_seconds() for r in final)
    late = [x for x in lags if x > 2.0]
    print(
        f"  finalised {len(final)} of {len(rows)}; lag p50 {pct(lags, 50):.2f} s, p95 {pct(lags, 95):.2f} s, "
        f"max {lags[-1]:.2f} s; more than 2 s late: {len(late)}; distinct stamps {len({r[1] for r in final})}"
    )
    print(
        f"  load: {stats.answers / wall:.1f} answers/s, POST p95 {pct(stats.post_ms, 95):.0f} ms, GET p95 "
        f"{pct(stats.get_ms, 95):.0f} ms, errors {stats.errors}; server CPU {cpu / wall:.0%} of a core; "
        f"mean lag {statistics.mean(lags):.2f} s; load average after {loadavg()}"
    )
    return 0 if len(final) == len(rows) and not late else 1


if __name__ == "__main__":
    sys.exit(main())
