#!/usr/bin/env python
"""Benchmark: the sandwiching report on 100,000 synthetic trials with 2,000 bootstrap resamples (bench/README.md).

    .venv/bin/python bench/analytics.py                  # 1,000 participants × 100 items, 2,000 resamples

Every participant answers 50 unaided and 50 assisted items (disjoint samples, two tasks, ten subjects), so the
study has participants × 100 trials; 2% of the participants are excluded, so the report computes both variants
(with and without exclusions) in full, as `manage.py sandwich_report` does. Three model baselines answer every
item. No database: the tables are built in memory (`oversight_dev.synthetic`).

Timed, each the median of --rounds rounds: one variant of the analysis (`analyse`), the whole report
(`build_report`: both variants, the target is ≤ 5 s wall-clock; its CPU time, all threads, is shown too because
it is what other load on the machine does not inflate) and rendering it as JSON and Markdown. The script exits
with status 1 if the median whole report misses the target.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--items", type=int, default=50, help="items per condition (two conditions)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds to run; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    import numpy as np
    from threadpoolctl import threadpool_limits

    from oversight.analysis.report import analyse, build_report
    from oversight_dev.synthetic import synthetic_tables

    started = time.perf_counter()
    tables = synthetic_tables(
        n_participants=args.participants,
        items_per_condition=args.items,
        excluded=max(1, args.participants // 50),
        seed=args.seed,
    )
    built = time.perf_counter() - started
    print(
        f"synthetic study: {len(tables.trials):,} trials ({args.participants:,} participants × "
        f"{2 * args.items} items), {len(tables.baselines):,} baseline results; built in {built:.2f} s"
    )
    print(
        f"resamples: {args.resamples:,}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}"
    )

    one, whole, whole_cpu, render = [], [], [], []
    for round_ in range(args.rounds):
        t = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):  # as build_report does
            analyse(tables, apply_exclusions=True, seed=args.seed, resamples=args.resamples)
        one.append(time.perf_counter() - t)
        t, cpu = time.perf_counter(), time.process_time()
        report = build_report(tables, seed=args.seed, resamples=args.resamples)
        whole.append(time.perf_counter() - t)
        whole_cpu.append(time.process_time() - cpu)
        t = time.perf_counter()
        size = len(report.to_json()) + len(report.to_markdown())
        render.append(time.perf_counter() - t)
        print(
            f"round {round_ + 1}: one variant {one[-1]:.2f} s, whole report {whole[-1]:.2f} s "
            f"(CPU {whole_cpu[-1]:.2f} s), render {render[-1]:.3f} s ({size:,} characters)"
        )

    median = statistics.median(whole)
    print()
    print(
        "| trials | resamples | one variant (s) | whole report, both variants (s) | its CPU time (s) | render (s) "
        "| target ≤ 5 s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {len(tables.trials):,} | {args.resamples:,} | {statistics.median(one):.2f} | **{median:.2f}** | "
        f"{statistics.median(whole_cpu):.2f} | {statistics.median(render):.3f} | "
        f"{'met' if median <= TARGET_S else 'MISSED'} |"
    )
    return 0 if median <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
