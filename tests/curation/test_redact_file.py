"""manage.py redact_file: JSONL in, redacted JSONL out, with the real detection pipeline (no database)."""

import io
import json

import pytest
from django.core.management import CommandError, call_command


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run(*args, **options):
    stderr = io.StringIO()
    call_command("redact_file", *[str(arg) for arg in args], stderr=stderr, **options)
    return stderr.getvalue()


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_writes_text_redacted_text_and_entities_with_offsets_into_the_original(tmp_path):
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": "T-1", "text": "Hi, this is Maria Lopez. Call (212) 555-0143."}),
            json.dumps({"id": 7, "text": "🎉 Привет! Write to maria.lopez@example.org 🙂"}, ensure_ascii=False),
            "",
            json.dumps({"text": ""}),
        ],
    )
    target = tmp_path / "out.jsonl"
    summary = run(source, target)

    rows = read_jsonl(target)
    assert [row["id"] for row in rows] == ["T-1", 7, 4]  # no id: the line number
    first, second, third = rows
    assert first["text"] == "Hi, this is Maria Lopez. Call (212) 555-0143."
    assert first["redacted"] == "Hi, this is <PERSON>. Call <PHONE_NUMBER>."
    assert [(e["entity_type"], first["text"][e["start"] : e["end"]]) for e in first["entities"]] == [
        ("PERSON", "Maria Lopez"),
        ("PHONE_NUMBER", "(212) 555-0143"),
    ]
    assert set(first["entities"][0]) == {"entity_type", "start", "end", "score"}
    assert 0 < first["entities"][0]["score"] <= 1
    # offsets count code points: the emoji and Cyrillic before the email do not shift it
    assert second["redacted"].startswith("🎉 ") and second["redacted"].endswith(" Write to <EMAIL_ADDRESS> 🙂")
    email = second["entities"][-1]
    assert email["entity_type"] == "EMAIL_ADDRESS"
    assert second["text"][email["start"] : email["end"]] == "maria.lopez@example.org"
    assert third == {"id": 4, "text": "", "redacted": "", "entities": []}
    last_line = summary.strip().splitlines()[-1]
    assert last_line.startswith("redacted 3 texts (0 bad lines skipped), found ")
    assert "PHONE_NUMBER 1" in last_line and "EMAIL_ADDRESS 1" in last_line and str(target) in last_line


def test_entities_and_operator_options(tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "Maria Lopez, (212) 555-0143"})])
    target = tmp_path / "out.jsonl"
    run(source, target, entities="PHONE_NUMBER", operator="mask")
    assert read_jsonl(target)[0]["redacted"] == "Maria Lopez, (***) ***-****"


def test_pseudonyms_with_a_key_from_the_environment_or_a_file_are_the_same(tmp_path, monkeypatch):
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps({"id": n, "text": f"Ticket {n}: Maria Lopez called from (212) 555-0143."}) for n in range(3)],
    )
    monkeypatch.setenv("REDACTION_KEY", "dataset-key-1")
    run(source, tmp_path / "env.jsonl", operator="pseudonym")
    monkeypatch.delenv("REDACTION_KEY")
    (tmp_path / "key").write_text("dataset-key-1\n")
    run(source, tmp_path / "file.jsonl", operator="pseudonym", key_file=tmp_path / "key")

    from_env = [row["redacted"] for row in read_jsonl(tmp_path / "env.jsonl")]
    assert from_env == [row["redacted"] for row in read_jsonl(tmp_path / "file.jsonl")]
    assert "Maria" not in from_env[0] and "555-0143" not in from_env[0]
    # the same person and number get the same surrogate on every line
    assert len({text.split(": ", 1)[1] for text in from_env}) == 1


def test_small_batches_keep_every_line_in_order(tmp_path):
    lines = [json.dumps({"id": n, "text": f"write to user{n}@example.org"}) for n in range(7)]
    target = tmp_path / "out.jsonl"
    run(write_lines(tmp_path / "in.jsonl", lines), target, batch_size=2)
    rows = read_jsonl(target)
    assert [row["id"] for row in rows] == list(range(7))
    assert all(row["redacted"] == "write to <EMAIL_ADDRESS>" for row in rows)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        (json.dumps(["a", "list"]), "line 2: expected a JSON object"),
        (json.dumps({"id": 2, "body": "no text field"}), 'line 2: no "text" field'),
        (json.dumps({"id": 2, "text": 42}), 'line 2: "text" must be a string'),
    ],
)
def test_a_bad_line_stops_the_run_with_its_number_and_writes_nothing(tmp_path, bad_line, message):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "fine"}), bad_line])
    target = tmp_path / "out.jsonl"
    with pytest.raises(CommandError, match=message):
        run(source, target)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no temp file


def test_skip_bad_lines_reports_them_and_goes_on(tmp_path):
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps({"id": 1, "text": "Maria Lopez"}), "{broken", json.dumps({"id": 3, "text": "ok"})],
    )
    target = tmp_path / "out.jsonl"
    summary = run(source, target, skip_bad_lines=True)
    assert [row["id"] for row in read_jsonl(target)] == [1, 3]
    assert "skipped line 2: not valid JSON" in summary
    assert "(1 bad lines skipped)" in summary.strip().splitlines()[-1]


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "caf\xe9"}\n')
    with pytest.raises(CommandError, match="line 2: not valid UTF-8"):
        run(source, tmp_path / "out.jsonl")


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (["missing.jsonl", "out.jsonl"], {}, "Input file not found"),
        (["in.jsonl", "no-such-folder/out.jsonl"], {}, "Output folder does not exist"),
        (["in.jsonl", "in.jsonl"], {}, "different file"),
        (["in.jsonl", "out.jsonl"], {"entities": "PERSON,SHOE_SIZE"}, "Unknown entity type"),
        (["in.jsonl", "out.jsonl"], {"operator": "hash"}, "needs a secret key"),
        (["in.jsonl", "out.jsonl"], {"key_file": "missing.key", "operator": "hash"}, "Cannot read the key file"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(tmp_path, monkeypatch, args, options, message):
    monkeypatch.delenv("REDACTION_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    write_lines(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "hello"})])
    with pytest.raises(CommandError, match=message):
        run(*args, **options)


def test_the_profile_that_ran_is_named_and_gdpr_adds_national_ids(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": 1, "text": "Her PESEL is 44051401359, IBAN GB82 WEST 1234 5698 7654 32."}) + "\n"
    )
    healthcare = run(source, tmp_path / "a.jsonl")
    gdpr = run(source, tmp_path / "b.jsonl", "--profile", "gdpr")
    assert healthcare.strip().endswith("(profile: healthcare)") and "NATIONAL_ID" not in healthcare
    assert gdpr.strip().endswith("(profile: gdpr)") and "NATIONAL_ID 1" in gdpr
    assert "IBAN_CODE 1" in healthcare
