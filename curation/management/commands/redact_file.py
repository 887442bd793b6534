"""Redact personal and health data in a JSON Lines file: python manage.py redact_file IN.jsonl OUT.jsonl

Each input line is {"id": ..., "text": ...}; each output line is
{"id": ..., "text": ..., "redacted": ..., "entities": [{"entity_type", "start", "end", "score"}]} with offsets
into the original text. The file is read and written in batches, never held whole in memory; OUT is written
to a temporary file next to it and renamed at the end, so a failed run leaves no half-written output; it
is readable by its owner only, as it holds the original texts too.

A line that is not JSON, not an object, or has no string "text" stops the run with its line number
(nothing is written). With --skip-bad-lines such lines are reported on stderr and left out instead.
Blank lines are ignored. A line without "id" gets its line number as id.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.pii import (
    DEFAULT_ENTITIES,
    DEFAULT_PROFILE,
    ENTITY_TYPES,
    OPERATORS,
    PROFILES,
    PiiConfig,
    PiiEngine,
    profile_of,
)

KEY_ENV = "REDACTION_KEY"


class BadLine(Exception):
    pass


def parse_line(raw: bytes, number: int) -> tuple[object, str]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadLine(f"line {number}: not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise BadLine(f"line {number}: not valid JSON ({exc.msg}).") from None
    if not isinstance(record, dict):
        raise BadLine(f'line {number}: expected a JSON object like {{"id": ..., "text": ...}}.')
    if "text" not in record:
        raise BadLine(f'line {number}: no "text" field.')
    if not isinstance(record["text"], str):
        raise BadLine(f'line {number}: "text" must be a string, not {type(record["text"]).__name__}.')
    return record.get("id", number), record["text"]


class Command(BaseCommand):
    help = (
        "Find personal and health data in a JSONL file of {id, text} lines and write each text with its redacted "
        "version and the entities found (offsets into the original text). A line that is not a JSON object with "
        'a string "text" stops the run with its line number and nothing is written, unless --skip-bad-lines. '
        "A summary line goes to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("input", help='JSON Lines file, one {"id": ..., "text": ...} object per line')
        parser.add_argument("output", help="where to write the redacted JSON Lines")
        parser.add_argument(
            "--profile",
            choices=sorted(PROFILES),
            default=None,
            help=f"which kinds of personal data to look for (default: {DEFAULT_PROFILE}, HIPAA Safe Harbor's "
            "identifiers; gdpr adds EU national IDs)",
        )
        parser.add_argument(
            "--entities",
            default=None,
            help=f"comma-separated entity types instead of a profile (the default profile is: "
            f"{','.join(DEFAULT_ENTITIES)}); also: {','.join(sorted(set(ENTITY_TYPES) - set(DEFAULT_ENTITIES)))}",
        )
        parser.add_argument("--operator", choices=OPERATORS, default="tag", help="how to replace what is found")
        parser.add_argument(
            "--key-file",
            help=f"file holding the secret key for --operator hash or pseudonym (default: ${KEY_ENV})",
        )
        parser.add_argument("--skip-bad-lines", action="store_true", help="report bad lines and go on")
        parser.add_argument("--batch-size", type=int, default=256, help="lines per batch (default 256)")

    def handle(self, *args, **options):
        source, target = Path(options["input"]), Path(options["output"])
        if not source.is_file():
            raise CommandError(f"Input file not found: {source}")
        if not target.parent.is_dir():
            raise CommandError(f"Output folder does not exist: {target.parent}")
        if target.exists() and target.resolve() == source.resolve():
            raise CommandError("Output must be a different file from the input.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["entities"] and options["profile"]:
            raise CommandError("Give --profile or --entities, not both.")
        if options["entities"]:
            entities = tuple(name.strip().upper() for name in options["entities"].split(",") if name.strip())
        else:
            entities = PROFILES[options["profile"] or DEFAULT_PROFILE]
        key = self._key(options)
        if options["operator"] in ("hash", "pseudonym") and not key:
            raise CommandError(
                f"--operator {options['operator']} needs a secret key: set ${KEY_ENV} or give --key-file. "
                "Keep it: the same key gives the same hashes and pseudonyms next time."
            )
        try:
            engine = PiiEngine(PiiConfig(entities=entities, default_operator=options["operator"], key=key))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        pseudonymizer = engine.pseudonymizer() if options["operator"] == "pseudonym" else None

        started = time.perf_counter()
        counts: Counter[str] = Counter()
        written = skipped = words = 0
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for batch in self._batches(source, options["batch_size"], options["skip_bad_lines"]):
                    if isinstance(batch, BadLine):
                        skipped += 1
                        self.stderr.write(f"skipped {batch}")
                        continue
                    texts = [text for _, text in batch]
                    for (record_id, text), (redacted, findings) in zip(
                        batch, engine.redact(texts, pseudonymizer), strict=True
                    ):
                        out.write(
                            json.dumps(
                                {
                                    "id": record_id,
                                    "text": text,
                                    "redacted": redacted,
                                    "entities": [finding.to_dict() for finding in findings],
                                },
                                ensure_ascii=False,
                            )
                            + "\n"
                        )
                        counts.update(finding.entity_type for finding in findings)
                        words += len(text.split())
                        written += 1
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

        elapsed = time.perf_counter() - started
        found = ", ".join(f"{name} {count}" for name, count in counts.most_common()) or "nothing"
        self.stderr.write(
            f"redacted {written} texts ({skipped} bad lines skipped), found {sum(counts.values())}: {found}; "
            f"{elapsed:.1f} s, {words / elapsed if elapsed else 0:.0f} words/s -> {target} "
            f"(profile: {profile_of(entities)})"
        )

    def _key(self, options) -> bytes:
        if options["key_file"]:
            try:
                return Path(options["key_file"]).read_bytes().strip()
            except OSError as exc:
                raise CommandError(f"Cannot read the key file: {exc}") from None
        return os.environ.get(KEY_ENV, "").encode("utf-8")

    def _batches(self, source: Path, size: int, skip_bad: bool):
        """Lists of (id, text), or a BadLine where a line was skipped; stops with CommandError otherwise."""
        batch: list[tuple[object, str]] = []
        with open(source, "rb") as lines:
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    batch.append(parse_line(raw, number))
                except BadLine as exc:
                    if not skip_bad:
                        raise CommandError(
                            f"{exc} Nothing was written; fix the line or use --skip-bad-lines."
                        ) from None
                    yield exc
                    continue
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch
