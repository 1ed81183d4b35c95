"""The production topology on loopback, without Docker (docs/topology.md).

`topology(tmp)` starts what deploy/docker-compose.yml runs, as plain processes on 127.0.0.1:

* a FRESH PostgreSQL database of its own (`oversight_topo_<random>`, created and dropped here) on the
  server `DATABASE_URL` points at (default postgres@127.0.0.1:5432);
* a redis-server of its own on a free port (`--save '' --appendonly no`, db `redis_db`, flushed before and
  after), so that a fault test may restart it without touching the machine's shared Redis;
* the fake TGI (`python -m oversight_dev.faketgi`) with a control port that survives `down`;
* `manage.py migrate`, `collectstatic` (into the temp dir, which nginx serves) and `seed_demo` with
  `TGI_URL` pointing at the fake;
* N web processes (production settings: `DEBUG=0`, a `SECRET_KEY`, `ALLOWED_HOSTS=127.0.0.1,localhost`,
  `SECURE_SSL_REDIRECT=0`/`SECURE_COOKIES=0` as there is no TLS on loopback, `DEADLINE_SWEEPER=0`), run as
  deploy/Dockerfile's `web` role runs them (the server of oversight_dev/servers.py);
* nginx in front, with deploy/nginx.conf itself (the upstream pointed at the web ports, round-robin, no
  stickiness; private pid/log/temp paths as tests/deploy/test_nginx.py does). Two additions for the tests
  only: the access log records `$upstream_addr`, and proxied responses (the websocket's 101 too) carry
  `X-Oversight-Upstream: <web process address>` so a test knows which process serves it;
* M Celery workers (`--pool=solo`, on a private queue through `CELERY_QUEUE`) and one celery beat (its
  schedule file in the temp dir).

Every process runs in its own process group with stdout+stderr in `<tmp>/logs/<role>.log`; `kill(role)`
sends it a signal (default SIGKILL), `restart(role)` starts it again with the same command and environment.
`sql()` reads (or writes) the topology's database with psycopg; `shell()` runs Python in `manage.py shell`.
On exit everything is stopped (SIGTERM, then SIGKILL to whole process groups), the database dropped and
the private Redis flushed and stopped — also when the body or the start-up failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

from oversight_dev.servers import DEFAULT as DEFAULT_SERVER
from oversight_dev.servers import web_command

REPO = Path(__file__).resolve().parent.parent
NGINX_CONF = REPO / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
REDIS_SERVER = shutil.which("redis-server")
PYTHON = sys.executable
BIN = Path(PYTHON).parent
UPSTREAM_HEADER = "X-Oversight-Upstream"
DEMO_SLUG = "demo"


def _settings_vars() -> set[str]:
    """Every variable oversight/settings.py reads (as .ci/run finds them; nothing else in oversight/ reads one)."""
    text = (REPO / "oversight" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z][A-Z0-9_]*)"', text))
    return names | {"DJANGO_SETTINGS_MODULE", "SQLITE_PATH", "CELERY_TASK_ALWAYS_EAGER"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def admin_dsn() -> dict:
    """Where to create the topology's database: DATABASE_URL's server (if PostgreSQL), else local defaults."""
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url) if url.startswith(("postgres://", "postgresql://")) else None
    return {
        "host": (parts.hostname if parts else None) or "127.0.0.1",
        "port": (parts.port if parts else None) or 5432,
        "user": (parts.username if parts else None) or "postgres",
        "password": (parts.password if parts else None) or os.environ.get("PGPASSWORD", ""),
    }


def missing_requirements() -> str:
    """Why the topology cannot run here ('' if it can)."""
    if NGINX is None:
        return "nginx is not installed (.ci/run installs it)"
    if REDIS_SERVER is None:
        return "redis-server is not installed"
    try:
        import psycopg

        dsn = admin_dsn()
        with psycopg.connect(dbname="postgres", connect_timeout=3, **{k: v for k, v in dsn.items() if v}):
            pass
    except Exception as exc:  # noqa: BLE001
        return f"no PostgreSQL server to create a database on ({exc})"
    return ""


@dataclass
class Proc:
    role: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    popen: subprocess.Popen | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"\n===== topology: start #{self.starts} of {self.role} at {time.strftime('%H:%M:%S')}\n")
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def signal(self, sig: int, *, group: bool = True) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(self.popen.pid, sig)  # its own session: pgid == pid
                else:
                    os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def log_since_start(self) -> str:
        text = self.log(10**7)
        marker = f"===== topology: start #{self.starts} of {self.role}"
        return text[text.rfind(marker) :] if marker in text else text


class TopologyError(RuntimeError):
    pass


@dataclass
class Topology:
    tmp: Path
    web_workers: int = 2
    server: str = DEFAULT_SERVER  # the web server (oversight_dev/servers.py): what the image's web role runs
    celery_workers: int = 2
    beat: bool = True
    redis_db: int = 2
    tgi_args: tuple[str, ...] = ("--ttft-ms", "100", "--tokens-per-s", "50")
    seed_args: tuple[str, ...] = ("--mmlu-time-limit", "120", "--quality-time-limit", "120")
    extra_env: dict[str, str] = field(default_factory=dict)
    nginx_worker_connections: int = 1024
    # With a limit, the processes log in as a role of their own (CONNECTION LIMIT n, owner of the database)
    # instead of the admin role: a load test then cannot use up a shared server's max_connections.
    db_connection_limit: int | None = None
    db_name: str = ""
    db_password: str = ""
    procs: dict[str, Proc] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    nginx_port: int = 0
    redis_port: int = 0
    tgi_port: int = 0
    tgi_control_port: int = 0
    queue: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # The restart policy (compose's `restart: unless-stopped`), when switched on with supervise(True): roles
    # that exit on their own are started again; those stopped with kill() are left alone until restart().
    restarted_by_supervisor: list[tuple[str, int | None, float]] = field(default_factory=list)
    _stopped_on_purpose: set = field(default_factory=set)
    _supervisor: object = None

    # --- addresses ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def tgi_url(self) -> str:
        return f"http://127.0.0.1:{self.tgi_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{self.redis_db}"

    @property
    def database_url(self) -> str:
        d = admin_dsn()
        if self.db_connection_limit is not None:
            auth = f"{self.db_name}:{self.db_password}"
        else:
            auth = d["user"] + (f":{d['password']}" if d["password"] else "")
        return f"postgres://{auth}@{d['host']}:{d['port']}/{self.db_name}"

    def web_roles(self) -> list[str]:
        return [f"web{i}" for i in range(1, self.web_workers + 1)]

    def worker_roles(self) -> list[str]:
        return [f"worker{i}" for i in range(1, self.celery_workers + 1)]

    def web_port(self, role: str) -> int:
        return self.procs[role].port

    def role_for_upstream(self, upstream: str) -> str | None:
        """'127.0.0.1:41234' (the X-Oversight-Upstream header) -> 'web1'."""
        port = int(upstream.rsplit(":", 1)[-1]) if upstream else -1
        return next((r for r in self.web_roles() if self.procs[r].port == port), None)

    def log(self, role: str, tail: int = 4000) -> str:
        return self.procs[role].log(tail)

    # --- start / stop ---------------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        scrub = _settings_vars()
        env = {k: v for k, v in os.environ.items() if k not in scrub and not k.startswith("PYTEST_")}
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(60),
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "0",
                "SECURE_COOKIES": "0",
                "SECURE_HSTS_SECONDS": "0",
                "DEADLINE_SWEEPER": "0",
                "DATABASE_URL": self.database_url,
                "DB_CONN_MAX_AGE": "60",
                "DB_POOL": "0",
                "REDIS_URL": self.redis_url,
                "CELERY_QUEUE": self.queue,
                "TGI_URL": self.tgi_url,
                "DATA_DIR": str(self.tmp / "data"),
                "MEDIA_ROOT": str(self.tmp / "data" / "media"),
                "STATIC_ROOT": str(self.tmp / "static"),
                "LOG_LEVEL": "INFO",
            }
        )
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def _add(self, role: str, argv: list[str], port: int | None = None, env: dict | None = None) -> Proc:
        proc = Proc(role=role, argv=argv, env=env or self.env, log_path=self.tmp / "logs" / f"{role}.log", port=port)
        self.procs[role] = proc
        return proc

    def start(self) -> Topology:
        t0 = time.monotonic()
        (self.tmp / "logs").mkdir(parents=True, exist_ok=True)
        (self.tmp / "data").mkdir(exist_ok=True)
        self.db_name = self.db_name or f"oversight_topo_{secrets.token_hex(4)}"
        self.queue = f"topo-{secrets.token_hex(4)}"
        self.redis_port, self.tgi_port, self.tgi_control_port, self.nginx_port = (free_port() for _ in range(4))
        self.env = self._base_env()

        # Data stores first.
        self._create_database()
        redis = self._add(
            "redis",
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                "--maxmemory-policy",
                "noeviction",
            ],
            port=self.redis_port,
        )
        redis.start()
        tgi = self._add(
            "tgi",
            [
                PYTHON,
                "-m",
                "oversight_dev.faketgi",
                "--port",
                str(self.tgi_port),
                "--control-port",
                str(self.tgi_control_port),
                *self.tgi_args,
            ],
            port=self.tgi_port,
        )
        tgi.start()
        self._wait(lambda: self._redis_ping(), "redis", 15)
        self.redis_cmd("FLUSHDB")

        # The one-shots: migrate (+ collectstatic alongside), then the demo study against the fake TGI.
        collect = subprocess.Popen(
            [PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.manage("migrate", "--noinput", "-v", "0", timeout=300)
        self.timings["migrate_s"] = time.monotonic() - t0
        out, _ = collect.communicate(timeout=300)
        if collect.returncode != 0:
            raise TopologyError(f"collectstatic failed:\n{out[-3000:]}")
        self.manage("seed_demo", *self.seed_args)
        self.timings["seeded_s"] = time.monotonic() - t0

        # Long-running processes.
        for role in self.web_roles():
            port = free_port()
            self._add(
                role,
                web_command(self.server, "127.0.0.1", port, proxy_headers=True),
                port=port,
            )
        for role in self.worker_roles():
            self._add(
                role,
                [
                    str(BIN / "celery"),
                    "-A",
                    "oversight",
                    "worker",
                    "--pool=solo",
                    "--loglevel",
                    "INFO",
                    "--queues",
                    self.queue,
                    "--without-gossip",
                    "--without-mingle",
                    "--hostname",
                    f"{role}@%h",
                ],
            )
        if self.beat:
            self._add(
                "beat",
                [
                    str(BIN / "celery"),
                    "-A",
                    "oversight",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(self.tmp / "celerybeat-schedule"),
                ],
            )
        self._write_nginx_config()
        self._add(
            "nginx",
            [
                NGINX,
                "-p",
                f"{self.tmp}/nginx/",
                "-c",
                str(self.tmp / "nginx" / "nginx.conf"),
                "-e",
                str(self.tmp / "nginx" / "logs" / "error.log"),
                "-g",
                "daemon off;",
            ],
            port=self.nginx_port,
        )
        for role in [*self.web_roles(), *self.worker_roles(), *(["beat"] if self.beat else []), "nginx"]:
            self.procs[role].start()
        self._wait(lambda: self._tgi_up(), "tgi", 30)
        for role in [*self.web_roles(), *self.worker_roles(), "nginx"]:
            self.wait_ready(role, 90)
        self.timings["ready_s"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self.supervise(False)
        procs = [p for p in self.procs.values() if p.role != "redis"]
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            if not p.wait(max(0.1, deadline - time.monotonic())):
                p.signal(signal.SIGKILL)
                p.wait(5)
        for p in procs:  # a group's leftover children (none expected), by group
            p.signal(signal.SIGKILL)
        redis = self.procs.get("redis")
        if redis is not None:
            with contextlib.suppress(Exception):
                self.redis_cmd("FLUSHDB")
            redis.signal(signal.SIGTERM)
            if not redis.wait(5):
                redis.signal(signal.SIGKILL)
                redis.wait(5)
        self._drop_database()

    # --- process control ------------------------------------------------------------------------------------

    def supervise(self, on: bool) -> None:
        """Emulate the deployment's restart policy (compose `restart: unless-stopped`, a Kubernetes pod)."""
        import threading

        if not on:
            if self._supervisor is not None:
                self._supervisor[1].set()
                self._supervisor[0].join(5)
                self._supervisor = None
            return
        if self._supervisor is not None:
            return
        stop = threading.Event()

        def loop():
            while not stop.wait(0.2):
                for role, proc in list(self.procs.items()):
                    if role not in self._stopped_on_purpose and proc.popen is not None and not proc.alive():
                        self.restarted_by_supervisor.append((role, proc.popen.returncode, time.monotonic()))
                        proc.start()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._supervisor = (thread, stop)

    def kill(self, role: str, sig: int = signal.SIGKILL, wait_s: float = 10) -> None:
        proc = self.procs[role]
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGQUIT):
            self._stopped_on_purpose.add(role)
        proc.signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGQUIT) and not proc.wait(wait_s):
            proc.signal(signal.SIGKILL)
            proc.wait(5)

    def restart(self, role: str, *, wait: bool = True, timeout_s: float = 60) -> None:
        proc = self.procs[role]
        if proc.alive():
            self.kill(role, signal.SIGTERM)
        proc.start()
        self._stopped_on_purpose.discard(role)
        if wait:
            self.wait_ready(role, timeout_s)

    def ensure_running(self, timeout_s: float = 60) -> list[str]:
        """Restart whatever is not running (a test that failed half-way); returns the roles restarted."""
        restarted = []
        self.allow_db_connections(True)
        for role, proc in self.procs.items():
            if not proc.alive():
                proc.start()
                restarted.append(role)
        self._stopped_on_purpose.clear()
        for role in restarted:
            self.wait_ready(role, timeout_s)
        if "tgi" in self.procs:
            self.tgi_config(reset=True)
        return restarted

    def wait_ready(self, role: str, timeout_s: float = 60) -> None:
        proc = self.procs[role]
        if role == "redis":
            check = self._redis_ping
        elif role == "tgi":
            check = self._tgi_up
        elif role.startswith("web"):
            check = lambda: self._http_ok(proc.port, "/healthz")  # noqa: E731
        elif role.startswith("worker"):
            check = lambda: re.search(r"\bready\.", proc.log_since_start()) is not None  # noqa: E731
        elif role == "beat":
            check = lambda: "beat: Starting" in proc.log_since_start() or time.sleep(1) or True  # noqa: E731
        else:
            check = lambda: port_open(proc.port)  # noqa: E731
        self._wait(check, role, timeout_s, proc)

    def _wait(self, check, what: str, timeout_s: float, proc: Proc | None = None) -> None:
        proc = proc or self.procs.get(what)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if proc is not None and not proc.alive():
                raise TopologyError(f"{what} exited with {proc.popen.returncode}:\n{proc.log()}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.1)
        raise TopologyError(f"{what} not ready within {timeout_s} s:\n{proc.log() if proc else ''}")

    # --- helpers: HTTP, Redis, TGI, database ----------------------------------------------------------------

    def _http_ok(self, port: int, path: str) -> bool:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": "127.0.0.1"})
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200

    def redis_cmd(self, *args: str) -> str:
        """A Redis command on the private server's db, through redis-cli."""
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "-n", str(self.redis_db), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()

    def _redis_ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def _tgi_up(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.tgi_control_port}/__fake/config", timeout=2) as r:
            return r.status == 200

    def tgi_config(self, **changes) -> dict:
        """POST /__fake/config on the fake's control port (works while the fake is `down`)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.tgi_control_port}/__fake/config",
            data=json.dumps(changes).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def tgi_stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.tgi_control_port}/__fake/stats", timeout=10) as r:
            return json.loads(r.read())

    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise TopologyError(
                f"manage.py {' '.join(args[:2])} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc

    def shell(self, code: str, timeout: float = 120):
        """Python in `manage.py shell` on the topology (its env: the broker too); the code sets `result`."""
        wrapped = f"import json\nresult = None\n{code}\nprint('@@RESULT@@' + json.dumps(result, default=str))"
        out = self.manage("shell", "-c", wrapped, timeout=timeout).stdout
        line = next(x for x in reversed(out.splitlines()) if x.startswith("@@RESULT@@"))
        return json.loads(line.removeprefix("@@RESULT@@"))

    def _admin_connect(self, dbname: str = "postgres"):
        import psycopg

        dsn = admin_dsn()
        return psycopg.connect(dbname=dbname, autocommit=True, connect_timeout=5, **{k: v for k, v in dsn.items() if v})

    def sql(self, query: str, params: tuple | dict | None = None) -> list[tuple]:
        """One statement on the topology's database (autocommit); rows, or [] for statements without any."""
        with self._admin_connect(self.db_name) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def _create_database(self) -> None:
        with self._admin_connect() as conn:
            if self.db_connection_limit is None:
                conn.execute(f'CREATE DATABASE "{self.db_name}"')
                return
            self.db_password = secrets.token_hex(16)
            conn.execute(
                f"CREATE ROLE \"{self.db_name}\" LOGIN PASSWORD '{self.db_password}' "
                f"CONNECTION LIMIT {int(self.db_connection_limit)}"
            )
            conn.execute(f'CREATE DATABASE "{self.db_name}" OWNER "{self.db_name}"')

    def _drop_database(self) -> None:
        if not self.db_name:
            return
        statements = [f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)']
        if self.db_connection_limit is not None:
            statements.append(f'DROP ROLE IF EXISTS "{self.db_name}"')
        for statement in statements:
            for attempt in range(10):  # a backend just terminated may still be going away
                try:
                    with self._admin_connect() as conn:
                        conn.execute(statement)
                    break
                except Exception as exc:  # noqa: BLE001
                    if attempt == 9:
                        print(f"topology: {statement} failed: {exc}", file=sys.stderr)
                    time.sleep(0.5)

    def terminate_db_backends(self) -> int:
        """Drop every connection to the topology's database (a PostgreSQL blip)."""
        return self.terminate_db_backends_admin()

    def terminate_db_backends_admin(self) -> int:
        """As terminate_db_backends, from the `postgres` database (works while the topology's refuses connections)."""
        with self._admin_connect() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db_name,),
            ).fetchone()
        return row[0]

    def allow_db_connections(self, allow: bool) -> None:
        """ALTER DATABASE … ALLOW_CONNECTIONS: false makes every new connection fail (existing ones stay)."""
        with self._admin_connect() as conn:
            conn.execute(f'ALTER DATABASE "{self.db_name}" ALLOW_CONNECTIONS {"true" if allow else "false"}')

    # --- nginx ----------------------------------------------------------------------------------------------

    def _write_nginx_config(self) -> None:
        base = self.tmp / "nginx"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (base / name).mkdir(parents=True, exist_ok=True)
        site = base / "oversight.conf"
        site.write_text(
            localised_nginx_conf(
                NGINX_CONF.read_text(),
                listen_port=self.nginx_port,
                upstream_ports=[self.procs[r].port for r in self.web_roles()],
                static_root=self.tmp / "static",
            )
        )
        mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
        (base / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
worker_rlimit_nofile {max(4096, self.nginx_worker_connections * 2 + 64)};
error_log {base}/logs/error.log warn;
pid {base}/nginx.pid;
events {{ worker_connections {self.nginx_worker_connections}; }}
http {{
    {mime}
    default_type application/octet-stream;
    log_format topology '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                        'rt=$request_time uct=$upstream_connect_time urt=$upstream_response_time '
                        'upstream=$upstream_addr ustatus=$upstream_status';
    access_log {base}/logs/access.log topology;
    client_body_temp_path {base}/client_body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    include {site};
}}
""")

    def set_web_upstreams(self, roles: list[str]) -> None:
        """Point nginx's upstream at these web processes only (rewrites the site file, SIGHUP to the master)."""
        (self.tmp / "nginx" / "oversight.conf").write_text(
            localised_nginx_conf(
                NGINX_CONF.read_text(),
                listen_port=self.nginx_port,
                upstream_ports=[self.procs[r].port for r in roles],
                static_root=self.tmp / "static",
            )
        )
        self.procs["nginx"].signal(signal.SIGHUP, group=False)
        time.sleep(1.5)  # new workers up, old ones finishing

    def access_log_path(self) -> Path:
        return self.tmp / "nginx" / "logs" / "access.log"

    def nginx_access_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / "nginx" / "logs" / "access.log").read_text(errors="replace")
        return ""


def _nginx_version() -> tuple[int, ...]:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return tuple(int(x) for x in match.groups()) if match else (0, 0, 0)


def localised_nginx_conf(conf: str, *, listen_port: int, upstream_ports: list[int], static_root: Path) -> str:
    """deploy/nginx.conf made runnable on loopback (as tests/deploy/test_nginx.py does), for any number of web
    processes, plus the upstream's address as a response header (the test's way to know who served it)."""
    old = _nginx_version() < (1, 27, 3)
    servers = re.findall(r"(?m)^(\s*)server (web\d+):8000([^;]*);\n", conf)
    if len(servers) < 1:
        raise TopologyError("no `server webN:8000` lines in the upstream of deploy/nginx.conf")
    indent, _, params = servers[0]
    if old:
        params = params.replace(" resolve", "")  # `resolve` in an upstream needs nginx >= 1.27.3
    lines = "".join(f"{indent}server 127.0.0.1:{port}{params};\n" for port in upstream_ports)
    conf = re.sub(r"(?m)^\s*server web\d+:8000[^;]*;\n", "", conf)
    conf = re.sub(r"(?m)^(\s*zone oversight_web [^;]*;\n)", lambda m: m[1] + lines, conf, count=1)
    conf = re.sub(r"(?m)^\s*resolver 127\.0\.0\.11[^;]*;", "", conf)
    conf, n = re.subn(r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{listen_port};", conf)
    if n != 1:
        raise TopologyError("expected one `listen 80;` in deploy/nginx.conf")
    conf = conf.replace("alias /srv/oversight/static/;", f"alias {static_root}/;")
    conf = re.sub(
        r"(?m)^(\s*)proxy_pass http://oversight_web;",
        rf"\1proxy_pass http://oversight_web;\n\1add_header {UPSTREAM_HEADER} $upstream_addr always;",
        conf,
    )
    return conf


@contextlib.contextmanager
def topology(tmp: Path, **kwargs) -> Iterator[Topology]:
    """Start the topology in `tmp` (see the module docstring); everything is torn down on exit."""
    topo = Topology(tmp=Path(tmp), **kwargs)
    try:
        topo.start()
        yield topo
    finally:
        topo.stop()


# --- A participant, as a browser is one: HTTP through nginx, and the chat websocket ------------------------

TRACEBACK_SIGNS = (
    "Traceback (most recent call last)",
    'File "/',
    "Exception Value",
    "Request Method:",
    "django.core.exceptions",
    "psycopg.",
    "OperationalError",
    "redis.exceptions",
    "ConnectionError",
    "kombu.",
    '<pre class="exception_value">',
)


def human_readable_problems(body: str) -> list[str]:
    """What in a response a participant must never see: tracebacks, exception names, debug pages."""
    return [sign for sign in TRACEBACK_SIGNS if sign in body]


@dataclass
class Seen:
    method: str
    url: str
    status: int  # 0: no HTTP answer at all (connection reset or refused)
    body: str
    upstream: str = ""


class Participant:
    """One participant's browser: a cookie jar, every response recorded (status and body)."""

    def __init__(self, base_url: str, pid: str, slug: str = DEMO_SLUG, timeout_s: float = 30):
        self.base_url = base_url
        self.pid = pid
        self.slug = slug
        self.timeout_s = timeout_s
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), urllib.request.ProxyHandler({})
        )
        self.seen: list[Seen] = []
        self.token = ""
        self.url = ""  # the page the participant is on
        self.html = ""
        self.submits: list[dict] = []  # every submit and what came back

    def request(self, method: str, url: str, data: dict | None = None) -> Seen:
        url = urljoin(self.base_url + "/", url)
        body = urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(
            url, data=body, method=method, headers={"Origin": self.base_url, "Referer": self.url or self.base_url}
        )
        try:
            with self.opener.open(req, timeout=self.timeout_s) as resp:
                seen = Seen(
                    method,
                    resp.geturl(),
                    resp.status,
                    resp.read().decode(errors="replace"),
                    resp.headers.get(UPSTREAM_HEADER, ""),
                )
        except urllib.error.HTTPError as exc:
            seen = Seen(
                method,
                url,
                exc.code,
                exc.read().decode(errors="replace"),
                exc.headers.get(UPSTREAM_HEADER, "") if exc.headers else "",
            )
        except (OSError, urllib.error.URLError) as exc:
            seen = Seen(method, url, 0, f"{type(exc).__name__}: {exc}")
        self.seen.append(seen)
        if seen.status == 200 and "<html" in seen.body[:500].lower():
            self.url, self.html = seen.url, seen.body
        if m := re.search(r"/s/p/([^/]+)/", seen.url):
            self.token = m.group(1)
        return seen

    def csrf(self, html: str | None = None) -> str:
        m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html or self.html)
        return m.group(1) if m else ""

    def join(self) -> Seen:
        params = {"PROLIFIC_PID": self.pid, "STUDY_ID": "topology", "SESSION_ID": f"{self.pid}-s"}
        page = self.request("GET", f"/s/{self.slug}/?{urlencode(params)}")
        if page.status != 200:
            return page
        seen = self.request(
            "POST", f"/s/{self.slug}/", {**params, "consent": "yes", "csrfmiddlewaretoken": self.csrf(page.body)}
        )
        return self.through_introductions(seen)

    def through_introductions(self, seen: Seen) -> Seen:
        """Pass the instructions and block introductions (their Continue button), as a participant does."""
        for _ in range(5):
            if seen.status != 200 or not re.search(r"/s/p/[^/]+/(instructions|part/\d+)$", seen.url):
                return seen
            seen = self.request("POST", seen.url, {"csrfmiddlewaretoken": self.csrf(seen.body)})
        return seen

    @property
    def position(self) -> int | None:
        m = re.search(r"/item/(\d+)/$", self.url)
        return int(m.group(1)) if m else None

    @property
    def ws_path(self) -> str:
        m = re.search(r'data-ws-path="([^"]+)"', self.html)
        return m.group(1) if m else ""

    def reload(self) -> Seen:
        return self.request("GET", self.url)

    def answer(self, choice: int = 0, confidence: int = 60) -> Seen:
        """Select, then submit, on the current trial page (as trial.js and the form do)."""
        url, position, csrf = self.url, self.position, self.csrf()
        base = url.rstrip("/")
        data = {"choice": str(choice), "confidence": str(confidence), "csrfmiddlewaretoken": csrf}
        self.request("POST", f"{base}/select", data)
        seen = self.through_introductions(self.request("POST", f"{base}/submit", {**data, "auto": "0"}))
        self.submits.append(
            {"token": self.token, "position": position, "choice": choice, "status": seen.status, "landed": seen.url}
        )
        return seen

    def next_page(self) -> Seen:
        """From a feedback page, on to the next item (or the done page)."""
        m = re.search(r'id="next"[^>]*href="([^"]+)"|href="([^"]+)"[^>]*id="next"', self.html)
        href = (m.group(1) or m.group(2)) if m else f"/s/p/{self.token}/"
        return self.through_introductions(self.request("GET", href))

    def on_trial(self) -> bool:
        return self.position is not None

    def bad_responses(self) -> list[Seen]:
        return [s for s in self.seen if not 200 <= s.status < 400]

    def unreadable(self) -> list[tuple[Seen, list[str]]]:
        return [(s, p) for s in self.seen if (p := human_readable_problems(s.body))]


class ChatSocket:
    """The chat pane's websocket, speaking static/js/chat.js's protocol and rebuilding replies from offsets.

    With `auto_reconnect` (the default) it behaves as chat.js does when its socket closes: it reconnects
    through the same address after 500 ms (doubling, at most 5 s), says `hello` with `reconnect: true` and
    carries on; a message sent while it is down is sent once the socket is back. `closes` records every close
    (monotonic time, code, reason) and `upstreams` every web process it was connected to.
    """

    def __init__(
        self,
        base_url: str,
        ws_path: str,
        *,
        timeout_s: float = 15,
        auto_reconnect: bool = True,
        reconnect_within_s: float = 30,
    ):
        self.base_url = base_url
        self.ws_path = ws_path
        self.timeout_s = timeout_s
        self.auto_reconnect = auto_reconnect
        self.reconnect_within_s = reconnect_within_s
        self.frames: list[dict] = []
        self.texts: dict[int, str] = {}
        self.messages: dict[int, dict] = {}
        self.closes: list[tuple[float, int | None, str]] = []
        self.upstreams: list[str] = []
        self.ws = None
        self.upstream = ""
        self.url_base: str | None = None

    def connect(self, url_base: str | None = None) -> ChatSocket:
        from websockets.sync.client import connect

        self.url_base = url_base
        base = (url_base or self.base_url).replace("http://", "ws://")
        # __enter__: websockets >= 17.1 wants connect() used as a context manager (older ones return the
        # connection itself, whose __enter__ returns it); the socket is closed by close() or by the server.
        self.ws = connect(
            base + self.ws_path, origin=self.base_url, open_timeout=self.timeout_s, close_timeout=2, proxy=None
        ).__enter__()
        self.upstream = self.ws.response.headers.get(UPSTREAM_HEADER, "")
        self.upstreams.append(self.upstream)
        return self

    def close(self) -> None:
        self.auto_reconnect = False
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close()

    def _reconnect(self, exc) -> None:
        rcvd = getattr(exc, "rcvd", None)
        self.closes.append((time.monotonic(), getattr(rcvd, "code", None), getattr(rcvd, "reason", "")))
        if not self.auto_reconnect:
            raise exc
        end, backoff, last = time.monotonic() + self.reconnect_within_s, 0.5, exc
        while time.monotonic() < end:
            time.sleep(backoff)
            try:
                self.connect(self.url_base)
                self.ws.send(json.dumps({"type": "hello", "reconnect": True}))
                return
            except Exception as err:  # noqa: BLE001 - refused, 502 while nginx has no upstream, a 1011 at once
                last = err
            backoff = min(backoff * 2, 5)
        raise TopologyError(f"the chat did not reconnect within {self.reconnect_within_s} s: {last!r}")

    def send(self, payload: dict) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.ws.send(json.dumps(payload))
        except ConnectionClosed as exc:
            self._reconnect(exc)
            self.ws.send(json.dumps(payload))

    def _apply(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "history":
            for m in frame.get("messages", []):
                self.messages[m["id"]] = m
                if (
                    m.get("role") == "assistant"
                    and m.get("status") == "streaming"
                    and len(m.get("text") or "") >= len(self.texts.get(m["id"], ""))
                ):
                    self.texts[m["id"]] = m.get("text") or ""
        elif kind == "message":
            m = frame["message"]
            self.messages[m["id"]] = m
            if m.get("status") == "streaming" and len(m.get("text") or "") > len(self.texts.get(m["id"], "")):
                self.texts[m["id"]] = m.get("text") or ""
        elif kind == "delta":
            have = self.texts.get(frame["id"], "")
            if frame["offset"] <= len(have):
                self.texts[frame["id"]] = have + frame["text"][len(have) - frame["offset"] :]

    def recv(self, timeout_s: float | None = None) -> dict:
        """The next frame (TimeoutError if none within timeout_s); reconnects on the way if the socket closes."""
        from websockets.exceptions import ConnectionClosed

        end = time.monotonic() + (timeout_s if timeout_s is not None else self.timeout_s)
        while True:
            try:
                raw = self.ws.recv(timeout=max(0.0, end - time.monotonic()))
                break
            except ConnectionClosed as exc:
                self._reconnect(exc)
        frame = json.loads(raw)
        frame["_t"] = time.monotonic()
        self.frames.append(frame)
        self._apply(frame)
        return frame

    def until(self, predicate, timeout_s: float | None = None) -> dict:
        """Frames until one satisfies predicate(frame); TimeoutError after timeout_s (all frames kept)."""
        end = time.monotonic() + (timeout_s if timeout_s is not None else self.timeout_s)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching frame")
            frame = self.recv(left)
            if predicate(frame):
                return frame

    def idle(self, seconds: float) -> None:
        """Read (and apply) whatever arrives for `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                self.recv(left)

    def hello(self, reconnect: bool = False) -> dict:
        self.send({"type": "hello", "reconnect": reconnect})
        return self.until(lambda f: f.get("type") == "history")

    def ask(self, text: str, client_id: str | None = None) -> None:
        self.send({"type": "send", "text": text, "client_id": client_id or secrets.token_hex(8)})

    def final_reply(self, timeout_s: float = 60, after_id: int = 0) -> dict:
        """The next assistant message (id > after_id) that is no longer streaming, as the page renders it; also
        found in a `history` frame (after a reconnect the final state arrives that way)."""

        def done(f):
            if f.get("type") == "message":
                ms = [f["message"]]
            elif f.get("type") == "history":
                ms = f.get("messages", [])
            else:
                return False
            return any(
                m.get("role") == "assistant" and m["id"] > after_id and m.get("status") != "streaming" for m in ms
            )

        frame = self.until(done, timeout_s)
        ms = [frame["message"]] if frame["type"] == "message" else frame["messages"]
        return next(
            m for m in ms if m.get("role") == "assistant" and m["id"] > after_id and m.get("status") != "streaming"
        )

    def errors(self) -> list[str]:
        return [f.get("message", "") for f in self.frames if f.get("type") == "error"]

    def notices(self) -> list[str]:
        return [m.get("notice", "") for m in self.messages.values() if m.get("notice")]


class GroupListener:
    """Listens to a channel-layer group on the topology's Redis, as a page's consumer would, from the test
    process (with no socket timeout of its own): proves what the platform publishes to a trial's pages."""

    def __init__(self, redis_url: str, group: str):
        self.redis_url = redis_url
        self.group = group
        self.messages: list[dict] = []
        self._loop = None
        self._thread = None
        self._ready = None
        self._task = None

    def start(self) -> GroupListener:
        import asyncio
        import threading

        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def main():
            from channels_redis.core import RedisChannelLayer

            layer = RedisChannelLayer(
                hosts=[{"address": self.redis_url, "socket_timeout": None}], expiry=30, capacity=1500
            )
            channel = await layer.new_channel()
            await layer.group_add(self.group, channel)
            self._ready.set()
            try:
                while True:
                    self.messages.append(await layer.receive(channel))
            finally:
                with contextlib.suppress(Exception):
                    await layer.group_discard(self.group, channel)

        def run():
            self._task = self._loop.create_task(main())
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(self._task)
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TopologyError(f"could not listen to {self.group}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(5)


def chat_round_trip(base_url: str, ws_path: str, text: str, timeout_s: float = 60) -> tuple[ChatSocket, dict]:
    """Connect, hello, ask, wait for the final reply; the socket is left open for the caller to close."""
    sock = ChatSocket(base_url, ws_path).connect()
    sock.hello()
    sock.ask(text)
    return sock, sock.final_reply(timeout_s)


if __name__ == "__main__":  # a manual check: python -m tests.topology (starts, prints the addresses, stops)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="topology-") as d, topology(Path(d)) as topo:
        print(
            json.dumps(
                {
                    "base_url": topo.base_url,
                    "db": topo.db_name,
                    "redis": topo.redis_url,
                    "tgi": topo.tgi_url,
                    "timings": topo.timings,
                    "pids": {r: p.pid for r, p in topo.procs.items()},
                },
                indent=2,
            )
        )
        input("running; press Enter to stop ") if sys.stdin.isatty() else time.sleep(2)
