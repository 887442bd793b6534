"""What one web process costs: the first request's time and the worker's memory under the README's gunicorn.

    .venv/bin/python bench/web_footprint.py                 # 5 fresh starts, medians
    .venv/bin/python bench/web_footprint.py --starts 1

Each start: a fresh gunicorn (`projectsite.wsgi -w 1 -k gthread --threads 8`, as the README's web row says, with
one worker) on the bench database. Once the worker has booted (Django set up; its CPU time stops moving), the
first GET /login/ is timed: Django imports the URL configuration, and with it every view, then. Then a
signed-in person opens the home page, the dataset list, a version page and the API's dataset list, and the
worker's RSS is read. Also printed: which machine-learning libraries the worker imported (read from
/proc/<pid>/maps: a library's shared objects are mapped once it is imported). Prints "name: value" lines.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402

LIBRARIES = ("torch", "transformers", "spacy", "thinc", "presidio_analyzer", "peft", "accelerate", "tokenizers")


def _seed(env: dict) -> None:
    script = (
        "import django; django.setup()\n"
        "from accounts.services import roles_sync; roles_sync()\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Group\n"
        "user = get_user_model().objects.create_user('bench', password='bench-pass-123')\n"
        "user.groups.set(Group.objects.all())\n"
        "import json, tempfile, pathlib\n"
        "from curation import services\n"
        "path = pathlib.Path(tempfile.mkdtemp()) / 'rows.jsonl'\n"
        "rows = (json.dumps({'q': f'Question {n}?', 'a': f'Answer {n}.'}) + '\\n' for n in range(500))\n"
        "path.write_text(''.join(rows))\n"
        "version = services.dataset_import(path=path, dataset_name='Bench', actor=user,"
        " mapping={'input': 'q', 'target': 'a'}).version\n"
        "print(version.pk)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    env["BENCH_VERSION"] = out.stdout.strip().splitlines()[-1]


def _libraries(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in LIBRARIES if re.search(rf"/site-packages/{name}/", maps)]


def one_start(env: dict, port: int) -> dict:
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "projectsite.wsgi", "-w", "1", "-k", "gthread", "--threads", "8",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        # The worker has booted (Django set up, models loaded) when it has a pid and its CPU time stops moving.
        worker, last = None, None
        while True:
            if proc.poll() is not None or time.monotonic() - started > 180:
                raise SystemExit("gunicorn did not start a worker")
            children = psutil.Process(proc.pid).children()
            if children:
                worker = children[0]
                busy = sum(worker.cpu_times()[:2])
                if busy == last:
                    break
                last = busy
            time.sleep(0.3)
        boot_seconds = time.monotonic() - started
        began = time.monotonic()
        first = requests.get(f"{base}/login/", timeout=120)
        first_seconds = time.monotonic() - began
        began = time.monotonic()
        requests.get(f"{base}/login/", timeout=120)
        second_seconds = time.monotonic() - began
        session = requests.Session()
        session.get(f"{base}/login/")
        login = session.post(
            f"{base}/login/",
            data={
                "username": "bench", "password": "bench-pass-123",
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/login/"},
        )  # fmt: skip
        assert login.ok, login.status_code
        pages = ["/", "/datasets/", f"/datasets/versions/{env['BENCH_VERSION']}/", "/api/v1/datasets/"]
        timings = {}
        for page in pages:
            began = time.monotonic()
            answer = session.get(base + page)
            timings[page] = (answer.status_code, time.monotonic() - began)
        return {
            "boot": boot_seconds,
            "second": second_seconds,
            "first": first_seconds,
            "first_status": first.status_code,
            "rss": worker.memory_info().rss / 2**20,
            "libraries": _libraries(worker.pid),
            "pages": timings,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database", default="tuningdesk_bench_web")
    args = parser.parse_args()
    database_url = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    ingest.database_fresh(database_url)  # emptied and migrated
    env = {
        **ingest.bench_env(database_url),
        "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
    }
    _seed(env)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    results = [one_start(env, args.port) for _ in range(args.starts)]
    for number, result in enumerate(results, 1):
        timed = result["pages"].items()
        pages = ", ".join(f"{page} {status} {seconds * 1000:.0f} ms" for page, (status, seconds) in timed)
        print(f"start {number}: worker booted after {result['boot']:.1f} s; first request {result['first']:.2f} s "
              f"(status {result['first_status']}), second {result['second'] * 1000:.0f} ms; "
              f"worker RSS {result['rss']:.0f} MB; then {pages}")  # fmt: skip
    print(f"first request to a booted worker, median s: {statistics.median(r['first'] for r in results):.2f}")
    print(f"worker RSS after the pages, median MB: {statistics.median(r['rss'] for r in results):.0f}")
    print(f"machine-learning libraries in the worker: {', '.join(results[-1]['libraries']) or 'none'}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
