"""Annotation at scale: project creation, reserving the next example, submitting, agreement, on PostgreSQL.

    .venv/bin/python bench/annotation.py                       # 100,000 examples, 8 annotators
    .venv/bin/python bench/annotation.py --examples 20000 --threads 8

What an annotator waits for between two examples is `assignment_next` (find an example nobody holds that still
needs answers and that they have not answered or skipped, reserve it) plus `annotation_submit` (store the answer,
settle the example once it has k answers). Both run through the real services against a project of
``--examples`` tasks, after ``--answered`` examples already have k = 2 answers, so the "not answered by me"
filters have real rows to exclude. A second phase starts ``--threads`` annotators at once, each reserving and
submitting in a loop, and checks that no example was ever held by two of them at the same time. Last, the
project page's agreement figures over every answer (``project_agreement``).

Needs PostgreSQL (database `tuningdesk_bench_annotation`, emptied and migrated). Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import django_in_fresh_database  # noqa: E402

LABELS = ["billing", "login", "records", "integration", "scheduling"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(values: list[float]) -> str:
    return (
        f"p50 {1000 * statistics.median(values):.1f} ms, p95 {1000 * percentile(values, 0.95):.1f} ms, "
        f"p99 {1000 * percentile(values, 0.99):.1f} ms (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--answered", type=int, default=5_000, help="examples given k=2 answers before timing")
    parser.add_argument("--rounds", type=int, default=200, help="reserve+submit cycles timed for one annotator")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=50)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tuningdesk_bench_annotation")
    args = parser.parse_args()

    django_in_fresh_database(args.database_url)
    from django.db import connection, connections
    from django.db.models import Count

    from accounts.services import roles_sync, user_create
    from annotation import selectors, services
    from annotation.models import Annotation, Assignment
    from curation.models import Dataset, DatasetVersion, Example
    from curation.text import row_hash, text_hash

    roles_sync()
    curator = user_create(username="bench-curator", password="bench-pass-123", roles=["curator"])
    annotators = [
        user_create(username=f"bench-annotator-{i}", password="bench-pass-123", roles=["annotator"])
        for i in range(args.threads + 3)
    ]
    dataset = Dataset.objects.create(name="Annotation bench", task_type="classification", label_set=LABELS)
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        operation="import",
        status="ready",
        privacy="approved",
        split_ratios={"train": 1.0},
        row_count=args.examples,
    )
    started = time.perf_counter()
    batch = []
    for i in range(args.examples):
        text = f"Ticket {i}: the {LABELS[i % 5]} screen shows an error since this morning for clinic {i % 97}."
        batch.append(
            Example(
                version=version,
                row_index=i,
                source_line=i + 1,
                input=text,
                target="",
                split="train",
                label="",
                row_hash=row_hash(text, "", "", ""),
                text_hash=text_hash(text, ""),
            )
        )
        if len(batch) == 5000:
            Example.objects.bulk_create(batch)
            batch.clear()
    Example.objects.bulk_create(batch)
    print(f"examples written: {args.examples:,} in {time.perf_counter() - started:.1f} s")

    schema = {
        "instructions": "Route the ticket.",
        "fields": [
            {"name": "team", "kind": "choice", "options": LABELS, "writes": "label"},
            {"name": "urgency", "kind": "rating", "scale": 5, "required": False},
        ],
    }
    started = time.perf_counter()
    project = services.annotation_project_create(
        name="Bench", version=version, actor=curator, schema=schema, annotations_per_example=2
    )
    print(f"project created: {project.task_count:,} tasks in {time.perf_counter() - started:.2f} s")

    # Earlier work: two annotators answered the first --answered examples (written in bulk, then settled by the
    # same code the services use, so the numbers match a project that got there by hand).
    first, second = annotators[-2], annotators[-1]
    tasks = list(project.tasks.order_by("position")[: args.answered])
    rows = []
    for task in tasks:
        for who, user in enumerate((first, second)):
            label = LABELS[(task.position + (who if task.position % 7 == 0 else 0)) % 5]
            rows.append(
                Annotation(
                    task=task,
                    annotator=user,
                    annotator_name=user.username,
                    answer={"team": label, "urgency": 1 + task.position % 5},
                    seconds=5.0,
                )
            )
    Annotation.objects.bulk_create(rows, batch_size=5000)
    from annotation.services import _task_settle

    for task in tasks:
        _task_settle(task)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"answered before timing: {args.answered:,} examples × 2")

    me = annotators[0]
    reserve, submit = [], []
    for i in range(args.rounds):
        t0 = time.perf_counter()
        assignment = services.assignment_next(project=project, annotator=me)
        t1 = time.perf_counter()
        services.annotation_submit(assignment=assignment, annotator=me, answer={"team": LABELS[i % 5]})
        t2 = time.perf_counter()
        reserve.append(t1 - t0)
        submit.append(t2 - t1)
    print(f"assignment_next, one annotator: {ms(reserve)}")
    print(f"annotation_submit, one annotator: {ms(submit)}")

    # Many annotators at once: nobody may hold an example another one holds.
    overlaps: list[str] = []
    timings: list[float] = []
    lock = threading.Lock()

    def work(user) -> None:
        try:
            for n in range(args.per_thread):
                t0 = time.perf_counter()
                assignment = services.assignment_next(project=project, annotator=user)
                holders = Assignment.objects.filter(task=assignment.task, status="active").count()
                if holders != 1:
                    with lock:
                        overlaps.append(f"task {assignment.task_id}: {holders} active reservations")
                services.annotation_submit(assignment=assignment, annotator=user, answer={"team": LABELS[n % 5]})
                with lock:
                    timings.append(time.perf_counter() - t0)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(user,)) for user in annotators[1 : args.threads + 1]]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    print(
        f"{args.threads} annotators at once, reserve+submit: {ms(timings)}; "
        f"{len(timings) / elapsed:.0f} answers/s in all"
    )
    print(f"examples held by two annotators at once: {len(overlaps)}")
    doubles = (
        Annotation.objects.values("task_id", "annotator_name")
        .order_by()
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    print(f"answers given twice by one annotator: {doubles}")

    started = time.perf_counter()
    report = selectors.project_agreement(project)
    team = next(field for field in report["fields"] if field["name"] == "team")["summary"]
    print(
        f"project_agreement over {Annotation.objects.count():,} answers: {time.perf_counter() - started:.2f} s "
        f"(Cohen's kappa {team['cohen_kappa']}, Fleiss' kappa {team['fleiss_kappa']:.3f})"
    )
    started = time.perf_counter()
    progress = selectors.project_progress(project, me)
    print(f"project_progress: {1000 * (time.perf_counter() - started):.1f} ms ({progress['percent']}% answered)")
    started = time.perf_counter()
    published = services.annotation_project_publish(project=project, actor=curator)
    print(
        f"annotation_project_publish: {published.row_count:,} rows, "
        f"{published.operation_params['settled']:,} settled answers written, "
        f"{time.perf_counter() - started:.2f} s"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
