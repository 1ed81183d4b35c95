"""deploy/docker-compose.yml: valid against the official Compose Specification schema (vendored, see
schemas/README.md), before and after interpolation with deploy/.env.example, plus the topology this
deployment promises (two web processes, one beat, health-gated start-up, TGI on a GPU) and an .env.example
that documents every variable the file references."""

import hashlib
import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (dev extra) is needed to read the compose file")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev extra) is needed to validate the compose file")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
# The schema as shipped in check-jsonschema 0.39.0 (check_jsonschema/builtin_schemas/vendor/compose-spec.json).
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

OVERSIGHT_SERVICES = {"migrate", "web1", "web2", "worker", "beat"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}; $$ is a literal $.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    """The variables .env.example sets (commented-out ones are documented but left unset)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match[1]] = match[2]
    return values


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string in the file, as `docker compose config` would do it."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match[1], match[2], match[3] or ""
        current = env.get(name)
        is_set = current is not None
        non_empty = bool(current)
        if op in (":-", "-"):
            return current if (non_empty if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (non_empty if op == ":?" else is_set):
                raise AssertionError(f"compose would stop: {name} is required ({arg})")
            return current
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else is_set) else ""
        return current or ""

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def compose_schema() -> dict:
    return json.loads(SCHEMA.read_text())


def schema_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


# --- The schema ---------------------------------------------------------------------------------------------


def test_the_vendored_schema_is_the_published_one():
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = compose_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"


def test_the_schema_catches_mistakes(raw):
    """The validation below is not vacuous: typical slips are rejected."""
    broken = json.loads(json.dumps(raw))
    broken["services"]["web1"]["helthcheck"] = broken["services"]["web1"].pop("healthcheck")
    assert any("helthcheck" in error for error in schema_errors(broken))
    broken = json.loads(json.dumps(raw))
    broken["services"]["web1"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert schema_errors(broken)
    broken = json.loads(json.dumps(raw))
    broken["services"]["tgi"]["deploy"]["resources"]["reservations"]["devices"][0].pop("capabilities")
    assert schema_errors(broken)


# --- The file ----------------------------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_spec(raw):
    errors = schema_errors(raw)
    assert not errors, "\n".join(errors)


def test_it_is_still_valid_once_interpolated_with_the_example_env(raw):
    resolved = interpolate(raw, env_example())
    errors = schema_errors(resolved)
    assert not errors, "\n".join(errors)
    tgi = resolved["services"]["tgi"]
    assert tgi["environment"]["MODEL_ID"] == env_example()["MODEL_ID"]
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == env_example()["POSTGRES_PASSWORD"]


def test_the_example_database_url_matches_the_postgres_service():
    env = env_example()
    url = env["DATABASE_URL"]
    assert url == f"postgres://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert env["TGI_URL"] == "http://tgi:80"


def test_every_variable_the_compose_file_reads_is_documented_in_env_example(raw):
    text = COMPOSE.read_text()
    referenced = set(VARIABLE.findall(text))
    names = {match[0] for match in referenced}
    # Value-less environment entries are passed through from .env (e.g. HF_TOKEN).
    for service in raw["services"].values():
        environment = service.get("environment") or {}
        if isinstance(environment, dict):
            names |= {key for key, value in environment.items() if value is None}
    documented = ENV_EXAMPLE.read_text()
    missing = sorted(name for name in names if not re.search(rf"^#?\s*{name}=", documented, flags=re.MULTILINE))
    assert not missing, f"deploy/.env.example does not document: {', '.join(missing)}"


def test_every_oversight_container_gets_the_same_env_file(raw):
    services = raw["services"]
    for name in OVERSIGHT_SERVICES:
        assert services[name]["env_file"] == ".env", name
        assert services[name]["image"] == services["web1"]["image"], name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile", name
    assert (DEPLOY / services["web1"]["build"]["context"] / services["web1"]["build"]["dockerfile"]).exists()


def test_two_web_processes_one_worker_and_exactly_one_beat(raw):
    services = raw["services"]
    assert services["web1"]["command"] == services["web2"]["command"] == ["web"]
    assert services["worker"]["command"] == ["worker"]
    assert services["beat"]["command"] == ["beat"]
    assert [name for name, s in services.items() if s.get("command") == ["beat"]] == ["beat"]
    beat = services["beat"]
    assert beat.get("scale", 1) == 1 and beat.get("deploy", {}).get("replicas", 1) == 1


def test_start_up_is_ordered_by_health(raw):
    services = raw["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            target = services[dependency]
            if rule["condition"] == "service_healthy":
                health = target.get("healthcheck")
                assert health and not health.get("disable"), f"{name} waits for {dependency}, which has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is a one-shot: restart must be 'no'"
    for name in ("web1", "web2"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["tgi"]["condition"] == "service_healthy"
    # Deadlines are enforced even while the model is down.
    assert "tgi" not in services["worker"]["depends_on"]
    assert services["web1"]["healthcheck"]["test"] == ["CMD", "oversight", "healthcheck"]


def test_postgres_and_redis_keep_their_data_and_report_health(raw):
    services, volumes = raw["services"], raw["volumes"]
    postgres = services["postgres"]
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    redis = services["redis"]
    assert any(v.startswith("redisdata:") for v in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "noeviction" in redis["command"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"volume {source} is not declared"


def test_tgi_runs_the_official_image_on_a_gpu(raw):
    tgi = raw["services"]["tgi"]
    assert tgi["image"].startswith("${TGI_IMAGE:-ghcr.io/huggingface/text-generation-inference:")
    environment = tgi["environment"]
    assert environment["MODEL_ID"].startswith("${MODEL_ID")
    assert environment["NUM_SHARD"].startswith("${NUM_SHARD")
    devices = tgi["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert "/health" in " ".join(tgi["healthcheck"]["test"])
    assert tgi["shm_size"]
    assert any(v.endswith(":/data") for v in tgi["volumes"])


def test_nginx_fronts_the_web_processes(raw):
    nginx = raw["services"]["nginx"]
    assert nginx["build"]["target"] == "nginx"
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert any(str(port).endswith(":80") for port in nginx["ports"])
    assert set(nginx["depends_on"]) == {"web1", "web2"}
    upstream = (DEPLOY / "nginx.conf").read_text()
    for name in ("web1", "web2"):
        assert re.search(rf"^\s*server {name}:8000\b", upstream, flags=re.MULTILINE), name
    # Only nginx is published: the app, the databases and TGI are reachable on the compose network only.
    published = [name for name, service in raw["services"].items() if service.get("ports")]
    assert published == ["nginx"]


def test_the_app_containers_are_locked_down(raw):
    for name in OVERSIGHT_SERVICES:
        service = raw["services"][name]
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "data:/data" in service["volumes"], name
