"""Redaction speed against plain spaCy, and memory over a long run (curation.pii).

    .venv/bin/python bench/redaction.py                      # speed (5,000 texts x 3 rounds) + memory (200k texts)
    .venv/bin/python bench/redaction.py --memory-texts 1000000
    .venv/bin/python bench/redaction.py --skip-memory        # speed only, a few minutes
    .venv/bin/python bench/redaction.py --skip-speed --memory-texts 20000 --without-memory-zone
    .venv/bin/python bench/redaction.py --skip-speed --memory-texts 200000 --recycle-mb 560   # workers recycled

Speed: 5,000 ticket-like texts of about 80 words, all with planted personal data. Each round times
(a) plain spaCy `nlp.pipe` with the same model and its full pipeline (tok2vec, tagger, parser, attribute
ruler, lemmatizer, NER) and (b) the project's detection + anonymisation (PiiEngine.redact, tag operator),
in one process, one core, batch size 64. Rounds alternate which goes first, so load from other processes
on the machine hits both alike; the medians and their ratio are printed (goal: ratio >= 1.0).

Memory: RSS every 1,000 texts while redacting a stream of generated texts (never held in a list); the
slope is a least-squares fit of RSS over texts after the first 20% (warm-up). The Pseudonymizer is not
used there: its mapping grows with the number of distinct values by design.

With --recycle-mb the stream is redacted by a worker process in tasks of --task-texts texts, and a worker
whose RSS is above the limit after a task exits and is replaced, as Celery does with --max-memory-per-child:
the peak then stays near the limit whatever spaCy's tables do.

Prints plain "name: value" lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import spacy  # noqa: E402
from faker import Faker  # noqa: E402

from curation.pii import DEFAULT_MODEL, PiiConfig, PiiEngine  # noqa: E402

SEED = 20261129

_OPENINGS = (
    "Hi, this is {name} from {org}.",
    "Hello, {name} here, practice manager at {org}.",
    "Good morning. I'm {name}, charge nurse at {org}.",
)
_ASKS = (
    "Since the {product} upgrade to {version}, the chart for patient {patient} (MRN {mrn}, DOB {dob}) shows a "
    "duplicate allergy entry and the lab results from our HL7 feed arrive twice in the inbox.",
    "Our invoice {invoice} charges us for {seats} seats but we only have {users} users, and the card ending "
    "{last4} was charged twice this month. Can you correct it and refund the difference?",
    "Patient {patient} could not book a follow-up online; the calendar shows no slots for Dr. {doctor} next "
    "week although the clinic is open. The patient's phone is {phone2} if you need to call.",
    "A patient, {patient}, asked for a copy of everything we store about them. SSN on file {ssn}, address "
    "{address}. What is the fastest way to export it within the 30-day deadline?",
)
_CLOSINGS = (
    "You can reach me at {phone} or {email}. Thanks for your help, {first}.",
    "Please call me back on {phone}; my email is {email}. Best regards, {name}",
    "My direct line is {phone} and email {email}. Thank you! {first}",
)
_REPLIES = (
    "Hello {first}, thanks for the detailed report. I fixed it and checked the logs; ticket {ticket} stays open "
    "until you confirm.",
    "Hi {first}, thanks for flagging this. A configuration change caused it; I reverted it and added a check.",
)
_PRODUCTS = ("Epic", "Cerner", "MyChart", "athenahealth", "eClinicalWorks", "NextGen")


class TicketStream:
    """Ticket-like texts of about 80 words, each with fresh values: names, numbers, addresses, dates."""

    def __init__(self, seed: int = SEED, pool: int = 2000):
        rng = random.Random(seed)
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.rng = rng
        self.firsts = [fake.first_name() for _ in range(pool)]
        self.lasts = [fake.last_name() for _ in range(pool)]
        self.streets = [fake.street_name() for _ in range(pool)]
        self.cities = [f"{fake.city()}, {fake.state_abbr()}" for _ in range(pool)]
        self.domains = [fake.domain_name() for _ in range(pool)]

    def _phone(self) -> str:
        r = self.rng
        return f"({r.randint(201, 989)}) {r.randint(201, 989)}-{r.randint(0, 9999):04d}"

    def one(self, number: int) -> str:
        r = self.rng
        first, last = r.choice(self.firsts), r.choice(self.lasts)
        values = {
            "name": f"{first} {last}",
            "first": first,
            "org": f"{r.choice(self.lasts)} Family Clinic",
            "patient": f"{r.choice(self.firsts)} {r.choice(self.lasts)}",
            "doctor": r.choice(self.lasts),
            "email": f"{first.lower()}.{last.lower()}@{r.choice(self.domains)}",
            "phone": self._phone(),
            "phone2": self._phone(),
            "mrn": f"{r.randint(1000000, 9999999)}",
            "dob": f"{r.randint(1, 12):02d}/{r.randint(1, 28):02d}/{r.randint(1930, 2015)}",
            "ssn": f"{r.randint(100, 665)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}",
            "address": f"{r.randint(1, 9999)} {r.choice(self.streets)}, {r.choice(self.cities)} "
            f"{r.randint(10000, 99999)}",
            "invoice": f"INV-{r.randint(10000, 99999)}",
            "ticket": f"T-{20000 + number}",
            "product": r.choice(_PRODUCTS),
            "version": f"{r.randint(2019, 2026)}.{r.randint(1, 4)}",
            "seats": r.randint(10, 90),
            "users": r.randint(5, 80),
            "last4": f"{r.randint(0, 9999):04d}",
        }
        parts = (r.choice(_OPENINGS), r.choice(_ASKS), r.choice(_CLOSINGS), r.choice(_REPLIES))
        return " ".join(part.format(**values) for part in parts)

    def __call__(self, count: int) -> Iterator[str]:
        for number in range(count):
            yield self.one(number)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def time_spacy(nlp, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    for _doc in nlp.pipe(texts, batch_size=batch_size):
        pass
    return time.perf_counter() - started


def time_project(engine: PiiEngine, texts: list[str]) -> float:
    started = time.perf_counter()
    for _redacted, _findings in engine.redact(texts):
        pass
    return time.perf_counter() - started


def speed(args) -> None:
    texts = list(TicketStream()(args.texts))
    words = sum(len(text.split()) for text in texts)
    full = spacy.load(args.model)
    engine = PiiEngine(PiiConfig(spacy_model=args.model, batch_size=args.batch_size))
    print(f"texts: {len(texts)}  words: {words}  words/text: {words / len(texts):.1f}")
    print(f"spacy pipeline (baseline): {', '.join(full.pipe_names)}")
    print(
        f"project pipeline: {', '.join(name for name in engine.nlp.pipe_names)} "
        f"(disabled: {', '.join(engine.nlp_engine.disabled)})"
    )
    time_spacy(full, texts[:300], args.batch_size)  # warm-up
    time_project(engine, texts[:300])

    base, ours = [], []
    for round_number in range(args.rounds):
        runs = [
            ("spacy", lambda: time_spacy(full, texts, args.batch_size)),
            ("project", lambda: time_project(engine, texts)),
        ]
        if round_number % 2:
            runs.reverse()
        for name, run in runs:
            seconds = run()
            (base if name == "spacy" else ours).append(words / seconds)
        print(
            f"round {round_number + 1}: spacy full pipeline {base[-1]:,.0f} words/s, project detection+anonymisation "
            f"{ours[-1]:,.0f} words/s, ratio {ours[-1] / base[-1]:.2f}"
        )
    print(f"spacy full pipeline words/s (median): {statistics.median(base):,.0f}")
    print(f"project detection+anonymisation words/s (median): {statistics.median(ours):,.0f}")
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"ratio project/spacy (medians): {ratio:.2f}  goal >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'}")

    pseudo = PiiEngine(
        PiiConfig(spacy_model=args.model, batch_size=args.batch_size, default_operator="pseudonym", key=b"bench-key")
    )
    pseudonymizer = pseudo.pseudonymizer()
    started = time.perf_counter()
    for _ in pseudo.redact(texts, pseudonymizer):
        pass
    print(f"project with the pseudonym operator words/s (one run): {words / (time.perf_counter() - started):,.0f}")


def memory(args) -> None:
    engine = PiiEngine(PiiConfig(spacy_model=args.model, batch_size=args.batch_size))
    if args.without_memory_zone:
        engine.nlp.memory_zone = contextlib.nullcontext  # type: ignore[method-assign]
    print(f"memory run: {args.memory_texts} texts, memory_zone {'off' if args.without_memory_zone else 'on'}")
    print(f"rss before MB: {rss_mb():.1f}")
    samples: list[tuple[int, float]] = []
    peak = 0.0
    started = time.perf_counter()
    for done, _ in enumerate(engine.redact(TicketStream(seed=SEED + 1)(args.memory_texts)), 1):
        if done % 1000 == 0:
            rss = rss_mb()
            peak = max(peak, rss)
            samples.append((done, rss))
            if done % args.report_every == 0:
                print(
                    f"  {done} texts: rss {rss:.1f} MB, {done / (time.perf_counter() - started):.0f} texts/s",
                    flush=True,
                )
    warm = [(n, r) for n, r in samples if n > args.memory_texts * 0.2]
    xs, ys = [n / 1000 for n, _ in warm], [r for _, r in warm]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    print(f"peak rss MB: {peak:.1f}")
    print(f"rss at end MB: {samples[-1][1]:.1f}")
    print(f"rss slope after warm-up KB per 1,000 texts: {slope * 1024:.1f}")
    print(f"memory run seconds: {time.perf_counter() - started:.0f}")


def _recycling_worker(model: str, batch_size: int, limit_mb: float, tasks, results) -> None:
    engine = PiiEngine(PiiConfig(spacy_model=model, batch_size=batch_size))
    while True:
        task = tasks.get()
        if task is None:
            return
        number, count = task
        for _ in engine.redact(TicketStream(seed=SEED + 1 + number)(count)):
            pass
        rss = rss_mb()
        results.put((number, count, rss))
        if rss > limit_mb:
            return  # recycled: the parent starts a fresh worker for the next task


def memory_recycled(args) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    count = args.memory_texts // args.task_texts
    for number in range(count):
        tasks.put((number, args.task_texts))
    tasks.put(None)  # after the last task: the worker that takes it stops
    print(f"memory run: {count * args.task_texts} texts in tasks of {args.task_texts}")
    print(f"worker recycled above MB: {args.recycle_mb}")
    started = time.perf_counter()
    done = peak = 0.0
    workers = 0
    samples: list[tuple[int, float]] = []
    while done < count * args.task_texts:
        workers += 1
        worker = context.Process(
            target=_recycling_worker, args=(args.model, args.batch_size, args.recycle_mb, tasks, results)
        )
        worker.start()
        while worker.is_alive() or not results.empty():
            try:
                _number, texts, rss = results.get(timeout=1)
            except Exception:  # queue.Empty
                continue
            done += texts
            peak = max(peak, rss)
            samples.append((int(done), rss))
            if int(done) % args.report_every == 0:
                print(f"  {int(done)} texts: worker {workers} rss {rss:.1f} MB", flush=True)
        worker.join()
    print(f"workers started: {workers} (recycles: {workers - 1})")
    print(f"peak worker rss MB: {peak:.1f}")
    print(f"worker rss at end MB: {samples[-1][1]:.1f}")
    print(f"memory run seconds: {time.perf_counter() - started:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-texts", type=int, default=200_000)
    parser.add_argument("--report-every", type=int, default=20_000)
    parser.add_argument("--without-memory-zone", action="store_true", help="to see what spaCy's memory_zone saves")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--recycle-mb", type=float, default=0, help="recycle the worker above this RSS (MB)")
    parser.add_argument("--task-texts", type=int, default=1000, help="texts per task with --recycle-mb")
    args = parser.parse_args()
    print(
        f"python: {platform.python_version()}  spacy: {spacy.__version__}  model: {args.model}  "
        f"cpus: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}"
    )
    if not args.skip_speed:
        speed(args)
    if not args.skip_memory:
        memory_recycled(args) if args.recycle_mb else memory(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
