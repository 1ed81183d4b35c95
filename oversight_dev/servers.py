"""The ASGI servers the benchmarks compare, and the one the project serves with (`DEFAULT`).

`make run`, the image's web role (deploy/Dockerfile), tests/live_server.py, tests/topology.py and
the benchmarks start the web process with `web_command(DEFAULT, …)` or its shell equivalent; a test keeps them
in step (tests/deploy/test_server_choice.py). Why this one: bench/README.md ("Server").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SERVERS = ("daphne", "uvicorn", "granian")
DEFAULT = "granian"
APP = "oversight.asgi:application"


def web_command(server: str, host: str, port: int, *, proxy_headers: bool = False) -> list:
    """argv of one web process serving HTTP and websockets on host:port. `proxy_headers`: take the client's address
    from nginx's X-Forwarded-For (daphne, uvicorn; granian has no such option, and nothing in oversight reads the
    client's address but /metrics, which refuses every forwarded request anyway)."""
    py = sys.executable
    if server == "daphne":
        extra = ["--proxy-headers"] if proxy_headers else []
        return [py, "-m", "daphne", "-b", host, "-p", str(port), *extra, "--application-close-timeout", "10", APP]
    if server == "uvicorn":
        extra = ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"] if proxy_headers else ["--no-proxy-headers"]
        return [py, "-m", "uvicorn", "--host", host, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                "--ws", "websockets", "--lifespan", "off", "--no-access-log", *extra, APP]  # fmt: skip
    if server == "granian":
        return [py, "-m", "granian", "--interface", "asginl", "--host", host, "--port", str(port), "--workers", "1",
                "--loop", "auto", "--ws", "--log-level", "warning", APP]  # fmt: skip
    raise ValueError(f"unknown server {server!r}; one of {', '.join(SERVERS)}")


def group_cpu_s(pid: int) -> float:
    """utime + stime, in seconds, of a process (all its threads) and of the live processes in the group it leads
    (granian serves from a worker process; children that already exited are not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[2]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick
