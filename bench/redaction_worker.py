"""A long detection run on a real Celery worker whose pool process is recycled by --max-memory-per-child.

    .venv/bin/python bench/redaction_worker.py                                   # 200k rows, tasks of 50k, 2 recycles
    .venv/bin/python bench/redaction_worker.py --rows 20000 --rows-per-task 5000 # a short look
    .venv/bin/python bench/redaction_worker.py --max-memory-mb 1500              # the limit the README suggests

What runs is the product's own path: bench/redaction.py's ticket texts (about 80 words, all with planted
personal data) are imported with `dataset_import` into a fresh PostgreSQL database, a detection run is queued,
and one `celery worker --concurrency 1 --max-memory-per-child KB` takes it. The run hands over to a fresh task
every --rows-per-task rows (TUNINGDESK_REDACTION_ROWS_PER_TASK); Celery replaces the pool process after a task
that left it above the limit. The parent samples every pool process's RSS each second and prints, per process,
the rows it processed and its peak RSS.

By default the limit is set below the warm RSS of a worker (about 600 MB), so every task ends in a recycle:
200,000 rows in tasks of 50,000 show the run passing through fresh processes with the peak bounded by what one
task adds. Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402

QUEUE = "bench-redaction"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rows-per-task", type=int, default=50_000)
    parser.add_argument("--max-memory-mb", type=float, default=400, help="Celery's --max-memory-per-child, in MB")
    parser.add_argument("--database", default="tuningdesk_bench_redaction_worker")
    args = parser.parse_args()

    # Prints the machine, empties and migrates the bench database, sets Django up on it; the worker inherits the
    # environment, with the hand-over size below.
    ingest.django_in_fresh_database(f"postgres://postgres@127.0.0.1:5432/{args.database}")
    os.environ["TUNINGDESK_REDACTION_ROWS_PER_TASK"] = str(args.rows_per_task)
    import psutil
    from django.contrib.auth import get_user_model
    from redaction import TicketStream

    from accounts.services import roles_sync
    from curation import services
    from curation.models import RedactionRun
    from curation.services import redaction_config_clean
    from curation.tasks import redaction_run_task
    from projectsite.celery import app

    roles_sync()
    curator = get_user_model().objects.create_user("bench-curator")
    print(f"rows: {args.rows}; rows per task: {args.rows_per_task}; --max-memory-per-child: {args.max_memory_mb} MB")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tickets.jsonl"
        with path.open("w") as out:
            for text in TicketStream()(args.rows):
                out.write(json.dumps({"text": text, "reply": "Thank you, we are on it."}) + "\n")
        started = time.monotonic()
        version = services.dataset_import(
            path=path, dataset_name="Bench tickets", actor=curator, mapping={"input": "text", "target": "reply"}
        ).version
        print(f"import seconds: {time.monotonic() - started:.1f} ({version.row_count} rows)")

    app.control.purge()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "projectsite", "worker", "-Q", QUEUE, "--concurrency", "1",
         "--max-memory-per-child", str(int(args.max_memory_mb * 1024)), "--loglevel", "INFO",
         "--without-mingle", "--without-gossip", "-n", f"bench-{os.getpid()}@%h"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(worker.stdout), daemon=True).start()
    run = RedactionRun.objects.create(version=version, config=redaction_config_clean(None), created_by=curator)
    redaction_run_task.apply_async(args=[run.pk], queue=QUEUE)

    started = time.monotonic()
    peaks: dict[int, float] = {}
    first_row: dict[int, int] = {}
    last_report = -1
    try:
        while True:
            run.refresh_from_db()
            try:
                children = psutil.Process(worker.pid).children()
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                try:
                    rss = child.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                if child.pid not in peaks:
                    first_row[child.pid] = run.processed
                    print(f"pool process {len(peaks) + 1} (pid {child.pid}) from row: {run.processed}", flush=True)
                peaks[child.pid] = max(peaks.get(child.pid, 0.0), rss)
            tenth = int(10 * run.processed / max(version.row_count, 1))
            if tenth != last_report:
                last_report = tenth
                seconds = time.monotonic() - started
                print(f"rows done: {run.processed} after {seconds:.0f} s", flush=True)
            if run.status in (RedactionRun.Status.REVIEW, RedactionRun.Status.FAILED):
                break
            if worker.poll() is not None:
                raise SystemExit("The worker stopped:\n" + "".join(log[-40:]))
            time.sleep(1)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)
    seconds = time.monotonic() - started
    succeeded = [line for line in log if "redaction_run_task" in line and "succeeded" in line]
    print(f"status: {run.status} {run.error}")
    rate = run.processed / seconds
    print(f"rows: {run.processed}; findings: {run.finding_count}; seconds: {seconds:.0f}; rows/s: {rate:.1f}")
    print(f"tasks: {len(succeeded)}; pool processes: {len(peaks)} (recycles: {max(len(peaks) - 1, 0)})")
    for number, (pid, peak) in enumerate(peaks.items(), 1):
        print(f"pool process {number}: from row {first_row[pid]}, peak RSS {peak:.1f} MB")
    print(f"peak RSS of any pool process: {max(peaks.values(), default=0):.1f} MB")
    return 0 if run.status == RedactionRun.Status.REVIEW else 1


if __name__ == "__main__":
    raise SystemExit(main())
