"""Importing a KPI file: the web request that queues it, and the worker's check and write.

    .venv/bin/python bench/kpi_import.py                 # 40,000 lines
    .venv/bin/python bench/kpi_import.py --lines 200000

A CSV of ``--lines`` weekly figures (one KPI, one model, a hundred customer segments) is sent to
``POST /api/v1/kpi-observations/`` as a multipart file through Django's test client, in this process: the request
stores the file and queues the run. Then ``kpi_import_run_execute`` (what the worker does): every line checked, then
all figures written in one transaction. Before, the whole import ran inside the request (a 40,000-line file took
112 s: two queries per line). Last, the same lines as JSON text through ``kpi_import_csv`` (the path still used
for pasted rows), for comparison.

Needs PostgreSQL (database `tuningdesk_bench_kpi`, emptied and migrated). Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import django_in_fresh_database  # noqa: E402

HEADER = "kpi,model,period_start,period_end,segment,value,sample_size\n"


def lines(count: int, model: str, start: dt.date) -> str:
    out = []
    for i in range(count):
        week = start + dt.timedelta(weeks=i // 100)
        out.append(f"csat,{model},{week},{week + dt.timedelta(days=6)},segment-{i % 100},4.{i % 10},{100 + i % 50}\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=40_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tuningdesk_bench_kpi")
    args = parser.parse_args()

    django_in_fresh_database(args.database_url)
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from accounts.services import roles_sync, user_create
    from evaluation import services
    from evaluation.models import KpiObservation
    from training.models import BaseModel

    setup_test_environment()  # the test client's host; nothing else of the test setup
    roles_sync()
    engineer = user_create(username="bench-engineer", password="bench-pass-123", roles=["engineer"])
    BaseModel.objects.create(
        name="bench-base", source="/models/bench", architecture="Llama", model_type="llama", parameter_count=1
    )
    services.kpi_ensure(slug="csat", name="Customer satisfaction", unit="points", higher_is_better=True)
    text = HEADER + lines(args.lines, "bench-base", dt.date(2000, 1, 3))
    print(f"lines: {args.lines:,}")
    print(f"file_bytes: {len(text.encode()):,}")

    client = Client()
    client.force_login(engineer)
    # A first request loads the URLs and every app's modules (training imports torch), as a server does at start.
    url = reverse("api-kpi-observations")
    client.get(url, secure=True)
    upload = SimpleUploadedFile("kpis.csv", text.encode(), content_type="text/csv")
    started = time.perf_counter()
    response = client.post(url, {"file": upload}, secure=True)
    print(f"request_seconds: {time.perf_counter() - started:.3f} (status {response.status_code})")
    run_id = response.json()["id"]

    started = time.perf_counter()
    run = services.kpi_import_run_execute(run_id=run_id)
    seconds = time.perf_counter() - started
    print(f"worker_seconds: {seconds:.2f} ({run.status}, {run.imported:,} figures, {run.imported / seconds:,.0f}/s)")

    text = HEADER + lines(min(args.lines, 40_000), "bench-base", dt.date(1900, 1, 1))
    started = time.perf_counter()
    result = services.kpi_import_csv(text=text, actor=engineer)
    seconds = time.perf_counter() - started
    print(f"in_process_text_seconds: {seconds:.2f} ({result['imported']:,} figures)")
    print(f"observations: {KpiObservation.objects.count():,}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
