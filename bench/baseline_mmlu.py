#!/usr/bin/env python
"""Benchmark: a zero-shot baseline over the whole MMLU test split (14,042 items) against the fake TGI.

    .venv/bin/python bench/baseline_mmlu.py                       # SQLite, a temporary database file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oversight_bench .venv/bin/python bench/baseline_mmlu.py
    .venv/bin/python bench/baseline_mmlu.py --profile             # also print a cProfile of the run

The fake TGI runs as a separate process (`python -m oversight_dev.faketgi --port 0 --ttft-ms 50
--letter-logprobs …`), answering every request after 50 ms. At concurrency 32 the bound is
32 / 0.05 s = 640 items/s; the target is ≥ 0.9 of it (the split in ≤ 25 s). Reported: wall time, items/s
and its ratio to the bound, the CPU seconds of this process and of the fake server, and the resident
memory of this process, sampled every 0.25 s during the run (it should stay flat).

With DATABASE_URL the script creates (and afterwards drops) a fresh test_<name> database, as the test
runner does, so it never touches the database the URL names. Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MMLU = REPO / ".." / "shared" / "datasets" / "mmlu"
LETTERS = {" A": -1.2, " B": -0.4, " C": -2.5, " D": -0.9}  # all four in the top 5: one request per item


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._halt.is_set():
            self.samples.append((time.monotonic() - start, rss_mib()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some runnable task waited for a CPU), when available."""
    try:
        with open("/proc/pressure/cpu") as f:
            return f.readline().split()[1].split("=")[1] + "%"
    except OSError:
        return "n/a"


def bare_client_rate(url: str, concurrency: int, n: int) -> float:
    """Requests/s of a loop that only sends the same scoring request through the runner's transport, with the
    same concurrency, against the same server: what this machine allows right now, without the runner."""
    import asyncio

    from oversight.baselines.transport import JSONPoster

    body = json.dumps(
        {
            "inputs": "Human: Question: 1 + 1?\n\nChoices:\n (A) 1\n (B) 2\n (C) 3\n (D) 4\n\nAnswer:\n\nAssistant:",
            "parameters": {"details": True, "do_sample": False, "max_new_tokens": 1, "top_n_tokens": 5},
        }
    ).encode()

    async def go() -> float:
        poster = JSONPoster(url, timeout_s=30)
        left = n

        async def worker():
            nonlocal left
            while left > 0:
                left -= 1
                status, payload = await poster.post("/generate", body)
                json.loads(payload)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - start
        await poster.aclose()
        return n / elapsed

    return asyncio.run(go())


def start_fake(ttft_ms: float) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "oversight_dev.faketgi",
        "--port",
        "0",
        "--ttft-ms",
        str(ttft_ms),
        "--max-concurrent-requests",
        "1024",
        "--letter-logprobs",
        json.dumps(LETTERS),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"faketgi did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmlu", type=Path, default=DEFAULT_MMLU, help="MMLU directory (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--profile", action="store_true", help="run under cProfile and print the top functions")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument(
        "--bare-requests",
        type=int,
        default=6400,
        help="requests of the bare transport loop measured after the run (0: skip)",
    )
    args = parser.parse_args()
    if not (args.mmlu / "test").is_dir():
        parser.error(f"no MMLU test/ directory under {args.mmlu.resolve()}")

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    os.environ["LOG_LEVEL"] = "WARNING"  # httpx2 logs every request at INFO
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        os.environ.setdefault("SQLITE_PATH", str(Path(tmp) / "unused.sqlite3"))
        import django

        django.setup()
        from django.conf import settings
        from django.db import connection
        from django.test.utils import setup_databases, teardown_databases

        if connection.vendor == "sqlite":
            settings.DATABASES["default"]["TEST"]["NAME"] = str(Path(tmp) / "bench.sqlite3")
        state = setup_databases(verbosity=0, interactive=False)
        try:
            return run(args)
        finally:
            teardown_databases(state, verbosity=0)


def run(args) -> int:
    import cProfile
    import pstats

    from django.db import connection

    from oversight.banks.importers.mmlu import import_mmlu
    from oversight.baselines import runner
    from oversight.baselines.runner import create_run, execute
    from oversight.core.models import ModelEndpoint

    t0 = time.monotonic()
    bank = import_mmlu(path=args.mmlu, bank_name="MMLU bench", splits=["test"]).bank
    print(f"imported the test split in {time.monotonic() - t0:.1f} s")
    fake, url = start_fake(args.ttft_ms)
    try:
        endpoint = ModelEndpoint.objects.create(
            name="fake", kind="tgi", base_url=url, max_concurrency=args.concurrency, request_timeout_s=30
        )
        run_row = create_run(
            endpoint=endpoint, bank=bank, split="test", method="zero-shot", params={"concurrency": args.concurrency}
        )
        total = run_row.total
        rss_before = rss_mib()
        pressure_before = cpu_pressure()
        fake_cpu0, self_cpu0 = cpu_s(fake.pid), time.process_time()
        sampler = RssSampler()
        sampler.start()
        profiler = engine_profiler = None
        if args.profile:
            # CPU time per thread: the calling thread (database writes) and the engine thread (HTTP), apart.
            profiler = cProfile.Profile(time.thread_time)
            engine_profiler = cProfile.Profile(time.thread_time)
            original = runner.Engine._thread_main

            def profiled(engine):
                engine_profiler.enable()
                try:
                    original(engine)
                finally:
                    engine_profiler.disable()

            runner.Engine._thread_main = profiled
        start = time.monotonic()
        if profiler:
            profiler.enable()
        result = execute(run_row.pk)
        if profiler:
            profiler.disable()
        wall = time.monotonic() - start
        sampler.stop()
        fake_cpu, self_cpu = cpu_s(fake.pid) - fake_cpu0, time.process_time() - self_cpu0
        pressure_after = cpu_pressure()
        bare = bare_client_rate(url, args.concurrency, args.bare_requests) if args.bare_requests else None
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)
    run_row.refresh_from_db()
    bound = args.concurrency / (args.ttft_ms / 1000)
    rate = result.scored / wall
    rss = [r for _, r in sampler.samples]
    quarter = max(1, len(rss) // 4)
    db = f"{connection.vendor} {connection.Database.sqlite_version if connection.vendor == 'sqlite' else ''}".strip()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {db}"
    )
    print(
        f"run {run_row.pk}: {run_row.status}, {run_row.done}/{total} items, {run_row.errors} errors, "
        f"accuracy {run_row.summary['accuracy']:.1f}%"
    )
    print(
        f"wall {wall:.2f} s  rate {rate:.0f} items/s  bound {bound:.0f} items/s  ratio {rate / bound:.3f} "
        f"(target >= 0.9)"
    )
    print(
        f"cpu: this process {self_cpu:.1f} s ({1000 * self_cpu / max(result.scored, 1):.2f} ms/item, "
        f"{100 * self_cpu / wall:.0f}% of one core), fake server {fake_cpu:.1f} s "
        f"({1000 * fake_cpu / max(result.scored, 1):.2f} ms/request, {100 * fake_cpu / wall:.0f}% of one core)"
    )
    print(f"machine CPU pressure (some, avg10): {pressure_before} before, {pressure_after} after the run")
    if bare is not None:
        print(
            f"bare transport loop, same server and concurrency, right after: {bare:.0f} requests/s "
            f"(ratio {bare / bound:.3f}); the runner reached {rate / bare:.2f} of it"
        )
    print(
        f"rss MiB: before {rss_before:.0f}, peak {max(rss):.0f} (ru_maxrss "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}), quartiles of the run "
        f"{', '.join(f'{max(rss[i : i + quarter]):.0f}' for i in range(0, len(rss), quarter))}"
    )
    if profiler:
        for name, prof in (("engine thread (HTTP, scoring)", engine_profiler), ("calling thread (database)", profiler)):
            stats = pstats.Stats(prof)
            per_item = 1000 * stats.total_tt / max(result.scored, 1)
            print(f"--- {name}: {stats.total_tt:.1f} s CPU, {per_item:.2f} ms/item")
            stats.sort_stats("tottime").print_stats(args.profile_lines)
            stats.sort_stats("cumulative").print_stats(args.profile_lines)
    ok = run_row.status == "done" and run_row.done == total and rate / bound >= 0.9
    print("target met" if ok else "target MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
