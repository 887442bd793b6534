#!/usr/bin/env python3
"""Install and run a real, local Label Studio server (for integration tests and by hand).

Label Studio pins its own Django, redis and friends, so it lives in its own virtual
environment under ``var/label-studio/venv`` and never touches the project's ``.venv``.

    python scripts/label_studio.py install   # once; a few minutes
    python scripts/label_studio.py serve     # prints URL and token; Ctrl-C stops

From Python (stdlib only, importable from tests)::

    from scripts.label_studio import LabelStudioServer

    with LabelStudioServer() as ls:
        client = LabelStudio(base_url=ls.url, api_key=ls.token)

Each server gets a free port on 127.0.0.1, a fresh data directory (SQLite database,
media, HOME) under ``var/label-studio/runs/`` that is removed on exit, a known user and
a legacy API token. Its database starts as a copy of an empty, already migrated one
(``var/label-studio/templates/``, built once per version), which cuts a start from
about 50 s to a few seconds. Telemetry, Sentry and the PyPI version check are switched off, and
the server is started with a whitelisted environment, so nothing of the calling
Django project (DJANGO_SETTINGS_MODULE, DATABASE_*, CI, PORT, USERNAME, ...) leaks in.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_ROOT / "var" / "label-studio"
# Verified end to end (install, start, SDK 2.1.2 round trip): see docs/label-studio.md.
DEFAULT_VERSION = "1.23.2"

DEFAULT_USERNAME = "tuning-desk@localhost"  # Label Studio users are e-mail addresses
STAMP_NAME = ".tuning-desk-installed"
INSTALL_TIMEOUT_S = 1800
LOG_TAIL_LINES = 60
SETTINGS_MODULE = "label_studio.core.settings.label_studio"
DATABASE_FILE = "label_studio.sqlite3"  # Label Studio's default name inside its data dir


class LabelStudioError(RuntimeError):
    """Label Studio could not be installed, started or stopped."""


class LabelStudioInstallError(LabelStudioError):
    pass


class LabelStudioStartError(LabelStudioError):
    pass


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _venv_paths(root: Path) -> tuple[Path, Path, Path]:
    venv = root / "venv"
    return venv, venv / "bin" / "python", venv / "bin" / "label-studio"


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('label-studio'))"
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _run_logged(command: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        try:
            done = subprocess.run(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT_S,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabelStudioInstallError(
                f"{what} did not finish within {INSTALL_TIMEOUT_S} s; log {log}:\n{_tail(log.read_text())}"
            ) from exc
        except OSError as exc:
            raise LabelStudioInstallError(f"{what} could not run ({exc}); command: {command}") from exc
    if done.returncode != 0:
        raise LabelStudioInstallError(
            f"{what} failed with exit code {done.returncode}; log {log}, last lines:\n{_tail(log.read_text())}"
        )


def ensure_installed(root: Path = DEFAULT_ROOT, version: str = DEFAULT_VERSION) -> Path:
    """Install label-studio==version into root/venv once; return its ``label-studio`` executable.

    A stamp file in the venv records the installed version; a different pin reinstalls.
    Concurrent callers (pytest-xdist workers) wait on a lock file. Any failure raises
    LabelStudioInstallError with the tail of the pip log.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    venv, python, executable = _venv_paths(root)
    stamp = venv / STAMP_NAME

    with (root / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text().strip() == version and executable.exists():
            return executable

        log = root / "install.log"
        log.write_text(f"Installing label-studio=={version} into {venv} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        if _installed_version(python) is None and python.exists():
            # The venv's python no longer runs (base interpreter moved), or an earlier install
            # failed half-way and left no label-studio: start over rather than guess.
            shutil.rmtree(venv)
        if not python.exists():
            _run_logged([sys.executable, "-m", "venv", str(venv)], log, "Creating the Label Studio venv")
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PIP_USER"}}
        _run_logged(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", f"label-studio=={version}"],
            log,
            f"pip install label-studio=={version}",
            env=env,
        )
        found = _installed_version(python)
        if found != version or not executable.exists():
            raise LabelStudioInstallError(
                f"pip reported success but the venv has label-studio {found!r} (wanted {version!r}) "
                f"and {executable} {'exists' if executable.exists() else 'is missing'}; log {log}:\n"
                f"{_tail(log.read_text())}"
            )
        stamp.write_text(version + "\n")
        return executable


def _server_environment(executable: Path, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A whitelisted environment: nothing of the caller's Django project leaks in.

    Label Studio reads LABEL_STUDIO_X, then HEARTEX_X, then plain X for most settings, so a
    caller's DJANGO_SETTINGS_MODULE, DATABASE_NAME, PORT, USERNAME, CI, DEBUG ... would change it.
    """
    env = {
        "PATH": f"{executable.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(data_dir / "home"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        # Nothing leaves the machine: no telemetry, no Sentry, no PyPI version check.
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
    }
    env.update(extra or {})
    for name in ("TMPDIR", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def migrated_template(executable: Path, root: Path = DEFAULT_ROOT, version: str = DEFAULT_VERSION) -> Path:
    """An empty, fully migrated Label Studio SQLite database, built once per version.

    Migrating a fresh database is ~45 s of the ~50 s a first start takes; each server copies
    this file into its fresh data dir instead. (A stale copy would still be migrated on start.)
    """
    root = Path(root)
    target = root / "templates" / f"label_studio-{version}.sqlite3"
    with (root / ".template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix="template-", dir=root))
        try:
            (build / "home").mkdir()
            log = build / "migrate.log"
            with log.open("wb") as handle:
                try:
                    # Any command migrates first; `version` then only prints.
                    done = subprocess.run(
                        [str(executable), "version", "--data-dir", str(build)],
                        env=_server_environment(executable, build),
                        cwd=build,
                        stdin=subprocess.DEVNULL,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        timeout=INSTALL_TIMEOUT_S,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise LabelStudioStartError(
                        f"migrating the template database took over {INSTALL_TIMEOUT_S} s:\n{_tail(log.read_text())}"
                    ) from exc
            database = build / DATABASE_FILE
            if done.returncode != 0 or not database.exists():
                raise LabelStudioStartError(
                    f"`label-studio version` (migrating a template database) exited with {done.returncode}"
                    f"{'' if database.exists() else ' and left no ' + DATABASE_FILE}:\n{_tail(log.read_text())}"
                )
            partial = target.with_suffix(".partial")
            shutil.copyfile(database, partial)
            os.replace(partial, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        return target


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def generate_token() -> str:
    """40 lowercase hex characters: the shape of a Django REST framework token key."""
    return secrets.token_hex(20)


_RUNNING: weakref.WeakSet[LabelStudioServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop()


class LabelStudioServer:
    """A real Label Studio on 127.0.0.1 with a fresh data directory, as a context manager.

    Attributes once started: ``url`` (no trailing slash), ``token`` (legacy API token, use
    as the SDK's ``api_key``), ``username``, ``password``, ``port``, ``data_dir``, ``log_path``.
    """

    def __init__(
        self,
        *,
        root: Path = DEFAULT_ROOT,
        version: str = DEFAULT_VERSION,
        executable: Path | None = None,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
        token: str | None = None,
        port: int | None = None,
        startup_timeout: float = 180.0,
        stop_timeout: float = 20.0,
        log_level: str = "WARNING",
        use_template: bool = True,
    ) -> None:
        self.root = Path(root)
        self.version = version
        self.executable = Path(executable) if executable else None
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        self.token = token or generate_token()
        self.port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self.use_template = use_template
        self.host = "127.0.0.1"
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle = None

    # -- public ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise LabelStudioError("the server has no port yet; call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> LabelStudioServer:
        if self._proc is not None:
            raise LabelStudioError("this LabelStudioServer is already started")
        executable = self.executable or ensure_installed(self.root, self.version)
        # The template is keyed by version, so only for the install this class manages.
        template = migrated_template(executable, self.root, self.version) if self._templated else None
        runs = self.root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(tempfile.mkdtemp(prefix="ls-", dir=runs))
        (self.data_dir / "home").mkdir()
        if template is not None:
            shutil.copyfile(template, self.data_dir / DATABASE_FILE)
        self.log_path = self.data_dir / "server.log"
        if self.port is None:
            self.port = free_port(self.host)

        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--enable-legacy-api-token",
            "--log-level",
            self.log_level,
        ]
        self._log_handle = self.log_path.open("wb")
        began = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                command,
                env=_server_environment(
                    executable,
                    self.data_dir,
                    {
                        # Read by `label-studio start`, which creates this user (and its organization).
                        "LABEL_STUDIO_USERNAME": self.username,
                        "LABEL_STUDIO_PASSWORD": self.password,
                        "LABEL_STUDIO_USER_TOKEN": self.token,
                        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                    },
                ),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        except OSError as exc:
            self._cleanup()
            raise LabelStudioStartError(f"could not run {executable}: {exc}") from exc
        _RUNNING.add(self)
        try:
            self._wait_until_ready(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after stop_timeout; remove the data dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _RUNNING.discard(self)
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=30)
            # Children that outlived the leader (none expected with runserver --noreload).
            self._signal_group(proc, signal.SIGKILL)
        self._cleanup()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return _tail(self.log_path.read_text(encoding="utf-8", errors="replace"), lines)

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    @property
    def _templated(self) -> bool:
        return self.use_template and self.executable is None

    def _get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path)  # noqa: S310 (http://127.0.0.1 only)
        if token:
            request.add_header("Authorization", f"Token {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _wait_until_ready(self, began: float) -> None:
        deadline = began + self.startup_timeout
        last_error = "no answer yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LabelStudioStartError(
                    f"Label Studio exited with code {code} before answering on {self.url}; "
                    f"log {self.log_path}, last lines:\n{self.log_tail()}"
                )
            try:
                status, body = self._get("/api/version")
                if status == 200:
                    self._check_identity(json.loads(body))
                    return
                last_error = f"/api/version answered HTTP {status}"
            except (OSError, ValueError) as exc:  # refused, reset, timeout, not JSON yet
                last_error = f"{type(exc).__name__}: {exc}"
            if f"Port {self.port} is in use" in self.log_tail(200):
                # Label Studio then quietly starts on another port; ours would never answer.
                raise LabelStudioStartError(
                    f"port {self.port} on {self.host} was taken before Label Studio bound it; "
                    f"log {self.log_path}, last lines:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LabelStudioStartError(
                    f"Label Studio did not answer on {self.url}/api/version within {self.startup_timeout:.0f} s "
                    f"(last: {last_error}); log {self.log_path}, last lines:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def _check_identity(self, version_info: dict) -> None:
        """The port is really ours (Label Studio silently moves to port+1 when the port is taken)."""
        status, body = self._get("/api/current-user/whoami", self.token)
        if status != 200:
            raise LabelStudioStartError(
                f"{self.url} answers /api/version but rejects the token (HTTP {status}: {body[:300]!r}); "
                f"another server on the port? log {self.log_path}, last lines:\n{self.log_tail()}"
            )
        email = json.loads(body).get("email")
        if email != self.username:
            raise LabelStudioStartError(f"{self.url} is a Label Studio for {email!r}, not {self.username!r}")
        found = (version_info.get("label-studio-os-package") or {}).get("version")
        if found and found != self.version and self.executable is None:
            raise LabelStudioStartError(f"{self.url} runs Label Studio {found}, expected {self.version}")

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _cleanup(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the venv and run dirs live")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="label-studio version to install")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install Label Studio into its own venv and migrate a template DB (once)")
    serve = commands.add_parser("serve", help="start a throwaway server; Ctrl-C stops it")
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    serve.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the first answer")
    args = parser.parse_args(argv)

    began = time.monotonic()
    try:
        executable = ensure_installed(args.root, args.version)
    except LabelStudioInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "install":
        print(f"label-studio {args.version}: {executable} ({time.monotonic() - began:.0f} s)")
        began = time.monotonic()
        try:
            template = migrated_template(executable, args.root, args.version)
        except LabelStudioStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"migrated template database: {template} ({time.monotonic() - began:.0f} s)")
        return 0

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the server as cleanly as Ctrl-C does
    server = LabelStudioServer(root=args.root, version=args.version, port=args.port, startup_timeout=args.timeout)
    try:
        with server:
            print(f"Label Studio {args.version} is up after {server.startup_seconds:.1f} s")
            print(f"  URL:      {server.url}")
            print(f"  token:    {server.token}")
            print(f"  username: {server.username}")
            print(f"  password: {server.password}")
            print(f"  log:      {server.log_path}")
            print("Ctrl-C stops it and deletes its data.", flush=True)
            while server._proc is not None and server._proc.poll() is None:
                time.sleep(1)
            print(f"error: Label Studio exited on its own; last log lines:\n{server.log_tail()}", file=sys.stderr)
            return 1
    except LabelStudioStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopped.")
        return 0


if __name__ == "__main__":
    sys.exit(_main())
