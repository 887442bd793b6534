"""The annotation pages through the test client: who may open what, the labelling page's forms and JSON autosave with
the inputs people really send (a label outside the schema, an expired reservation, a second tab), escaping of example
text and labels, review and the new dataset version."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.models import Annotation, AnnotationProject, Assignment, LabelSchema, Task
from curation.models import DatasetVersion
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

EVIL_LABEL = "<img src=x onerror=alert('label')>"
EVIL_TEXT = "<script>alert('example')</script> My invoice <b>doubled</b> this month."
SCHEMA = {
    "instructions": "Choose the team that should answer the ticket and say how urgent it is.",
    "fields": [
        {
            "name": "team",
            "kind": "choice",
            "title": "Team",
            "options": ["Billing", "Technical", EVIL_LABEL],
            "writes": "label",
        },
        {
            "name": "urgency",
            "kind": "rating",
            "title": "Urgency",
            "scale": 3,
            "rubric": {"1": "Can wait", "3": "Today"},
        },
        {"name": "note", "kind": "text", "title": "Note for the team", "required": False},
    ],
}
VIEWERS = {"curator", "annotator", "annotation_reviewer", "engineer", "manager", "admin"}
MANAGERS = {"curator", "engineer", "admin"}
ANNOTATORS = {"annotator", "annotation_reviewer", "admin"}
ADJUDICATORS = {"curator", "annotation_reviewer", "admin"}
LABEL_STUDIO_ADMINS = {"engineer", "admin"}
PERSONAS = (
    "curator",
    "annotator",
    "annotation_reviewer",
    "privacy_reviewer",
    "engineer",
    "manager",
    "admin",
    "outsider",
)


@pytest.fixture
def version(db):
    dataset = DatasetFactory(name="Support tickets", task_type="classification")
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED, dataset=dataset)
    texts = [EVIL_TEXT, "The app crashes when I open the calendar.", "Please refund the second charge."]
    for i, text in enumerate(texts):
        ExampleFactory(version=version, row_index=i, input=text, target="", label="")
    return version


@pytest.fixture
def project(version, engineer):
    services.label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=engineer)
    return services.annotation_project_create(
        name="Ticket routing", version=version, actor=engineer, annotations_per_example=2
    )


@pytest.fixture
def second(make_user):
    return make_user("annotator", username="annotator2")


@pytest.fixture
def adjudicator(make_user):
    return make_user("annotation_reviewer", username="rhea")


def url(name: str, *args) -> str:
    return reverse(f"annotation:{name}", args=args)


def reserve(client, project) -> Assignment:
    response = client.post(url("label_next", project.pk))
    assert response.status_code == 302 and response["Location"] == url("label", project.pk)
    user = response.wsgi_request.user
    return Assignment.objects.get(task__project=project, annotator=user, status=Assignment.Status.ACTIVE)


def answer_data(assignment: Assignment, **answer) -> dict:
    data = {"assignment": assignment.pk, "active_seconds": "4.5"}
    data.update({f"answer-{name}": value for name, value in answer.items()})
    return data


def submit(client, project, assignment, **answer):
    return client.post(url("label_submit", project.pk), answer_data(assignment, **answer))


def answer_all(client, project, answers: list[dict]) -> None:
    """Answer every example the annotator is given, in the order given."""
    for answer in answers:
        assignment = reserve(client, project)
        assert submit(client, project, assignment, **answer).status_code == 302


# --- who may open what ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_page_opens_for_the_roles_that_hold_its_permission(client, make_user, project, persona):
    client.force_login(make_user(persona, username=f"p-{persona}"))
    task = project.tasks.first()
    pages = [
        (url("project_list"), VIEWERS),
        (url("project_detail", project.pk), VIEWERS),
        (url("project_create"), MANAGERS),
        (url("schema_edit", project.version.dataset.pk), MANAGERS),
        (url("label", project.pk), ANNOTATORS),
        (url("label_done", project.pk), ANNOTATORS),
        (url("review_queue", project.pk), ADJUDICATORS),
        (url("task_detail", task.pk), ADJUDICATORS),
        (url("label_studio_settings"), LABEL_STUDIO_ADMINS),
    ]
    for address, allowed in pages:
        expected = 200 if persona in allowed else 403
        assert client.get(address).status_code == expected, address


def test_signed_out_people_are_sent_to_the_login_page(client, project):
    for address in (url("project_list"), url("label", project.pk), url("review_queue", project.pk)):
        response = client.get(address)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_pages_that_change_something_refuse_get(client, admin_user, project):
    client.force_login(admin_user)
    task = project.tasks.first()
    for address in (
        url("label_next", project.pk),
        url("label_submit", project.pk),
        url("label_skip", project.pk),
        url("label_undo", project.pk),
        url("project_publish", project.pk),
        url("project_reopen", project.pk),
        url("task_adjudicate", task.pk),
        url("task_gold", task.pk),
        url("label_studio_push", project.pk),
        url("label_studio_pull", project.pk),
    ):
        assert client.get(address).status_code == 405, address
    assert not Assignment.objects.exists()


def test_unknown_objects_are_not_found(client, admin_user, project):
    client.force_login(admin_user)
    assert client.get(url("project_detail", 999_999)).status_code == 404
    assert client.get(url("task_detail", 999_999)).status_code == 404
    assert client.get(url("schema_edit", 999_999)).status_code == 404


def test_the_top_bar_has_annotate_for_those_who_may_see_projects(client, make_user):
    client.force_login(make_user("annotator"))
    html_text = client.get(reverse("home")).content.decode()
    assert f'href="{url("project_list")}">Annotate<' in html_text
    client.force_login(make_user("privacy_reviewer"))
    assert ">Annotate<" not in client.get(reverse("home")).content.decode()


# --- projects and schemas ------------------------------------------------------------------------------------------


def test_project_list_shows_progress_and_a_start_button_for_annotators(client, annotator, manager, project):
    client.force_login(annotator)
    page = client.get(url("project_list")).content.decode()
    assert "Ticket routing" in page and "0 of 6 answers" in page
    assert f'action="{url("label_next", project.pk)}"' in page and "Start annotating" in page
    client.force_login(manager)
    page = client.get(url("project_list")).content.decode()
    assert "Ticket routing" in page and "Start annotating" not in page and "New project" not in page


def test_new_project_offers_only_approved_versions(client, curator, version):
    raw = VersionFactory(dataset__name="Raw tickets")
    ExampleFactory(version=raw)
    client.force_login(curator)
    page = client.get(url("project_create")).content.decode()
    assert "Support tickets · version" in page and "Raw tickets" not in page
    # A crafted request for the raw version meets the privacy gate's own message.
    response = client.post(
        url("project_create"),
        {"name": "Sneaky", "version": raw.pk, "annotations_per_example": 2, "reservation_minutes": 30},
    )
    assert response.status_code == 200 and "has not passed privacy review" in response.content.decode()
    assert not AnnotationProject.objects.exists()


def test_new_project_says_when_no_version_is_approved(client, curator, db):
    ExampleFactory(version=VersionFactory())
    client.force_login(curator)
    page = client.get(url("project_create")).content.decode()
    assert "No dataset version can be annotated yet" in page


def test_new_project_needs_the_schema_then_is_created(client, curator, version):
    client.force_login(curator)
    data = {
        "name": "Routing",
        "version": version.pk,
        "annotations_per_example": 3,
        "reservation_minutes": 20,
        "limit": 2,
    }
    response = client.post(url("project_create"), data)
    page = response.content.decode()
    assert response.status_code == 200 and "Set up the label schema of this dataset first" in page
    assert url("schema_edit", version.dataset.pk) in page
    services.label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=curator)
    response = client.post(url("project_create"), data, follow=True)
    project = AnnotationProject.objects.get(name="Routing")
    assert (project.task_count, project.annotations_per_example, project.reservation_minutes) == (2, 3, 20)
    assert "is open: 2 examples to annotate" in response.content.decode()


def test_new_project_checks_the_numbers(client, curator, project):
    client.force_login(curator)
    response = client.post(
        url("project_create"),
        {
            "name": "Ticket routing",
            "version": project.version.pk,
            "annotations_per_example": 11,
            "reservation_minutes": 0,
        },
    )
    page = response.content.decode()
    assert "less than or equal to 10" in page and "greater than or equal to 1" in page
    assert AnnotationProject.objects.count() == 1


def test_schema_editor_starts_from_a_suggestion_and_shows_errors_next_to_the_field(client, engineer, version):
    client.force_login(engineer)
    page = client.get(url("schema_edit", version.dataset.pk)).content.decode()
    assert "Not saved yet" in page and "&quot;instructions&quot;" in page
    response = client.post(url("schema_edit", version.dataset.pk), {"schema": '{"fields": [}'})
    assert "This is not valid JSON (line 1" in response.content.decode()
    bad = '{"fields": [{"name": "team", "kind": "choice", "options": ["A", "A"]}]}'
    response = client.post(url("schema_edit", version.dataset.pk), {"schema": bad})
    assert re.search(r'<p class="error" id="id_schema_error">[^<]*listed twice', response.content.decode())
    assert not LabelSchema.objects.exists()
    good = '{"instructions": "Pick one.", "fields": [{"name": "team", "kind": "choice", "options": ["A", "B"]}]}'
    response = client.post(url("schema_edit", version.dataset.pk), {"schema": good}, follow=True)
    assert LabelSchema.objects.get(dataset=version.dataset).schema["fields"][0]["options"] == ["A", "B"]
    page = response.content.decode()
    assert "is saved" in page and "Keys annotators will press" in page and "<kbd>1</kbd> A" in page


def test_dataset_and_version_pages_link_to_annotation_for_project_managers(client, curator, manager, version):
    client.force_login(curator)
    assert (
        url("schema_edit", version.dataset.pk)
        in client.get(reverse("curation:dataset_detail", args=[version.dataset.pk])).content.decode()
    )
    assert (
        f"{url('project_create')}?version={version.pk}"
        in client.get(reverse("curation:version_detail", args=[version.pk])).content.decode()
    )
    client.force_login(manager)
    assert (
        "Label schema" not in client.get(reverse("curation:dataset_detail", args=[version.dataset.pk])).content.decode()
    )
    assert (
        "Annotate this version"
        not in client.get(reverse("curation:version_detail", args=[version.pk])).content.decode()
    )


# --- the labelling page --------------------------------------------------------------------------------------------


def test_getting_the_page_reserves_nothing_and_offers_the_next_example(client, annotator, project):
    client.force_login(annotator)
    page = client.get(url("label", project.pk)).content.decode()
    assert "Get the next example" in page and not Assignment.objects.exists()


def test_labelling_page_shows_the_example_the_keys_and_progress(client, annotator, project):
    client.force_login(annotator)
    reserve(client, project)
    response = client.get(url("label", project.pk))
    page = response.content.decode()
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    assert "Example 1" in page and "of 3" in page
    assert "Choose the team that should answer" in page  # instructions beside the task
    assert re.search(r'value="Billing" data-key="1"[^>]*>\s*<kbd aria-hidden="true">1</kbd>', page)
    assert re.search(r'value="1" data-key="q"', page)  # the rating is the second keyed field: the Q row
    assert "0 of 3 examples answered" in page and "0 of 6 answers" in page
    assert 'id="submit-button"' in page and 'id="skip-button"' in page


def test_example_text_and_labels_are_escaped(client, annotator, adjudicator, second, project):
    client.force_login(annotator)
    reserve(client, project)
    page = client.get(url("label", project.pk)).content.decode()
    assert EVIL_TEXT not in page and html.escape(EVIL_TEXT) in page
    assert EVIL_LABEL not in page and html.escape(EVIL_LABEL) in page
    assert "<script>alert" not in page and "<img src=x" not in page
    # The same on the review side, where the label is someone's answer.
    client.force_login(second)
    answer_all(client, project, [{"team": EVIL_LABEL, "urgency": "1", "note": "<b>bold</b>"}])
    task = Task.objects.get(project=project, annotation_count=1)
    client.force_login(adjudicator)
    for address in (
        url("task_detail", task.pk),
        url("project_detail", project.pk),
        url("review_queue", project.pk) + "?show=all",
    ):
        page = client.get(address).content.decode()
        assert "<img src=x" not in page and "<script>alert" not in page and "<b>bold" not in page, address


def test_submitting_saves_the_answer_and_shows_the_next_example(client, annotator, project):
    client.force_login(annotator)
    first = reserve(client, project)
    # The page's count of visible seconds is believed up to the time since the reservation began.
    Assignment.objects.filter(pk=first.pk).update(reserved_at=timezone.now() - timedelta(minutes=1))
    response = submit(client, project, first, team="Technical", urgency="3", note="  Call back  ")
    assert response.status_code == 302 and response["Location"] == url("label", project.pk)
    annotation = Annotation.objects.get(annotator=annotator)
    assert annotation.answer == {"team": "Technical", "urgency": 3, "note": "Call back"}
    assert annotation.seconds == 4.5
    page = client.get(url("label", project.pk)).content.decode()
    assert "Your answer to example 1 is saved." in page and "Example 2" in page
    assert "1 of 3 examples answered" in page


def test_a_submit_from_the_page_script_gets_the_next_example_as_json_without_a_redirect(client, annotator, project):
    client.force_login(annotator)
    first = reserve(client, project)
    Assignment.objects.filter(pk=first.pk).update(reserved_at=timezone.now() - timedelta(minutes=1))
    address = url("label_submit", project.pk)
    response = client.post(address, answer_data(first, team="Billing", urgency="2"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert data["ok"] is True and data["message"] == "Your answer to example 1 is saved."
    # The next example is reserved and its page comes in the answer, with its own assignment in the form.
    second = Assignment.objects.get(annotator=annotator, status=Assignment.Status.ACTIVE)
    assert second.task.position == 1
    assert '<div id="label-page">' in data["html"] and "Example 2" in data["html"]
    assert f'name="assignment" value="{second.pk}"' in data["html"]
    assert Annotation.objects.get(annotator=annotator).seconds == 4.5
    # The same example again (a second tab): refused with the page that says so, status 409.
    again = client.post(address, answer_data(first, team="Technical", urgency="1"), HTTP_ACCEPT="application/json")
    assert again.status_code == 409 and again.json()["ok"] is False
    assert "You already submitted this example" in again.json()["message"]
    assert 'id="conflict"' in again.json()["html"]
    # A wrong value: 400 with the page showing the error next to the field.
    wrong = client.post(address, answer_data(second, team="Sales", urgency="1"), HTTP_ACCEPT="application/json")
    assert wrong.status_code == 400 and 'id="answer-errors"' in wrong.json()["html"]
    # The last example: where to go next instead of a page; the message waits there.
    client.post(address, answer_data(second, team="Billing", urgency="1"), HTTP_ACCEPT="application/json")
    third = Assignment.objects.get(annotator=annotator, status=Assignment.Status.ACTIVE)
    done = client.post(address, answer_data(third, team="Billing", urgency="1"), HTTP_ACCEPT="application/json")
    assert done.json() == {"ok": True, "redirect": url("label_done", project.pk)}
    assert "Your answer to example 3 is saved." in client.get(url("label_done", project.pk)).content.decode()


def test_a_label_outside_the_schema_is_refused_next_to_the_field_and_nothing_typed_is_lost(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    response = submit(client, project, assignment, team="Sales", urgency="2", note="Keep this note")
    page = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'<p class="error" id="error-team">“Sales” is not an option of “Team”', page)
    assert "The answer could not be saved." in page
    assert "Keep this note</textarea>" in page and re.search(r'name="answer-urgency" value="2" checked', page)
    assert not Annotation.objects.exists()


def test_a_missing_required_answer_is_named(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    response = submit(client, project, assignment, urgency="9")
    page = response.content.decode()
    assert response.status_code == 400
    assert "“Team” is required." in page and "“Urgency” must be a whole number from 1 to 3." in page


def test_a_late_answer_after_someone_else_took_the_example_is_kept_as_a_draft(client, annotator, second, project):
    client.force_login(annotator)
    mine = reserve(client, project)
    Assignment.objects.filter(pk=mine.pk).update(
        reserved_at=timezone.now() - timedelta(hours=2), expires_at=timezone.now() - timedelta(hours=1)
    )
    theirs = services.assignment_next(project=project, annotator=second)
    assert theirs.task_id == mine.task_id  # the example went to the second annotator
    response = submit(client, project, mine, team="Billing", urgency="1", note="My careful note")
    page = response.content.decode()
    assert response.status_code == 409
    assert "ran out at" in page and "someone else is annotating it now" in page
    assert "nothing you typed is lost" in page and "My careful note</textarea>" in page
    assert not Annotation.objects.exists()
    assert Assignment.objects.get(pk=mine.pk).draft["note"] == "My careful note"


def test_a_late_answer_is_accepted_while_the_example_is_still_free(client, annotator, project):
    client.force_login(annotator)
    mine = reserve(client, project)
    Assignment.objects.filter(pk=mine.pk).update(
        reserved_at=timezone.now() - timedelta(hours=2), expires_at=timezone.now() - timedelta(hours=1)
    )
    assert submit(client, project, mine, team="Billing", urgency="1").status_code == 302
    assert Annotation.objects.filter(annotator=annotator).count() == 1


def test_a_second_tab_cannot_submit_the_same_example_twice(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    assert submit(client, project, assignment, team="Billing", urgency="2").status_code == 302
    response = submit(client, project, assignment, team="Technical", urgency="3", note="from the other tab")
    page = response.content.decode()
    assert response.status_code == 409
    assert "You already submitted this example in another tab or window" in page
    assert "from the other tab</textarea>" in page
    assert Annotation.objects.get(annotator=annotator).answer["team"] == "Billing"


def test_someone_elses_reservation_is_not_found(client, annotator, second, project):
    theirs = services.assignment_next(project=project, annotator=second)
    client.force_login(annotator)
    assert submit(client, project, theirs, team="Billing", urgency="1").status_code == 404
    assert client.post(url("assignment_draft", theirs.pk), {"answer-team": "Billing"}).status_code == 404
    assert client.post(url("label_skip", project.pk), {"assignment": theirs.pk}).status_code == 404


def test_annotators_never_see_each_others_answers(client, annotator, second, project):
    client.force_login(second)
    answer_all(client, project, [{"team": "Technical", "urgency": "2", "note": "SECRET-NOTE-OF-ANNOTATOR-2"}])
    client.force_login(annotator)
    reserve(client, project)  # examples with answers come first: the one the other annotator answered
    assignment = Assignment.objects.get(annotator=annotator, status="active")
    assert assignment.task.annotation_count == 1
    page = client.get(url("label", project.pk)).content.decode()
    assert "SECRET-NOTE" not in page and "annotator2" not in page
    assert not re.search(r'value="Technical"[^>]*checked', page)
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert "SECRET-NOTE" not in page and 'id="annotator-table"' not in page


def test_skip_passes_the_example_on(client, annotator, project):
    client.force_login(annotator)
    first = reserve(client, project)
    response = client.post(url("label_skip", project.pk), answer_data(first, team="Billing"), follow=True)
    page = response.content.decode()
    assert "Example 1 skipped" in page and "Example 2" in page
    assert Assignment.objects.get(pk=first.pk).status == Assignment.Status.SKIPPED
    # A second tab that still shows the skipped example gets a message, not an error page.
    response = client.post(url("label_skip", project.pk), answer_data(first), follow=True)
    assert "no longer reserved for you" in response.content.decode()


def test_undo_takes_back_the_last_answer_and_keeps_what_was_typed_in_the_current_one(client, annotator, project):
    client.force_login(annotator)
    response = client.post(url("label_undo", project.pk), follow=True)
    assert "There is nothing to undo" in response.content.decode()
    first = reserve(client, project)
    submit(client, project, first, team="Technical", urgency="3", note="first note")
    current = Assignment.objects.get(annotator=annotator, status="active")
    response = client.post(url("label_undo", project.pk), answer_data(current, note="half-typed"), follow=True)
    page = response.content.decode()
    assert "Your answer to example 1 is taken back" in page and "Example 1" in page
    assert re.search(r'value="Technical"[^>]*checked', page) and "first note</textarea>" in page
    assert not Annotation.objects.filter(annotator=annotator).exists()
    assert Assignment.objects.get(pk=current.pk).draft == {"note": "half-typed"}
    # Submitting the taken-back example leads to the one that was being typed, with its draft.
    again = Assignment.objects.filter(annotator=annotator, status="active").order_by("-reserved_at").first()
    assert again.task_id == first.task_id
    submit(client, project, again, team="Billing", urgency="3")
    page = client.get(url("label", project.pk)).content.decode()
    assert "Example 2" in page and "half-typed</textarea>" in page


def test_all_done_page_counts_the_work(client, annotator, project):
    client.force_login(annotator)
    answer_all(client, project, [{"team": "Billing", "urgency": "1"}] * 3)
    response = client.post(url("label_next", project.pk))
    assert response["Location"] == url("label_done", project.pk)
    page = client.get(url("label_done", project.pk)).content.decode()
    assert "All done" in page and re.search(r'id="done-mine">3<', page)
    assert "nothing left for you to annotate" in page


# --- autosave (JSON) -----------------------------------------------------------------------------------------------


def test_autosave_keeps_the_draft_and_counts_revisions(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    address = url("assignment_draft", assignment.pk)
    response = client.post(address, {"answer-note": "Half a th", "revision": "0", "active_seconds": "7"})
    assert response.status_code == 200 and response.json()["ok"] and response.json()["revision"] == 1
    saved = Assignment.objects.get(pk=assignment.pk)
    assert saved.draft == {"note": "Half a th"} and saved.active_seconds == 7
    # Reloading the page shows the draft.
    assert "Half a th</textarea>" in client.get(url("label", project.pk)).content.decode()


def test_autosave_from_an_older_tab_gets_the_newer_draft_back(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    address = url("assignment_draft", assignment.pk)
    client.post(address, {"answer-team": "Technical", "answer-note": "from tab one", "revision": "0"})
    response = client.post(address, {"answer-team": "Billing", "revision": "0"})
    data = response.json()
    assert response.status_code == 409
    assert "You changed this example in another tab or window" in data["message"]
    assert data["draft"] == {"team": "Technical", "note": "from tab one"} and data["revision"] == 1
    assert Assignment.objects.get(pk=assignment.pk).draft["team"] == "Technical"


def test_autosave_refuses_a_label_outside_the_schema(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    response = client.post(url("assignment_draft", assignment.pk), {"answer-team": "Sales", "revision": "0"})
    assert response.status_code == 400
    assert response.json()["errors"]["team"].startswith("“Sales” is not an option of “Team”")


def test_autosave_after_the_reservation_ended_says_so_without_replacing_the_text(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    Assignment.objects.filter(pk=assignment.pk).update(
        reserved_at=timezone.now() - timedelta(hours=2), expires_at=timezone.now() - timedelta(hours=1)
    )
    response = client.post(url("assignment_draft", assignment.pk), {"answer-note": "x", "revision": "0"})
    assert response.status_code == 409
    assert "no longer reserved for you" in response.json()["message"] and "draft" not in response.json()


def test_autosave_refuses_get(client, annotator, project):
    client.force_login(annotator)
    assignment = reserve(client, project)
    assert client.get(url("assignment_draft", assignment.pk)).status_code == 405


# --- project page, review, publishing ------------------------------------------------------------------------------


def _two_annotators_answer(client, project, annotator, second) -> Task:
    """Both answer the three examples; they disagree on the team of one (example 1 for each of them)."""
    client.force_login(annotator)
    answer_all(
        client,
        project,
        [
            {"team": "Billing", "urgency": "2"},
            {"team": "Technical", "urgency": "3"},
            {"team": "Billing", "urgency": "1"},
        ],
    )
    client.force_login(second)
    # The second annotator meets the examples in the same order (those with answers first, then by position).
    answer_all(
        client,
        project,
        [
            {"team": "Technical", "urgency": "2"},
            {"team": "Technical", "urgency": "3"},
            {"team": "Billing", "urgency": "1"},
        ],
    )
    return Task.objects.get(project=project, status=Task.Status.DISAGREEMENT)


def test_project_page_shows_agreement_and_answers_only_to_those_who_may_see_them(
    client, annotator, second, engineer, manager, project
):
    _two_annotators_answer(client, project, annotator, second)
    client.force_login(engineer)
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert "Cohen&#x27;s kappa" in page and "Weighted kappa" in page
    assert re.search(r'<strong class="an-figure">-?\d\.\d\d</strong>', page)
    assert re.search(r'id="count-disagreements">1<', page) and re.search(r'id="count-agreed">2<', page)
    assert 'id="annotator-table"' in page and "annotator2" in page
    assert "Create new dataset version" in page
    client.force_login(manager)
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert "Cohen&#x27;s kappa" in page
    assert 'id="annotator-table"' not in page and "Create new dataset version" not in page


def test_how_often_each_option_was_chosen_is_shown_to_reviewers_but_not_to_annotators(
    client, annotator, second, adjudicator, project
):
    # With two annotators, "Billing chosen 3 times" and one's own answers tell how the other answered.
    _two_annotators_answer(client, project, annotator, second)
    chosen = re.compile(r'<th scope="row" class="an-option-name">([^<]+)</th>\s*<td class="num">(\d+)</td>')
    client.force_login(adjudicator)
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert dict(chosen.findall(page)) == {"Billing": "3", "Technical": "3", html.escape(EVIL_LABEL): "0"}
    client.force_login(second)
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert 'class="an-option-name">Billing</th>' in page  # the per-option agreement stays
    assert chosen.findall(page) == [] and ">Chosen<" not in page


def test_reviewer_settles_a_disagreement_with_one_click_and_the_curator_publishes(
    client, annotator, second, adjudicator, curator, project
):
    task = _two_annotators_answer(client, project, annotator, second)
    client.force_login(adjudicator)
    queue = client.get(url("review_queue", project.pk)).content.decode()
    assert url("task_detail", task.pk) in queue and "Team" in queue
    page = client.get(url("task_detail", task.pk)).content.decode()
    assert "annotator2" in page and "they disagree" in page
    second_answer = task.annotations.get(annotator=second)
    response = client.post(url("task_adjudicate", task.pk), {"use": second_answer.pk}, follow=True)
    assert "is settled. No disagreement is left to review." in response.content.decode()
    task.refresh_from_db()
    assert task.status == Task.Status.ADJUDICATED and task.answer["team"] == "Technical"

    client.force_login(curator)
    page = _publish(client, project, {"finish": "on"})
    new = DatasetVersion.objects.get(operation=DatasetVersion.Operation.ANNOTATE)
    assert f"Version {new.number} of Support tickets is ready: 3 settled answers" in page
    assert reverse("curation:version_detail", args=[new.pk]) in page
    assert new.examples.get(row_index=task.example.row_index).label == "Technical"
    version_page = client.get(reverse("curation:version_detail", args=[new.pk])).content.decode()
    assert "written in: 3 examples settled (1 by a reviewer)" in version_page
    assert url("project_detail", project.pk) in version_page
    project.refresh_from_db()
    assert not project.is_open and "Reopen for annotation" in page
    client.post(url("project_reopen", project.pk))
    project.refresh_from_db()
    assert project.is_open


def _publish(client, project, data=None) -> str:
    """Press "Create new dataset version", check the page shows the run going, run the worker's part here, and
    return the project page as it reads afterwards."""
    page = client.post(url("project_publish", project.pk), data or {}, follow=True).content.decode()
    run = project.publish_runs.get(status="queued")
    assert "The new version is being made in the background" in page
    assert url("publish_progress", run.pk) in page and "Create new dataset version" not in page
    assert client.get(url("publish_progress", run.pk)).json()["finished"] is False
    services.publish_run_execute(run_id=run.pk)
    progress = client.get(url("publish_progress", run.pk)).json()
    assert progress["finished"] is True and progress["fraction"] == 1.0
    return client.get(url("project_detail", project.pk)).content.decode()


def test_a_second_publish_while_one_is_going_is_refused_and_a_lost_one_can_be_restarted(
    client, curator, annotator, engineer, version
):
    services.label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=engineer)
    project = services.annotation_project_create(
        name="One answer each", version=version, actor=engineer, annotations_per_example=1
    )
    held = services.assignment_next(project=project, annotator=annotator)
    services.annotation_submit(assignment=held, annotator=annotator, answer={"team": "Billing", "urgency": 2})
    client.force_login(curator)
    client.post(url("project_publish", project.pk))
    page = client.post(url("project_publish", project.pk), follow=True).content.decode()
    assert "already being made. Wait for it to finish." in page
    assert project.publish_runs.count() == 1

    # The worker that took it died while checking: after five silent minutes the page offers to start again.
    run = project.publish_runs.get()
    run.status, run.heartbeat_at = "checking", timezone.now() - timedelta(minutes=6)
    run.save()
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert "The worker stopped responding" in page and "Create new dataset version" in page
    assert client.get(url("publish_progress", run.pk)).json()["finished"] is True
    page = _publish(client, project)
    run.refresh_from_db()
    assert run.status == "failed" and project.publish_runs.filter(status="done").count() == 1
    assert "is ready: 1 settled answers written into" in page
    assert services.publish_run_execute(run_id=run.pk) is None  # its message delivered late changes nothing


def test_publishing_with_nothing_settled_says_why(client, curator, project):
    client.force_login(curator)
    response = client.post(url("project_publish", project.pk), follow=True)
    assert "No example has a settled answer yet" in response.content.decode()
    assert not DatasetVersion.objects.filter(operation=DatasetVersion.Operation.ANNOTATE).exists()
    assert not project.publish_runs.exists()


def test_a_save_on_an_example_someone_settled_meanwhile_says_so_and_keeps_their_answer(
    client, annotator, second, adjudicator, make_user, project
):
    task = _two_annotators_answer(client, project, annotator, second)
    client.force_login(adjudicator)
    page = client.get(url("task_detail", task.pk)).content.decode()
    seen = re.search(r'name="settled_seen" value="([^"]*)"', page).group(1)
    assert seen == ""  # nobody has settled it yet
    # Another reviewer settles it while this one reads; this one presses Save with Team still empty.
    other = make_user("annotation_reviewer", username="rob")
    services.task_adjudicate(task=task, actor=other, answer={"team": "Billing", "urgency": 2}, settled_seen="")
    response = client.post(url("task_adjudicate", task.pk), {"answer-urgency": "3", "settled_seen": seen})
    text = html.unescape(response.content.decode())
    assert response.status_code == 409
    assert "Someone settled this example while you were reading it (rob, at " in text
    assert "Team is required" not in text and "nothing of yours was saved" in text
    task.refresh_from_db()
    assert task.answer == {"team": "Billing", "urgency": 2} and task.adjudicated_by == other
    # The page now carries the new stamp: saving again on purpose replaces rob's answer.
    seen = re.search(r'name="settled_seen" value="([^"]*)"', text).group(1)
    assert seen == task.settled_stamp != ""
    client.post(
        url("task_adjudicate", task.pk), {"answer-team": "Technical", "answer-urgency": "3", "settled_seen": seen}
    )
    task.refresh_from_db()
    assert task.answer == {"team": "Technical", "urgency": 3} and task.adjudicated_by == adjudicator


def test_using_an_annotators_answer_can_be_undone_from_the_next_page(client, annotator, second, adjudicator, project):
    task = _two_annotators_answer(client, project, annotator, second)
    client.force_login(adjudicator)
    page = client.get(url("task_detail", task.pk)).content.decode()
    assert 'data-confirm="Make annotator2' in page  # asks first (the page script shows the question)
    chosen = task.annotations.get(annotator=second)
    response = client.post(url("task_adjudicate", task.pk), {"use": chosen.pk, "settled_seen": ""}, follow=True)
    page = response.content.decode()
    assert "You settled example 1." in page and url("task_adjudicate_undo", task.pk) in page
    task.refresh_from_db()
    assert task.status == Task.Status.ADJUDICATED
    # Offered once: a reload no longer shows it, but the button on the page still works.
    assert "You settled example 1." not in client.get(url("review_queue", project.pk)).content.decode()
    page = client.post(url("task_adjudicate_undo", task.pk), follow=True).content.decode()
    assert "Your decision on example 1 is undone: decide it again." in page
    task.refresh_from_db()
    assert (task.status, task.answer, task.adjudicated_by) == (Task.Status.DISAGREEMENT, None, None)
    assert "they disagree" in page
    # Nothing left to undo now.
    page = client.post(url("task_adjudicate_undo", task.pk), follow=True).content.decode()
    assert "There is no decision on this example to undo here" in page


def test_the_reviewers_own_answer_is_checked_against_the_schema(client, annotator, second, adjudicator, project):
    task = _two_annotators_answer(client, project, annotator, second)
    client.force_login(adjudicator)
    response = client.post(url("task_adjudicate", task.pk), {"answer-team": "Sales", "answer-urgency": "2"})
    assert response.status_code == 400 and "“Sales” is not an option of “Team”" in response.content.decode()
    response = client.post(
        url("task_adjudicate", task.pk), {"answer-team": "Billing", "answer-urgency": "2"}, follow=True
    )
    task.refresh_from_db()
    assert task.answer == {"team": "Billing", "urgency": 2} and task.adjudicated_by == adjudicator


def test_marking_gold_and_unmarking(client, annotator, second, adjudicator, engineer, project):
    task = _two_annotators_answer(client, project, annotator, second)
    client.force_login(adjudicator)
    response = client.post(url("task_gold", task.pk), {"answer-team": "Billing", "answer-urgency": "2"}, follow=True)
    assert "is a gold example" in response.content.decode()
    task.refresh_from_db()
    assert task.is_gold and task.gold_answer == {"team": "Billing", "urgency": 2}
    client.force_login(engineer)
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert re.search(r"<td class=\"num\">1 of 1</td>", page)  # the annotator who said Billing got it right
    client.force_login(adjudicator)
    client.post(url("task_gold", task.pk), {"gold": "unmark"})
    task.refresh_from_db()
    assert not task.is_gold


# --- Label Studio (a real Label Studio server, see tests/annotation/conftest.py) ----------------------------------


def test_label_studio_settings_check_the_token_and_never_show_it(client, engineer, label_studio):
    from annotation.models import LabelStudioConnection

    client.force_login(engineer)
    response = client.post(url("label_studio_settings"), {"url": label_studio.url, "token": "0" * 40})
    page = response.content.decode()
    assert response.status_code == 200 and "refused the access token" in page
    assert not LabelStudioConnection.objects.exists()
    response = client.post(url("label_studio_settings"), {"url": "", "token": ""})
    page = response.content.decode()
    assert "Enter the address of your Label Studio." in page and "Paste the access token" in page
    response = client.post(
        url("label_studio_settings"), {"url": label_studio.url, "token": label_studio.token}, follow=True
    )
    page = response.content.decode()
    assert "Connected: Tuning Desk can reach your Label Studio" in page
    assert f"…{label_studio.token[-4:]}" in page and label_studio.token not in page
    assert 'type="password"' in page and f'value="{label_studio.token}"' not in page


def test_push_and_pull_from_the_project_page(client, engineer, project, label_studio, label_studio_sdk):
    from annotation import label_studio as ls

    client.force_login(engineer)
    response = client.post(url("label_studio_pull", project.pk), follow=True)
    assert "has not been sent to Label Studio yet" in response.content.decode()
    page = client.get(url("project_detail", project.pk)).content.decode()
    assert "No Label Studio is connected yet" in page and url("label_studio_settings") in page
    response = client.post(url("label_studio_push", project.pk), follow=True)
    assert "Set up the Label Studio connection first" in response.content.decode()

    client.post(url("label_studio_settings"), {"url": label_studio.url, "token": label_studio.token})
    response = client.post(url("label_studio_push", project.pk), follow=True)
    page = response.content.decode()
    assert "The examples are in Label Studio" in page
    assert "Bring answers back from Label Studio" in page and "Send the examples to Label Studio" not in page
    project.refresh_from_db()
    assert project.label_studio_project_id
    task = project.tasks.order_by("position").first()
    result = ls.result_from_answer(project.schema, {"team": "Billing", "urgency": 2})
    label_studio_sdk.annotations.create(id=task.label_studio_task_id, result=result, lead_time=8.0)

    response = client.post(url("label_studio_pull", project.pk), follow=True)
    page = response.content.decode()
    assert re.search(r'id="last-pull">[^<]*Pulled from Label Studio: 1 new answer', page)
    task.refresh_from_db()
    assert task.annotation_count == 1
    assert Annotation.objects.get(task=task).source == Annotation.Source.LABEL_STUDIO


def test_publishing_text_with_new_personal_data_warns_and_waits_for_privacy_review(client, curator, annotator):
    version = VersionFactory(privacy=DatasetVersion.Privacy.APPROVED)
    ExampleFactory(version=version, row_index=0, input="My invoice is wrong.", target="We fixed it.")
    project = services.annotation_project_create(
        name="Reply fixes",
        version=version,
        actor=curator,
        annotations_per_example=1,
        schema={"fields": [{"name": "reply", "kind": "text", "writes": "target"}]},
    )
    held = services.assignment_next(project=project, annotator=annotator)
    services.annotation_submit(
        assignment=held, annotator=annotator, answer={"reply": "We fixed it. Call Maria Lopez on 617-555-0134 if not."}
    )
    client.force_login(curator)
    page = _publish(client, project)
    assert "seems to hold personal data" in page and "PHONE_NUMBER" in page
    assert "Waits for privacy review" in page
    new = DatasetVersion.objects.get(operation=DatasetVersion.Operation.ANNOTATE)
    assert new.privacy == DatasetVersion.Privacy.RAW
    version_page = client.get(reverse("curation:version_detail", args=[new.pk])).content.decode()
    assert "so this version waits for a privacy review" in version_page


def test_new_project_with_gold_examples_needs_known_answers(client, curator, version):
    services.label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=curator)
    client.force_login(curator)
    data = {
        "name": "Routing",
        "version": version.pk,
        "annotations_per_example": 2,
        "reservation_minutes": 30,
        "gold_count": 1,
    }
    page = client.post(url("project_create"), data).content.decode()
    assert "Only 0 examples have a known label" in page
    assert not AnnotationProject.objects.exists()
    version.examples.filter(row_index=1).update(label="Technical")
    client.post(url("project_create"), data)
    gold = AnnotationProject.objects.get().tasks.get(is_gold=True)
    assert gold.gold_answer["team"] == "Technical"
