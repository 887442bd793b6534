"""The OpenAPI schema: valid, free of generator warnings, and listing every /api/v1/ endpoint with its permission."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import resolve
from rest_framework.permissions import AllowAny, IsAuthenticated

from tests.test_permission_matrix import api_v1_endpoints


@pytest.fixture
def client(client, make_user):
    """The schema and the docs are for signed-in people (any role)."""
    client.force_login(make_user("annotator", username="reader"))
    return client


def test_schema_and_docs_need_sign_in(db):
    from django.test import Client

    assert Client().get("/api/schema/").status_code in (401, 403)
    assert Client().get("/api/docs/").status_code in (401, 403)


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def _permission_text(view_class, method: str) -> str:
    """What the description must name: the permission the view really checks."""
    texts = []
    for permission in view_class.permission_classes:
        if getattr(permission, "perms", None):
            texts.append(f"`{permission.perms[method]}`")
        elif getattr(permission, "perm", ""):
            texts.append(f"`{permission.perm}`")
        elif permission is IsAuthenticated:
            texts.append("any signed-in user")
        elif permission is AllowAny:
            texts.append("no sign-in needed")
    assert len(texts) == 1, f"{view_class.__name__} should check exactly one permission"
    return texts[0]


def test_schema_generates_without_warnings_and_validates(tmp_path):
    # The same check as `manage.py spectacular --validate --fail-on-warn` in CI.
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/uploads/{upload_id}/import/" in target.read_text()


def test_schema_lists_every_endpoint_with_its_permission_and_serializers(schema):
    assert schema["openapi"].startswith("3.")
    for route, method in sorted(api_v1_endpoints()):
        path = _path(route)
        assert path in schema["paths"], f"{path} is missing from the schema"
        operation = schema["paths"][path].get(method.lower())
        assert operation, f"{method} {path} is missing from the schema"
        view_class = resolve(re.sub(r"\{\w+\}", "1", path)).func.cls
        assert _permission_text(view_class, method) in operation["description"], f"{method} {path}: {operation}"
        assert "**Permission:**" in operation["description"]
        successes = {code: body for code, body in operation["responses"].items() if code.startswith("2")}
        # 204 No Content has no body by definition (annotation "next" when nothing is left).
        assert successes and all(body.get("content") or code == "204" for code, body in successes.items()), (
            f"{method} {path}"
        )
        if method in ("GET", "DELETE"):
            continue
        # Every write names its request body, except the action buttons that take none.
        bodyless = {"validate", "import", "cancel", "approve", "retry", "rollback", "merge"}
        bodyless |= {"next", "undo", "skip", "push", "pull"}  # annotation
        if path.rstrip("/").rsplit("/", 1)[-1] not in bodyless:
            assert operation.get("requestBody", {}).get("content"), f"{method} {path} has no request body"


def test_schema_documents_errors_as_json(schema):
    operation = schema["paths"]["/api/v1/uploads/"]["post"]
    assert set(operation["responses"]) >= {"201", "400", "401", "403", "413"}
    assert operation["responses"]["413"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOutput"
    }
    assert "multipart/form-data" in operation["requestBody"]["content"]


def test_examples_are_documented_with_cursor_paging_and_filters(schema):
    operation = schema["paths"]["/api/v1/versions/{version_id}/examples/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert names >= {"cursor", "page_size", "q", "split", "label", "group", "flag"}
    assert "offset" not in names


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    # The start-up script is a file of its own (api/docs/?script=), not inline, for the Content-Security-Policy.
    assert '<script src="/api/docs/?script="></script>' in page
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
    assert "/api/schema/" in script.content.decode()


def test_swagger_ui_code_is_served_locally_not_from_a_cdn(client):
    page = client.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_annotation_documents_nothing_left_conflicts_and_never_the_label_studio_token(schema):
    reserve = schema["paths"]["/api/v1/annotation/projects/{project_id}/next/"]["post"]
    assert {"200", "204"} <= set(reserve["responses"]) and "content" not in reserve["responses"]["204"]
    for action in ("submit", "draft"):
        assert (
            "409" in schema["paths"][f"/api/v1/annotation/assignments/{{assignment_id}}/{action}/"]["post"]["responses"]
        )
    connection = schema["components"]["schemas"]["LabelStudioConnectionOutput"]["properties"]
    assert "token_hint" in connection and "token" not in connection
