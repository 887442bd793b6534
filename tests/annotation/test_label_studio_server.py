"""The Label Studio sync against a real Label Studio 1.23.2 (its own venv and process, see scripts/label_studio.py).

Annotating "in Label Studio" is done through its API with the admin token, the way its own UI stores answers:
the open-source server cannot log in a second user, but stores an annotation with any ``completed_by``.
"""

import uuid

import pytest
from django.core.exceptions import ValidationError

from accounts.models import AuditEvent
from annotation import label_studio as ls
from annotation.models import Annotation, AnnotationProject, LabelStudioConnection, Task
from annotation.selectors import project_agreement
from annotation.services import annotation_project_create, label_schema_save
from annotation.services_label_studio import (
    _fernet,
    label_studio_client,
    label_studio_connection_get,
    label_studio_connection_save,
    label_studio_pull,
    label_studio_push,
)
from curation.models import DatasetVersion
from scripts.label_studio import free_port
from tests.factories import ExampleFactory, VersionFactory

SCRIPT = "<script>alert('td')</script>"
BILLING = "<b>Billing</b> & Co"
SCHEMA = {
    "instructions": f"Correct the reply. {SCRIPT}",
    "fields": [
        {"name": "reply", "kind": "text", "title": f"Reply {SCRIPT}", "writes": "target"},
        {
            "name": "team",
            "kind": "choice",
            "title": 'Route "to"',
            "options": [BILLING, "Technical", "it's"],
            "writes": "label",
        },
        {"name": "quality", "kind": "rating", "title": "Quality", "scale": 5, "required": False},
    ],
}
INPUTS = [f"Ticket {i}: {SCRIPT} & <b>my invoice</b> is wrong" for i in range(3)]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_project(make_user):
    curator = make_user("curator", username=_unique("curator"))

    def make(rows: int = 3, *, privacy=DatasetVersion.Privacy.APPROVED) -> AnnotationProject:
        version = VersionFactory(
            privacy=DatasetVersion.Privacy.APPROVED, status=DatasetVersion.Status.READY, row_count=rows
        )
        for i in range(rows):
            ExampleFactory(version=version, row_index=i, input=INPUTS[i % len(INPUTS)], target=f"Original {i} <i>")
        label_schema_save(dataset=version.dataset, schema=SCHEMA, actor=curator)
        project = annotation_project_create(name=_unique("Support replies"), version=version, actor=curator)
        if privacy != DatasetVersion.Privacy.APPROVED:
            DatasetVersion.objects.filter(pk=version.pk).update(privacy=privacy)
            project.refresh_from_db()
        return project

    return make


def _annotate(sdk, ls_task_id: int, answer: dict, *, schema: dict, by: int | None = None, **extra) -> int:
    result = ls.result_from_answer(schema, answer)
    kwargs = {"completed_by": by} if by is not None else {}
    return sdk.annotations.create(id=ls_task_id, result=result, lead_time=12.5, **kwargs, **extra).id


# --- connection ----------------------------------------------------------------------------------------------------


def test_connection_is_checked_then_stored_with_the_token_encrypted(label_studio, make_user):
    admin = make_user("admin")
    connection = label_studio_connection_save(url=label_studio.url + "/", token=label_studio.token, actor=admin)

    assert connection.pk == 1 and connection.url == label_studio.url
    assert connection.token_hint == label_studio.token[-4:]
    stored = bytes(LabelStudioConnection.objects.get().token_encrypted)
    assert label_studio.token.encode() not in stored
    assert _fernet().decrypt(stored).decode() == label_studio.token
    event = AuditEvent.objects.get(action="label_studio.connection_save")
    assert event.actor == admin and event.after["label_studio_version"] == "1.23.2"
    assert label_studio.token not in str(event.before) + str(event.after)
    with label_studio_client() as client:
        assert client.check() == "1.23.2"


def test_wrong_token_is_refused_in_plain_words_and_nothing_is_stored(label_studio, make_user):
    with pytest.raises(ValidationError) as caught:
        label_studio_connection_save(url=label_studio.url, token="0" * 40, actor=make_user("admin"))

    assert caught.value.messages == [
        f"Label Studio at {label_studio.url} refused the access token (Invalid token.); "
        "copy the token again from Account & Settings in Label Studio."
    ]
    assert label_studio_connection_get() is None
    assert not AuditEvent.objects.filter(action="label_studio.connection_save").exists()


def test_a_server_that_is_down_is_refused_in_plain_words(make_user):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(ValidationError) as caught:
        label_studio_connection_save(url=url, token="abcd" * 10, actor=make_user("admin"))

    assert caught.value.messages == [
        f"Label Studio at {url} does not answer; check the address and that it is running."
    ]
    assert label_studio_connection_get() is None


def test_an_address_that_is_not_label_studio_is_refused(label_studio, make_user):
    with pytest.raises(ValidationError) as caught:
        label_studio_connection_save(
            url=label_studio.url + "/not-here", token=label_studio.token, actor=make_user("admin")
        )
    assert "does not look like a Label Studio server" in caught.value.messages[0]

    with pytest.raises(ValidationError) as caught:
        label_studio_connection_save(url="ftp://label-studio", token=label_studio.token, actor=None)
    assert caught.value.message_dict == {
        "url": ["Enter the address of the Label Studio server, such as https://label-studio.example.org."]
    }
    assert label_studio_connection_get() is None


def test_push_without_a_connection_says_what_to_do(make_project, make_user):
    project = make_project()
    with pytest.raises(ValidationError, match="Set up the Label Studio connection first"):
        label_studio_push(project=project, actor=make_user("admin"))


# --- push ----------------------------------------------------------------------------------------------------------


def test_push_refuses_a_version_that_has_not_passed_privacy_review(
    make_project, label_studio_connection, label_studio_sdk
):
    project = make_project(privacy=DatasetVersion.Privacy.RAW)
    before = len(list(label_studio_sdk.projects.list()))

    with pytest.raises(ValidationError, match="has not passed privacy review"):
        label_studio_push(project=project, actor=None)

    assert len(list(label_studio_sdk.projects.list())) == before
    project.refresh_from_db()
    assert project.label_studio_project_id is None


def test_push_creates_one_label_studio_task_per_task_with_our_config(
    make_project, label_studio, label_studio_connection, label_studio_sdk
):
    project = make_project(rows=3)

    pushed = label_studio_push(project=project, actor=None)

    assert pushed.label_studio_url == label_studio.url and pushed.label_studio_project_id
    remote = label_studio_sdk.projects.get(id=pushed.label_studio_project_id)
    assert remote.title == pushed.name and remote.task_number == 3
    # Label Studio validated and parsed the config: it knows our three controls and the example they label.
    assert remote.label_config == ls.label_config(project.schema)
    assert set(remote.parsed_label_config) == {"reply", "team", "quality"}
    assert remote.parsed_label_config["team"]["labels"] == [BILLING, "Technical", "it's"]
    assert SCRIPT not in remote.expert_instruction and "&lt;script&gt;" in remote.expert_instruction
    remote_tasks = {t.id: t for t in label_studio_sdk.tasks.list(project=pushed.label_studio_project_id)}
    for task in Task.objects.filter(project=project).select_related("example"):
        remote_task = remote_tasks[task.label_studio_task_id]
        assert remote_task.data == {"input": task.example.input, "target": task.example.target, "td_task_id": task.pk}
        assert remote_task.meta == {"td_task_id": task.pk}
    assert INPUTS[0] in {t.data["input"] for t in remote_tasks.values()}  # markup arrives as text, unchanged
    assert AuditEvent.objects.filter(action="annotation_project.label_studio_push", object_id=str(project.pk)).exists()

    with pytest.raises(ValidationError, match="already in Label Studio"):
        label_studio_push(project=pushed, actor=None)


def test_a_push_that_fails_midway_removes_the_half_made_project(
    make_project, label_studio_connection, label_studio_sdk, monkeypatch
):
    """The import failure is injected: a real server cannot be made to drop between two calls on cue."""
    project = make_project()

    def drop(self, project_id, payloads):
        raise ls.LabelStudioUnavailable(f"Label Studio at {self.url} does not answer; check the address and ...")

    monkeypatch.setattr(ls.LabelStudioClient, "import_tasks", drop)
    with pytest.raises(ValidationError, match="does not answer"):
        label_studio_push(project=project, actor=None)

    assert project.name not in {p.title for p in label_studio_sdk.projects.list()}
    project.refresh_from_db()
    assert project.label_studio_project_id is None and project.label_studio_url == ""
    assert not Task.objects.filter(project=project, label_studio_task_id__isnull=False).exists()


# --- pull ----------------------------------------------------------------------------------------------------------


def test_pull_brings_back_answers_from_two_label_studio_users(
    make_project, make_user, label_studio, label_studio_connection, label_studio_sdk
):
    sdk = label_studio_sdk
    alice = make_user("annotator", username="alice", email=f"{_unique('alice')}@example.org")
    # Label Studio has its own users; this one is Alice by e-mail (in other letter case).
    ls_alice = sdk.users.create(username=alice.email.upper(), email=alice.email.upper())
    project = label_studio_push(project=make_project(rows=3), actor=None)
    other_project = make_project(rows=1)
    schema = project.schema
    t0, t1, t2 = Task.objects.filter(project=project).order_by("position")
    agreed = {"reply": f"Fixed {SCRIPT}", "team": BILLING, "quality": 4}

    _annotate(sdk, t0.label_studio_task_id, agreed, schema=schema)  # the admin: no user of ours
    _annotate(sdk, t0.label_studio_task_id, agreed, schema=schema, by=ls_alice.id)
    _annotate(sdk, t1.label_studio_task_id, {"reply": "Fixed", "team": "Technical"}, schema=schema)
    _annotate(sdk, t1.label_studio_task_id, {"reply": "Fixed", "team": "it's"}, schema=schema, by=ls_alice.id)
    # A label someone added in Label Studio only, and a skipped task.
    bad = sdk.annotations.create(
        id=t2.label_studio_task_id,
        completed_by=ls_alice.id,
        result=[
            {"from_name": "team", "to_name": ls.INPUT_TAG, "type": "choices", "value": {"choices": ["Sales"]}},
            {"from_name": "reply", "to_name": ls.INPUT_TAG, "type": "textarea", "value": {"text": ["x"]}},
        ],
    )
    _annotate(sdk, t2.label_studio_task_id, agreed, schema=schema, was_cancelled=True)
    # Tasks we never sent: one without our id, one carrying another project's task id, and a copy of one of ours.
    strangers = sdk.projects.import_tasks(
        id=project.label_studio_project_id,
        return_task_ids=True,
        request=[
            {"data": {"input": "added in Label Studio", "target": ""}},
            ls.task_payload(task_id=other_project.tasks.get().pk, input="copied", target=""),
            ls.task_payload(task_id=t2.pk, input="a copy of an example we sent", target=""),
        ],
    ).task_ids
    for stranger in strangers:
        _annotate(sdk, stranger, agreed, schema=schema)

    report = label_studio_pull(project=project, actor=None)

    assert report["imported"] == 4 and report["updated"] == 0 and report["unchanged"] == 0
    assert sorted(report["unknown_tasks"]) == sorted(strangers)
    assert report["invalid"] == [
        {
            "task": t2.label_studio_task_id,
            "annotation": bad.id,
            "error": f'team: “Sales” is not an option of “Route "to"”; choose from {BILLING}, Technical, it\'s.',
        }
    ]
    assert report["skipped"] == 1
    assert report["message"] == (
        "Pulled from Label Studio: 4 new answers, 0 changed, 0 unchanged. 3 examples in Label Studio were not sent "
        "from this project, so their answers were ignored. 1 answer does not fit this project's fields (for example "
        "a label added in Label Studio) and was not imported."
    )

    rows = Annotation.objects.filter(task__project=project)
    assert rows.count() == 4 and set(rows.values_list("source", flat=True)) == {"label_studio"}
    assert {(r.annotator_name, r.annotator) for r in rows} == {
        ("alice", alice),
        ("label-studio:tuning-desk@localhost", None),
    }
    first = rows.get(task=t0, annotator=alice)
    assert first.answer == agreed and first.seconds == 12.5  # markup in answers comes back as the same text
    assert not Annotation.objects.filter(task__project=other_project).exists()
    t0.refresh_from_db(), t1.refresh_from_db(), t2.refresh_from_db()
    assert (t0.status, t0.answer) == (Task.Status.AGREED, agreed)
    assert (t1.status, t1.disagreements) == (Task.Status.DISAGREEMENT, ["team"])
    assert (t2.status, t2.annotation_count) == (Task.Status.OPEN, 0)
    agreement = project_agreement(project)
    team = next(f for f in agreement["fields"] if f["name"] == "team")["summary"]
    assert team["items"] == 2 and team["annotators"] == 2 and team["percent_agreement"] == 0.5
    assert {a["name"] for a in agreement["annotators"]} == {"alice", "label-studio:tuning-desk@localhost"}
    project.refresh_from_db()
    assert project.label_studio_pulled_at is not None

    # Pulling again changes nothing; an answer edited in Label Studio is updated in place.
    ids = set(rows.values_list("id", flat=True))
    again = label_studio_pull(project=project, actor=None)
    assert (again["imported"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert set(rows.values_list("id", flat=True)) == ids
    edited = rows.get(task=t1, annotator=alice)
    sdk.annotations.update(
        id=edited.label_studio_annotation_id,
        result=ls.result_from_answer(schema, {"reply": "Fixed", "team": "Technical"}),
    )
    third = label_studio_pull(project=project, actor=None)
    assert (third["imported"], third["updated"], third["unchanged"]) == (0, 1, 3)
    edited.refresh_from_db(), t1.refresh_from_db()
    assert edited.answer["team"] == "Technical" and t1.status == Task.Status.AGREED
    assert set(rows.values_list("id", flat=True)) == ids
    assert AuditEvent.objects.filter(action="annotation_project.label_studio_pull").count() == 3


def test_pull_with_a_wrong_token_writes_nothing(make_project, label_studio_connection, label_studio_sdk):
    project = label_studio_push(project=make_project(), actor=None)
    task = project.tasks.first()
    _annotate(label_studio_sdk, task.label_studio_task_id, {"reply": "r", "team": "Technical"}, schema=project.schema)
    LabelStudioConnection.objects.filter(pk=1).update(token_encrypted=_fernet().encrypt(b"f" * 40))

    with pytest.raises(ValidationError) as caught:
        label_studio_pull(project=project, actor=None)

    assert "refused the access token" in caught.value.messages[0]
    assert not Annotation.objects.exists()
    project.refresh_from_db()
    assert project.label_studio_pulled_at is None
    assert not AuditEvent.objects.filter(action="annotation_project.label_studio_pull").exists()


def test_pull_from_a_project_deleted_in_label_studio_says_so(make_project, label_studio_connection, label_studio_sdk):
    project = label_studio_push(project=make_project(), actor=None)
    label_studio_sdk.projects.delete(id=project.label_studio_project_id)

    with pytest.raises(ValidationError) as caught:
        label_studio_pull(project=project, actor=None)

    assert caught.value.messages == [
        f"Label Studio project {project.label_studio_project_id} no longer exists at {project.label_studio_url}; "
        "it may have been deleted there."
    ]
    project.refresh_from_db()
    assert project.label_studio_pulled_at is None


def test_pull_before_push_says_what_to_do(make_project, label_studio_connection):
    with pytest.raises(ValidationError, match="has not been sent to Label Studio yet"):
        label_studio_pull(project=make_project(), actor=None)


def test_answers_move_to_our_user_once_their_e_mail_is_known_here(
    make_project, make_user, label_studio_connection, label_studio_sdk
):
    email = f"{_unique('bob')}@example.org"
    ls_bob = label_studio_sdk.users.create(username=email, email=email)
    project = label_studio_push(project=make_project(rows=1), actor=None)
    task = project.tasks.get()
    _annotate(
        label_studio_sdk,
        task.label_studio_task_id,
        {"reply": "r", "team": "Technical"},
        schema=project.schema,
        by=ls_bob.id,
    )
    label_studio_pull(project=project, actor=None)
    assert Annotation.objects.get().annotator_name == f"label-studio:{email}"

    bob = make_user("annotator", username="bob", email=email)
    report = label_studio_pull(project=project, actor=None)

    assert (report["imported"], report["updated"], report["unchanged"]) == (0, 1, 0)
    moved = Annotation.objects.get()
    assert (moved.annotator, moved.annotator_name, moved.answer["team"]) == (bob, "bob", "Technical")


def test_an_answer_given_here_is_not_overwritten_from_label_studio(
    make_project, make_user, label_studio_connection, label_studio_sdk
):
    from annotation.services import annotation_submit, assignment_next

    email = f"{_unique('cleo')}@example.org"
    cleo = make_user("annotator", username=_unique("cleo"), email=email)
    ls_cleo = label_studio_sdk.users.create(username=email, email=email)
    project = label_studio_push(project=make_project(rows=1), actor=None)
    held = assignment_next(project=project, annotator=cleo)
    annotation_submit(assignment=held, annotator=cleo, answer={"reply": "Mine, here", "team": "Technical"})
    _annotate(
        label_studio_sdk,
        held.task.label_studio_task_id,
        {"reply": "There", "team": "it's"},
        schema=project.schema,
        by=ls_cleo.id,
    )

    report = label_studio_pull(project=project, actor=None)

    assert report["imported"] == report["updated"] == 0
    assert "already answered this example in Tuning Desk" in report["invalid"][0]["error"]
    assert Annotation.objects.get().answer == {"reply": "Mine, here", "team": "Technical"}
