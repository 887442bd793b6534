"""Test settings: only overrides. The database and broker come from DATABASE_URL / CELERY_BROKER_URL when set."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789-abcdefghijklmnop")
# A second worker class, so recovery tests can run their own worker without the shared one taking their jobs.
os.environ.setdefault("TRAINING_QUEUES", "gpu,gpu-recovery")
# The stand-in for remote LLM endpoints (tests/evaluation/openai_server.py) listens on 127.0.0.1, which production
# refuses unless listed; tests of the refusal itself set ENDPOINT_ALLOWED_HOSTS back to empty.
os.environ.setdefault("ENDPOINT_ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("TUNINGDESK_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from projectsite.settings import *  # noqa: E402,F403
from projectsite.settings import DATABASES, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a real worker process can open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
