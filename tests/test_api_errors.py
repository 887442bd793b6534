"""Every /api/ answer is JSON and described by the schema: route misses, bodies too big or in the wrong format,
crashes, nested field errors, and the schema fixes the security review asked for (each test below reproduces one
finding as it was made)."""

import json

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from projectsite import api
from tests.factories import ExampleFactory, VersionFactory


@pytest.fixture
def engineer_client(make_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user("engineer"))
    return client


@pytest.fixture(scope="module")
def openapi(django_db_setup, django_db_blocker) -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


def _json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    for messages in body.get("fields", {}).values():  # the ErrorOutput shape: lists of sentences
        assert isinstance(messages, list) and all(isinstance(message, str) for message in messages)
    return body


# ------------------------------------------------------------------------------------------------ Django's pages


@pytest.mark.django_db
def test_a_non_numeric_id_in_an_api_address_is_a_json_404_not_an_html_page(engineer_client):
    # The finding: `DELETE annotation/tasks/null,null/gold/` answered Django's HTML 404.
    for client in (Client(), engineer_client):
        body = _json_error(client.delete("/api/v1/annotation/tasks/null,null/gold/"), 404)
        assert "nothing at this address" in body["error"]
    _json_error(Client().post("/api/v1/no-such-thing/", {}, content_type="application/json"), 404)


@pytest.mark.django_db
def test_api_route_misses_are_json_with_debug_on_too(settings):
    settings.DEBUG = True  # Django then shows its technical 404 page instead of calling handler404
    _json_error(Client().get("/api/v1/versions/abc/"), 404)


@pytest.mark.django_db
def test_an_api_address_without_its_final_slash_still_redirects_to_it():
    response = Client().get("/api/v1/datasets")
    assert response.status_code == 301 and response["Location"] == "/api/v1/datasets/"


@pytest.mark.django_db
def test_pages_outside_the_api_keep_their_html_error_pages():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    request = RequestFactory().get("/datasets/1/")
    assert api.server_error(request)["Content-Type"].startswith("text/html")
    assert api.bad_request(request)["Content-Type"].startswith("text/html")


def test_django_error_handlers_answer_json_for_api_addresses():
    request = RequestFactory().get("/api/v1/datasets/")
    for response, status in (
        (api.page_not_found(request), 404),
        (api.bad_request(request), 400),
        (api.permission_denied(request), 403),
        (api.server_error(request), 500),
    ):
        assert response.status_code == status and response["Content-Type"] == "application/json"
        assert json.loads(response.content)["error"]


@pytest.mark.django_db
def test_a_json_body_over_the_upload_limit_is_a_json_413_not_an_html_400(engineer_client, settings):
    # The finding: a JSON body over 2.5 MB answered an HTML 400.
    body = json.dumps({"slug": "x", "name": "x", "unit": "x", "higher_is_better": True, "description": "a" * 2_700_000})
    response = engineer_client.post("/api/v1/kpis/", body, content_type="application/json")
    assert "2.5 MB" in _json_error(response, 413)["error"]


@pytest.mark.django_db
def test_a_body_too_big_for_django_itself_is_a_json_413():
    from django.core.exceptions import RequestDataTooBig

    response = api.bad_request(RequestFactory().post("/api/v1/kpis/"), RequestDataTooBig("too big"))
    assert response.status_code == 413 and "MB" in json.loads(response.content)["error"]


@pytest.mark.django_db
def test_a_crash_in_an_api_view_is_a_json_500(make_user, monkeypatch):
    def crash(user):
        raise RuntimeError("a bug")

    monkeypatch.setattr("accounts.apis.role_names_of", crash)
    client = Client(raise_request_exception=False)
    client.force_login(make_user("annotator"))
    body = _json_error(client.get("/api/v1/me/"), 500)
    assert "a bug" not in body["error"]  # nothing of the internals


@pytest.mark.django_db
def test_a_body_in_another_format_is_a_json_415_that_says_what_to_send(engineer_client):
    # Bodies are JSON (as the schema says); a form would quietly read a left-out yes/no as "no".
    response = engineer_client.post("/api/v1/kpis/", {"slug": "x", "name": "x", "unit": "x"}, format="multipart")
    assert (
        _json_error(response, 415)["error"] == "Send the body as application/json (this one was multipart/form-data)."
    )


# ------------------------------------------------------------------------------------------------ field errors


def test_nested_field_errors_get_dotted_keys():
    detail = {
        "metrics": {0: ["This field may not be blank."]},
        "gate": [{}, {"kind": ["Not a choice."], "non_field_errors": ["Give a name or a kind."]}],
        "non_field_errors": ["Check the form."],
        "name": ["Too long."],
    }
    assert api._flatten(detail) == {
        "metrics.0": ["This field may not be blank."],
        "gate.1.kind": ["Not a choice."],
        "gate.1": ["Give a name or a kind."],
        "non_field_errors": ["Check the form."],
        "name": ["Too long."],
    }


@pytest.mark.django_db
def test_nested_field_errors_fit_the_error_schema(engineer_client):
    # The finding: {"fields": {"metrics": {"0": [...]}}} broke ErrorOutput (lists of sentences per field).
    rescore = engineer_client.post("/api/v1/evaluation-runs/1/rescore/", {"metrics": [""]}, format="json")
    assert _json_error(rescore, 400)["fields"] == {"metrics.0": ["This field may not be blank."]}
    use_case = engineer_client.post(
        "/api/v1/use-cases/",
        {"slug": "s", "name": "n", "dataset": "d", "gate": [{"kind": "metric", "name": "rougeL", "margin": "x"}]},
        format="json",
    )
    body = _json_error(use_case, 400)
    assert body["fields"] == {"gate.0.margin": ["A valid number is required."]}
    assert body["error"] == "A valid number is required."


def test_the_error_schema_is_one_level_of_lists_of_sentences(openapi):
    error = openapi["components"]["schemas"]["ErrorOutput"]
    assert error["required"] == ["error"]
    assert error["properties"]["fields"]["additionalProperties"] == {"type": "array", "items": {"type": "string"}}


# ------------------------------------------------------------------------------------------------ the schema


def _operations(openapi):
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_operation_documents_the_errors_it_can_answer(openapi):
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOutput"}}}
    for path, method, operation in _operations(openapi):
        responses = operation["responses"]
        expected = set()
        if path != "/api/v1/auth/token/":
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        assert expected <= set(responses), f"{method.upper()} {path}: {sorted(expected - set(responses))}"
        for code in ("401", "403", "404", "415"):
            if code in responses:
                assert responses[code]["content"] == error, f"{method.upper()} {path} {code}"


def test_the_token_endpoint_documents_its_throttle(openapi):
    assert "429" in openapi["paths"]["/api/v1/auth/token/"]["post"]["responses"]


def test_request_bodies_are_json_except_where_files_are_sent(openapi):
    files = {"/api/v1/uploads/", "/api/v1/kpi-observations/"}
    for path, method, operation in _operations(openapi):
        types = set(operation.get("requestBody", {}).get("content", {}))
        if path in files and method == "post":
            assert "multipart/form-data" in types
        elif path == "/api/v1/auth/token/":
            assert types == {"application/json", "application/x-www-form-urlencoded"}  # curl -d in the README
        else:
            assert types <= {"application/json"}, f"{method.upper()} {path}: {types}"


def test_read_only_fields_over_nullable_columns_are_nullable(openapi):
    # The findings: use-cases/ answered production and staging null, annotation tasks adjudicated_by null, where
    # the schema said a string; and created_by, approved_by... of every object can be null as well.
    schemas = openapi["components"]["schemas"]
    for component, field in (
        ("UseCaseOutput", "production"),
        ("UseCaseOutput", "staging"),
        ("TaskOutput", "adjudicated_by"),
        ("RedactionRunOutput", "approved_by"),
        ("RedactionRunOutput", "result_version"),
        ("FindingOutput", "decided_by"),
        ("VersionOutput", "created_by"),
        ("AuditEventOutput", "actor"),
        ("UploadOutput", "version"),
    ):
        assert schemas[component]["properties"][field].get("nullable") is True, f"{component}.{field}"
    assert not schemas["UseCaseOutput"]["properties"]["slug"].get("nullable")


@pytest.mark.django_db
def test_a_use_case_without_a_production_model_answers_null_where_the_schema_allows_it(engineer_client, openapi):
    from evaluation.services import use_case_save

    version = VersionFactory()
    use_case_save(slug="replies", name="Replies", task="sft", dataset=version.dataset, gate=[], actor=None)
    listed = engineer_client.get("/api/v1/use-cases/").json()
    row = next(row for row in listed.get("results", listed) if row["slug"] == "replies")
    assert row["production"] is None and row["staging"] is None
    assert openapi["components"]["schemas"]["UseCaseOutput"]["properties"]["production"]["nullable"]


@pytest.mark.django_db
def test_the_kpi_dashboard_is_a_list_in_the_answer_and_in_the_schema(engineer_client, openapi):
    # The finding: kpi-dashboard/ answered a list where the schema said an object.
    from evaluation.models import KpiObservation
    from evaluation.services import kpi_ensure

    kpi = kpi_ensure(slug="csat", name="CSAT", unit="points", higher_is_better=True)
    for week, value in ((5, 4.0), (12, 4.4)):
        KpiObservation.objects.create(
            kpi=kpi,
            model_name="assistant",
            period_start=f"2026-10-{week:02}",
            period_end=f"2026-10-{week + 6:02}",
            value=value,
            sample_size=50,
        )
    answer = engineer_client.get("/api/v1/kpi-dashboard/").json()
    assert isinstance(answer, list) and answer[0]["kpi"]["slug"] == "csat"
    assert answer[0]["bars"][0]["comparison"] is None and answer[0]["bars"][0]["low"] is not None
    documented = openapi["paths"]["/api/v1/kpi-dashboard/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert documented["schema"]["type"] == "array"


def test_pilot_results_are_a_list_in_the_schema(openapi):
    # Found by the contract run: POST pilots/ answered "results": [] where the schema said an object.
    results = openapi["components"]["schemas"]["PilotOutput"]["properties"]["results"]
    assert results["type"] == "array" and results["items"] == {"$ref": "#/components/schemas/PilotResultOutput"}


@pytest.mark.django_db
def test_a_kpi_without_higher_is_better_is_refused_in_any_body_format(engineer_client):
    # The finding: kpis/ accepted a KPI without higher_is_better: a form body read the missing box as "no".
    from evaluation.models import Kpi

    fields = {"slug": "nps", "name": "NPS", "unit": "points"}
    for body_format in ("multipart", "json"):
        response = engineer_client.post("/api/v1/kpis/", fields, format=body_format)
        assert response.status_code in (400, 415), (body_format, response.status_code)
    assert _json_error(engineer_client.post("/api/v1/kpis/", fields, format="json"), 400)["fields"] == {
        "higher_is_better": ["This field is required."]
    }
    assert not Kpi.objects.filter(slug="nps").exists()


@pytest.mark.django_db
def test_a_kpi_import_without_its_csv_is_a_400_the_schema_describes(engineer_client, openapi):
    # The finding: POST kpi-observations/ with no body answered a 400 unlike the documented KpiImportOutput.
    body = _json_error(engineer_client.post("/api/v1/kpi-observations/", {}, format="json"), 400)
    assert body["fields"] == {"csv": ["This field is required."]}
    documented = openapi["paths"]["/api/v1/kpi-observations/"]["post"]["responses"]["400"]["content"]
    component = openapi["components"]["schemas"][documented["application/json"]["schema"]["$ref"].split("/")[-1]]
    assert component["required"] == ["error"] and {"fields", "imported", "problems"} <= set(component["properties"])


@pytest.mark.django_db
def test_label_balance_of_a_version_without_labels_is_a_json_object(make_user):
    # Found by the contract run: the answer was an empty body (DRF renders None as nothing), not JSON.
    version = VersionFactory()
    ExampleFactory(version=version, group="clinic")
    client = APIClient()
    client.force_authenticate(make_user("curator"))
    response = client.get(f"/api/v1/versions/{version.pk}/balance/")
    assert response.status_code == 200 and response.json() == {"groups": {}, "labels": [], "max_share_gap": None}


@pytest.mark.django_db
def test_a_base_model_path_too_long_for_the_file_system_is_a_400_not_a_500(engineer_client):
    # Found by the contract run: os.stat raised "File name too long" and the request ended in a 500 (since fixed in
    # base_model_register, which now gives one answer for any folder it cannot read).
    response = engineer_client.post("/api/v1/base-models/", {"name": "long", "source": "0" * 300}, format="json")
    assert _json_error(response, 400)["fields"]["source"]


@pytest.mark.django_db
def test_a_paging_number_given_twice_must_be_a_number_each_time(make_user, settings):
    # Found by the contract run: ?page_size=true&page_size= was read as the last value (none) and accepted.
    client = APIClient()
    client.force_authenticate(make_user("manager"))
    body = _json_error(client.get("/api/v1/kpi-observations/?page_size=true&page_size="), 400)
    message = f"page_size must be a whole number from 1 to {settings.API_MAX_PAGE_SIZE}."
    assert body["fields"] == {"page_size": [message]}
    assert client.get("/api/v1/kpi-observations/?page_size=250&page_size=5").status_code == 200
