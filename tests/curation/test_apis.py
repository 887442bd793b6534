"""The REST API under /api/v1/ for datasets, versions, examples, curation steps and uploads.

Everything runs through the real services and selectors. Where the API queues Celery work with
``transaction.on_commit`` (which never fires inside the ``db`` fixture's transaction), the test runs
the same service the worker would (``upload_stage``, ``dedupe_run_execute``); one test uses a real worker.
"""

import csv
import io
import json

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from curation import services
from curation.models import DatasetVersion, DedupeRun, Example, Flag, Upload
from projectsite.progress import ProgressReporter
from tests.conftest import wait_for
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

TICKETS_CSV = (
    "question,answer,source\n"
    "Where is my refund?,It was sent on Monday.,email\n"
    "How do I reset my password?,Use the link on the sign-in page.,chat\n"
    ",Nobody asked anything,email\n"
    "Where is my refund?,It was sent on Monday.,email\n"
    'Can I change my delivery address?,"Yes, until the parcel ships.",phone\n'
)
TICKETS_MAPPING = {"input": "question", "target": "answer", "metadata": ["source"]}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Progress and cancel flags live in the (file) cache, keyed by id; ids repeat between tests.
    cache.clear()
    yield
    cache.clear()


def make_version(rows=None, *, count: int = 0, dataset=None, **fields) -> DatasetVersion:
    """A ready version whose rows are numbered 1..n (``rows``: per-row field overrides)."""
    rows = rows if rows is not None else [{} for _ in range(count)]
    version = VersionFactory(**({"dataset": dataset} if dataset else {}), row_count=len(rows), **fields)
    Example.objects.bulk_create(
        [ExampleFactory.build(version=version, row_index=i, **row) for i, row in enumerate(rows, start=1)]
    )
    return version


def upload_file(client, path, **fields):
    with open(path, "rb") as handle:
        return client.post(reverse("api-upload-list"), {"file": handle, **fields}, format="multipart")


def walk_pages(client, url: str) -> list[list[dict]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json()
        pages.append(response.json()["results"])
        url = response.json()["next"]
    return pages


# --- uploads ---------------------------------------------------------------------------------


def test_upload_flow_check_problems_report_import_and_browse(curator, api_client, write_file):
    client = api_client(curator)
    path = write_file("tickets.csv", TICKETS_CSV)

    response = upload_file(
        client, path, dataset_name="Support tickets", task_type="sft", mapping=json.dumps(TICKETS_MAPPING)
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["status"] == "uploaded"
    assert created["status_label"] == "Waiting for column mapping"
    assert created["columns"] == ["question", "answer", "source"]
    assert created["mapping"] == TICKETS_MAPPING
    assert created["format"] == "csv"
    upload_id = created["id"]

    preview = client.get(reverse("api-upload-preview", args=[upload_id])).json()
    assert preview["rows"][0] == {
        "line": 2,
        "input": "Where is my refund?",
        "target": "It was sent on Monday.",
        "label": "",
        "group": "",
        "metadata": {"source": "email"},
    }
    assert preview["rows"][2]["line"] == 4 and "empty" in preview["rows"][2]["problem"]

    response = client.post(reverse("api-upload-validate", args=[upload_id]))
    assert response.status_code == 202, response.json()
    assert response.json()["status_label"] == "Checking rows"

    # While the worker checks rows it reports progress through the cache; the upload shows it.
    ProgressReporter(services.upload_progress_key(upload_id))(0.4, force=True, rows=2)
    detail = client.get(reverse("api-upload-detail", args=[upload_id])).json()
    assert detail["progress"]["fraction"] == pytest.approx(0.4)
    assert detail["progress"]["rows_checked"] == 2

    services.upload_stage(upload_id=upload_id)  # exactly what the Celery task runs

    detail = client.get(reverse("api-upload-detail", args=[upload_id])).json()
    assert detail["status"] == "validated", detail["error"]
    assert detail["counts"] == {"total": 5, "good": 3, "rejected": 2}
    assert detail["progress"]["fraction"] == 1.0
    staged_version = detail["version"]
    # A staged import is invisible until the curator decides to keep it.
    assert client.get(reverse("api-version-detail", args=[staged_version])).status_code == 404

    problems = client.get(reverse("api-upload-problems", args=[upload_id])).json()["results"]
    assert [(p["line"], p["reason"]) for p in problems] == [(4, "empty_text"), (5, "duplicate")]
    assert problems[1]["message"] == "Same content as line 2."

    report = client.get(reverse("api-upload-report", args=[upload_id]))
    assert report.status_code == 200
    assert report["Content-Type"].startswith("text/csv")
    assert 'filename="tickets-rejected-rows.csv"' in report["Content-Disposition"]
    report_rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert report_rows[0] == ["line", "field", "reason", "message", "excerpt"]
    assert [row[0] for row in report_rows[1:]] == ["4", "5"]

    response = client.post(reverse("api-upload-import", args=[upload_id]))
    assert response.status_code == 201, response.json()
    version = response.json()
    assert version["id"] == staged_version
    assert version["operation"] == "import" and version["row_count"] == 3 and version["parent"] is None
    assert client.get(reverse("api-upload-detail", args=[upload_id])).json()["status"] == "imported"

    datasets = client.get(reverse("api-dataset-list")).json()["results"]
    assert [(d["name"], d["latest_version"], d["latest_rows"]) for d in datasets] == [
        ("Support tickets", version["id"], 3)
    ]
    versions = client.get(reverse("api-dataset-versions", args=[datasets[0]["id"]])).json()["results"]
    assert [v["id"] for v in versions] == [version["id"]]

    rows = client.get(reverse("api-version-examples", args=[version["id"]])).json()["results"]
    assert [row["input"] for row in rows] == [
        "Where is my refund?",
        "How do I reset my password?",
        "Can I change my delivery address?",
    ]
    assert rows[2]["target"] == "Yes, until the parcel ships."
    assert rows[2]["metadata"] == {"source": "phone"}
    assert rows[2]["source_line"] == 6


def test_upload_with_start_true_begins_checking_at_once(curator, api_client, write_file):
    client = api_client(curator)
    response = upload_file(
        client,
        write_file("t.csv", TICKETS_CSV),
        dataset_name="Tickets",
        task_type="sft",
        mapping=json.dumps(TICKETS_MAPPING),
        start="true",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "validating"


def test_mapping_endpoint_changes_the_mapping_and_task_type(curator, api_client, write_file):
    client = api_client(curator)
    upload_id = upload_file(client, write_file("t.csv", TICKETS_CSV), dataset_name="Intents", task_type="sft").json()[
        "id"
    ]
    response = client.post(
        reverse("api-upload-mapping", args=[upload_id]),
        {"mapping": {"input": "question", "label": "source"}, "task_type": "classification"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["mapping"] == {"input": "question", "label": "source"}
    assert response.json()["task_type"] == "classification"

    response = client.post(
        reverse("api-upload-mapping", args=[upload_id]), {"mapping": {"input": "nope"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "The file has no column “nope”."
    assert response.json()["fields"]["mapping.input"] == ["The file has no column “nope”."]


def test_bad_upload_input_gets_json_errors_a_person_can_act_on(curator, api_client, write_file):
    client = api_client(curator)
    path = write_file("t.csv", TICKETS_CSV)

    response = upload_file(
        client,
        path,
        dataset_name="Tickets",
        task_type="sft",
        mapping=json.dumps({"input": "question", "target": "reply"}),
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "The file has no column “reply”.",
        "fields": {"mapping.target": ["The file has no column “reply”."]},
    }
    # The client never got an id for it, so nothing half-made is left to find.
    assert not Upload.objects.exclude(status=Upload.Status.CANCELLED).exists()

    response = upload_file(client, path, dataset_name="Tickets", task_type="poetry")
    assert response.status_code == 400
    assert response.json()["error"] == "Unknown task type “poetry”. Use one of: sft, classification."
    assert set(response.json()["fields"]) == {"task_type"}

    response = upload_file(client, path, dataset_name="Tickets", task_type="sft", mapping="{input: question}")
    assert response.status_code == 400
    assert response.json()["error"].startswith("The mapping is not valid JSON.")

    response = upload_file(client, path, dataset_name="Tickets", task_type="sft", mapping='{"prompt": "question"}')
    assert response.status_code == 400
    assert response.json()["error"] == "Unknown mapping key(s): prompt. Use input, target, label, group, metadata."

    response = client.post(
        reverse("api-upload-list"), {"dataset_name": "Tickets", "task_type": "sft"}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["fields"]["file"]

    response = upload_file(client, write_file("notes.txt", "hello"), dataset_name="Tickets", task_type="sft")
    assert response.status_code == 400
    assert "Cannot tell the format of “notes.txt”" in response.json()["error"]


def test_import_before_checking_and_a_second_active_import_are_refused(curator, api_client, write_file):
    client = api_client(curator)
    path = write_file("t.csv", TICKETS_CSV)
    first = upload_file(
        client, path, dataset_name="Tickets", task_type="sft", mapping=json.dumps(TICKETS_MAPPING)
    ).json()["id"]
    second = upload_file(
        client, path, dataset_name="Tickets", task_type="sft", mapping=json.dumps(TICKETS_MAPPING)
    ).json()["id"]

    response = client.post(reverse("api-upload-import", args=[first]))
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Only a checked upload can be imported; this one is “Waiting for column mapping”."
    )

    assert client.post(reverse("api-upload-validate", args=[first])).status_code == 202
    response = client.post(reverse("api-upload-validate", args=[second]))
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"Another file (upload #{first}, “t.csv”) is being imported into “Tickets”. "
        "Wait until it is imported or cancelled, then try again."
    )


def test_upload_with_nothing_to_import_says_what_to_do(curator, api_client, write_file):
    client = api_client(curator)
    path = write_file("empty.csv", "question,answer\n,\n,\n")
    upload_id = upload_file(
        client,
        path,
        dataset_name="Empty",
        task_type="sft",
        mapping=json.dumps({"input": "question", "target": "answer"}),
        start="true",
    ).json()["id"]
    services.upload_stage(upload_id=upload_id)
    response = client.post(reverse("api-upload-import", args=[upload_id]))
    assert response.status_code == 400
    assert response.json()["error"] == (
        "No row of this file can be imported. Download the report, fix the file and upload it again."
    )


@pytest.mark.parametrize("size", [5_000, 1_200_000], ids=["over-limit-file", "over-limit-body"])
def test_oversize_upload_gets_413_with_a_clear_message(curator, api_client, write_file, settings, size):
    settings.TUNINGDESK_MAX_UPLOAD_BYTES = 1_000
    path = write_file("big.csv", "question,answer\n" + "Where is my refund?,Sent.\n" * (size // 25))
    response = upload_file(api_client(curator), path, dataset_name="Big", task_type="sft")
    assert response.status_code == 413
    assert response.json() == {
        "error": "The file is larger than the upload limit of 1000\xa0bytes (1,000 bytes). "
        "Split it into smaller files, or ask an admin to raise TUNINGDESK_MAX_UPLOAD_BYTES."
    }
    assert not Upload.objects.exists()


def test_browser_session_needs_csrf_and_oversize_still_gets_413(curator, write_file, settings):
    # Swagger UI and scripts in the browser use the session cookie: DRF then checks CSRF, which reads
    # the body before the view does; an oversize body must still end as a clear 413.
    settings.TUNINGDESK_MAX_UPLOAD_BYTES = 1_000
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(curator)  # client.login() signs in without a request, which django-axes refuses
    client.get("/login/")  # any page with a form hands out the CSRF cookie
    token = client.cookies["csrftoken"].value
    small = write_file("ok.csv", "question,answer\nWhere is my refund?,Sent.\n")
    big = write_file("big.csv", "question,answer\n" + "Where is my refund?,Sent.\n" * 50_000)
    fields = {"dataset_name": "Session", "task_type": "sft"}

    with open(small, "rb") as handle:
        response = client.post(reverse("api-upload-list"), {"file": handle, **fields}, format="multipart")
    assert response.status_code == 403
    assert response.json() == {"error": "CSRF Failed: CSRF token missing."}
    with open(big, "rb") as handle:
        response = client.post(
            reverse("api-upload-list"), {"file": handle, **fields}, format="multipart", HTTP_X_CSRFTOKEN=token
        )
    assert response.status_code == 413
    assert response.json()["error"].startswith("The file is larger than the upload limit")
    with open(small, "rb") as handle:
        response = client.post(
            reverse("api-upload-list"), {"file": handle, **fields}, format="multipart", HTTP_X_CSRFTOKEN=token
        )
    assert response.status_code == 201


def test_format_can_be_given_when_the_file_name_does_not_tell(curator, api_client, write_file):
    path = write_file("export.txt", "question\tanswer\nWhere is my refund?\tSent on Monday.\n")
    response = upload_file(api_client(curator), path, dataset_name="Tabs", task_type="sft", format="tsv")
    assert response.status_code == 201, response.json()
    assert (response.json()["format"], response.json()["columns"]) == ("tsv", ["question", "answer"])
    assert response.json()["mapping"] == {"input": "question", "target": "answer"}


def test_someone_elses_upload_is_not_found_but_admins_see_all(curator, engineer, admin_user, api_client, write_file):
    upload_id = upload_file(
        api_client(curator), write_file("t.csv", TICKETS_CSV), dataset_name="Tickets", task_type="sft"
    ).json()["id"]
    other = api_client(engineer)
    for name in ("api-upload-detail", "api-upload-preview", "api-upload-problems", "api-upload-report"):
        response = other.get(reverse(name, args=[upload_id]))
        assert response.status_code == 404, name
        assert response.json() == {"error": f"You have no upload #{upload_id}."}
    for name in ("api-upload-validate", "api-upload-import", "api-upload-cancel"):
        assert other.post(reverse(name, args=[upload_id])).status_code == 404, name
    assert other.get(reverse("api-upload-list")).json()["results"] == []
    assert Upload.objects.get(pk=upload_id).status == Upload.Status.UPLOADED

    admin = api_client(admin_user)
    assert [u["id"] for u in admin.get(reverse("api-upload-list")).json()["results"]] == [upload_id]
    assert admin.get(reverse("api-upload-detail", args=[upload_id])).json()["created_by"] == "curator"


def test_cancel_removes_the_upload_file_and_preview_says_so(curator, api_client, write_file):
    client = api_client(curator)
    upload_id = upload_file(client, write_file("t.csv", TICKETS_CSV), dataset_name="Tickets", task_type="sft").json()[
        "id"
    ]
    response = client.post(reverse("api-upload-cancel", args=[upload_id]))
    assert response.status_code == 200
    assert response.json()["status_label"] == "Cancelled"
    response = client.get(reverse("api-upload-preview", args=[upload_id]))
    assert response.status_code == 410
    assert response.json()["error"] == "This upload was cancelled and its file deleted; upload the file again."
    response = client.post(reverse("api-upload-cancel", args=[upload_id]))
    assert response.status_code == 400
    assert response.json()["error"] == "This upload is “Cancelled” and cannot be cancelled."


@pytest.mark.worker
def test_real_worker_checks_an_upload_started_through_the_api(
    transactional_db, celery_worker_proc, make_user, api_client, write_file
):
    client = api_client(make_user("curator"))
    response = upload_file(
        client,
        write_file("t.csv", TICKETS_CSV),
        dataset_name="Worker tickets",
        task_type="sft",
        mapping=json.dumps(TICKETS_MAPPING),
        start="true",
    )
    assert response.status_code == 201, response.json()
    url = reverse("api-upload-detail", args=[response.json()["id"]])

    detail = wait_for(lambda: (d := client.get(url).json())["status"] in ("validated", "failed") and d, timeout=60)
    assert detail["status"] == "validated", detail["error"]
    assert detail["counts"] == {"total": 5, "good": 3, "rejected": 2}
    response = client.post(reverse("api-upload-import", args=[detail["id"]]))
    assert response.status_code == 201
    assert response.json()["row_count"] == 3


# --- browsing --------------------------------------------------------------------------------


def test_cursor_pages_walk_every_row_once_in_row_order(curator, api_client):
    version = make_version(count=520)
    # Rows inserted out of order must still come back by row.
    Example.objects.filter(version=version, row_index__in=[7, 300]).delete()
    Example.objects.bulk_create([ExampleFactory.build(version=version, row_index=i) for i in (300, 7)])
    client = api_client(curator)
    url = reverse("api-version-examples", args=[version.pk])

    pages = walk_pages(client, url)
    assert [len(page) for page in pages] == [50] * 10 + [20]
    assert [row["row_index"] for page in pages for row in page] == list(range(1, 521))

    pages = walk_pages(client, url + "?page_size=1000")
    assert [len(page) for page in pages] == [500, 20]

    second = client.get(client.get(url + "?page_size=100").json()["next"]).json()
    assert [row["row_index"] for row in second["results"]][:2] == [101, 102]
    back = client.get(second["previous"]).json()
    assert [row["row_index"] for row in back["results"]] == list(range(1, 101))


def test_example_pages_run_no_count_no_offset_and_no_query_per_row(curator, api_client):
    version = make_version(count=300)
    client = api_client(curator)
    url = reverse("api-version-examples", args=[version.pk])
    deep = client.get(client.get(url + "?page_size=250").json()["next"] + "&page_size=10")
    assert deep.json()["results"][0]["row_index"] == 251

    counts = {}
    for size in (10, 200):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"{url}?page_size={size}")
        assert len(response.json()["results"]) == size
        sql = [query["sql"].upper() for query in queries.captured_queries]
        assert not any("COUNT(" in statement for statement in sql), sql
        assert not any(" OFFSET " in statement for statement in sql), sql
        counts[size] = len(sql)
    assert counts[10] == counts[200], counts


def test_filters_and_search_narrow_the_rows(curator, api_client):
    version = make_version(
        [
            {"input": "Where is my refund for order 1?", "split": "train", "label": "billing", "group": "emea"},
            {"input": "How do I reset my password?", "split": "validation", "label": "account", "group": "emea"},
            {"input": "Hi", "split": "test", "label": "other", "group": "apac", "flags": Flag.SHORT},
            {
                "input": "The parcel never arrived",
                "target": "We sent a refund.",
                "split": "train",
                "label": "billing",
                "group": "apac",
                "flags": Flag.SHORT | Flag.NOT_ENGLISH,
            },
        ]
    )
    client = api_client(curator)
    url = reverse("api-version-examples", args=[version.pk])

    def rows(query: str) -> list[int]:
        response = client.get(f"{url}?{query}")
        assert response.status_code == 200, response.json()
        return [row["row_index"] for row in response.json()["results"]]

    assert rows("split=train") == [1, 4]
    assert rows("label=account") == [2]
    assert rows("group=apac") == [3, 4]
    assert rows(f"flag={Flag.SHORT.value}") == [3, 4]
    assert rows(f"flag={Flag.NOT_ENGLISH.value}") == [4]
    assert rows("q=refund") == [1, 4]  # input or target
    assert rows("q=refund&group=emea") == [1]
    assert rows("q=password") == [2]

    response = client.get(f"{url}?flag=3")
    assert response.status_code == 400
    assert response.json()["error"] == "Unknown flag “3”. Use one of: 1, 2, 4, 8."
    response = client.get(f"{url}?split=holdout")
    assert response.status_code == 400
    assert response.json()["fields"] == {"split": ["Unknown split “holdout”. Use one of: train, validation, test."]}


def test_example_detail_and_staged_versions_are_invisible(curator, api_client):
    version = make_version([{"input": "Where is my refund?", "metadata": {"ticket": "T-1"}, "flags": Flag.LONG}])
    example = version.examples.get()
    client = api_client(curator)
    body = client.get(reverse("api-example-detail", args=[example.pk])).json()
    assert body["input"] == "Where is my refund?"
    assert body["metadata"] == {"ticket": "T-1"}
    assert body["version"] == version.pk
    assert body["flag_labels"] == ["Very long"]

    staged = make_version(count=1, status=DatasetVersion.Status.STAGED)
    staged_example = staged.examples.get()
    for response in (
        client.get(reverse("api-example-detail", args=[staged_example.pk])),
        client.get(reverse("api-version-detail", args=[staged.pk])),
        client.get(reverse("api-version-examples", args=[staged.pk])),
        client.get(reverse("api-version-export", args=[staged.pk])),
        client.get(reverse("api-dataset-detail", args=[staged.dataset_id])),
    ):
        assert response.status_code == 404
        assert response.json()["error"]
    assert staged.dataset.name not in [d["name"] for d in client.get(reverse("api-dataset-list")).json()["results"]]


def test_version_detail_shows_how_it_was_made(curator, api_client):
    parent = make_version(count=2)
    child = make_version(
        count=2,
        dataset=parent.dataset,
        parent=parent,
        operation=DatasetVersion.Operation.SPLIT,
        operation_params={"seed": 5},
        content_hash="ab" * 32,
        split_seed=5,
        stats={"splits": {"train": 2}},
        created_by=curator,
    )
    body = api_client(curator).get(reverse("api-version-detail", args=[child.pk])).json()
    assert body == {
        "id": child.pk,
        "dataset": parent.dataset_id,
        "number": child.number,
        "parent": parent.pk,
        "operation": "split",
        "operation_label": "Re-split",
        "operation_params": {"seed": 5},
        "content_hash": "ab" * 32,
        "row_count": 2,
        "privacy": "raw",
        "privacy_label": "Not reviewed: may contain personal data",
        "privacy_review": None,
        "exportable": False,
        "split_seed": 5,
        "split_ratios": {"train": 0.8, "validation": 0.1, "test": 0.1},
        "stats": {"splits": {"train": 2}},
        "created_by": "curator",
        "created_at": body["created_at"],
    }


def test_versions_tell_their_privacy_state_so_a_client_need_not_try_an_export(
    curator, reviewer, api_client, django_assert_max_num_queries
):
    # As found: only an export attempt (then a 400) told a client that a version had not passed privacy review.
    raw = make_version(count=1)
    in_review = make_version(count=1, dataset=raw.dataset)
    approved = make_version(count=1, dataset=raw.dataset, privacy=DatasetVersion.Privacy.APPROVED)
    started = api_client(reviewer).post(reverse("api-redaction-start", args=[in_review.pk]), {}, format="json")
    assert started.status_code == 202, started.json()
    client = api_client(curator)

    def state(body: dict) -> tuple:
        return body["privacy"], body["privacy_review"], body["exportable"]

    expected = {
        raw.pk: ("raw", None, False),
        in_review.pk: ("in_review", started.json()["id"], False),
        approved.pk: ("approved", None, True),
    }
    for version_id, want in expected.items():
        assert state(client.get(reverse("api-version-detail", args=[version_id])).json()) == want
    with django_assert_max_num_queries(4):  # the open review comes with the list, not one query per version
        listed = client.get(reverse("api-dataset-versions", args=[raw.dataset_id])).json()["results"]
    assert {body["id"]: state(body) for body in listed} == expected
    labels = {body["id"]: body["privacy_label"] for body in listed}
    assert labels[in_review.pk] == "Privacy review under way: may contain personal data"
    # What the fields promise is what export does.
    assert client.get(reverse("api-version-export", args=[in_review.pk]) + "?format=jsonl").status_code == 409
    assert client.get(reverse("api-version-export", args=[approved.pk]) + "?format=jsonl").status_code == 200


def test_the_privacy_state_is_an_enum_in_the_schema(curator, client):
    client.force_login(curator)
    schema = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert schema["VersionPrivacyEnum"]["enum"] == ["raw", "in_review", "approved"]
    assert schema["VersionOutput"]["properties"]["privacy"]["allOf"][0]["$ref"].endswith("/VersionPrivacyEnum")
    assert schema["VersionOutput"]["properties"]["exportable"]["type"] == "boolean"


# --- export ----------------------------------------------------------------------------------


def test_export_streams_jsonl_and_csv_with_formulas_neutralised(curator, api_client):
    dataset = DatasetFactory(name="Billing FAQ")
    version = make_version(
        [
            {"input": '=HYPERLINK("http://evil")', "target": "+1 555", "label": "@admin", "metadata": {"k": "v"}},
            {"input": "-2+3", "target": "\tindented"},
            {"input": "\rreturn", "target": "Plain answer"},
        ],
        dataset=dataset,
        privacy=DatasetVersion.Privacy.APPROVED,
    )
    client = api_client(curator)
    url = reverse("api-version-export", args=[version.pk])

    response = client.get(url + "?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="billing-faq-v{version.number}.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["row"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["input"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["target"] == "'+1 555"
    assert rows[0]["label"] == "'@admin"
    assert rows[1]["input"] == "'-2+3"
    assert rows[1]["target"] == "'\tindented"
    assert rows[2]["input"] == "'\rreturn"
    assert rows[2]["target"] == "Plain answer"

    response = client.get(url + "?format=jsonl")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="billing-faq-v{version.number}.jsonl"'
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["input"] for line in lines] == ['=HYPERLINK("http://evil")', "-2+3", "\rreturn"]
    assert lines[0]["metadata"] == {"k": "v"}

    assert AuditEvent.objects.filter(action="version.export", object_id=str(version.pk)).count() == 2

    response = client.get(url + "?format=xlsx")
    assert response.status_code == 400
    assert response.json()["error"] == "Choose format=jsonl or format=csv."


# --- curation steps --------------------------------------------------------------------------


def test_split_makes_a_new_version_with_the_parent_set(curator, api_client):
    version = make_version(count=40)
    client = api_client(curator)
    url = reverse("api-version-split", args=[version.pk])
    response = client.post(url, {"seed": 7, "ratios": {"train": 0.5, "validation": 0.25, "test": 0.25}}, format="json")
    assert response.status_code == 201, response.json()
    new = response.json()
    assert new["parent"] == version.pk and new["operation"] == "split" and new["row_count"] == 40
    assert new["split_seed"] == 7 and new["stats"]["splits"] == {"train": 20, "validation": 10, "test": 10}

    response = client.post(url, {"seed": 7, "ratios": {"train": 0.5, "validation": 0.1, "test": 0.1}}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"ratios": ["Split shares must add up to 100%, not 70%."]}
    response = client.post(url, {"seed": 7, "ratios": "80/10/10"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("Give each split a share as a number")


def test_filter_makes_a_new_version_without_the_failing_rows(curator, api_client):
    version = make_version(
        [
            {"input": "short", "target": ""},
            {"input": "a longer question here", "target": "ok"},
            {"input": "another question here", "target": ""},
        ]
    )
    client = api_client(curator)
    url = reverse("api-version-filter", args=[version.pk])
    response = client.post(url, {"drop_empty_target": True}, format="json")
    assert response.status_code == 201, response.json()
    new = response.json()
    assert new["parent"] == version.pk and new["operation"] == "filter" and new["row_count"] == 1
    rows = client.get(reverse("api-version-examples", args=[new["id"]])).json()["results"]
    assert [row["input"] for row in rows] == ["a longer question here"]

    response = client.post(url, {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Choose at least one filter.", "fields": {}}
    response = client.post(url, {"min_chars": 50, "max_chars": 10}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"max_chars": ["The maximum length must be at least the minimum length."]}


def test_dedupe_run_groups_and_apply_make_a_new_version(curator, api_client):
    same = {"input": "Where is my refund?", "target": "It was sent on Monday."}
    version = make_version([same, {"input": "Reset my password"}, same, same, {"input": "Change my address"}])
    ids = list(version.examples.order_by("row_index").values_list("pk", flat=True))
    client = api_client(curator)

    response = client.post(reverse("api-dedupe-start", args=[version.pk]), {"mode": "exact"}, format="json")
    assert response.status_code == 202, response.json()
    run = response.json()
    assert run["status"] == "queued" and run["version"] == version.pk

    services.dedupe_run_execute(run_id=run["id"])  # what the Celery task runs

    run = client.get(reverse("api-dedupe-detail", args=[run["id"]])).json()
    assert (run["status"], run["group_count"], run["duplicate_count"]) == ("done", 1, 2)
    groups = client.get(reverse("api-dedupe-groups", args=[run["id"]])).json()["results"]
    assert [group["example_ids"] for group in groups] == [[ids[0], ids[2], ids[3]]]
    assert [member["row_index"] for member in groups[0]["members"]] == [1, 3, 4]
    assert groups[0]["members"][0]["input"] == "Where is my refund?"

    apply_url = reverse("api-dedupe-apply", args=[run["id"]])
    response = client.post(apply_url, {"keep": {str(groups[0]["id"]): [ids[4]]}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == f"Group {groups[0]['id']} does not contain row(s) [{ids[4]}]."

    response = client.post(apply_url, {"keep": {str(groups[0]["id"]): [ids[2]]}}, format="json")
    assert response.status_code == 201, response.json()
    new = response.json()
    assert new["parent"] == version.pk and new["operation"] == "dedupe" and new["row_count"] == 3
    rows = client.get(reverse("api-version-examples", args=[new["id"]])).json()["results"]
    assert [row["row_index"] for row in rows] == [2, 3, 5]  # the chosen copy (row 3) is kept

    run = client.get(reverse("api-dedupe-detail", args=[run["id"]])).json()
    assert run["status"] == "applied" and run["result_version"] == new["id"]
    response = client.post(apply_url, {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "This deduplication is “Applied”, not ready to apply."


def test_dedupe_start_rejects_bad_input(curator, api_client):
    version = make_version(count=2)
    url = reverse("api-dedupe-start", args=[version.pk])
    client = api_client(curator)
    response = client.post(url, {"mode": "fuzzy"}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"mode": ["Choose mode exact or near."]}
    response = client.post(url, {"mode": "near", "threshold": 1.5}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "The similarity threshold must be above 0 and at most 1, like 0.8."
    assert not DedupeRun.objects.exists()


# --- authentication --------------------------------------------------------------------------


def test_token_auth_with_a_real_token(curator, api_client):
    client = api_client()
    response = client.post(reverse("api-token"), {"username": "curator", "password": "pw-for-tests-123"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(reverse("api-me")).json()["username"] == "curator"
    assert client.get(reverse("api-dataset-list")).status_code == 200

    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(reverse("api-dataset-list"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"error": "Invalid token."}

    response = api_client().get(reverse("api-dataset-list"))
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication credentials were not provided."}

    response = api_client().post(reverse("api-token"), {"username": "curator", "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Wrong username or password."}


def test_export_of_a_version_without_privacy_approval_is_refused(curator, api_client):
    version = make_version([{"input": "Call Jane Doe at 555-0100"}])
    response = api_client(curator).get(reverse("api-version-export", args=[version.pk]) + "?format=jsonl")
    assert response.status_code == 409
    assert "has not passed privacy review" in response.json()["error"]
    assert not AuditEvent.objects.filter(action="version.export").exists()
