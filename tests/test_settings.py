"""The settings module: the embedded default, the switches to production parts, and the deploy checklist.

Each case imports the settings in a subprocess with exactly the environment it names, so nothing leaks in
from the shell that runs the tests (or from pytest-django's own set-up).
"""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

SHOW_SETTINGS = """
import json
from django.conf import settings
from oversight.celery import app
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "db_engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "db_host": settings.DATABASES["default"].get("HOST", ""),
    "db_options": settings.DATABASES["default"].get("OPTIONS", {}),
    "db_conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "channel_hosts": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "celery_eager": app.conf.task_always_eager,
    "celery_broker": app.conf.broker_url,
}, default=repr))  # the channel layer's hosts hold a redis Retry object
"""


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run Python in a clean environment: only PATH/HOME plus what the test names."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    clean["DJANGO_SETTINGS_MODULE"] = "oversight.settings"
    clean.update(env)
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=120)


def show_settings(**env: str) -> dict:
    result = run(["-c", SHOW_SETTINGS], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def production_env(**extra: str) -> dict:
    return {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "example.org", **extra}


def test_it_passes_the_deploy_checklist_with_no_warnings_in_production():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNINGS" not in output


def test_it_refuses_to_start_in_production_without_a_secret_key():
    result = run(["manage.py", "check"], DEBUG="0", ALLOWED_HOSTS="example.org")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set when DEBUG=0" in result.stderr


def test_it_rejects_a_boolean_it_cannot_read():
    result = run(["-c", "import oversight.settings"], DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe': expected one of 1/0" in result.stderr


def test_it_runs_embedded_with_no_environment_at_all():
    values = show_settings()
    assert values["DEBUG"] is True
    assert values["db_engine"] == "oversight.ops.sqlite"
    assert values["channel_layer"] == "oversight.realtime.layers.InProcessChannelLayer"
    assert values["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert values["celery_eager"] is True
    assert values["celery_broker"] == "memory://localhost/"


def test_the_embedded_broker_names_a_host_so_kombu_does_not_warn():
    # Eager tasks still open a broker connection for Celery's producer pool; a URL without a host made kombu log
    # "No hostname was supplied" the first time a bank import, export or baseline ran on the embedded default.
    code = (
        "import django, logging; django.setup(); logging.basicConfig(level=logging.WARNING)\n"
        "from oversight.celery import app\n"
        "info = app.connection_for_write().info()\n"
        "print(info['transport'], info['hostname'])"
    )
    result = run(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["memory", "localhost"]
    assert "hostname" not in result.stderr, result.stderr


def test_every_sqlite_configuration_gets_the_same_options_whichever_way_it_is_named(tmp_path):
    by_path = show_settings(SQLITE_PATH=str(tmp_path / "a.sqlite3"))
    by_url = show_settings(DATABASE_URL=f"sqlite:///{tmp_path / 'b.sqlite3'}")
    assert (by_path["db_name"], by_url["db_name"]) == (str(tmp_path / "a.sqlite3"), str(tmp_path / "b.sqlite3"))
    for values in (by_path, by_url):
        assert values["db_engine"] == "oversight.ops.sqlite"  # writers wait in line (oversight/ops/sqlite)
        assert values["db_options"] == {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
        assert values["db_conn_max_age"] == 600


def test_it_switches_to_postgresql_with_database_url():
    values = show_settings(DATABASE_URL="postgres://oversight:pw@db.internal:5432/oversight")
    assert values["db_engine"] == "django.db.backends.postgresql"
    assert (values["db_name"], values["db_host"]) == ("oversight", "db.internal")
    # The database alone does not bring a broker: Celery stays eager.
    assert values["celery_eager"] is True


def test_it_switches_to_redis_layer_cache_and_a_real_broker_with_redis_url():
    url = "redis://redis.internal:6379/3"
    values = show_settings(REDIS_URL=url)
    assert values["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert [host["address"] for host in values["channel_hosts"]] == [url]
    assert values["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert values["celery_eager"] is False
    assert values["celery_broker"] == url


def settings_env_names() -> set[str]:
    source = (BASE_DIR / "oversight" / "settings.py").read_text()
    names = set(re.findall(r"\benv_(?:str|bool|int|list)\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    names |= set(re.findall(r"os\.environ(?:\.get)?[(\[]\s*\"([A-Z][A-Z0-9_]*)\"", source))
    return names - {"DJANGO_SETTINGS_MODULE"}


@pytest.mark.parametrize("doc", ["deploy/.env.example", "README.md"])
def test_it_documents_every_environment_variable_it_reads(doc):
    names = settings_env_names()
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "TGI_URL"} <= names
    text = (BASE_DIR / doc).read_text()
    missing = sorted(name for name in names if not re.search(rf"\b{name}\b", text))
    assert not missing, f"{doc} does not document: {', '.join(missing)}"


SHOW_APP_SETTINGS = """
import json
from django.conf import settings
print(json.dumps({name: str(getattr(settings, name))
                  for name in ("METRICS_TOKEN", "EXPORT_TTL_HOURS", "EXPORT_DIR", "BASELINE_SLICE_S", "DATA_DIR")}))
"""


def test_the_apps_settings_come_from_the_environment_with_their_defaults(tmp_path):
    result = run(["-c", SHOW_APP_SETTINGS], DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    defaults = json.loads(result.stdout.strip().splitlines()[-1])
    assert defaults == {
        "METRICS_TOKEN": "",
        "EXPORT_TTL_HOURS": "72",
        "EXPORT_DIR": str(tmp_path / "exports"),
        "BASELINE_SLICE_S": "120",
        "DATA_DIR": str(tmp_path),
    }

    result = run(
        ["-c", SHOW_APP_SETTINGS],
        METRICS_TOKEN=" s3cret ",
        EXPORT_TTL_HOURS="5",
        EXPORT_DIR=str(tmp_path / "elsewhere"),
        BASELINE_SLICE_S="30",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["METRICS_TOKEN"] == "s3cret"
    assert values["EXPORT_TTL_HOURS"] == "5" and values["BASELINE_SLICE_S"] == "30"
    assert values["EXPORT_DIR"] == str(tmp_path / "elsewhere")


def test_only_the_settings_module_reads_the_environment():
    # One place to look for what configures a deployment (README's table, deploy/.env.example, .ci/run's list).
    # asgi.py and celery.py only name the settings module, as Django's own templates do.
    readers = re.compile(
        r"\bos\.environ\b(?!\.setdefault\(\"DJANGO_SETTINGS_MODULE\")|\bgetenv\(|\bfrom os import environ"
    )
    offenders = [
        f"{path.relative_to(BASE_DIR)}:{number}"
        for path in sorted((BASE_DIR / "oversight").rglob("*.py"))
        if path.name != "settings.py" or path.parent.name != "oversight"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if readers.search(line)
    ]
    assert not offenders, f"read the variable in oversight/settings.py instead: {offenders}"


SHOW_LOCAL = """
import json
from django.conf import settings
print(json.dumps({"DEBUG": settings.DEBUG, "SECRET_KEY": settings.SECRET_KEY, "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
                  "ssl_redirect": settings.SECURE_SSL_REDIRECT, "secure_cookies": settings.SESSION_COOKIE_SECURE,
                  "hsts": settings.SECURE_HSTS_SECONDS}))
"""


def test_make_run_serves_with_debug_off_and_a_generated_key_kept_in_the_data_dir(tmp_path):
    first = run(["-c", SHOW_LOCAL], SERVE_LOCALLY="1", DATA_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    values = json.loads(first.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False  # no query recording, no debug pages for participants
    assert "localhost" in values["ALLOWED_HOSTS"] and "127.0.0.1" in values["ALLOWED_HOSTS"]
    assert (values["ssl_redirect"], values["secure_cookies"], values["hsts"]) == (False, False, 0)
    key = (tmp_path / "secret_key").read_text().strip()
    assert values["SECRET_KEY"] == key and len(key) >= 50 and "insecure" not in key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    again = json.loads(run(["-c", SHOW_LOCAL], SERVE_LOCALLY="1", DATA_DIR=str(tmp_path)).stdout.splitlines()[-1])
    assert again["SECRET_KEY"] == key  # sessions survive a restart


def test_the_makefile_serves_locally_without_debug():
    makefile = (BASE_DIR / "Makefile").read_text()
    run_target = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"export SERVE_LOCALLY\s*=\s*1\b", run_target)
    assert not re.search(r"DEBUG\s*=\s*1", run_target)
