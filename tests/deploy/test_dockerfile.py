"""deploy/Dockerfile, checked without Docker (none on these machines): its structure (multi-stage, non-root,
health check, static files collected at build), the files it copies (the product only: no fake server, bots,
synthetic data, tests or benchmarks), and the scripts it embeds — the entrypoint is run with stand-in
programs, the health check against a real daphne with production settings, and the build's own commands
(the pinned dependencies, collectstatic) are run as the build runs them."""

import ast
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.test_requirements import LOCKS, pins

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def parse_dockerfile(text: str) -> list[dict]:
    """Instructions in order: {"op", "args", "heredocs": [body, ...]}, with continuations joined."""
    instructions = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        op, _, args = line.strip().partition(" ")
        heredocs = []
        for marker in re.findall(r"<<-?['\"]?([A-Z_]+)['\"]?", args):
            body = []
            while i < len(lines) and lines[i] != marker:
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"heredoc {marker} is not closed"
            i += 1
            heredocs.append("\n".join(body) + "\n")
        instructions.append({"op": op.upper(), "args": args.strip(), "heredocs": heredocs})
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[dict]:
    return parse_dockerfile(DOCKERFILE.read_text())


def stages(instructions) -> dict[str, dict]:
    """name -> {"base": FROM image or stage, "instructions": [...]}, in order."""
    result: dict[str, dict] = {}
    current = None
    for ins in instructions:
        if ins["op"] == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", ins["args"], flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {ins['args']}"
            current = match[2]
            result[current] = {"base": match[1], "instructions": []}
        elif current is not None:
            result[current]["instructions"].append(ins)
    return result


def chain(all_stages: dict, name: str) -> list[str]:
    """The stage and the stages it is built FROM, nearest first."""
    names = [name]
    while all_stages[names[-1]]["base"] in all_stages:
        names.append(all_stages[names[-1]]["base"])
    return names


def effective(all_stages, name: str, op: str) -> dict | None:
    """The instruction `op` that applies in stage `name` (the last one along its FROM chain)."""
    for stage in chain(all_stages, name):
        found = [ins for ins in all_stages[stage]["instructions"] if ins["op"] == op]
        if found:
            return found[-1]
    return None


def heredoc(instructions, destination: str) -> str:
    for ins in instructions:
        if ins["op"] == "COPY" and ins["heredocs"] and ins["args"].split()[-1] == destination:
            return ins["heredocs"][0]
    raise AssertionError(f"no COPY heredoc to {destination}")


# --- Structure -------------------------------------------------------------------------------------------


def test_it_is_multi_stage_with_a_builder_and_a_slim_runtime(instructions):
    all_stages = stages(instructions)
    assert len(all_stages) >= 2
    assert {"builder", "app", "runtime", "nginx"} <= set(all_stages)
    builder = " ".join(ins["args"] for ins in all_stages["builder"]["instructions"] if ins["op"] == "RUN")
    assert "pip wheel" in builder and "venv" in builder
    # The runtime copies the virtualenv from the builder, not the build tools or the wheels.
    copies = [ins["args"] for ins in all_stages["app"]["instructions"] if ins["op"] == "COPY"]
    assert any(args.startswith("--from=builder /opt/venv") for args in copies)
    assert not any("/wheels" in args for args in copies)
    # The runtime image is slim; the last stage (the default target) is the app.
    python_image = next(ins["args"] for ins in instructions if ins["op"] == "ARG" and "PYTHON_IMAGE=" in ins["args"])
    assert python_image.endswith("-slim-bookworm")
    assert all_stages["app"]["base"] == all_stages["builder"]["base"] == "${PYTHON_IMAGE}"
    assert list(all_stages)[-1] == "runtime" and "app" in chain(all_stages, "runtime")


def test_the_default_target_runs_as_a_non_root_user(instructions):
    all_stages = stages(instructions)
    user = effective(all_stages, "runtime", "USER")
    assert user is not None, "no USER in the runtime image"
    name = user["args"].split(":")[0]
    assert name not in {"root", "0"}
    # The id matches the user the image creates (and k8s' runAsUser).
    created = " ".join(ins["args"] for ins in all_stages["app"]["instructions"] if ins["op"] == "RUN")
    assert f"--uid {name}" in created
    k8s_web = (REPO / "deploy" / "k8s" / "web.yaml").read_text()
    assert f"runAsUser: {name}" in k8s_web


def test_it_has_a_healthcheck_that_asks_healthz(instructions):
    all_stages = stages(instructions)
    health = effective(all_stages, "runtime", "HEALTHCHECK")
    assert health is not None, "no HEALTHCHECK in the runtime image"
    assert "CMD" in health["args"] and "NONE" not in health["args"].upper().split()
    assert '"oversight", "healthcheck"' in health["args"]
    script = heredoc(instructions, "/usr/local/bin/oversight-healthcheck")
    assert '"/healthz"' in script


def test_it_collects_static_files_at_build_time(instructions):
    runs = " ".join(ins["args"] for ins in stages(instructions)["app"]["instructions"] if ins["op"] == "RUN")
    assert "manage.py collectstatic --noinput" in runs


def test_it_has_an_entrypoint_with_a_role_per_process(instructions):
    all_stages = stages(instructions)
    assert effective(all_stages, "runtime", "ENTRYPOINT")["args"] == '["oversight"]'
    assert effective(all_stages, "runtime", "CMD")["args"] == '["web"]'


def test_everything_it_copies_from_the_build_context_exists(instructions):
    ignored = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().split()
    for ins in instructions:
        if ins["op"] != "COPY" or ins["heredocs"] or "--from=" in ins["args"]:
            continue
        sources = [part for part in shlex.split(ins["args"]) if not part.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source not in ignored, f"COPY {source}: excluded by Dockerfile.dockerignore"


# --- The build's own commands, run as the build runs them ---------------------------------------------------


def test_the_builder_installs_the_pinned_base_lock_and_no_development_tool(instructions):
    builder = stages(instructions)["builder"]["instructions"]
    copied = [shlex.split(ins["args"]) for ins in builder if ins["op"] == "COPY"]
    assert ["requirements/base.lock", "./"] in copied
    run = " ".join(ins["args"] for ins in builder if ins["op"] == "RUN")
    assert "pip wheel --wheel-dir /wheels -r base.lock" in run
    assert "/opt/venv/bin/pip install --no-index --find-links /wheels -r base.lock" in run
    base = pins(LOCKS["base"])
    assert {"django", "daphne", "channels", "celery", "numpy"} <= set(base)
    # The bots' websocket client, the test runner, the browser driver and the linter are dev.lock's only.
    dev_only = {"websockets", "pytest", "pytest-django", "playwright", "ruff"}
    assert dev_only <= set(pins(LOCKS["dev"]))
    assert not dev_only & set(base), f"in the production image: {sorted(dev_only & set(base))}"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Dockerfile.dockerignore keeps `path` (relative to the context) out of the build context."""
    for pattern in patterns:
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            return True
    return False


def image_files(instructions, stage: str) -> dict[str, str]:
    """What COPY brings from the build context into `stage` along its FROM chain: image path -> context path,
    file by file, as Docker expands it (a directory's contents, less what the .dockerignore excludes)."""
    ignored = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().split()
    ignored = [line for line in ignored if not line.startswith("#")]
    all_stages = stages(instructions)
    files: dict[str, str] = {}
    for name in reversed(chain(all_stages, stage)):
        workdir = "/"
        for ins in all_stages[name]["instructions"]:
            if ins["op"] == "WORKDIR":
                workdir = os.path.join(workdir, ins["args"])
            if ins["op"] != "COPY" or ins["heredocs"] or "--from=" in ins["args"]:
                continue
            *sources, destination = [part for part in shlex.split(ins["args"]) if not part.startswith("--")]
            destination = os.path.normpath(os.path.join(workdir, destination))
            for source in sources:
                root = REPO / source
                found = [root] if root.is_file() else sorted(path for path in root.rglob("*") if path.is_file())
                for path in found:
                    relative = path.relative_to(REPO).as_posix()
                    if dockerignored(relative, ignored):
                        continue
                    inside = path.name if root.is_file() else path.relative_to(root).as_posix()
                    files[f"{destination}/{inside}"] = relative
    return files


def test_the_production_image_holds_no_fake_server_bots_synthetic_data_tests_or_benchmarks(instructions):
    files = image_files(instructions, "runtime")
    sources = set(files.values())
    assert "oversight/settings.py" in sources and "manage.py" in sources  # the expansion found the app
    for tooling in ("oversight_dev/", "tests/", "bench/"):
        assert not [path for path in sources if path.startswith(tooling)], f"{tooling} is copied into the image"
    # Not under another name either: no module of the fake TGI, the bots or the synthetic studies.
    modules = {Path(path).name for path in sources}
    assert not modules & {"faketgi.py", "tgiwire.py", "bots.py", "synthetic.py", "run_bots.py"}
    for path in sorted(p for p in sources if p.endswith(".py")):
        for node in ast.walk(ast.parse((REPO / path).read_text(), path)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "oversight_dev"], f"{path} imports oversight_dev"


def test_the_app_as_copied_into_the_image_has_no_run_bots_command(instructions, tmp_path):
    # The image's /app, laid out from the COPY set and run the way the image runs manage.py.
    for image_path, source in image_files(instructions, "runtime").items():
        if image_path.startswith("/app/"):
            target = tmp_path / image_path.removeprefix("/app/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / source, target)
    env = clean_env(
        DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="example.org", DATA_DIR=str(tmp_path / "data")
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.split()
    assert "seed_demo" in commands and "migrate" in commands
    assert "run_bots" not in commands
    # The same command from the checkout does have it: the development tools are there, not in the image.
    checkout = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "run_bots" in checkout.stdout.split(), checkout.stderr


def clean_env(**extra: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "oversight.settings",
    }
    env.update(extra)
    return env


def test_collectstatic_runs_at_build_time_with_no_secret_and_no_database(instructions, tmp_path):
    run = next(
        ins["args"]
        for ins in stages(instructions)["app"]["instructions"]
        if ins["op"] == "RUN" and "collectstatic" in ins["args"]
    )
    command = run.split(" && ")[0]
    assert command.startswith("SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic")
    env = clean_env(STATIC_ROOT=str(tmp_path / "static"), DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        ["sh", "-c", command.replace(" python ", f" {sys.executable} ", 1)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "css" / "oversight.css").exists()
    assert (tmp_path / "static" / "admin").is_dir()


# --- The entrypoint ----------------------------------------------------------------------------------------


@pytest.fixture
def entrypoint(instructions, tmp_path) -> Path:
    script = tmp_path / "oversight"
    script.write_text(heredoc(instructions, "/usr/local/bin/oversight"))
    script.chmod(0o755)
    # Stand-ins for the programs it execs: each prints its name and arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("granian", "celery", "python"):
        stub = bin_dir / program
        stub.write_text(f'#!/bin/sh\necho {program} "$@"\n')
        stub.chmod(0o755)
    return script


def run_entrypoint(script: Path, *args: str, **env: str) -> tuple[str, str]:
    role_file = script.parent / "role"
    full_env = {"PATH": f"{script.parent / 'bin'}:/usr/bin:/bin", "OVERSIGHT_ROLE_FILE": str(role_file), **env}
    result = subprocess.run(["sh", str(script), *args], env=full_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), role_file.read_text().strip()


def test_the_entrypoint_is_valid_posix_shell(entrypoint):
    result = subprocess.run(["sh", "-n", str(entrypoint)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_entrypoint_starts_one_process_per_role(entrypoint):
    out, role = run_entrypoint(entrypoint)
    assert role == "web"
    assert out == "granian --interface asginl --host 0.0.0.0 --port 8000 --workers 1 --ws oversight.asgi:application"
    out, _ = run_entrypoint(entrypoint, "web", PORT="9000")
    assert "--port 9000" in out

    out, role = run_entrypoint(entrypoint, "worker")
    assert role == "worker"
    assert out == ("celery -A oversight worker --loglevel INFO --queues oversight --without-gossip --without-mingle")
    out, _ = run_entrypoint(entrypoint, "worker", CELERY_QUEUE="other", WORKER_CONCURRENCY="3", LOG_LEVEL="DEBUG")
    assert "--queues other" in out and "--concurrency 3" in out and "--loglevel DEBUG" in out

    out, role = run_entrypoint(entrypoint, "beat")
    assert role == "beat"
    assert out == "celery -A oversight beat --loglevel INFO --schedule /tmp/celerybeat-schedule"

    assert run_entrypoint(entrypoint, "migrate")[0] == "python manage.py migrate --noinput"
    assert run_entrypoint(entrypoint, "manage", "createsuperuser")[0] == "python manage.py createsuperuser"
    assert run_entrypoint(entrypoint, "echo", "anything")[0] == "anything"


# --- The health check against a real daphne with production settings -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture
def production_daphne(tmp_path):
    """daphne serving oversight with DEBUG=0, HTTPS redirect on, a host list without localhost."""
    port = free_port()
    env = clean_env(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="oversight.example.org",
        DATA_DIR=str(tmp_path / "data"),
        PORT=str(port),
        DEADLINE_SWEEPER="0",
    )
    daphne = Path(sys.executable).parent / "daphne"
    log = (tmp_path / "daphne.log").open("wb")
    process = subprocess.Popen(
        [str(daphne), "-b", "127.0.0.1", "-p", str(port), "oversight.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port(port, 30), f"daphne did not start: {(tmp_path / 'daphne.log').read_text()[-2000:]}"
        yield env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def run_healthcheck(instructions, tmp_path, env, role=None, path=None) -> subprocess.CompletedProcess:
    script = tmp_path / "oversight-healthcheck"
    script.write_text(heredoc(instructions, "/usr/local/bin/oversight-healthcheck"))
    role_file = tmp_path / "role"
    if role:
        role_file.write_text(role + "\n")
    args = [sys.executable, str(script)] + ([path] if path else [])
    return subprocess.run(
        args, env={**env, "OVERSIGHT_ROLE_FILE": str(role_file)}, capture_output=True, text=True, timeout=30
    )


def test_the_healthcheck_passes_against_production_settings(instructions, tmp_path, production_daphne):
    result = run_healthcheck(instructions, tmp_path, production_daphne, role="web")
    assert result.returncode == 0, result.stderr
    # The same request without the proxy's headers is what a naive check would send: not a 200.
    port = production_daphne["PORT"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert refused.value.code == 400  # DisallowedHost: 127.0.0.1 is not in ALLOWED_HOSTS
    result = run_healthcheck(instructions, tmp_path, production_daphne, role="web", path="/readyz")
    assert result.returncode == 0, result.stderr


def test_the_healthcheck_fails_when_web_does_not_answer(instructions, tmp_path):
    env = clean_env(ALLOWED_HOSTS="oversight.example.org", PORT=str(free_port()))
    result = run_healthcheck(instructions, tmp_path, env)  # no role file: web
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_the_healthcheck_of_beat_needs_no_server(instructions, tmp_path):
    env = clean_env(PORT=str(free_port()))
    assert run_healthcheck(instructions, tmp_path, env, role="beat").returncode == 0
