"""Browse latency of the REST API under 50 concurrent clients, against a 1M-row version, on a real server.

Starts gunicorn (the production WSGI server) on 127.0.0.1 against the bench database, signs clients in
with POST /api/v1/auth/token/, and lets each client page through the examples of one version at some
depth (from the start, or from a cursor deep in the version, with and without filters), opening a few
examples on each page. Stops the server and every client at the end, whatever happens.

    .venv/bin/python bench/api_load.py                 # 50 clients, 60 s, 1M-row version (imports it if missing)
    .venv/bin/python bench/api_load.py --rows 100000 --duration 20 --clients 20    # quick run
    .venv/bin/python bench/api_load.py --think 0.5     # clients pause 0-1 s between requests, like people

Prints plain "name: value" lines. The version comes from bench/ingest.py's generated data; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402  (the bench helpers: data files, database, environment)

ROOT = ingest.ROOT
USERS = 10
PASSWORD = "bench-password-not-secret-42"  # noqa: S105 (a throwaway user in the throwaway bench database)
# Where a page starts, by the row_index of its first row.
BUCKETS = (
    (0, 1_000, "first 1k rows"),
    (1_000, 100_000, "rows 1k-100k"),
    (100_000, 500_000, "rows 100k-500k"),
    (500_000, 10**12, "rows 500k+"),
)


# --- set-up (in a child interpreter with Django) -------------------------------------------------


SETUP_CHILD = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
from accounts.services import user_create
from curation.models import DatasetVersion
rows, users, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
version = (DatasetVersion.objects.filter(status="ready", row_count__gte=rows * 0.95, row_count__lte=rows)
           .order_by("-row_count", "id").first())
if version is None:
    print(json.dumps({"version": None}))
    sys.exit(0)
for n in range(users):
    name = f"bench-curator-{n}"
    if not get_user_model().objects.filter(username=name).exists():
        user_create(username=name, password=password, roles=["curator"])
with connection.cursor() as cursor:
    cursor.execute("ANALYZE curation_example")  # what autovacuum does within a minute of a large import
    cursor.execute("SELECT max(id) FROM curation_example WHERE version_id = %s", [version.pk])
    (max_id,) = cursor.fetchone()
    cursor.execute("SELECT min(id) FROM curation_example WHERE version_id = %s", [version.pk])
    (min_id,) = cursor.fetchone()
print(json.dumps({"version": version.pk, "rows": version.row_count, "min_id": min_id, "max_id": max_id}))
"""


def prepare(args) -> dict:
    env = ingest.bench_env(args.database_url)

    def setup() -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", SETUP_CHILD, str(args.rows), str(USERS), PASSWORD],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit("set-up failed")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    info = None
    if not args.fresh:
        try:
            info = setup()
        except SystemExit:
            info = None  # no bench database yet
    if not info or info["version"] is None:
        print(f"importing {args.rows:,} rows into a fresh bench database first (bench/ingest.py's data)")
        ingest.database_fresh(args.database_url)
        ingest.import_once(args.database_url, ingest.data_file(args.rows), "bench-api")
        info = setup()
    return info


# --- server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_start(args, port: int) -> subprocess.Popen:
    env = {
        **ingest.bench_env(args.database_url),
        "DEBUG": "0",  # as in production: no query log, no debug pages
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "API_TOKEN_RATE": "1000/min",
    }
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "projectsite.wsgi",
        "-w",
        str(args.workers),
        "-k",
        "gthread",
        "--threads",
        str(args.threads),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    log = ingest.BENCH_DIR / "gunicorn.log"  # its warnings (a 401 line per readiness probe) stay out of the figures
    # Its own process group, so that stopping it stops its workers too.
    with open(log, "w") as handle:
        return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=handle, stderr=handle)


def server_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/api/v1/me/", timeout=2).status_code in (401, 403):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer within a minute")


# --- clients ------------------------------------------------------------------------------------


def cursor_after(row_index: int) -> str:
    """A cursor for "rows after row_index": the format of DRF's CursorPagination, which this API uses
    (what a client that kept a `next` link from an earlier session would send)."""
    return base64.b64encode(urlencode({"p": str(row_index)}).encode()).decode()


class Stats:
    def __init__(self):
        self.lists: dict[str, list[float]] = {label: [] for _, _, label in BUCKETS}
        self.filtered: list[float] = []
        self.examples: list[float] = []
        self.errors: list[str] = []
        self.requests = 0
        self.retried = 0

    def list_page(self, seconds: float, first_row: int | None, filtered: bool) -> None:
        if filtered:
            self.filtered.append(seconds)
        for low, high, label in BUCKETS:
            if first_row is not None and low <= first_row < high:
                self.lists[label].append(seconds)
                return
        if first_row is None:
            self.lists[BUCKETS[0][2]].append(seconds)

    def all_lists(self) -> list[float]:
        return [value for values in self.lists.values() for value in values]


FILTERS = ({"split": "test"}, {"split": "validation"}, {"group": "enterprise"}, {"flag": "4"})


async def _get(http, stats: Stats, target: str, params: dict | None = None) -> tuple[dict | None, float]:
    """One GET: its JSON body (None on an error, which is counted in stats) and its time in seconds."""
    import httpx

    started = time.perf_counter()
    try:
        try:
            response = await http.get(target, params=params)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # The server closed a kept-alive connection as the request went out (gunicorn does when
            # its keep-alive timer fires while it is busy). A GET is safe to send again, and browsers
            # and HTTP libraries do so on a fresh connection; counted, and its time included.
            stats.retried += 1
            response = await http.get(target, params=params)
    except httpx.HTTPError as exc:
        stats.requests += 1
        stats.errors.append(f"{target}: {type(exc).__name__}")
        return None, time.perf_counter() - started
    elapsed = time.perf_counter() - started
    stats.requests += 1
    if response.status_code != 200:
        stats.errors.append(f"{target}: HTTP {response.status_code}")
        return None, elapsed
    return response.json(), elapsed


async def client(number: int, base: str, token: str, info: dict, stats: Stats, deadline: float, args) -> None:
    import httpx

    rng = random.Random(number)
    rows = info["rows"]
    headers = {"Authorization": f"Token {token}"}
    url = f"{base}/api/v1/versions/{info['version']}/examples/"
    # Idle connections are dropped after 1 s, before gunicorn's keep-alive of 2 s ends them: otherwise a request
    # sent on a connection the server is closing fails (as a browser would quietly retry, but httpx does not).
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as http:

        async def pause():
            if args.think:
                await asyncio.sleep(rng.uniform(0, 2 * args.think))

        while time.monotonic() < deadline and stats.requests < args.max_requests:
            # A session: start at the top or somewhere deep, maybe filtered, then follow `next` a few pages.
            params: dict = dict(rng.choice(FILTERS)) if rng.random() < 0.25 else {}
            if rng.random() < 0.2:
                start = None
            else:
                start = int(rows * rng.random() ** 0.5)  # more sessions deep than shallow
                params["cursor"] = cursor_after(start)
            target, first = url, True
            for _ in range(rng.randint(3, 12)):
                if time.monotonic() >= deadline:
                    return
                page, elapsed = await _get(http, stats, target, params if first else None)
                first = False
                if page is None:
                    break
                results = page["results"]
                stats.list_page(
                    elapsed,
                    results[0]["row_index"] if results else start,
                    filtered="split" in params or "group" in params or "flag" in params,
                )
                await pause()
                for example in rng.sample(results, min(len(results), rng.randint(0, 3))):
                    body, elapsed = await _get(http, stats, f"{base}/api/v1/examples/{example['id']}/")
                    if body is not None:
                        stats.examples.append(elapsed)
                    await pause()
                if rng.random() < 0.1 and page.get("previous"):
                    target = page["previous"]
                elif page.get("next"):
                    target = page["next"]
                else:
                    break


async def warm_up(base: str, tokens: list[str], info: dict, args) -> None:
    """Requests in parallel until every worker thread has loaded its code and opened its database connection."""
    import httpx

    url = f"{base}/api/v1/versions/{info['version']}/examples/"
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(2):
            await asyncio.gather(
                *(
                    http.get(url, headers={"Authorization": f"Token {tokens[n % len(tokens)]}"})
                    for n in range(args.workers * args.threads)
                )
            )


async def load(base: str, tokens: list[str], info: dict, args) -> tuple[Stats, float]:
    await warm_up(base, tokens, info, args)
    stats = Stats()
    deadline = time.monotonic() + args.duration
    started = time.perf_counter()

    async def ramped(number: int) -> None:
        # Clients join one after another over the ramp-up, as people arrive, not all in the same millisecond.
        await asyncio.sleep(args.ramp * number / args.clients)
        await client(number, base, tokens[number % len(tokens)], info, stats, deadline, args)

    tasks = [asyncio.create_task(ramped(n)) for n in range(args.clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.duration + 60)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        stats.errors.append("clients still waiting 60 s after the end; cancelled")
    return stats, time.perf_counter() - started


def percentiles(values: list[float]) -> str:
    if not values:
        return "no requests"
    ordered = sorted(values)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return f"p50 {at(0.50):.0f} ms, p95 {at(0.95):.0f} ms, p99 {at(0.99):.0f} ms (n={len(ordered)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the version to browse (default 1M)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean pause in seconds between a client's requests (default 0: back to back)",
    )
    parser.add_argument("--ramp", type=float, default=5, help="seconds over which the clients join (default 5)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--fresh", action="store_true", help="always re-create the bench database and import")
    parser.add_argument("--database-url", default=f"postgres://postgres@127.0.0.1:5432/{ingest.DEFAULT_DB}")
    args = parser.parse_args()

    import httpx

    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"load average at start {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)"
    )
    info = prepare(args)
    print(f"version: #{info['version']} with {info['rows']:,} rows")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = server_start(args, port)
    try:
        wait_ready(base, server)
        print(f"server: gunicorn -w {args.workers} -k gthread --threads {args.threads}, DEBUG=0, port {port}")
        tokens = []
        for n in range(USERS):
            response = httpx.post(
                f"{base}/api/v1/auth/token/", json={"username": f"bench-curator-{n}", "password": PASSWORD}, timeout=30
            )
            response.raise_for_status()
            tokens.append(response.json()["token"])
        print(
            f"load: {args.clients} clients joining over {args.ramp:g} s, {args.duration:.0f} s, think time "
            f"{'none' if not args.think else f'0-{2 * args.think:g} s'}, {USERS} users signed in with tokens"
        )
        stats, seconds = asyncio.run(load(base, tokens, info, args))
    finally:
        server_stop(server)
    print(f"requests: {stats.requests} in {seconds:.1f} s = {stats.requests / seconds:.0f} requests/s")
    print(f"errors: {len(stats.errors)}" + (f" (first: {stats.errors[:3]})" if stats.errors else ""))
    print(f"requests sent again after the server closed a kept-alive connection: {stats.retried}")
    for _, _, label in BUCKETS:
        print(f"list pages, {label}: {percentiles(stats.lists[label])}")
    print(f"list pages, filtered (split/group/flag): {percentiles(stats.filtered)}")
    print(f"list pages, all: {percentiles(stats.all_lists())}")
    print(f"example pages: {percentiles(stats.examples)}")
    worst = max((sorted(v)[min(len(v) - 1, int(0.95 * len(v)))] for v in stats.lists.values() if v), default=0)
    met = worst <= 0.200 and not stats.errors
    print(
        f"goal p95 <= 200 ms for list pages at every depth, 0 errors: {'met' if met else 'NOT met'} "
        f"(worst bucket p95 {worst * 1000:.0f} ms, {len(stats.errors)} errors)"
    )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
