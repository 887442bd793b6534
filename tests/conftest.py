import pytest
from rest_framework.test import APIClient

from accounts.services import roles_sync
from tests.factories import UserFactory

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Progress and cancel flags live in the cache under row ids, which repeat between tests."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(db):
    roles_sync()

    def make(role: str | None = None, **kwargs):
        roles = [] if role in (None, "outsider") else [role]
        return UserFactory(username=kwargs.pop("username", role or "outsider"), roles=roles, **kwargs)

    return make


@pytest.fixture
def curator(make_user):
    return make_user("curator")


@pytest.fixture
def annotator(make_user):
    return make_user("annotator")


@pytest.fixture
def reviewer(make_user):
    return make_user("privacy_reviewer")


@pytest.fixture
def engineer(make_user):
    return make_user("engineer")


@pytest.fixture
def manager(make_user):
    return make_user("manager")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin")


@pytest.fixture
def outsider(make_user):
    return make_user("outsider")


@pytest.fixture
def api_client():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def write_file(tmp_path):
    """Write test data to a file: str is written as UTF-8, bytes as they are."""

    def write(name: str, content: str | bytes):
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_proc(django_db_setup, django_db_blocker):
    """A real Celery worker process (both queues) against the test database and the configured broker.

    Tests that use it must commit their data: use ``transactional_db`` or ``live_server``.
    """
    import os
    import subprocess
    import sys
    import threading
    import time

    from projectsite.celery import app

    with django_db_blocker.unblock():
        env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "projectsite.settings_test"}
    app.control.purge()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "projectsite",
            "worker",
            "-Q",
            "default,gpu",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if "ready." in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 90
    while not ready.is_set():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("The Celery worker did not start:\n" + "".join(lines[-50:]))
        time.sleep(0.2)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll until ``predicate()`` is truthy; return its value or fail with a clear message."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Condition not met within {timeout} s")


@pytest.fixture(scope="session")
def tiny_llama_path():
    """A tiny real Llama (random weights, BPE tokenizer trained here), built once and kept under var/test-models."""
    from pathlib import Path

    from training.tinymodels import build_tiny_llama

    return build_tiny_llama(Path(__file__).resolve().parent.parent / "var" / "test-models" / "tiny-llama")


@pytest.fixture
def tiny_base_model(db, tiny_llama_path):
    from training.services import base_model_ensure

    return base_model_ensure(name="tiny-llama", source=str(tiny_llama_path), licence_note="Random weights, for tests.")


@pytest.fixture
def approved_version(db):
    """``approved_version(rows=24)``: a ready, privacy-approved SFT version with train and validation rows."""
    from curation.models import DatasetVersion, Example
    from tests.factories import ExampleFactory, VersionFactory

    def make(
        rows: int = 24,
        *,
        task_type: str = "sft",
        labels=("billing", "login", "records"),
        validation: int = 4,
        test: int = 0,
    ):
        def split(i: int) -> str:
            if i >= rows - test:
                return "test"
            return "validation" if i >= rows - test - validation else "train"

        version = VersionFactory(
            row_count=rows, privacy=DatasetVersion.Privacy.APPROVED, dataset__task_type=task_type, content_hash="c0ffee"
        )
        Example.objects.bulk_create(
            ExampleFactory.build(
                version=version,
                row_index=i,
                input=f"Ticket {i}: my {labels[i % len(labels)]} page shows an error since the update.",
                target=f"Sorry about the {labels[i % len(labels)]} trouble; we fixed it, please try again.",
                label=labels[i % len(labels)] if task_type == "classification" else "",
                group=("clinic", "hospital")[i % 2],
                split=split(i),
            )
            for i in range(rows)
        )
        return version

    return make
