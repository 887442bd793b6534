"""scripts/run_demo.sh (what `make run` starts after seeding): the address only once the server answers,
and Ctrl-C at a terminal stops everything and exits 0 (so make reports no error).

The script runs for real (web server, Celery worker and beat) on a SQLite database and a filesystem
broker in a temporary folder; Ctrl-C is a real ^C typed on a pseudo-terminal, as a person would.
"""

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "run_demo.sh"
READY = b"Tuning Desk is running at "

pytestmark = [pytest.mark.worker, pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, port: int) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(TUNINGDESK_VAR_DIR=str(tmp_path / "var"), PORT=str(port), DEBUG="1", START_TIMEOUT="90")
    return env


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _read_until(fd: int, needle: bytes, seconds: float, sink: bytearray) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the terminal closed: everything on it has exited
                return needle in sink
            if not data:
                return needle in sink
            sink.extend(data)
            if needle in sink:
                return True
    return needle in sink


def test_ctrl_c_at_a_terminal_stops_everything_and_exits_0(tmp_path):
    port = _free_port()
    env = _env(tmp_path, port)
    subprocess.run([str(ROOT / ".venv/bin/python"), "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    url = f"http://127.0.0.1:{port}/"
    pid, fd = pty.fork()
    if pid == 0:  # the child: a fresh session whose terminal is the pseudo-terminal, like a shell's job
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(ROOT)
        os.execvpe("bash", ["bash", str(SCRIPT)], env)  # noqa: S606 (a fixed command)
    output = bytearray()
    try:
        assert _read_until(fd, READY, 120, output), output.decode(errors="replace")
        # Printed only once the server answers: it answers at once.
        assert _answers(url)
        assert f"running at {url} ".encode() in output
        time.sleep(1)
        os.write(fd, b"\x03")  # Ctrl-C
        _read_until(fd, b"Stopped.", 30, output)
        _read_until(fd, b"never printed", 2, output)
    finally:
        deadline = time.monotonic() + 30
        while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        if waited == (0, 0):
            os.kill(pid, signal.SIGKILL)
            waited = os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(waited[1]) == 0, text
    assert "Stopping Tuning Desk..." in text and "Stopped." in text
    assert "Traceback" not in text
    assert not _answers(url)
