"""The evaluation REST API: KPI figures imported from a file by the worker, and the run that follows it.

Everything runs through the real API, services and database. No worker runs here: the tests run the worker's part
(``kpi_import_run_execute``) themselves, except the one marked ``worker``, which starts a real Celery worker.
Who may call what is in tests/test_permission_matrix.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from evaluation import services
from evaluation.models import KpiImportRun, KpiObservation
from tests.conftest import wait_for
from training.models import BaseModel

HEADER = "kpi,model,period_start,period_end,segment,value,sample_size\n"
MODEL = "support-assistant-base"


def _models() -> None:
    BaseModel.objects.create(
        name=MODEL,
        source="/models/support-assistant-base",
        architecture="LlamaForCausalLM",
        model_type="llama",
        parameter_count=412_000,
        hidden_size=64,
        num_layers=2,
        vocab_size=1000,
        task_types=["sft"],
    )
    services.kpi_ensure(slug="csat", name="Customer satisfaction", unit="points (1–5)", higher_is_better=True)


@pytest.fixture
def kpi_models(db):
    _models()


def _lines(count: int, *, start: dt.date = dt.date(2025, 1, 6)) -> str:
    """``count`` good lines: a hundred customer segments a week."""
    lines = []
    for i in range(count):
        week = start + dt.timedelta(weeks=i // 100)
        lines.append(f"csat,{MODEL},{week},{week + dt.timedelta(days=6)},segment-{i % 100},4.{i % 10},{100 + i % 50}\n")
    return "".join(lines)


def _file(text: str, name: str = "kpis.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def _post_file(client, text: str, name: str = "kpis.csv"):
    return client.post(reverse("api-kpi-observations"), {"file": _file(text, name)}, format="multipart")


# --- a file goes to the worker ---------------------------------------------------------------------------------------


def test_a_40000_line_file_is_queued_at_once_and_the_worker_imports_every_line(
    kpi_models, engineer, api_client, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    # As found: a 40,000-line CSV was imported inside the request (112 s) and had to fit the JSON body limit.
    text = HEADER + _lines(40_000)
    assert len(text.encode()) > 2_621_440  # larger than Django's request body limit for JSON
    client = api_client(engineer)
    # The request stores the file and queues the run: a handful of queries, none per line.
    with django_assert_max_num_queries(15), django_capture_on_commit_callbacks() as queued:
        response = _post_file(client, text, "weekly-kpis.csv")
    assert response.status_code == 202, response.content
    run = response.json()
    assert run["status"] == "queued" and run["status_label"] == "Waiting for a worker"
    assert run["file_name"] == "weekly-kpis.csv" and run["size"] == len(text.encode())
    assert run["imported"] == 0 and run["progress"] == 0 and run["created_by"] == "engineer"
    assert response["Location"] == run["url"]
    assert run["url"].endswith(reverse("api-kpi-import-run", args=[run["id"]]))
    assert len(queued) == 1  # the task, sent once the transaction commits
    assert KpiObservation.objects.count() == 0  # nothing imported by the request

    services.kpi_import_run_execute(run_id=run["id"])  # the worker's part, run here

    done = client.get(run["url"]).json()
    assert done["status"] == "done" and done["progress"] == 1
    assert done["imported"] == done["rows_total"] == done["rows_checked"] == 40_000
    assert done["problems"] == [] and done["problem_count"] == 0 and done["error"] == ""
    assert KpiObservation.objects.count() == 40_000
    assert KpiObservation.objects.filter(source="api", segment="segment-99").count() == 400
    # A second delivery of the message does nothing.
    assert services.kpi_import_run_execute(run_id=run["id"]) is None
    assert KpiObservation.objects.count() == 40_000


def test_a_file_with_one_bad_line_imports_nothing_and_the_run_names_the_line(kpi_models, engineer, api_client):
    lines = _lines(3_000).splitlines(keepends=True)
    lines[2_499] = lines[2_499].replace(MODEL, "nobody")  # line 2,501 of the file (the header is line 1)
    client = api_client(engineer)
    run = _post_file(client, HEADER + "".join(lines)).json()

    services.kpi_import_run_execute(run_id=run["id"])

    failed = client.get(run["url"]).json()
    assert failed["status"] == "failed" and failed["imported"] == 0
    assert failed["problem_count"] == 1
    assert failed["problems"] == [
        {
            "line": 2_501,
            "field": "model",
            "message": "Unknown model “nobody”: use the name of a trained model, base model or endpoint.",
        }
    ]
    assert "line 2501" in failed["error"] and failed["error"].startswith("Nothing was imported")
    assert KpiObservation.objects.count() == 0


def test_figures_already_imported_are_found_across_batches_and_the_first_thousand_problems_are_listed(
    kpi_models, engineer, api_client
):
    client = api_client(engineer)
    assert services.kpi_import_csv(text=HEADER + _lines(1), actor=engineer)["imported"] == 1
    again = HEADER + _lines(1_500) + _lines(1_500)  # line 2 is the figure above; lines 1,502 to 3,001 repeat
    run = _post_file(client, again).json()
    services.kpi_import_run_execute(run_id=run["id"])
    failed = client.get(run["url"]).json()
    assert failed["status"] == "failed" and failed["problem_count"] == 1 + 1_500
    assert len(failed["problems"]) == services.KPI_PROBLEMS_KEPT
    assert failed["problems"][0] == {
        "line": 2,
        "field": "period_start",
        "message": "This KPI, model, period and segment was already imported.",
    }
    assert failed["problems"][1]["line"] == 1_502
    assert failed["problems"][1]["message"] == "The same KPI, model, period and segment is on line 2 too."
    assert [problem["line"] for problem in failed["problems"]] == sorted(p["line"] for p in failed["problems"])
    assert KpiObservation.objects.count() == 1


def test_a_file_without_the_columns_or_not_in_utf8_is_refused_with_what_to_do(kpi_models, engineer, api_client):
    client = api_client(engineer)
    response = _post_file(client, "kpi,model\ncsat,support-assistant-base\n")
    assert response.status_code == 400
    assert "missing: period_start, value, sample_size" in response.json()["error"]
    assert not KpiImportRun.objects.exists()  # refused before anything is stored

    latin1 = (HEADER + f"csat,{MODEL},2026-01-05,2026-01-11,Zürich,4.2,120\n").encode("latin-1")
    response = client.post(
        reverse("api-kpi-observations"), {"file": SimpleUploadedFile("kpis.csv", latin1)}, format="multipart"
    )
    assert response.status_code == 202  # the header is plain ASCII: the worker reads the rest
    services.kpi_import_run_execute(run_id=response.json()["id"])
    failed = client.get(response.json()["url"]).json()
    assert failed["status"] == "failed"
    assert failed["error"] == "Nothing was imported: The file is not UTF-8 text. Save it as “CSV UTF-8” and try again."


def test_csv_text_in_json_is_still_imported_at_once_up_to_5000_lines(kpi_models, engineer, api_client):
    client = api_client(engineer)
    response = client.post(reverse("api-kpi-observations"), {"csv": HEADER + _lines(2)}, format="json")
    assert response.status_code == 201 and response.json() == {"imported": 2, "problems": []}
    response = client.post(reverse("api-kpi-observations"), {"csv": HEADER + _lines(5_001)}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["csv"] == [
        "At most 5,000 lines can be sent as text. Send the file as multipart form data (field `file`): the worker "
        "imports it and you follow its progress."
    ]
    assert KpiObservation.objects.count() == 2


def test_only_those_who_may_import_kpis_can_follow_an_import(kpi_models, engineer, manager, api_client):
    run = _post_file(api_client(engineer), HEADER + _lines(1)).json()
    url = reverse("api-kpi-import-run", args=[run["id"]])
    assert api_client(engineer).get(url).status_code == 200
    refused = api_client(manager).get(url)  # reads KPIs, does not import them
    assert refused.status_code == 403
    assert "file_name" not in refused.json()
    assert api_client().get(url).status_code == 401
    assert api_client(manager).post(reverse("api-kpi-observations"), {"file": _file("x")}).status_code == 403
    missing = api_client(engineer).get(reverse("api-kpi-import-run", args=[run["id"] + 1]))
    assert missing.status_code == 404 and missing.json() == {"error": f"There is no KPI import #{run['id'] + 1}."}


@pytest.mark.worker
def test_real_worker_imports_a_kpi_file(transactional_db, celery_worker_proc, make_user, api_client):
    _models()
    engineer = make_user("engineer")
    client = api_client(engineer)
    run = _post_file(client, HEADER + _lines(2_000)).json()

    def finished():
        data = client.get(run["url"]).json()
        return data if data["status"] in ("done", "failed") else None

    data = wait_for(finished, timeout=120)
    assert data["status"] == "done", data["error"]
    assert data["imported"] == 2_000 and KpiObservation.objects.count() == 2_000
