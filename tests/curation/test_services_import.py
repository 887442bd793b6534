import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File

from accounts.models import AuditEvent
from curation import formats, services
from curation.models import Dataset, DatasetVersion, Example, Upload, UploadProblem
from curation.selectors import upload_report_csv
from projectsite.progress import flag_set

pytestmark = pytest.mark.django_db

TICKETS = [
    {
        "question": f"My lab results for order {n} are missing from the portal",
        "answer": f"We re-sent order {n}.",
        "topic": "records" if n % 2 else "billing",
        "region": "north" if n % 3 else "south",
        "ticket": n,
    }
    for n in range(40)
]


def jsonl(records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def create(path: Path, actor, name="tickets", **kwargs) -> Upload:
    with open(path, "rb") as handle:
        return services.upload_create(
            actor=actor, file=File(handle, name=path.name), original_name=path.name, dataset_name=name, **kwargs
        )


def stage(upload: Upload, actor) -> Upload:
    services.upload_start_validation(upload=upload, actor=actor)
    return services.upload_stage(upload_id=upload.pk)


def test_upload_reads_columns_and_suggests_a_mapping(curator, write_file):
    upload = create(write_file("t.jsonl", jsonl(TICKETS)), curator)
    assert upload.columns == ["question", "answer", "topic", "region", "ticket"]
    assert upload.mapping == {"input": "question", "target": "answer", "group": "region"}
    assert upload.status == Upload.Status.UPLOADED
    assert AuditEvent.objects.for_object(upload).filter(action="upload.create", actor=curator).exists()


def test_checked_upload_reports_problems_then_imports_only_good_rows(curator, write_file):
    bad = ['{"question": "unclosed', '{"question": "", "answer": "x"}', json.dumps(TICKETS[0])]
    path = write_file("t.jsonl", jsonl(TICKETS) + "\n".join(bad) + "\n")
    upload = create(path, curator)
    upload = stage(upload, curator)

    assert upload.status == Upload.Status.VALIDATED
    assert (upload.total_rows, upload.good_rows, upload.rejected_rows) == (43, 40, 3)
    reasons = {(p.line, p.reason) for p in upload.problems.all()}
    assert reasons == {(41, "bad_json"), (42, "empty_text"), (43, "duplicate")}
    assert upload.problems.get(reason="duplicate").message == "Same content as line 1."
    report = "".join(upload_report_csv(upload))
    assert report.splitlines()[0] == "line,field,reason,message,excerpt"
    assert "41,,bad_json" in report
    # Staged rows are not visible as a dataset until the curator decides.
    assert not Dataset.objects.visible().exists()

    version = services.upload_commit(upload=upload, actor=curator)
    assert version.status == DatasetVersion.Status.READY
    assert version.row_count == 40 == version.examples.count()
    assert version.operation == DatasetVersion.Operation.IMPORT and version.parent is None
    assert len(version.content_hash) == 64
    assert sum(version.stats["splits"].values()) == 40
    assert version.stats["groups"] == {"north": 26, "south": 14}
    first = version.examples.order_by("row_index").first()
    assert (first.input, first.metadata, first.source_line) == (
        TICKETS[0]["question"],
        {"topic": "billing", "ticket": 0},
        1,
    )
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"upload.import", "version.create"}


def test_cancel_after_check_leaves_no_trace(curator, write_file):
    upload = stage(create(write_file("t.csv", "question,answer\nhi,there\n"), curator), curator)
    stored = Path(upload.file.path)
    assert stored.exists() and Example.objects.exists()
    services.upload_cancel(upload=upload, actor=curator)
    upload.refresh_from_db()
    assert upload.status == Upload.Status.CANCELLED
    assert not Example.objects.exists()
    assert not DatasetVersion.objects.exists()
    assert not Dataset.objects.exists()
    assert not UploadProblem.objects.exists()
    assert not stored.exists()


def test_an_import_that_fails_midway_leaves_nothing(curator, write_file, monkeypatch):
    records = [{"question": f"question number {n}", "answer": "answer"} for n in range(services.BATCH * 2 + 10)]
    upload = create(write_file("big.jsonl", jsonl(records)), curator)
    services.upload_start_validation(upload=upload, actor=curator)
    real_map_row = formats.map_row

    def crash_late(raw, *args, **kwargs):  # fault injection: the process dies after thousands of rows were written
        if raw.line == services.BATCH + 500:
            raise OSError("disk went away")
        return real_map_row(raw, *args, **kwargs)

    monkeypatch.setattr(formats, "map_row", crash_late)
    with pytest.raises(OSError):
        services.upload_stage(upload_id=upload.pk)
    upload.refresh_from_db()
    assert upload.status == Upload.Status.FAILED
    assert "Nothing was imported" in upload.error
    assert not Example.objects.exists()
    assert not DatasetVersion.objects.exists()
    assert not Dataset.objects.exists()
    assert not UploadProblem.objects.exists()


def test_cancel_while_checking_rolls_back_everything(curator, write_file):
    records = [{"question": f"question number {n}", "answer": "answer"} for n in range(services.BATCH + 10)]
    upload = create(write_file("big.jsonl", jsonl(records)), curator)
    services.upload_start_validation(upload=upload, actor=curator)
    services.upload_cancel(upload=Upload.objects.get(pk=upload.pk), actor=curator)  # sets the cancel flag
    upload = services.upload_stage(upload_id=upload.pk)
    assert upload.status == Upload.Status.CANCELLED
    assert not Example.objects.exists() and not Dataset.objects.exists()


def test_second_upload_into_the_same_dataset_waits_for_the_first(curator, engineer, write_file):
    first = create(write_file("a.csv", "question,answer\nhi,there\n"), curator, name="Shared")
    second = create(write_file("b.csv", "question,answer\nhello,again\n"), engineer, name="Shared")
    services.upload_start_validation(upload=first, actor=curator)
    with pytest.raises(ValidationError, match="being imported into “Shared”"):
        services.upload_start_validation(upload=second, actor=engineer)
    second.refresh_from_db()
    assert second.status == Upload.Status.UPLOADED  # nothing lost: it can start once the first is done
    services.upload_stage(upload_id=first.pk)
    services.upload_commit(upload=Upload.objects.get(pk=first.pk), actor=curator)
    services.upload_start_validation(upload=second, actor=engineer)
    services.upload_stage(upload_id=second.pk)
    version = services.upload_commit(upload=Upload.objects.get(pk=second.pk), actor=engineer)
    assert version.number == 2 and version.dataset.name == "Shared"


def test_file_names_with_folders_are_stored_safely(curator, write_file):
    path = write_file("t.csv", "question,answer\nhi,there\n")
    with open(path, "rb") as handle:
        upload = services.upload_create(
            actor=curator, file=File(handle, name="x.csv"), original_name="../../etc/passwd.csv", dataset_name="n"
        )
    assert upload.original_name == "passwd.csv"
    stored = Path(upload.file.path).resolve()
    assert stored.is_relative_to(Path(settings.MEDIA_ROOT).resolve())
    assert ".." not in upload.file.name


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), ("question,answer\nhi,there\n".encode("utf-16"), "UTF-16"), (b"\x00\x01\x02" * 100, "binary")],
)
def test_unreadable_upload_is_refused_and_not_kept(curator, write_file, content, message):
    media_before = set(Path(settings.MEDIA_ROOT).rglob("*"))
    with pytest.raises(ValidationError, match=message):
        create(write_file("t.csv", content), curator)
    assert not Upload.objects.exists()
    assert set(Path(settings.MEDIA_ROOT).rglob("*")) == media_before


def test_upload_over_the_size_limit_is_refused(curator, write_file, settings):
    settings.TUNINGDESK_MAX_UPLOAD_BYTES = 10
    with pytest.raises(ValidationError, match="limit"):
        create(write_file("t.csv", "question,answer\nhi,there\n"), curator)


def test_mapping_must_fit_the_file_and_the_task(curator, write_file):
    upload = create(
        write_file("t.csv", "text,topic,<script>alert(1)</script>\nhi,a,b\n"), curator, task_type="classification"
    )
    with pytest.raises(ValidationError) as error:
        services.upload_set_mapping(upload=upload, actor=curator, mapping={"input": "nope"})
    assert error.value.message_dict["input"] == ["The file has no column “nope”."]
    assert "label" in error.value.message_dict
    with pytest.raises(ValidationError, match="only one role"):
        services.upload_set_mapping(upload=upload, actor=curator, mapping={"input": "text", "label": "text"})
    upload = services.upload_set_mapping(
        upload=upload, actor=curator, mapping={"input": "text", "label": "topic", "metadata": []}
    )
    upload = stage(upload, curator)
    version = services.upload_commit(upload=upload, actor=curator)
    assert version.examples.get().metadata == {}
    assert version.stats["labels"] == {"a": 1}


def test_nothing_to_import_is_refused(curator, write_file):
    upload = stage(create(write_file("t.csv", "question,answer\n ,x\n"), curator), curator)
    assert upload.good_rows == 0
    with pytest.raises(ValidationError, match="No row"):
        services.upload_commit(upload=upload, actor=curator)


def test_staging_runs_once_even_if_delivered_twice(curator, write_file):
    upload = create(write_file("t.csv", "question,answer\nhi,there\n"), curator)
    services.upload_start_validation(upload=upload, actor=curator)
    services.upload_stage(upload_id=upload.pk)
    services.upload_stage(upload_id=upload.pk)
    assert Example.objects.count() == 1


def test_progress_flag_helpers_roundtrip():
    flag_set("test:flag")
    from projectsite.progress import flag_is_set

    assert flag_is_set("test:flag")
