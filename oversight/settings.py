"""The one settings module.

With no environment at all this is the *embedded default*: SQLite, the in-memory channel layer, Celery
running tasks eagerly in-process, and the simulated assistant. Each production part is switched on by one
environment variable (see the table in README.md and deploy/.env.example).
"""

import importlib.util
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected an integer") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name)
    if not raw:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


# --- Core -------------------------------------------------------------------------------------------------

# `make run` serves a pilot from this machine: production behaviour (DEBUG off: no query recording, no debug
# pages) over plain HTTP on localhost, with a signing key generated once and kept in DATA_DIR. Nothing to set.
SERVE_LOCALLY = env_bool("SERVE_LOCALLY", False)

# The embedded default is a demo/development setup; production sets DEBUG=0 explicitly.
DEBUG = env_bool("DEBUG", not SERVE_LOCALLY)

# Where the embedded default keeps its SQLite file, uploads and export files.
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var")))


def local_secret_key(data_dir: Path) -> str:
    """SERVE_LOCALLY's signing key: made on first start, kept (owner-only) so sessions survive a restart."""
    path = data_dir / "secret_key"
    if not path.exists():
        import secrets

        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(60))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if SERVE_LOCALLY:
        SECRET_KEY = local_secret_key(DATA_DIR)
    elif not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0 (see deploy/.env.example)")
    else:
        SECRET_KEY = "insecure-embedded-default-key-do-not-use-in-production"  # noqa: S105

LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", LOCAL_HOSTS if DEBUG or SERVE_LOCALLY else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # daphne first: it makes `runserver` serve ASGI (websockets) in development.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "oversight.core",
    "oversight.banks",
    "oversight.participant",
    "oversight.console",
    "oversight.assistant",
    "oversight.baselines",
    "oversight.judges",
    "oversight.reports",
    "oversight.realtime",
    "oversight.exports",
    "oversight.ops",
]
# The development tools beside `oversight/` (bots and `run_bots`, the fake TGI): an app in a checkout, absent
# from the wheel and the production image. Only this name refers to it; no module in `oversight/` imports it.
if importlib.util.find_spec("oversight_dev") is not None:
    INSTALLED_APPS.append("oversight_dev")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "oversight.core.middleware.ContentSecurityPolicyMiddleware",
]

# The web process's request gate (oversight/ops/gate.py): this many threads run the views, each keeping its
# database connection; a request that waits WEB_QUEUE_S seconds for one (or finds WEB_QUEUE_MAX waiting) is
# answered 503 + Retry-After, which the pages ride out. WEB_THREADS=0: Django's own thread per request.
WEB_THREADS = env_int("WEB_THREADS", 8)
WEB_QUEUE_S = env_int("WEB_QUEUE_S", 20)
WEB_QUEUE_MAX = 5000

ROOT_URLCONF = "oversight.urls"
ASGI_APPLICATION = "oversight.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["django_htmx.templatetags.django_htmx"],
        },
    }
]

# --- Database ---------------------------------------------------------------------------------------------


def sqlite_database(name: str) -> dict:
    """Every SQLite configuration, whichever way it is named (SQLITE_PATH or DATABASE_URL=sqlite:///…)."""
    return {
        # Django's SQLite backend plus one in-process lock for writes (oversight/ops/sqlite/base.py): writers
        # wait in line instead of polling the file lock until the busy timeout fails them.
        "ENGINE": "oversight.ops.sqlite",
        "NAME": name,
        # Kept open: with 0, every trip to the database thread reconnected, and closing the last connection
        # checkpoints the WAL (about 9 ms each, most of a chat send's cost under load; bench/README.md).
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
        "OPTIONS": {
            # WAL lets the bots, the web process and the sweeper read while one writes; IMMEDIATE
            # transactions take the write lock up front instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            # Only another process (a manage.py command) can make a write wait here now.
            "timeout": 20,
        },
    }


DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL and not DATABASE_URL.startswith("sqlite:"):
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            # Kept for a minute: each of the gate's WEB_THREADS threads keeps one (a bound: threads × processes),
            # instead of a new connection per request (half the topology's throughput; bench/README.md). Without
            # the gate every request has a thread of its own and a kept connection would be left behind with it.
            conn_max_age=env_int("DB_CONN_MAX_AGE", 60 if WEB_THREADS > 0 else 0),
            conn_health_checks=True,
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", False):
        # psycopg's pool replaces persistent connections; the two cannot be combined.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        # timeout: how long a request waits for a connection. psycopg's default (30 s) made every request hang
        # 30 s while PostgreSQL refused connections (tests/faults, scenario d): fail in seconds instead.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 20, "timeout": 5}
elif DATABASE_URL:
    # dj_database_url would give Django's plain backend without WAL, IMMEDIATE or a timeout (issue 15: 188
    # "database is locked" errors at 50 participants); only the file name is taken from the URL.
    DATABASES = {"default": sqlite_database(dj_database_url.parse(DATABASE_URL)["NAME"])}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": sqlite_database(env_str("SQLITE_PATH", str(DATA_DIR / "db.sqlite3")))}

# Threads for the chat's database work in each web process (oversight/assistant/executor.py): 0 keeps it on
# asgiref's one thread-sensitive thread (the only safe choice for SQLite).
CHAT_DB_THREADS = env_int(
    "CHAT_DB_THREADS", 8 if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" else 0
)

# How a web process reads a TGI / OpenAI-compatible chat stream (oversight/assistant/backends.py): "lean" (one
# pooled client per endpoint, the stream parsed from its bytes) or "hf" (huggingface_hub's client per reply).
CHAT_STREAM_CLIENT = env_str("CHAT_STREAM_CLIENT", "lean")
if CHAT_STREAM_CLIENT not in {"lean", "hf"}:
    raise ImproperlyConfigured(f"CHAT_STREAM_CLIENT={CHAT_STREAM_CLIENT!r}: expected lean or hf")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, Celery broker, cache ----------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    from redis.asyncio.retry import Retry as AsyncRedisRetry
    from redis.backoff import ExponentialWithJitterBackoff

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Capacity well above one participant's burst: past it channels silently drops messages.
            # socket_timeout above channels_redis's 5 s blocking pop: at redis-py 8's default (5 s) every idle
            # chat socket was closed with 1011 (tests/faults). The pool must cover hundreds of open sockets.
            # retry: a pool made from a URL retries nothing in redis-py 8, and its check for dead connections is
            # skipped (maintenance notifications default to "auto"), so after a Redis restart the first command
            # on each pooled connection failed (5-8 of 8 concurrent group_sends; tests/faults/test_redis_restart.py)
            # and a reply streaming then died.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "max_connections": 1000,
                        "retry": AsyncRedisRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3),
                    }
                ],
                # channels_redis keeps all of one process's websockets in ONE Redis key and checks
                # "capacity" against that whole inbox: at 1,500, 200 streaming chats (5,000 frames a
                # second) overflowed it within a moment of lag, and group_send silently dropped frames
                # and final replies (bench/chat_stream.py). Messages still expire after `expiry`.
                "capacity": 100_000,
                "expiry": 30,
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "oversight.realtime.layers.InProcessChannelLayer", "CONFIG": {"capacity": 1500}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery -----------------------------------------------------------------------------------------------

# The in-memory transport ignores the host, but kombu warns "No hostname was supplied" each time it opens a
# connection to a URL without one, and Celery opens one even for an eager task (for its producer pool).
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
# kombu's Redis transport with one fix (oversight/celery.py, RedisChannel): without it a worker holding
# unacknowledged messages (every deadline's eta task) exits when Redis restarts. Only for plain redis://
# (rediss:// and sentinel:// keep kombu's own transports).
CELERY_BROKER_TRANSPORT = "oversight.celery:RedisTransport" if REDIS_URL.startswith("redis://") else None
# Without a broker, tasks run in-process (eager); deadlines are then also enforced by the in-process sweeper.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only once it finished, so a killed worker's task is redelivered (tasks are idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "oversight")
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "sweep-expired-trials": {"task": "oversight.core.tasks.sweep_expired_trials", "schedule": 1.0},
    # Every second: a reply whose process died is found ~2 s after its last sign of life (assistant/lease.py).
    "sweep-stale-generations": {"task": "oversight.assistant.tasks.sweep_stale_generations", "schedule": 1.0},
    # Baseline runs whose worker was killed outright are resumed (idempotently) by another worker.
    "resume-stale-baselines": {"task": "oversight.baselines.tasks.resume_stale_baselines", "schedule": 60.0},
    "resume-stale-judge-runs": {"task": "oversight.judges.tasks.resume_stale_judge_runs", "schedule": 60.0},
    # Export files hold participants' data: delete them once past EXPORT_TTL_HOURS (the job rows stay).
    "delete-expired-exports": {"task": "oversight.exports.tasks.delete_expired_exports", "schedule": 3600.0},
}
# Without a worker, long jobs (bank imports, exports) run in a thread of the web process rather than in the
# request that asked for them (oversight/core/enqueue.py). The test suite runs them in place.
JOBS_IN_THREAD = CELERY_TASK_ALWAYS_EAGER
# The in-process deadline sweeper runs in the web process when there is no broker (embedded default).
DEADLINE_SWEEPER = env_bool("DEADLINE_SWEEPER", CELERY_TASK_ALWAYS_EAGER)
# A worker executes a baseline run for at most this many seconds, then re-enqueues it, so a deploy or restart
# never waits on a long run (docs/baselines.md).
BASELINE_SLICE_S = env_int("BASELINE_SLICE_S", 120)

# --- Exports ----------------------------------------------------------------------------------------------

# Export files hold participants' data: kept this many hours after the job finished (docs/export.md).
EXPORT_TTL_HOURS = env_int("EXPORT_TTL_HOURS", 72)
# Where export jobs write their files; never under MEDIA_ROOT, so exports are never served as media.
EXPORT_DIR = Path(env_str("EXPORT_DIR") or DATA_DIR / "exports")

# --- The assistant ----------------------------------------------------------------------------------------

# When set, the demo's assisted condition talks to this TGI server instead of the simulated assistant.
TGI_URL = env_str("TGI_URL")
TGI_TOKEN = env_str("TGI_TOKEN")

# --- Auth, i18n, static -----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Nothing is translated yet (no gettext anywhere). With USE_I18N on, every reverse() and every page looked the
# active language up in an asgiref Local: 7% of the web process's CPU on the participant path (py-spy, issue 15).
# Turn it on together with the first translation.
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))

# Uploaded banks can be large (MMLU's data.tar is ~160 MB uncompressed); they are streamed to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Security: production (DEBUG=0) settings pass `manage.py check --deploy` with no warnings -------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

if not DEBUG:
    # TLS ends at nginx, which sets X-Forwarded-Proto (deploy/nginx.conf). SERVE_LOCALLY is plain HTTP on this
    # machine: no redirect to HTTPS, cookies over HTTP, no HSTS (unless set).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not SERVE_LOCALLY)
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not SERVE_LOCALLY)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not SERVE_LOCALLY)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if SERVE_LOCALLY else 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# --- Metrics ----------------------------------------------------------------------------------------------

# Bearer token for GET /metrics; empty: only direct requests from loopback or a private network are served.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Logging: one JSON line per event in production -------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "oversight.ops.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain" if DEBUG or SERVE_LOCALLY else "json"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # huggingface_hub's HTTP client logs every request at INFO: one line per token stream is noise.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
