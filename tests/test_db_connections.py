"""Database connections stay within the pool under the web servers the README documents (PostgreSQL only).

As found: with DATABASE_CONN_MAX_AGE=60 and no pool, `make run` (runserver starts a thread per request, each
thread kept its own connection) left 81 idle connections after 200 requests, and at 99 PostgreSQL refused every
client. Now each process has one pool of at most DATABASE_POOL_MAX connections (projectsite/settings.py).

These tests start the real servers (runserver as `make run` does, and the gunicorn command of the README's
"Production layout") against the test database, send 500 requests from 50 clients at once, and count the
servers' connections in pg_stat_activity by the application name each server is given. SQLite has no pool and
no connection limit, so those tests are skipped there (CI runs them on PostgreSQL); the settings tests at the end
run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client

from projectsite.database import BUSY_MESSAGE
from tests.conftest import _database_url
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent
POOL_MAX = 4  # small, so that a leak passes it quickly and the ceilings are tight
REQUESTS = 500
CLIENTS = 50

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL only: the connection pool and connection limit are PostgreSQL's (CI runs on PostgreSQL)",
)


@dataclass
class Server:
    url: str
    application_name: str
    log: IO[str]

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]


@pytest.fixture
def session() -> str:
    """A signed-in session: each request reads it and its user from the database."""
    client = Client()
    client.force_login(UserFactory(username="load-test"))
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, session: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"})


def _get(url: str, session: str, timeout: float = 60) -> int | None:
    """The status of GET url (the session and its user are read from the database), or None when nobody answers."""
    request = _request(url, session)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@contextmanager
def _serve(command: list[str], port: int, session: str, **env: str):
    """Run a web server against the test database until the block ends; its connections carry a unique name."""
    name = f"td-load-{uuid.uuid4().hex[:12]}"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_POOL", "DATABASE_CONN"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="projectsite.settings_test",
        DATABASE_URL=f"{_database_url()}?application_name={name}",
        DATABASE_POOL_MAX=str(POOL_MAX),
        **env,
    )
    url = f"http://127.0.0.1:{port}/api/v1/me/"
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while _get(url, session, timeout=30) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"The server did not start: {command}\n{log.read()[-3000:]}")
                time.sleep(0.3)
            yield Server(url=url, application_name=name, log=log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _load(
    server: Server, session: str, *, requests: int = REQUESTS, clients: int = CLIENTS, timeout: float = 60
) -> list[int | None]:
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: _get(server.url, session, timeout), range(requests)))


def _warm_up(server: Server, session: str, processes: int) -> None:
    """Each process loads the URL modules (the privacy pipeline: seconds of CPU) on its first request: wait for all."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = time.monotonic()
        statuses = _load(server, session, requests=4 * processes, clients=4 * processes, timeout=240)
        if statuses == [200] * (4 * processes) and time.monotonic() - started < 3:
            return
    pytest.fail(f"The server did not warm up:\n{server.log_tail()}")


def _open_connections(server: Server) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [server.application_name])
        return cursor.fetchone()[0]


def _runserver(port: int) -> list[str]:
    return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]


def _documented_gunicorn(port: int) -> tuple[list[str], int]:
    """The web command of the README's "Production layout", bound to ``port``, and its number of processes."""
    match = re.search(r"`(gunicorn projectsite\.wsgi [^`]*)`", (ROOT / "README.md").read_text())
    assert match, "The README's Production layout names the gunicorn command"
    argv = shlex.split(match.group(1))
    workers = int(argv[argv.index("-w") + 1])
    return [str(Path(sys.executable).with_name("gunicorn")), *argv[1:], "--bind", f"127.0.0.1:{port}"], workers


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_runserver_keeps_at_most_the_pool_open_and_answers_503_when_every_connection_is_busy(session):
    port = _free_port()
    with _serve(_runserver(port), port, session, DEBUG="1", DATABASE_POOL_TIMEOUT="5") as server:
        statuses = _load(server, session)
        assert statuses == [200] * REQUESTS
        assert 1 <= _open_connections(server) <= POOL_MAX

        # Every pooled connection waits on a lock the test holds; the next request waits DATABASE_POOL_TIMEOUT
        # for a connection, then is told plainly that the site is busy (503), not a 500 page and not a hang.
        with psycopg.connect(_database_url(), autocommit=False) as locker:
            locker.execute("LOCK TABLE django_session IN ACCESS EXCLUSIVE MODE")
            with ThreadPoolExecutor(POOL_MAX + 2) as pool:
                futures = [pool.submit(_busy_get, server.url, session) for _ in range(POOL_MAX + 2)]
                done, _ = wait(futures, timeout=60, return_when=FIRST_COMPLETED)
                assert done, "Nobody was answered while the pool was exhausted"
                locker.rollback()  # let the waiting requests finish
                answers = [future.result() for future in futures]
    statuses = sorted(status for status, _ in answers)
    assert 500 not in statuses
    assert statuses.count(503) >= 2, statuses
    assert set(statuses) <= {200, 503}
    busy = next(body for status, body in answers if status == 503)
    assert busy == {"error": BUSY_MESSAGE}


def _busy_get(url: str, session: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(_request(url, session), timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_runserver_without_the_pool_leaks_connections_as_found(session):
    """The old settings (DATABASE_CONN_MAX_AGE=60, no pool) under runserver: the count passes the pool's size.

    This shows the measurement above can fail. The load stops once the leak is plain, so that the test does not
    use up the connections of a PostgreSQL it shares.
    """
    port = _free_port()
    with _serve(_runserver(port), port, session, DEBUG="1", DATABASE_POOL="0", DATABASE_CONN_MAX_AGE="60") as server:
        opened = 0
        for _ in range(REQUESTS // 25):
            assert _load(server, session, requests=25, clients=8) == [200] * 25
            opened = _open_connections(server)
            if opened > 2 * POOL_MAX:
                break
    assert opened > 2 * POOL_MAX


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_documented_gunicorn_command_keeps_at_most_the_pool_open_per_process(session):
    port = _free_port()
    command, workers = _documented_gunicorn(port)
    with _serve(command, port, session, DEBUG="0") as server:
        _warm_up(server, session, workers)
        statuses = _load(server, session)
        assert statuses == [200] * REQUESTS, server.log_tail()
        assert 1 <= _open_connections(server) <= POOL_MAX * workers


_FORK_SCRIPT = textwrap.dedent(
    """
    import os, threading
    import django

    django.setup()
    from django.db import connection

    def use():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        connection.close()  # back into the pool
        return pid

    def in_thread():
        result = []
        thread = threading.Thread(target=lambda: result.append(use()))
        thread.start()
        thread.join()
        return result[0]

    before = in_thread()
    child = os.fork()
    if child == 0:
        # What Celery's Django fixup does in a new prefork child (worker_process_init): close, close the pool.
        connection.close()
        connection.close_pool()
        use()
        os._exit(0)
    os.waitpid(child, 0)
    # The parent's session must still be alive on the server. (Comparing the pid of the next borrowed connection
    # is not enough: under load the pool may have opened a second connection, and it lends them in turn.)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [before])
        alive = cursor.fetchone()[0]
    connection.close()
    print(alive, connection.pool.get_stats().get("connections_lost", 0))
    """
)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_forked_worker_child_leaves_the_parents_pooled_connection_working():
    """A Celery prefork child that closes the pool it inherited must not end the parent's database sessions."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "projectsite.settings_test",
        "DATABASE_URL": _database_url(),
        "DATABASE_POOL": "1",
    }
    environment.pop("DATABASE_CONN_MAX_AGE", None)
    result = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    alive, lost = result.stdout.split()
    assert (alive, lost) == ("1", "0")


def _settings_with(monkeypatch, **env: str) -> dict:
    """The default database of projectsite/settings.py read with these environment variables."""
    for key in ("DATABASE_POOL", "DATABASE_POOL_MAX", "DATABASE_POOL_TIMEOUT", "DATABASE_CONN_MAX_AGE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(ROOT / "projectsite" / "settings.py"))["DATABASES"]["default"]


def test_postgresql_gets_a_pool_and_connections_that_go_back_to_it(monkeypatch):
    database = _settings_with(monkeypatch, DATABASE_URL="postgres://td@db:5432/td", DATABASE_POOL_MAX="5")
    assert database["CONN_MAX_AGE"] == 0
    assert database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 5, "timeout": 10}


def test_a_connection_age_with_the_pool_on_stops_start_up(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_POOL=0"):
        _settings_with(monkeypatch, DATABASE_URL="postgres://td@db:5432/td", DATABASE_CONN_MAX_AGE="60")


def test_without_the_pool_the_connection_age_applies_and_sqlite_is_unchanged(monkeypatch):
    database = _settings_with(
        monkeypatch, DATABASE_URL="postgres://td@db:5432/td", DATABASE_POOL="0", DATABASE_CONN_MAX_AGE="60"
    )
    assert database["CONN_MAX_AGE"] == 60 and "pool" not in database.get("OPTIONS", {})
    database = _settings_with(monkeypatch, DATABASE_URL="sqlite:////tmp/td.sqlite3")
    assert database["CONN_MAX_AGE"] == 60
    assert database["OPTIONS"] == {"timeout": 30, "transaction_mode": "IMMEDIATE"}
