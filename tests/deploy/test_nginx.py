"""deploy/nginx.conf with the machine's nginx: `nginx -t` on a temporary configuration that includes it (the
web hosts pointed at loopback, private pid/log/temp paths, so the system nginx is never touched), then a
real nginx run in front of two stand-in web processes: websocket upgrade, forwarded headers, static files,
the upload limit, round-robin without stickiness and failover."""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)")


def nginx_version() -> tuple[int, ...]:
    result = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    assert match, result.stderr
    return tuple(int(part) for part in match.groups())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def localised(conf: str, *, listen_port: int, upstream_ports: dict[str, int], static_root: Path) -> str:
    """deploy/nginx.conf made runnable here: loopback addresses, a temp static dir, Docker's DNS dropped."""
    upstream_ports = dict(upstream_ports)

    def server_line(match: re.Match) -> str:
        params = match[3]
        if nginx_version() < (1, 27, 3):
            params = params.replace(" resolve", "")  # `resolve` in upstream servers needs nginx >= 1.27.3
        return f"{match[1]}server 127.0.0.1:{upstream_ports.pop(match[2])}{params};"

    conf, count = re.subn(r"(?m)^(\s*)server (web\d+):8000([^;]*);", server_line, conf)
    assert count == 2 and not upstream_ports, "expected the upstream servers web1:8000 and web2:8000"
    conf, count = re.subn(r"(?m)^\s*resolver 127\.0\.0\.11[^;]*;", "", conf)
    assert count == 1
    conf, count = re.subn(r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{listen_port};", conf)
    assert count == 1
    conf, count = re.subn(r"alias /srv/oversight/static/;", f"alias {static_root}/;", conf)
    assert count == 1
    return conf


def write_config(tmp: Path, *, listen_port: int, upstream_ports: dict[str, int]) -> Path:
    """A complete nginx.conf around deploy/nginx.conf, everything under `tmp`."""
    static_root = tmp / "static"
    (static_root / "css").mkdir(parents=True)
    (static_root / "css" / "oversight.css").write_text("body { color: black; }\n")
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / name).mkdir()
    site = tmp / "oversight.conf"
    site.write_text(
        localised(
            NGINX_CONF.read_text(), listen_port=listen_port, upstream_ports=upstream_ports, static_root=static_root
        )
    )
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    main = tmp / "nginx.conf"
    main.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
error_log {tmp}/logs/error.log info;
pid {tmp}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {tmp}/logs/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {site};
}}
""")
    return main


def nginx_args(tmp: Path, main: Path) -> list[str]:
    return [NGINX, "-p", f"{tmp}/", "-c", str(main), "-e", f"{tmp}/logs/error.log"]


def test_nginx_accepts_the_configuration(tmp_path):
    main = write_config(tmp_path, listen_port=free_port(), upstream_ports={"web1": 18001, "web2": 18002})
    result = subprocess.run([*nginx_args(tmp_path, main), "-t"], capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "syntax is ok" in output and "test is successful" in output


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for a test certificate")
def test_nginx_accepts_the_tls_lines_once_uncommented(tmp_path):
    """The commented TLS part is valid configuration: uncommented with a throwaway certificate, nginx -t passes."""
    main = write_config(tmp_path, listen_port=free_port(), upstream_ports={"web1": 18001, "web2": 18002})
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(certs / "privkey.pem"),
            "-out",
            str(certs / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = tmp_path / "oversight.conf"
    conf = site.read_text()
    tls_lines = (
        "listen 443 ssl;",
        "http2 on;",
        "ssl_certificate ",
        "ssl_certificate_key ",
        "ssl_protocols ",
        "ssl_session_cache ",
        "ssl_session_timeout ",
    )
    conf, count = re.subn(rf"(?m)^(\s*)# ((?:{'|'.join(re.escape(line) for line in tls_lines)}).*)$", r"\1\2", conf)
    assert count == len(tls_lines)
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{free_port()} ssl;")
    conf = conf.replace("/etc/nginx/certs/", f"{certs}/")
    if nginx_version() < (1, 25, 1):  # `http2 on` is nginx 1.25.1's; before, a parameter of `listen`
        conf = conf.replace("http2 on;", "").replace(" ssl;", " ssl http2;")
    site.write_text(conf)
    result = subprocess.run([*nginx_args(tmp_path, main), "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_configuration_is_refused(tmp_path):
    """The check above is not vacuous."""
    main = write_config(tmp_path, listen_port=free_port(), upstream_ports={"web1": 18001, "web2": 18002})
    site = tmp_path / "oversight.conf"
    site.write_text(site.read_text().replace("proxy_buffering off;", "proxy_buffering sometimes;"))
    result = subprocess.run([*nginx_args(tmp_path, main), "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0


def test_the_configuration_has_what_the_deployment_relies_on():
    conf = NGINX_CONF.read_text()
    ws = re.search(r"location /ws/ \{(.*?)\n    \}", conf, flags=re.DOTALL)[1]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_buffering off;" in ws
    assert re.search(r"proxy_read_timeout (\d+)s;", ws) and int(re.search(r"proxy_read_timeout (\d+)s;", ws)[1]) >= 3600
    for location in re.findall(r"location [^{]+\{(.*?)\n    \}", conf, flags=re.DOTALL):
        if "proxy_pass" in location:
            assert "proxy_set_header X-Forwarded-Proto $scheme;" in location
            assert "proxy_set_header Host $http_host;" in location
    assert "client_max_body_size 200m;" in conf
    upstream = re.search(r"upstream oversight_web \{(.*?)\n\}", conf, flags=re.DOTALL)[1]
    assert not re.search(r"^\s*(ip_hash|hash|sticky)\b", upstream, flags=re.MULTILINE), "no sticky sessions"
    assert "# listen 443 ssl;" in conf and "ssl_certificate" in conf  # the TLS part, commented, with notes


# --- A real nginx in front of two stand-in web processes -------------------------------------------------------


class StandInWeb:
    """A web process stand-in on loopback: plain GETs get their request back as JSON, /ws/ echoes frames."""

    def __init__(self, name: str):
        self.name = name
        self.port = free_port()
        self.requests = 0
        # Close websocket handshakes without an answer, as daphne does with a socket whose consumer has not
        # accepted within --websocket_connect_timeout (5 s): nginx sees the connection reset.
        self.drop_handshakes = False
        self.loop = asyncio.new_event_loop()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from websockets.asyncio.server import serve

        async def process_request(connection, request):
            self.requests += 1
            if request.headers.get("Upgrade", "").lower() == "websocket":
                if self.drop_handshakes:
                    connection.transport.abort()
                    return connection.respond(500, "")  # never sent: the connection is already gone
                return None  # go on with the websocket handshake
            body = {
                "server": self.name,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.raw_items()},
            }
            return connection.respond(200, json.dumps(body))

        async def echo(connection):
            headers = {k.lower(): v for k, v in connection.request.headers.raw_items()}
            await connection.send(json.dumps({"server": self.name, "headers": headers}))
            async for message in connection:
                await connection.send(f"echo:{message}")

        async def main():
            async with serve(echo, "127.0.0.1", self.port, process_request=process_request):
                await asyncio.get_running_loop().run_in_executor(None, self.stopped.wait)

        self.loop.run_until_complete(main())
        self.loop.close()

    def start(self):
        self.thread.start()
        assert wait_for_port(self.port)

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=10)


@pytest.fixture
def proxy(tmp_path):
    webs = {"web1": StandInWeb("web1"), "web2": StandInWeb("web2")}
    for web in webs.values():
        web.start()
    port = free_port()
    main = write_config(tmp_path, listen_port=port, upstream_ports={n: w.port for n, w in webs.items()})
    process = subprocess.Popen(
        [*nginx_args(tmp_path, main), "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for_port(port), (tmp_path / "logs" / "error.log").read_text()
        yield {"port": port, "webs": webs, "static": tmp_path / "static"}
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for web in webs.values():
            web.stop()


def get(port: int, path: str, **headers) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_requests_reach_django_with_the_forwarded_headers(proxy):
    status, _, body = get(proxy["port"], "/s/demo/?x=1", Host="oversight.example.org:8443")
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/s/demo/?x=1"
    assert seen["headers"]["host"] == "oversight.example.org:8443"  # with its port, for CSRF's origin check
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-real-ip"] == "127.0.0.1"


def test_requests_are_spread_over_both_web_processes_without_stickiness(proxy):
    servers = {json.loads(get(proxy["port"], "/")[2])["server"] for _ in range(6)}
    assert servers == {"web1", "web2"}


def test_a_dead_web_process_is_skipped(proxy):
    proxy["webs"]["web2"].stop()
    results = [get(proxy["port"], "/") for _ in range(6)]
    assert all(status == 200 for status, _, _ in results)
    assert {json.loads(body)["server"] for _, _, body in results} == {"web1"}


def test_static_files_are_served_from_disk_not_by_django(proxy):
    before = sum(web.requests for web in proxy["webs"].values())
    status, headers, body = get(proxy["port"], "/static/css/oversight.css")
    assert status == 200
    assert body == (proxy["static"] / "css" / "oversight.css").read_bytes()
    assert headers["Content-Type"].startswith("text/css")
    assert "max-age=3600" in headers["Cache-Control"]
    assert get(proxy["port"], "/static/missing.js")[0] == 404
    assert sum(web.requests for web in proxy["webs"].values()) == before


def test_uploaded_files_are_never_served(proxy):
    assert get(proxy["port"], "/media/banks/secret.csv")[0] == 404


def test_the_nginx_health_endpoint(proxy):
    status, _, body = get(proxy["port"], "/nginx-health")
    assert (status, body) == (200, b"ok\n")


def test_uploads_up_to_200_mb_are_let_through_and_larger_ones_refused(proxy):
    def announce(length: int) -> bytes:
        with socket.create_connection(("127.0.0.1", proxy["port"]), timeout=10) as sock:
            sock.sendall(
                f"POST /console/banks/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode()
            )
            sock.settimeout(1.0)
            try:
                return sock.recv(200)
            except TimeoutError:
                return b""  # nginx is waiting for the body: the size was accepted

    assert announce(201 * 1024 * 1024).startswith(b"HTTP/1.1 413")
    assert not announce(199 * 1024 * 1024).startswith(b"HTTP/1.1 413")


def test_websockets_are_upgraded_and_relayed(proxy):
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{proxy['port']}/ws/chat/token/1/"
    with connect(url, additional_headers={"Origin": "http://127.0.0.1"}, open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["headers"]["upgrade"].lower() == "websocket"
        assert hello["headers"]["connection"].lower() == "upgrade"
        assert hello["headers"]["x-forwarded-proto"] == "http"
        for i in range(3):
            ws.send(f"token {i}")
            assert ws.recv(timeout=10) == f"echo:token {i}"


def test_failed_websocket_handshakes_do_not_take_the_web_processes_out(proxy):
    """Overload makes daphne drop websocket handshakes (no consumer accepted within 5 s). nginx must not count
    those against the process and stop sending it pages: with `max_fails=3 fail_timeout=10s` four dropped
    handshakes disabled both processes and nginx answered every request with 502 ("no live upstreams") for
    10 s, though each process served pages fine (bench/README.md, docs/topology.md)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    for web in proxy["webs"].values():
        web.drop_handshakes = True
    statuses = []
    for _ in range(4):
        try:
            with connect(
                f"ws://127.0.0.1:{proxy['port']}/ws/chat/token/1/",
                open_timeout=10,
                additional_headers={"Origin": "http://127.0.0.1"},
            ):
                statuses.append(101)
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
    assert statuses == [502] * 4, statuses  # both processes tried for each, both dropped it
    for web in proxy["webs"].values():
        web.drop_handshakes = False

    pages = [get(proxy["port"], "/")[0] for _ in range(6)]
    assert pages == [200] * 6, pages
    with connect(
        f"ws://127.0.0.1:{proxy['port']}/ws/chat/token/1/",
        open_timeout=10,
        additional_headers={"Origin": "http://127.0.0.1"},
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["server"] in {"web1", "web2"}
