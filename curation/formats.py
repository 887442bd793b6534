"""Streaming readers for uploaded dataset files (plain Python, no Django).

Every reader walks the file once, holds at most one row in memory, and yields either a
``RawRow`` or a ``Problem`` that says, in plain words, what is wrong with one row. A file that
cannot be read at all (empty, UTF-16, binary, a .json that is not an array) raises
``FileRejected`` with a message the curator can act on.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

FORMATS = ("jsonl", "json", "csv", "tsv")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
MAX_JSON_DEPTH = 64
_CHUNK = 1 << 20


class FileRejected(Exception):
    """The whole file cannot be imported; the message says why and what to do."""


@dataclass(slots=True)
class Problem:
    line: int
    reason: str
    message: str
    field: str = ""
    excerpt: str = ""


@dataclass(slots=True)
class RawRow:
    line: int
    data: dict


@dataclass(slots=True)
class MappedRow:
    line: int
    input: str
    target: str = ""
    label: str = ""
    group: str = ""
    metadata: dict = field(default_factory=dict)


def detect_format(filename: str) -> str | None:
    return _EXTENSIONS.get(Path(filename).suffix.lower())


def row_limit_text(max_row_bytes: int) -> str:
    """4194304 -> "4 MB (4,194,304 bytes)": the row limit as people read it, with the exact figure."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if max_row_bytes >= factor:
            return f"{max_row_bytes / factor:.3g} {unit} ({max_row_bytes:,} bytes)"
    return f"{max_row_bytes:,} bytes"


def _excerpt(raw: bytes | str, limit: int = 160) -> str:
    if isinstance(raw, bytes):
        raw = raw[: limit * 4].decode("utf-8", errors="replace")
    text = raw.replace("\r", " ").replace("\n", " ")
    return text[:limit]


def check_encoding(path: str | Path) -> None:
    """Reject files that are empty, not UTF-8 text, or a spreadsheet/archive saved under a text name."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head.strip():
        raise FileRejected("The file is empty. Choose a file that has a header row or at least one record.")
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileRejected("This file is saved as UTF-32. Save it as UTF-8 and upload it again.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRejected("This file is saved as UTF-16. Save it as UTF-8 and upload it again.")
    if head.startswith(b"PK\x03\x04"):
        raise FileRejected(
            "This is a spreadsheet or ZIP archive, not a text file. Export it as CSV (UTF-8) and upload that."
        )
    if head.startswith(b"\x1f\x8b"):
        raise FileRejected("This file is compressed (gzip). Unpack it and upload the text file inside.")
    sample = head[:8192]
    nul_count = sample.count(0)
    if nul_count:
        even_nuls = sample[1::2].count(0)
        if nul_count > len(sample) // 4 and even_nuls > nul_count * 0.8:
            raise FileRejected("This file looks like UTF-16 without a marker. Save it as UTF-8 and upload it again.")
        raise FileRejected(
            "This looks like a binary file, not text. Upload JSON Lines, JSON, CSV or TSV saved as UTF-8."
        )


def read_rows(source: str | Path | BinaryIO, fmt: str, *, max_row_bytes: int) -> Iterator[RawRow | Problem]:
    """Rows of a file given by path, or of an open binary file (whose ``tell()`` then shows progress)."""
    if isinstance(source, str | Path):
        check_encoding(source)
        with open(source, "rb") as handle:
            yield from read_rows(handle, fmt, max_row_bytes=max_row_bytes)
        return
    if fmt == "jsonl":
        yield from _read_jsonl(source, max_row_bytes)
    elif fmt == "json":
        yield from _read_json_array(source, max_row_bytes)
    elif fmt in ("csv", "tsv"):
        yield from _read_delimited(source, "\t" if fmt == "tsv" else ",", max_row_bytes)
    else:
        raise FileRejected(f"Unknown format {fmt!r}. Choose one of: {', '.join(FORMATS)}.")


def sniff_columns(path: str | Path, fmt: str, *, max_row_bytes: int, rows: int = 50) -> list[str]:
    """Column names, from the CSV/TSV header or the keys of the first JSON objects, in first-seen order."""
    seen: dict[str, None] = {}
    count = 0
    first_problem: Problem | None = None
    for item in read_rows(path, fmt, max_row_bytes=max_row_bytes):
        if isinstance(item, RawRow):
            for key in item.data:
                seen.setdefault(key, None)
            count += 1
            if fmt in ("csv", "tsv") or count >= rows:
                break
        elif first_problem is None:
            first_problem = item
    if not seen:
        # Say what stopped the first row, not only that there were none (a 30 MB line read as "no rows").
        if first_problem is not None and first_problem.reason == "too_long":
            raise FileRejected(
                f"Line {first_problem.line:,} is longer than the limit of {row_limit_text(max_row_bytes)} per row, "
                "and no other row could be read, so there are no columns to choose from. "
                "Shorten or split that text, or check that each record ends with a line break, and upload again."
            )
        if first_problem is not None:
            raise FileRejected(
                "No readable rows were found, so there are no columns. "
                f"The first problem is on line {first_problem.line:,}: {first_problem.message}"
            )
        raise FileRejected("No readable rows were found in the first part of the file, so there are no columns.")
    return list(seen)


def _decode_json(raw: bytes, line: int) -> RawRow | Problem:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(line, "invalid_utf8", f"Byte {exc.start + 1} is not valid UTF-8.", excerpt=_excerpt(raw))
    try:
        value = json.loads(text)
    except RecursionError:
        return Problem(line, "too_deep", f"Nested more than {MAX_JSON_DEPTH} levels deep.", excerpt=_excerpt(text))
    except json.JSONDecodeError as exc:
        return Problem(line, "bad_json", f"Not valid JSON: {exc.msg} at column {exc.colno}.", excerpt=_excerpt(text))
    if not isinstance(value, dict):
        return Problem(line, "not_object", 'Each record must be an object like {"text": ...}.', excerpt=_excerpt(text))
    return RawRow(line, value)


def _json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Cheap upper bound on nesting, without recursion: count brackets outside strings."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for kind, _ in _scan_structure(raw):
        if kind == "open":
            depth += 1
            if depth > limit:
                return True
        elif kind == "close":
            depth -= 1
    return False


_STRUCTURE = re.compile(rb'["\\\[\]{},]')


def _scan_structure(data: bytes) -> Iterator[tuple[str, int]]:
    in_string = False
    skip = -1
    for match in _STRUCTURE.finditer(data):
        pos = match.start()
        if pos == skip:
            continue
        char = data[pos]
        if in_string:
            if char == 0x5C:  # backslash escapes the next byte
                skip = pos + 1
            elif char == 0x22:
                in_string = False
            continue
        if char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            yield "open", pos
        elif char in (0x5D, 0x7D):
            yield "close", pos
        else:
            yield "comma", pos


def _read_jsonl(handle: BinaryIO, max_row_bytes: int) -> Iterator[RawRow | Problem]:
    line_no = 0
    while True:
        raw = handle.readline(max_row_bytes + 1)
        if not raw:
            return
        line_no += 1
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if len(raw) > max_row_bytes and not raw.endswith(b"\n"):
            excerpt = _excerpt(raw)
            total = len(raw)
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line without holding it
                raw = handle.readline(_CHUNK)
                total += len(raw)
            yield Problem(
                line_no,
                "too_long",
                f"This line is {total:,} bytes; the limit is {row_limit_text(max_row_bytes)} per row.",
                excerpt=excerpt,
            )
            continue
        if not raw.strip():
            continue
        if _json_depth_exceeds(raw, MAX_JSON_DEPTH):
            yield Problem(line_no, "too_deep", f"Nested more than {MAX_JSON_DEPTH} levels deep.", excerpt=_excerpt(raw))
            continue
        yield _decode_json(raw, line_no)


def _read_json_array(handle: BinaryIO, max_row_bytes: int) -> Iterator[RawRow | Problem]:
    """Split a top-level JSON array into elements without loading the file or recursing."""
    first = handle.read(_CHUNK)
    if first.startswith(codecs.BOM_UTF8):
        first = first[len(codecs.BOM_UTF8) :]
    stripped = first.lstrip()
    if not stripped.startswith(b"["):
        raise FileRejected(
            "A .json file must hold one array of records: [{...}, {...}]. "
            "For one record per line, choose the JSON Lines format."
        )
    splitter = _JsonArraySplitter(max_row_bytes)
    chunk = stripped[1:]
    while chunk:
        yield from splitter.feed(chunk)
        if splitter.finished:
            return
        chunk = handle.read(_CHUNK)
    raise FileRejected(
        f"The JSON array is not closed: the file ends inside record {splitter.index + 1}. "
        "The file may be cut short; upload the complete file."
    )


class _JsonArraySplitter:
    """The inside of a top-level JSON array, fed chunk by chunk, cut into records at its top-level commas.

    Only the first max_row_bytes of a record are kept; the rest is counted, so a long record is reported with
    its size instead of being held in memory. The scan state lives in locals inside feed() (the hot loop).
    """

    def __init__(self, max_row_bytes: int) -> None:
        self.max_row_bytes = max_row_bytes
        self.depth = 1
        self.in_string = False
        self.escape_pending = False  # the previous chunk ended with a backslash inside a string
        self.element = bytearray()
        self.element_size = 0
        self.too_deep = False
        self.index = 0
        self.finished = False

    def feed(self, chunk: bytes) -> Iterator[RawRow | Problem]:
        depth, in_string = self.depth, self.in_string
        start = 0
        skip = 0 if self.escape_pending else -1
        self.escape_pending = False
        for match in _STRUCTURE.finditer(chunk):
            pos = match.start()
            if pos == skip:
                continue
            char = chunk[pos]
            if in_string:
                if char == 0x5C:
                    skip = pos + 1
                    self.escape_pending = skip == len(chunk)
                elif char == 0x22:
                    in_string = False
                continue
            if char == 0x22:
                in_string = True
            elif char in (0x5B, 0x7B):
                depth += 1
                if depth > MAX_JSON_DEPTH + 1:
                    self.too_deep = True
            elif char in (0x5D, 0x7D):
                depth -= 1
                if depth == 0:  # the array's closing bracket
                    self._extend(chunk[start:pos])
                    yield from self._emit()
                    self.finished = True
                    return
            elif depth == 1:  # a comma between two records
                self._extend(chunk[start:pos])
                yield from self._emit()
                start = pos + 1
        self.depth, self.in_string = depth, in_string
        self._extend(chunk[start:])

    def _extend(self, part: bytes) -> None:
        self.element_size += len(part)
        if self.element_size <= self.max_row_bytes:
            self.element.extend(part)

    def _emit(self) -> Iterator[RawRow | Problem]:
        """The record collected so far (none if it is blank), then start the next one."""
        element, size, too_deep = bytes(self.element), self.element_size, self.too_deep
        self.element.clear()
        self.element_size = 0
        self.too_deep = False
        if not size or not element.strip():
            return
        self.index += 1
        if size > self.max_row_bytes:
            yield Problem(
                self.index,
                "too_long",
                f"This record is {size:,} bytes; the limit is {row_limit_text(self.max_row_bytes)} per row.",
                excerpt=_excerpt(element),
            )
        elif too_deep:
            yield Problem(
                self.index, "too_deep", f"Nested more than {MAX_JSON_DEPTH} levels deep.", excerpt=_excerpt(element)
            )
        else:
            yield _decode_json(element, self.index)


def _read_delimited(binary: BinaryIO, delimiter: str, max_row_bytes: int) -> Iterator[RawRow | Problem]:
    csv.field_size_limit(max_row_bytes)
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise FileRejected(f"The header row cannot be read: {exc}.") from None
    except StopIteration:
        raise FileRejected("The file is empty.") from None
    header = [name.strip() for name in header]
    if not any(header):
        raise FileRejected("The first row must name the columns, but it is empty.")
    if any(_has_surrogates(name) for name in header):
        raise FileRejected("The header row is not valid UTF-8. Save the file as UTF-8 and upload it again.")
    header = [name or f"column_{i + 1}" for i, name in enumerate(header)]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise FileRejected(f"Column names must be unique; these appear more than once: {', '.join(duplicates)}.")
    width = len(header)
    line_start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = "too_long" if "field larger" in str(exc) else "bad_csv"
            message = (
                f"This row is longer than the limit of {row_limit_text(max_row_bytes)} per row "
                "(one of its cells alone passes it)."
                if reason == "too_long"
                else f"This row is not valid CSV: {exc}."
            )
            yield Problem(line_start, reason, message)
            line_start = reader.line_num + 1
            continue
        line = line_start
        line_start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        size = sum(map(len, row))  # characters, like csv's own cell limit: cheap, and a byte count within 4x
        if size > max_row_bytes:
            yield Problem(
                line,
                "too_long",
                f"This row is longer than the limit of {row_limit_text(max_row_bytes)} per row.",
                excerpt=_excerpt(row[0]),
            )
            continue
        if len(row) != width:
            yield Problem(
                line,
                "ragged_row",
                f"This row has {len(row)} cells but the header has {width} columns.",
                excerpt=_excerpt(delimiter.join(row).encode("utf-8", "replace")),
            )
            continue
        if any(_has_surrogates(value) for value in row):
            column = next(header[i] for i, value in enumerate(row) if _has_surrogates(value))
            yield Problem(line, "invalid_utf8", "This row contains bytes that are not valid UTF-8.", field=column)
            continue
        yield RawRow(line, dict(zip(header, row, strict=True)))


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_ROLES = ("input", "target", "label", "group")
_REQUIRED_SFT = frozenset({"input", "target"})
_REQUIRED_OTHER = frozenset({"input", "label"})


def _may_dump_nul(metadata: dict) -> bool:
    """False when json.dumps(metadata) surely holds no \\u0000, checked without dumping (this runs for every row).

    The dump holds it only for a NUL character or a backslash before "u0000" in some string; numbers, booleans
    and null cannot make it. Anything else (nested values, other types) is left to json.dumps.
    """
    for key, value in metadata.items():
        if type(key) is not str or "\x00" in key or "\\u0000" in key:
            return True
        if type(value) is str:
            if "\x00" in value or "\\u0000" in value:
                return True
        elif value is not None and type(value) not in (int, float, bool):
            return True
    return False


def map_row(raw: RawRow, mapping: dict, *, task_type: str, max_text_chars: int) -> MappedRow | list[Problem]:
    """Apply a column mapping to one row: the mapped row, or the problems that stop it."""
    problems: list[Problem] = []
    values: dict[str, str] = {}
    required = _REQUIRED_SFT if task_type == "sft" else _REQUIRED_OTHER
    data = raw.data
    for role in _ROLES:
        column = mapping.get(role)
        if not column:
            continue
        value = data.get(column)
        if type(value) is str:
            pass  # the common case, checked first: this runs for every field of every row
        elif value is None:
            if role in required:
                problems.append(
                    Problem(raw.line, "missing_field", f"The column “{column}” is missing in this row.", column)
                )
            continue
        elif isinstance(value, bool | int | float):
            value = str(value)
        elif not isinstance(value, str):
            problems.append(
                Problem(raw.line, "bad_type", f"“{column}” must be text, not a {type(value).__name__}.", column)
            )
            continue
        if "\x00" in value:
            problems.append(
                Problem(raw.line, "bad_type", f"“{column}” contains a NUL character, which text cannot hold.", column)
            )
            continue
        if not value.isascii() and _has_surrogates(value):
            problems.append(
                Problem(
                    raw.line, "invalid_utf8", f"“{column}” holds a lone surrogate escape, which is not text.", column
                )
            )
            continue
        if role in required and not value.strip():
            problems.append(Problem(raw.line, "empty_text", f"“{column}” is empty.", column))
            continue
        if len(value) > max_text_chars:
            problems.append(
                Problem(
                    raw.line,
                    "too_long",
                    f"“{column}” has {len(value):,} characters; the limit is {max_text_chars:,}.",
                    column,
                    _excerpt(value),
                )
            )
            continue
        values[role] = value
    if problems:
        return problems
    mapped_columns = {mapping.get(role) for role in _ROLES}
    wanted = mapping.get("metadata")
    metadata = {
        key: value for key, value in data.items() if key not in mapped_columns and (wanted is None or key in wanted)
    }
    if _may_dump_nul(metadata) and "\\u0000" in json.dumps(metadata):
        return [Problem(raw.line, "bad_type", "A metadata field contains a NUL character, which text cannot hold.")]
    if any(not isinstance(v, str) or not v.isascii() for v in metadata.values()) and _has_surrogates(
        json.dumps(metadata, ensure_ascii=False)
    ):
        return [Problem(raw.line, "invalid_utf8", "A metadata field holds a lone surrogate escape, which is not text.")]
    return MappedRow(
        raw.line,
        values["input"],
        values.get("target", ""),
        values.get("label", "").strip(),
        values.get("group", "").strip(),
        metadata,
    )
