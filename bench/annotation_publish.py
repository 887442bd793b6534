"""Publishing a project whose annotators rewrote the replies: the request, and the worker's Presidio check.

    .venv/bin/python bench/annotation_publish.py                  # 2,000 rewritten replies
    .venv/bin/python bench/annotation_publish.py --examples 5000

A reply-writing project (k = 1) over ``--examples`` reviewed tickets gets one rewritten reply per example, every
tenth with a phone number the reviewed text did not hold. Then the two halves of *Create new dataset version*:
``publish_run_start`` (what the web request does) and ``publish_run_execute`` (what the worker does: check each new
text with the dataset's Presidio detector outside any lock, then write the version in one transaction). Before
publishing ran in the worker, the whole of the second half ran inside the web request.

Needs PostgreSQL (database `tuningdesk_bench_publish`, emptied and migrated). Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import django_in_fresh_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tuningdesk_bench_publish")
    args = parser.parse_args()

    django_in_fresh_database(args.database_url)
    from accounts.services import roles_sync, user_create
    from annotation import services
    from annotation.models import PublishRun
    from curation.models import Dataset, DatasetVersion, Example
    from curation.text import row_hash, text_hash

    roles_sync()
    curator = user_create(username="bench-curator", password="bench-pass-123", roles=["curator"])
    annotator = user_create(username="bench-annotator", password="bench-pass-123", roles=["annotator"])
    dataset = Dataset.objects.create(name="Publish bench", task_type="sft")
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        operation="import",
        status="ready",
        privacy="approved",
        split_ratios={"train": 1.0},
        row_count=args.examples,
    )
    examples = []
    for i in range(args.examples):
        text = f"Ticket {i}: the scheduling screen of clinic {i % 97} shows an error since this morning."
        target = f"Thank you for reporting this. We restarted the scheduling service for clinic {i % 97}."
        examples.append(
            Example(
                version=version,
                row_index=i,
                source_line=i + 1,
                input=text,
                target=target,
                split="train",
                row_hash=row_hash(text, target, "", ""),
                text_hash=text_hash(text, target),
            )
        )
    Example.objects.bulk_create(examples, batch_size=5000)
    project = services.annotation_project_create(
        name="Replies bench",
        version=version,
        actor=curator,
        annotations_per_example=1,
        schema={"fields": [{"name": "reply", "kind": "text", "writes": "target"}]},
    )
    started = time.perf_counter()
    for i in range(args.examples):
        held = services.assignment_next(project=project, annotator=annotator)
        reply = (
            f"Sorry for the trouble with clinic {i % 97}: we restarted the scheduling service at 9:{i % 60:02d} "
            "and the screen works again. Tell us if it happens again."
        )
        if i % 10 == 0:
            reply += f" You can also call our on-call engineer at 617-555-{i % 10000:04d}."
        services.annotation_submit(assignment=held, annotator=annotator, answer={"reply": reply})
    print(f"answers written: {args.examples:,} in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    run = services.publish_run_start(project=project, actor=curator)
    request_seconds = time.perf_counter() - started
    print(f"publish_run_start (the web request): {1000 * request_seconds:.1f} ms")

    started = time.perf_counter()
    run = services.publish_run_execute(run_id=run.pk)
    worker_seconds = time.perf_counter() - started
    assert run.status == PublishRun.Status.DONE, run.error
    check = run.version.operation_params["privacy_check"]
    print(f"publish_run_execute (the worker): {worker_seconds:.1f} s")
    print(f"texts checked: {run.texts_checked:,}, {run.texts_checked / worker_seconds:.0f} texts/s over the whole run")
    print(f"findings: {check['findings']:,} in {len(check['rows'])}+ rows, entities {check['entities']}")
    print(f"version {run.version.number}: {run.version.row_count:,} rows, privacy {run.version.privacy}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
