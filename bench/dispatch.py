"""Enqueue → task start for training jobs, with Redis and an idle worker on the gpu queue's real settings.

    .venv/bin/python bench/dispatch.py                 # 100 jobs
    .venv/bin/python bench/dispatch.py --jobs 300

Each job is launched with `training.services.training_job_create` (the path of the form, the API and
`manage.py train`), which queues `training_job_run` on the `gpu` queue after the transaction commits. A
worker started here (`-Q gpu --concurrency 1`, prefetch 1, acks_late, reject_on_worker_lost, time limits:
the settings of production) claims it. The figure is the time from the moment the launch transaction
committed to the worker's atomic claim (the job's `started_at`), both taken with the same clock on this
machine. The base model points at a folder that does not exist, so each job fails at once after its
claim and the worker is idle again before the next launch (one job at a time: no queueing delay).

Needs PostgreSQL (database `tuningdesk_bench_dispatch`, emptied and migrated) and Redis (db 13, flushed).
Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import bench_env, database_fresh  # noqa: E402

BROKER = "redis://127.0.0.1:6379/13"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tuningdesk_bench_dispatch")
    args = parser.parse_args()

    database_fresh(args.database_url)
    env = {**bench_env(args.database_url), "CELERY_BROKER_URL": BROKER}
    os.environ.update(env)
    import redis

    redis.Redis.from_url(BROKER).flushdb()

    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from curation.models import Dataset, DatasetVersion, Example
    from training import services
    from training.models import BaseModel, TrainingJob

    dataset = Dataset.objects.create(name="dispatch bench")
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        status=DatasetVersion.Status.READY,
        operation=DatasetVersion.Operation.IMPORT,
        privacy=DatasetVersion.Privacy.APPROVED,
        row_count=1,
    )
    Example.objects.create(
        version=version,
        row_index=1,
        source_line=1,
        input="hi",
        target="hello",
        split="train",
        row_hash="x",
        text_hash="x",
    )
    base = BaseModel.objects.create(
        name="missing",
        source=str(ROOT / "var" / "bench" / "no-such-model"),
        architecture="LlamaForCausalLM",
        model_type="llama",
        parameter_count=1,
        task_types=["sft"],
    )

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "projectsite",
            "worker",
            "-Q",
            "gpu",
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            "-n",
            "bench-dispatch@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    threading.Thread(target=lambda: [None for _ in worker.stdout], daemon=True).start()
    try:
        time.sleep(8)  # the worker connects and imports its tasks
        print(f"machine: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        latencies = []
        for index in range(args.jobs + 5):
            with transaction.atomic():
                job = services.training_job_create(version=version, base_model=base, actor=None, preset="quick")
            committed = timezone.now()
            deadline = time.monotonic() + 60
            while True:
                job.refresh_from_db(fields=["status", "started_at"])
                if job.status in (TrainingJob.Status.FAILED, TrainingJob.Status.SUCCEEDED):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job.pk} was not picked up within 60 s")
                time.sleep(0.005)
            if index >= 5:  # the first few warm up the worker's imports and connections
                latencies.append((job.started_at - committed).total_seconds() * 1000)
            time.sleep(0.05)
        print(f"jobs: {len(latencies)}")
        print(f"enqueue_to_start_p50_ms: {percentile(latencies, 0.50):.1f}")
        print(f"enqueue_to_start_p95_ms: {percentile(latencies, 0.95):.1f}")
        print(f"enqueue_to_start_p99_ms: {percentile(latencies, 0.99):.1f}")
        print(f"enqueue_to_start_max_ms: {max(latencies):.1f}")
        print(f"enqueue_to_start_mean_ms: {statistics.fmean(latencies):.1f}")
        print(f"load_at_end: {os.getloadavg()[0]:.2f}")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


if __name__ == "__main__":
    main()
