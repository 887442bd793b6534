"""The streaming readers against every kind of bad file a curator may bring."""

import codecs
import json

import pytest

from curation import formats
from curation.formats import FileRejected, Problem, RawRow

LIMIT = 64 * 1024


def rows(path, fmt):
    return list(formats.read_rows(path, fmt, max_row_bytes=LIMIT))


def problems(items):
    return [(item.line, item.reason) for item in items if isinstance(item, Problem)]


def test_jsonl_reports_each_bad_line_and_keeps_the_good_ones(write_file):
    path = write_file(
        "t.jsonl",
        '{"q": "a", "a": "b"}\n{"q": "broken\n[1, 2]\n\n{"q": "c", "a": "d"}\n"just a string"\n',
    )
    items = rows(path, "jsonl")
    assert [item.data["q"] for item in items if isinstance(item, RawRow)] == ["a", "c"]
    assert problems(items) == [(2, "bad_json"), (3, "not_object"), (6, "not_object")]


def test_utf8_bom_is_accepted(write_file):
    path = write_file("bom.csv", codecs.BOM_UTF8 + b"question,answer\nhi,there\n")
    (row,) = rows(path, "csv")
    assert row.data == {"question": "hi", "answer": "there"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("question,answer\nhi,there\n".encode("utf-16"), "UTF-16"),
        ("question,answer\nhi,there\n".encode("utf-16-le"), "UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "binary"),
        (b"PK\x03\x04\x14\x00\x06\x00", "spreadsheet"),
        (b"", "empty"),
        (b"   \n\n", "empty"),
    ],
)
def test_unreadable_files_are_rejected_with_a_plain_reason(write_file, content, message):
    path = write_file("f.csv", content)
    with pytest.raises(FileRejected, match=message):
        rows(path, "csv")


def test_invalid_utf8_in_one_row_rejects_only_that_row(write_file):
    path = write_file("t.jsonl", b'{"q": "ok"}\n{"q": "caf\xe9"}\n{"q": "fine"}\n')
    items = rows(path, "jsonl")
    assert problems(items) == [(2, "invalid_utf8")]
    csv_path = write_file("t.csv", b"q,a\nok,1\ncaf\xe9,2\nfine,3\n")
    items = rows(csv_path, "csv")
    assert problems(items) == [(3, "invalid_utf8")]
    assert len([item for item in items if isinstance(item, RawRow)]) == 2


def test_ragged_csv_rows_are_reported_with_their_line(write_file):
    path = write_file("t.csv", 'q,a,label\n1,2,3\n4,5\n6,7,8,9\n"multi\nline",x,y\n10,11,12\n')
    items = rows(path, "csv")
    assert problems(items) == [(3, "ragged_row"), (4, "ragged_row")]
    good = [item for item in items if isinstance(item, RawRow)]
    assert [item.line for item in good] == [2, 5, 7]
    assert good[1].data["q"] == "multi\nline"


def test_tsv_is_read_with_tabs(write_file):
    path = write_file("t.tsv", "q\ta\nhello, world\tyes\n")
    (row,) = rows(path, "tsv")
    assert row.data == {"q": "hello, world", "a": "yes"}


def test_csv_header_problems_reject_the_file(write_file):
    with pytest.raises(FileRejected, match="unique"):
        rows(write_file("dup.csv", "q,q\n1,2\n"), "csv")
    with pytest.raises(FileRejected, match="name the columns"):
        rows(write_file("blank.csv", ",\n1,2\n"), "csv")


def test_a_50_mb_single_line_is_rejected_without_holding_it(write_file, tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as handle:
        handle.write(b'{"q": "first"}\n{"q": "')
        chunk = b"x" * (1024 * 1024)
        for _ in range(50):
            handle.write(chunk)
        handle.write(b'"}\n{"q": "last"}\n')
    items = rows(path, "jsonl")
    assert problems(items) == [(2, "too_long")]
    assert "limit" in items[1].message
    assert [item.data["q"] for item in items if isinstance(item, RawRow)] == ["first", "last"]


def test_json_bomb_deep_nesting_is_refused_per_row(write_file):
    bomb = "[" * 20_000 + "]" * 20_000
    path = write_file("bomb.jsonl", '{"q": "ok"}\n' + bomb + "\n" + '{"q": ' + bomb + "}\n")
    items = rows(path, "jsonl")
    assert problems(items) == [(2, "too_deep"), (3, "too_deep")]
    array_path = write_file("bomb.json", '[{"q": "ok"}, {"q": ' + bomb + '}, {"q": "after"}]')
    items = rows(array_path, "json")
    assert problems(items) == [(2, "too_deep")]
    assert [item.data["q"] for item in items if isinstance(item, RawRow)] == ["ok", "after"]


def test_json_array_streams_records_with_tricky_strings(write_file):
    records = [{"q": 'brackets ] } [ { and "quotes" and \\ backslash', "n": i} for i in range(3)]
    path = write_file("t.json", json.dumps(records, indent=2))
    items = rows(path, "json")
    assert [item.data for item in items] == records


def test_json_file_that_is_not_an_array_or_is_cut_short(write_file):
    with pytest.raises(FileRejected, match="one array"):
        rows(write_file("obj.json", '{"q": 1}'), "json")
    with pytest.raises(FileRejected, match="not closed"):
        rows(write_file("cut.json", '[{"q": 1}, {"q": '), "json")


def test_map_row_checks_required_fields_types_and_lengths():
    mapping = {"input": "q", "target": "a", "group": "g"}

    def mapped(data, **kwargs):
        return formats.map_row(RawRow(7, data), mapping, task_type="sft", max_text_chars=kwargs.get("limit", 100))

    ok = mapped({"q": "hi", "a": "there", "g": "smb", "extra": 1})
    assert (ok.input, ok.target, ok.group, ok.metadata) == ("hi", "there", "smb", {"extra": 1})
    assert [p.reason for p in mapped({"q": "hi"})] == ["missing_field"]
    assert [p.reason for p in mapped({"q": "  ", "a": "x"})] == ["empty_text"]
    assert [p.reason for p in mapped({"q": {"nested": 1}, "a": "x"})] == ["bad_type"]
    assert [p.reason for p in mapped({"q": "x" * 101, "a": "x"})] == ["too_long"]
    assert [p.reason for p in mapped({"q": "nul\x00byte", "a": "x"})] == ["bad_type"]
    assert (
        formats.map_row(
            RawRow(1, {"q": "t", "l": 3}), {"input": "q", "label": "l"}, task_type="classification", max_text_chars=100
        ).label
        == "3"
    )


def test_column_names_come_from_header_or_first_objects(write_file):
    assert formats.sniff_columns(write_file("t.csv", "b,a\n1,2\n"), "csv", max_row_bytes=LIMIT) == ["b", "a"]
    path = write_file("t.jsonl", '{"x": 1}\n{"y": 2, "x": 3}\n')
    assert formats.sniff_columns(path, "jsonl", max_row_bytes=LIMIT) == ["x", "y"]


def test_a_line_over_the_row_limit_after_a_valid_header_is_named_with_the_limit(write_file, tmp_path):
    # As found: a 30 MB line after a valid header said "No readable rows were found ..., so there are no columns".
    limit = 4 * 1024 * 1024
    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:
        handle.write(b"question,answer\n")
        for _ in range(30):
            handle.write(b"x" * (1024 * 1024))
        handle.write(b",short\n")
    with pytest.raises(FileRejected) as caught:
        formats.sniff_columns(path, "csv", max_row_bytes=limit)
    assert str(caught.value).startswith("Line 2 is longer than the limit of 4 MB (4,194,304 bytes) per row")
    assert "No readable rows" not in str(caught.value)

    jsonl = write_file("huge.jsonl", '{"q": "' + "x" * (LIMIT + 10) + '"}\n')
    with pytest.raises(FileRejected, match=r"^Line 1 is longer than the limit of 64 KB \(65,536 bytes\) per row"):
        formats.sniff_columns(jsonl, "jsonl", max_row_bytes=LIMIT)


def test_a_csv_row_over_the_limit_is_reported_as_too_long_and_the_rest_is_read(write_file):
    many_cells = ",".join(["x" * 1000] * 70)  # each cell is fine; the row together is over 64 KB
    one_cell = "y" * (LIMIT + 1)
    header = ",".join(f"c{i}" for i in range(70))
    path = write_file("t.csv", "\n".join([header, many_cells, one_cell, ",".join("z" * 70)]) + "\n")
    items = rows(path, "csv")
    assert problems(items) == [(2, "too_long"), (3, "too_long")]
    for problem in items[:2]:
        assert "longer than the limit of 64 KB (65,536 bytes) per row" in problem.message
    assert isinstance(items[2], RawRow) and items[2].line == 4
    assert formats.sniff_columns(path, "csv", max_row_bytes=LIMIT)[:2] == ["c0", "c1"]


def test_lone_surrogate_escapes_are_rejected_per_row(write_file):
    path = write_file(
        "t.jsonl",
        '{"q": "ok", "a": "x"}\n{"q": "bad \\ud800 text", "a": "x"}\n{"q": "fine", "a": "x", "note": "\\udfff"}\n',
    )
    mapped = [
        formats.map_row(item, {"input": "q", "target": "a"}, task_type="sft", max_text_chars=100)
        for item in rows(path, "jsonl")
    ]
    assert mapped[0].input == "ok"
    assert [p.reason for p in mapped[1]] == ["invalid_utf8"]
    assert [p.reason for p in mapped[2]] == ["invalid_utf8"]
