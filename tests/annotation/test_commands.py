"""``manage.py annotation``: create a project, read its status, publish it, push to and pull from Label Studio.

Each subcommand prints one line of JSON; errors are CommandErrors with the service's plain message. The Label Studio
test uses a real Label Studio server (the session fixture in tests/annotation/conftest.py).
"""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotation import label_studio as ls
from annotation import services
from annotation.models import AnnotationProject, Task
from annotation.services_label_studio import label_studio_connection_save
from curation.models import DatasetVersion, Example
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

SCHEMA = {
    "instructions": "Route the ticket.",
    "fields": [
        {"name": "team", "kind": "choice", "title": "Team", "options": ["Billing", "Technical"], "writes": "label"}
    ],
}


@pytest.fixture
def version(db):
    dataset = DatasetFactory(task_type="classification")
    version = VersionFactory(dataset=dataset, privacy=DatasetVersion.Privacy.APPROVED, row_count=3)
    for i in range(3):
        ExampleFactory(version=version, row_index=i, input=f"Ticket {i}", label="")
    return version


def run(*args) -> dict:
    out = StringIO()
    call_command("annotation", *[str(arg) for arg in args], stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


@pytest.fixture
def project(version, engineer) -> AnnotationProject:
    services.label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=engineer)
    result = run("create-project", "--name", "Routing", "--version-id", version.pk, "--per-example", 2, "--limit", 2)
    return AnnotationProject.objects.get(pk=result["project_id"])


def _answer(project, user, team: str) -> None:
    assignment = services.assignment_next(project=project, annotator=user)
    services.annotation_submit(assignment=assignment, annotator=user, answer={"team": team})


def test_create_project_from_a_schema_file(version, engineer, tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    result = run(
        "create-project", "--name", "From file", "--version-id", version.pk, "--schema", path, "--user", "engineer"
    )
    project = AnnotationProject.objects.get(pk=result["project_id"])
    assert result == {
        "project_id": project.pk,
        "name": "From file",
        "version_id": version.pk,
        "tasks": 3,
        "annotations_per_example": 2,
    }
    assert project.created_by == engineer and project.schema["fields"][0]["options"] == ["Billing", "Technical"]


def test_create_project_errors_are_plain(version, tmp_path):
    with pytest.raises(CommandError, match="Set up the label schema of this dataset first"):
        run("create-project", "--name", "x", "--version-id", version.pk)
    with pytest.raises(CommandError, match="There is no ready dataset version #999999"):
        run("create-project", "--name", "x", "--version-id", 999_999)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(CommandError, match="not valid JSON"):
        run("create-project", "--name", "x", "--version-id", version.pk, "--schema", broken)
    with pytest.raises(CommandError, match="Ask for 1 to 10 annotations per example"):
        path = tmp_path / "schema.json"
        path.write_text(json.dumps(SCHEMA), encoding="utf-8")
        run("create-project", "--name", "x", "--version-id", version.pk, "--schema", path, "--per-example", 11)
    with pytest.raises(CommandError, match="There is no user “nobody”"):
        run("create-project", "--name", "x", "--version-id", version.pk, "--user", "nobody")
    assert not AnnotationProject.objects.exists()


def test_status_shows_progress_and_the_agreement_headline(project, make_user):
    first, second = make_user("annotator", username="a1"), make_user("annotator", username="a2")
    for team in ("Billing", "Technical"):
        _answer(project, first, team)
    for team in ("Technical", "Technical"):
        _answer(project, second, team)
    result = run("status", project.pk)
    assert result["project_id"] == project.pk and result["status"] == "open"
    progress = result["progress"]
    assert (progress["answers"], progress["answers_needed"], progress["percent"]) == (4, 4, 100.0)
    assert (progress["agreed"], progress["disagreements"]) == (1, 1)
    team = result["agreement"]["team"]
    assert team["headline"] == "cohen_kappa" and team["items"] == 2
    assert team["value"] is not None and team["interpretation"]


def test_publish_writes_the_settled_answers_and_finishes(project, make_user):
    with pytest.raises(CommandError, match="No example has a settled answer yet"):
        run("publish", project.pk)
    first, second = make_user("annotator", username="a1"), make_user("annotator", username="a2")
    _answer(project, first, "Technical")
    _answer(project, second, "Technical")
    result = run("publish", project.pk, "--finish", "--settled-only")
    assert result["project_status"] == "finished" and result["rows"] == 1
    version = DatasetVersion.objects.get(pk=result["version_id"])
    assert version.number == result["number"] and version.dataset_id == result["dataset_id"]
    assert list(Example.objects.filter(version=version).values_list("label", flat=True)) == ["Technical"]
    with pytest.raises(CommandError, match="There is no annotation project #999999"):
        run("status", 999_999)


def test_label_studio_errors_are_plain(project):
    with pytest.raises(CommandError, match="Set up the Label Studio connection first"):
        run("label-studio-push", project.pk)
    with pytest.raises(CommandError, match="has not been sent to Label Studio yet"):
        run("label-studio-pull", project.pk)
    with pytest.raises(CommandError, match="There is no annotation project #999999"):
        run("label-studio-push", 999_999)


def test_label_studio_push_then_pull(project, admin_user, label_studio, label_studio_sdk):
    label_studio_connection_save(url=label_studio.url, token=label_studio.token, actor=admin_user)
    pushed = run("label-studio-push", project.pk, "--user", "admin")
    assert pushed["project_id"] == project.pk and pushed["tasks"] == 2 and pushed["label_studio_project_id"]
    task = Task.objects.filter(project=project).order_by("position").first()
    label_studio_sdk.annotations.create(
        id=task.label_studio_task_id, result=ls.result_from_answer(project.schema, {"team": "Billing"}), lead_time=5.0
    )
    pulled = run("label-studio-pull", project.pk)
    assert (pulled["project_id"], pulled["imported"], pulled["invalid"]) == (project.pk, 1, [])
    assert pulled["message"].startswith("Pulled from Label Studio: 1 new answer")
    assert task.annotations.get().source == "label_studio"
