"""The annotation REST API end to end: two annotators, k=2, review, publishing; bad input; who sees what.

Everything runs through the real API, services and database; the Label Studio tests use a real Label Studio server
(the session fixture in tests/annotation/conftest.py).
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import label_studio as ls
from annotation import services
from annotation.models import Annotation, AnnotationProject, Assignment, LabelStudioConnection, Task
from curation.models import DatasetVersion, Example
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

SCHEMA = {
    "instructions": "Route the ticket to the team that should answer it.",
    "fields": [
        {
            "name": "team",
            "kind": "choice",
            "title": "Team",
            "options": ["Billing", "Technical", "Records"],
            "writes": "label",
        },
        {"name": "note", "kind": "text", "title": "Note for the reviewer", "required": False},
    ],
}
HTML = "<script>alert('td')</script> & <b>bold</b> \"quoted\""


@pytest.fixture
def version(db):
    dataset = DatasetFactory(task_type="classification", label_set=["Billing", "Technical", "Records"])
    version = VersionFactory(dataset=dataset, privacy=DatasetVersion.Privacy.APPROVED, row_count=3)
    for i in range(3):
        ExampleFactory(version=version, row_index=i, input=f"Ticket {i}: my invoice is wrong", label="")
    return version


@pytest.fixture
def people(make_user, api_client):
    """API clients of the personas: an engineer runs projects, two annotators, a reviewer, a manager."""
    users = {
        "engineer": make_user("engineer"),
        "ann1": make_user("annotator", username="ann1"),
        "ann2": make_user("annotator", username="ann2"),
        "reviewer": make_user("annotation_reviewer", username="rev"),
        "manager": make_user("manager"),
    }
    return {name: api_client(user) for name, user in users.items()}


def _create(client, version, **extra) -> dict:
    body = {"name": "Routing", "version": version.pk, "annotations_per_example": 2, "schema": SCHEMA, **extra}
    response = client.post(reverse("api-annotation-projects"), body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def project(people, version) -> dict:
    return _create(people["engineer"], version, limit=2, reservation_minutes=30)


def _next(client, project_id: int):
    return client.post(reverse("api-annotation-next", args=[project_id]))


def _submit(client, assignment_id: int, answer: dict, **extra):
    return client.post(
        reverse("api-annotation-submit", args=[assignment_id]), {"answer": answer, **extra}, format="json"
    )


# --- the whole flow --------------------------------------------------------------------------------------------------


def test_how_often_each_option_was_chosen_is_hidden_from_annotators(people, project):
    # With two annotators the counts and one's own answers told the other's: ann2 chose Technical twice, so
    # "Billing: 2" said ann1 chose Billing both times.
    a1, a2, rev = people["ann1"], people["ann2"], people["reviewer"]
    pid = project["id"]
    for client, team in ((a1, "Billing"), (a2, "Technical")):
        while (reserved := _next(client, pid)).status_code == 200:
            assert _submit(client, reserved.json()["id"], {"team": team}).status_code == 201
    agreement = reverse("api-annotation-agreement", args=[pid])
    seen_by_ann2 = a2.get(agreement)
    assert seen_by_ann2.status_code == 200
    options = seen_by_ann2.json()["fields"][0]["options"]
    assert [option["option"] for option in options] == ["Billing", "Technical", "Records"]
    assert all("times_chosen" not in option and "percent_agreement" in option for option in options)
    seen_by_reviewer = rev.get(agreement).json()["fields"][0]["options"]
    assert {option["option"]: option["times_chosen"] for option in seen_by_reviewer} == {
        "Billing": 2,
        "Technical": 2,
        "Records": 0,
    }


def test_two_annotators_to_agreement_review_and_a_published_version(people, project, version):
    eng, a1, a2, rev, manager = (people[k] for k in ("engineer", "ann1", "ann2", "reviewer", "manager"))
    pid = project["id"]
    assert project["task_count"] == 2
    assert project["progress"]["answers_needed"] == 4
    assert project["schema"]["fields"][0]["options"] == ["Billing", "Technical", "Records"]

    first = _next(a1, pid)
    assert first.status_code == 200
    first = first.json()
    assert first["example"]["input"] == "Ticket 0: my invoice is wrong"
    assert first["revision"] == 0 and first["draft"] == {} and first["status"] == "active"
    assert first["hotkeys"] == {"team": {"Billing": "1", "Technical": "2", "Records": "3"}}
    assert [field["name"] for field in first["schema"]["fields"]] == ["team", "note"]
    second = _next(a2, pid).json()
    assert second["task"] != first["task"], "two annotators held the same example at once"
    assert _next(a1, pid).json()["id"] == first["id"], "a second tab gets the same reservation back"

    draft_url = reverse("api-annotation-draft", args=[first["id"]])
    saved = a1.put(draft_url, {"draft": {"team": "Billing"}, "revision": 0, "active_seconds": 3}, format="json")
    assert saved.status_code == 200
    assert saved.json()["revision"] == 1 and saved.json()["draft"] == {"team": "Billing"}
    stale = a1.post(draft_url, {"draft": {"team": "Technical"}, "revision": 0}, format="json")
    assert stale.status_code == 409
    assert "another tab" in stale.json()["error"]
    assert a1.get(reverse("api-annotation-assignment", args=[first["id"]])).json()["draft"] == {"team": "Billing"}

    submitted = _submit(a1, first["id"], {"team": "Billing"}, active_seconds=4)
    assert submitted.status_code == 201
    assert submitted.json()["annotator"] == "ann1" and submitted.json()["answer"] == {"team": "Billing"}
    twice = _submit(a1, first["id"], {"team": "Billing"})
    assert twice.status_code == 409
    assert "already submitted" in twice.json()["error"]
    assert _submit(a2, second["id"], {"team": "Technical"}).status_code == 201

    # Each annotator gets the other's example next, so each example reaches its two answers.
    third = _next(a2, pid).json()
    assert third["task"] == first["task"]
    assert _submit(a2, third["id"], {"team": "Technical"}).status_code == 201  # disagrees with ann1
    fourth = _next(a1, pid).json()
    assert fourth["task"] == second["task"]
    assert _submit(a1, fourth["id"], {"team": "Technical"}).status_code == 201  # agrees with ann2
    assert _next(a1, pid).status_code == 204
    assert _next(a2, pid).status_code == 204

    progress = manager.get(reverse("api-annotation-project", args=[pid])).json()["progress"]
    assert progress["answers"] == 4 and progress["percent"] == 100.0
    assert (progress["agreed"], progress["disagreements"], progress["settled"]) == (1, 1, 1)
    assert progress["mine"]["answers"] == 0
    assert a1.get(reverse("api-annotation-project", args=[pid])).json()["progress"]["mine"]["answers"] == 2

    # Agreement: the manager reads the figures, not who said what; the engineer also sees each annotator.
    seen_by_manager = manager.get(reverse("api-annotation-agreement", args=[pid]))
    assert seen_by_manager.status_code == 200
    team = seen_by_manager.json()["fields"][0]
    assert team["name"] == "team" and team["summary"]["items"] == 2
    assert team["summary"]["percent_agreement"] == 0.5
    assert team["summary"]["headline"] == "cohen_kappa"
    assert "annotators" not in seen_by_manager.json()
    assert "per_annotator" not in team["summary"]
    assert "ann1" not in seen_by_manager.content.decode()
    full = eng.get(reverse("api-annotation-agreement", args=[pid])).json()
    assert {entry["name"] for entry in full["annotators"]} == {"ann1", "ann2"}
    assert set(full["fields"][0]["summary"]["per_annotator"]) == {"ann1", "ann2"}

    # Review: the disagreement is in the queue with both answers; the reviewer settles it.
    assert manager.get(reverse("api-annotation-tasks", args=[pid])).status_code == 403
    queue = rev.get(reverse("api-annotation-tasks", args=[pid]) + "?status=disagreement").json()["results"]
    assert [task["id"] for task in queue] == [first["task"]]
    assert {(a["annotator"], a["answer"]["team"]) for a in queue[0]["answers"]} == {
        ("ann1", "Billing"),
        ("ann2", "Technical"),
    }
    assert queue[0]["disagreements"] == ["team"]
    settled = rev.post(
        reverse("api-annotation-adjudicate", args=[first["task"]]), {"answer": {"team": "Records"}}, format="json"
    )
    assert settled.status_code == 200
    assert settled.json()["status"] == "adjudicated"
    assert settled.json()["answer"] == {"team": "Records"} and settled.json()["adjudicated_by"] == "rev"

    publish_url = reverse("api-annotation-publish", args=[pid])
    assert manager.post(publish_url, {"finish": True}, format="json").status_code == 403
    started = eng.post(publish_url, {"finish": True}, format="json")
    assert started.status_code == 202
    run = started.json()
    assert run["status"] == "queued" and run["version"] is None and run["finish"] is True
    again = eng.post(publish_url, {}, format="json")
    assert again.status_code == 400 and "already being made" in again.json()["error"]
    services.publish_run_execute(run_id=run["id"])  # the worker's part, run here
    assert manager.get(run["url"]).status_code == 403
    run = eng.get(run["url"]).json()
    assert run["status"] == "done" and run["progress"] == 1.0 and run["error"] == ""
    new = run["version"]
    assert new["url"].endswith(reverse("curation:version_detail", args=[new["id"]]))
    assert new["number"] > version.number
    rows = list(Example.objects.filter(version_id=new["id"]).order_by("row_index").values_list("label", "metadata"))
    assert [label for label, _ in rows] == ["Records", "Technical", ""]
    assert rows[0][1]["annotation"]["settled_by"] == "adjudicated"
    assert rows[1][1]["annotation"]["settled_by"] == "agreed"

    detail = eng.get(reverse("api-annotation-project", args=[pid])).json()
    assert detail["status"] == "finished"
    assert [v["id"] for v in detail["published_versions"]] == [new["id"]]
    closed = _next(a1, pid)
    assert closed.status_code == 400 and "finished" in closed.json()["error"]


def test_skip_then_undo_gives_the_example_back_with_the_answer_as_draft(people, project):
    a1 = people["ann1"]
    pid = project["id"]
    first = _next(a1, pid).json()
    skipped = a1.post(reverse("api-annotation-skip", args=[first["id"]]))
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    assert a1.post(reverse("api-annotation-skip", args=[first["id"]])).status_code == 409
    other = _next(a1, pid).json()
    assert other["task"] != first["task"], "a skipped example is not offered again"
    assert _submit(a1, other["id"], {"team": "Billing", "note": "Looks like billing"}).status_code == 201

    undone = a1.post(reverse("api-annotation-undo", args=[pid]))
    assert undone.status_code == 200
    assert undone.json()["task"] == other["task"] and undone.json()["status"] == "active"
    assert undone.json()["draft"] == {"team": "Billing", "note": "Looks like billing"}
    assert not Annotation.objects.filter(task_id=other["task"]).exists()
    nothing = a1.post(reverse("api-annotation-undo", args=[pid]))
    assert nothing.status_code == 400 and "nothing to undo" in nothing.json()["error"]


def test_gold_examples_are_marked_and_unmarked_by_a_reviewer(people, project):
    rev = people["reviewer"]
    task = Task.objects.filter(project_id=project["id"]).order_by("position").first()
    url = reverse("api-annotation-gold", args=[task.pk])
    marked = rev.post(url, {"answer": {"team": "Billing"}}, format="json")
    assert marked.status_code == 200
    assert marked.json()["is_gold"] is True and marked.json()["gold_answer"] == {"team": "Billing"}
    assert (
        people["manager"].get(reverse("api-annotation-project", args=[project["id"]])).json()["progress"]["gold"] == 1
    )
    wrong = rev.post(url, {"answer": {"team": "Sales"}}, format="json")
    assert wrong.status_code == 400 and "Sales" in wrong.json()["fields"]["team"][0]
    unmarked = rev.delete(url)
    assert unmarked.status_code == 200 and unmarked.json()["is_gold"] is False
    assert people["ann1"].post(url, {"answer": {"team": "Billing"}}, format="json").status_code == 403


# --- bad input -------------------------------------------------------------------------------------------------------


def test_a_label_outside_the_schema_is_refused_with_the_field_message(people, project):
    a1 = people["ann1"]
    assignment = _next(a1, project["id"]).json()
    response = _submit(a1, assignment["id"], {"team": "Sales"})
    assert response.status_code == 400
    body = response.json()
    assert body["fields"]["team"] == ["“Sales” is not an option of “Team”; choose from Billing, Technical, Records."]
    assert body["error"] == body["fields"]["team"][0]
    unknown = _submit(a1, assignment["id"], {"team": "Billing", "colour": "red"})
    assert unknown.status_code == 400 and "no field “colour”" in unknown.json()["error"]
    missing = _submit(a1, assignment["id"], {})
    assert missing.status_code == 400 and missing.json()["fields"]["team"] == ["“Team” is required."]
    not_an_object = _submit(a1, assignment["id"], "Billing")
    assert not_an_object.status_code == 400
    draft = a1.put(
        reverse("api-annotation-draft", args=[assignment["id"]]), {"draft": {"team": "Sales"}}, format="json"
    )
    assert draft.status_code == 400 and "Sales" in draft.json()["fields"]["team"][0]
    assert not Annotation.objects.exists()


def test_html_in_text_is_kept_as_data_and_returned_as_the_same_string(people, version):
    project = _create(people["engineer"], version, name="One pass", annotations_per_example=1)
    a1 = people["ann1"]
    assignment = _next(a1, project["id"]).json()
    saved = a1.put(
        reverse("api-annotation-draft", args=[assignment["id"]]),
        {"draft": {"note": HTML}, "revision": 0},
        format="json",
    )
    assert saved.json()["draft"] == {"note": HTML}
    response = _submit(a1, assignment["id"], {"team": "Billing", "note": HTML})
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response.json()["answer"]["note"] == HTML
    task = people["reviewer"].get(reverse("api-annotation-task", args=[assignment["task"]])).json()
    assert task["answers"][0]["answer"]["note"] == HTML
    assert task["answer"] == {"team": "Billing", "note": HTML}


def test_a_reservation_that_ran_out_and_went_to_someone_else_is_409(people, project):
    a1, a2 = people["ann1"], people["ann2"]
    mine = _next(a1, project["id"]).json()
    past = timezone.now() - timedelta(hours=1)
    Assignment.objects.filter(pk=mine["id"]).update(reserved_at=past - timedelta(minutes=30), expires_at=past)
    theirs = _next(a2, project["id"]).json()
    assert theirs["task"] == mine["task"], "the freed example goes to the next annotator"
    late = _submit(a1, mine["id"], {"team": "Billing"})
    assert late.status_code == 409
    assert "ran out" in late.json()["error"] and "someone else is annotating it now" in late.json()["error"]
    assert set(late.json()) == {"error"}
    kept = a1.get(reverse("api-annotation-assignment", args=[mine["id"]])).json()
    assert kept["draft"] == {"team": "Billing"}, "what they typed is kept as the draft"
    assert not Annotation.objects.exists()
    draft = a1.put(reverse("api-annotation-draft", args=[mine["id"]]), {"draft": {"team": "Billing"}}, format="json")
    assert draft.status_code == 409 and "no longer reserved" in draft.json()["error"]


def test_unknown_ids_are_404(people, project):
    eng, a1, rev = people["engineer"], people["ann1"], people["reviewer"]
    missing = 999_999
    assert eng.get(reverse("api-annotation-project", args=[missing])).status_code == 404
    assert a1.post(reverse("api-annotation-next", args=[missing])).status_code == 404
    assert a1.post(reverse("api-annotation-undo", args=[missing])).status_code == 404
    assert eng.get(reverse("api-annotation-agreement", args=[missing])).status_code == 404
    assert eng.get(reverse("api-annotation-tasks", args=[missing])).status_code == 404
    assert eng.post(reverse("api-annotation-publish", args=[missing]), {}, format="json").status_code == 404
    assert eng.get(reverse("api-annotation-publish-run", args=[missing])).status_code == 404
    assert a1.get(reverse("api-annotation-assignment", args=[missing])).status_code == 404
    assert _submit(a1, missing, {"team": "Billing"}).status_code == 404
    assert rev.get(reverse("api-annotation-task", args=[missing])).status_code == 404
    assert (
        rev.post(
            reverse("api-annotation-adjudicate", args=[missing]), {"answer": {"team": "Billing"}}, format="json"
        ).status_code
        == 404
    )
    response = eng.get(reverse("api-annotation-label-schema", args=[missing]))
    assert response.status_code == 404 and response.json()["error"]


def test_bad_project_input_is_400_with_field_messages(people, version):
    eng = people["engineer"]
    url = reverse("api-annotation-projects")
    unknown = eng.post(url, {"name": "x", "version": 999_999, "schema": SCHEMA}, format="json")
    assert unknown.status_code == 400 and "no ready version" in unknown.json()["fields"]["version"][0]
    too_many = eng.post(url, {"name": "x", "version": version.pk, "annotations_per_example": 11}, format="json")
    assert too_many.status_code == 400 and "annotations_per_example" in too_many.json()["fields"]
    no_schema = eng.post(url, {"name": "x", "version": version.pk}, format="json")
    assert no_schema.status_code == 400 and "label schema" in no_schema.json()["error"]
    bad_schema = eng.post(
        url,
        {
            "name": "x",
            "version": version.pk,
            "schema": {"fields": [{"name": "t", "kind": "choice", "options": ["A", "A"]}]},
        },
        format="json",
    )
    assert bad_schema.status_code == 400 and "listed twice" in bad_schema.json()["error"]
    raw = VersionFactory(dataset=version.dataset, number=version.number + 1)
    ExampleFactory(version=raw)
    unapproved = eng.post(url, {"name": "x", "version": raw.pk, "schema": SCHEMA}, format="json")
    assert unapproved.status_code == 400 and "privacy review" in unapproved.json()["error"]
    assert not AnnotationProject.objects.exists()
    assert eng.get(url + "?status=closed").status_code == 400


# --- who sees what ---------------------------------------------------------------------------------------------------


def test_annotators_see_only_their_own_assignments(people, project):
    a1, a2 = people["ann1"], people["ann2"]
    mine = _next(a1, project["id"]).json()
    theirs = _next(a2, project["id"]).json()
    listed = a1.get(reverse("api-annotation-assignments"))
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [mine["id"]]
    assert [
        row["id"] for row in a1.get(reverse("api-annotation-assignments") + "?status=active").json()["results"]
    ] == [mine["id"]]
    assert a1.get(reverse("api-annotation-assignments") + "?status=submitted").json()["results"] == []
    assert a1.get(reverse("api-annotation-assignment", args=[theirs["id"]])).status_code == 404
    assert _submit(a1, theirs["id"], {"team": "Billing"}).status_code == 404
    assert a1.post(reverse("api-annotation-skip", args=[theirs["id"]])).status_code == 404
    assert (
        a1.put(
            reverse("api-annotation-draft", args=[theirs["id"]]), {"draft": {"team": "Billing"}}, format="json"
        ).status_code
        == 404
    )
    untouched = Assignment.objects.get(pk=theirs["id"])
    assert untouched.status == "active" and untouched.draft == {}
    # Reviewers without a reservation of their own see none either.
    assert people["reviewer"].get(reverse("api-annotation-assignments")).json()["results"] == []


def test_managers_read_progress_but_not_answers(people, project):
    manager, a1 = people["manager"], people["ann1"]
    assignment = _next(a1, project["id"]).json()
    _submit(a1, assignment["id"], {"team": "Billing", "note": "private note"})
    listed = manager.get(reverse("api-annotation-projects"))
    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert row["id"] == project["id"] and row["progress"]["answers"] == 1 and row["progress"]["percent"] == 25.0
    assert "private note" not in listed.content.decode()
    assert manager.get(reverse("api-annotation-tasks", args=[project["id"]])).status_code == 403
    assert manager.get(reverse("api-annotation-task", args=[assignment["task"]])).status_code == 403
    assert manager.get(reverse("api-annotation-assignments")).status_code == 403
    assert manager.post(reverse("api-annotation-next", args=[project["id"]])).status_code == 403
    agreement = manager.get(reverse("api-annotation-agreement", args=[project["id"]]))
    assert agreement.status_code == 200 and "private note" not in agreement.content.decode()


# --- label schemas ---------------------------------------------------------------------------------------------------


def test_label_schema_default_then_saved(people, version):
    eng, manager = people["engineer"], people["manager"]
    url = reverse("api-annotation-label-schema", args=[version.dataset_id])
    default = manager.get(url)
    assert default.status_code == 200
    assert default.json()["is_default"] is True
    assert default.json()["schema"]["fields"][0]["options"] == ["Billing", "Technical", "Records"]
    assert manager.put(url, {"schema": SCHEMA}, format="json").status_code == 403
    saved = eng.put(url, {"schema": SCHEMA}, format="json")
    assert saved.status_code == 200
    assert saved.json()["is_default"] is False and saved.json()["updated_by"] == "engineer"
    assert manager.get(url).json()["schema"]["fields"][1]["name"] == "note"
    bad = eng.put(url, {"schema": {"fields": []}}, format="json")
    assert bad.status_code == 400 and bad.json()["error"] == "Add at least one field for annotators to fill in."
    # A project without an explicit schema now takes the saved one.
    created = eng.post(reverse("api-annotation-projects"), {"name": "Saved", "version": version.pk}, format="json")
    assert created.status_code == 201 and created.json()["schema"]["fields"][1]["name"] == "note"


# --- Label Studio ----------------------------------------------------------------------------------------------------


def test_label_studio_needs_a_connection_first(people, project):
    eng = people["engineer"]
    assert eng.get(reverse("api-annotation-label-studio")).json() == {
        "configured": False,
        "url": "",
        "token_hint": "",
        "updated_by": None,
        "updated_at": None,
    }
    push = eng.post(reverse("api-annotation-label-studio-push", args=[project["id"]]))
    assert push.status_code == 400 and push.json()["error"].startswith("Set up the Label Studio connection first")
    pull = eng.post(reverse("api-annotation-label-studio-pull", args=[project["id"]]))
    assert pull.status_code == 400 and "has not been sent to Label Studio" in pull.json()["error"]
    down = eng.put(
        reverse("api-annotation-label-studio"), {"url": "http://127.0.0.1:9", "token": "abc123"}, format="json"
    )
    assert down.status_code == 400 and down.json()["error"]
    assert not LabelStudioConnection.objects.exists()
    assert people["manager"].get(reverse("api-annotation-label-studio")).status_code == 403


def test_label_studio_connection_push_and_pull_through_the_api(people, project, label_studio, label_studio_sdk):
    eng = people["engineer"]
    saved = eng.put(
        reverse("api-annotation-label-studio"), {"url": label_studio.url, "token": label_studio.token}, format="json"
    )
    assert saved.status_code == 200, saved.content
    assert saved.json()["configured"] is True and saved.json()["token_hint"] == label_studio.token[-4:]
    read = eng.get(reverse("api-annotation-label-studio"))
    assert label_studio.token not in saved.content.decode() and label_studio.token not in read.content.decode()
    assert read.json()["url"] == label_studio.url.rstrip("/")

    pushed = eng.post(reverse("api-annotation-label-studio-push", args=[project["id"]]))
    assert pushed.status_code == 200, pushed.content
    ls_project = pushed.json()["label_studio_project_id"]
    assert ls_project and pushed.json()["label_studio_url"] == label_studio.url.rstrip("/")
    again = eng.post(reverse("api-annotation-label-studio-push", args=[project["id"]]))
    assert again.status_code == 400 and "already in Label Studio" in again.json()["error"]

    # Someone answers the first example in Label Studio; the pull counts it like an answer made here.
    task = Task.objects.filter(project_id=project["id"]).order_by("position").first()
    frozen = AnnotationProject.objects.get(pk=project["id"]).schema
    label_studio_sdk.annotations.create(
        id=task.label_studio_task_id, result=ls.result_from_answer(frozen, {"team": "Records"}), lead_time=7.0
    )
    pulled = eng.post(reverse("api-annotation-label-studio-pull", args=[project["id"]]))
    assert pulled.status_code == 200, pulled.content
    report = pulled.json()
    assert (report["imported"], report["updated"], report["unchanged"]) == (1, 0, 0)
    assert report["unknown_tasks"] == [] and report["invalid"] == [] and report["message"]
    answers = people["reviewer"].get(reverse("api-annotation-task", args=[task.pk])).json()["answers"]
    assert [(a["answer"], a["source"]) for a in answers] == [({"team": "Records"}, "label_studio")]
    assert eng.post(reverse("api-annotation-label-studio-pull", args=[project["id"]])).json()["unchanged"] == 1


def test_project_created_through_the_api_with_gold_examples(people):
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED)
    for i in range(4):
        ExampleFactory(version=version, row_index=i, label="Billing")
    body = {"name": "Gold via API", "version": version.pk, "gold_count": 2, "schema": SCHEMA}
    response = people["engineer"].post("/api/v1/annotation/projects/", body, format="json")
    assert response.status_code == 201, response.json()
    assert AnnotationProject.objects.get(pk=response.json()["id"]).tasks.filter(is_gold=True).count() == 2
    response = people["engineer"].post(
        "/api/v1/annotation/projects/", {**body, "name": "Too many", "gold_count": 9}, format="json"
    )
    assert response.status_code == 400
    assert "Only 4 examples have a known label" in response.json()["fields"]["gold_count"][0]
