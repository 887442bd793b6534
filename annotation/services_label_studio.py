"""Writes for the Label Studio sync: the connection, pushing a project's tasks there, pulling its answers back.

Push creates a Label Studio project from the frozen schema (``annotation.label_studio.label_config``) and imports one
task per Task, each carrying our Task id as ``td_task_id``. Pull reads Label Studio's export and stores every answer
through ``annotation_record_external``, so it settles tasks like an answer given here. Everything is fetched before
anything is written: when Label Studio fails, our rows are left as they were and the person gets one plain sentence.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.services import audit_record
from annotation import label_studio as ls
from annotation.models import Annotation, AnnotationProject, LabelStudioConnection, Task
from annotation.schema import SchemaError
from annotation.services import annotation_record_external
from curation.services import version_require_approved
from projectsite.crypto import fernet_for

CONNECTION_ID = 1
EXTERNAL_PREFIX = "label-studio:"


def _fernet() -> Fernet:
    return fernet_for(settings.SECRET_KEY, "label-studio-token")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# --- connection --------------------------------------------------------------------------------------------------


def _url_clean(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValidationError(
            {"url": "Enter the address of the Label Studio server, such as https://label-studio.example.org."}
        )
    if len(url) > LabelStudioConnection._meta.get_field("url").max_length:
        raise ValidationError({"url": "This address is too long."})
    return url


def label_studio_connection_get() -> LabelStudioConnection | None:
    return LabelStudioConnection.objects.filter(pk=CONNECTION_ID).first()


def label_studio_connection_save(*, url: str, token: str, actor) -> LabelStudioConnection:
    """Check the address and token against the server, then store them; the token only encrypted.

    Refused with Label Studio's problem in one sentence (down, wrong token, not Label Studio) and nothing stored.
    """
    url = _url_clean(url)
    token = (token or "").strip()
    if not token or any(character.isspace() for character in token):
        raise ValidationError({"token": "Paste the access token from Account & Settings in Label Studio."})
    try:
        with ls.LabelStudioClient(url, token) as client:
            version = client.check()
    except ls.LabelStudioUnavailable as exc:
        raise ValidationError(exc.message) from None
    with transaction.atomic():
        connection = LabelStudioConnection.objects.select_for_update().filter(
            pk=CONNECTION_ID
        ).first() or LabelStudioConnection(pk=CONNECTION_ID)
        before = {"url": connection.url, "token_hint": connection.token_hint} if connection.url else {}
        connection.url = url
        connection.token_encrypted = _fernet().encrypt(token.encode())
        connection.token_hint = token[-4:]
        connection.updated_by = actor if actor is not None and actor.is_authenticated else None
        # Django's URLValidator refuses single-label hosts (http://labelstudio:8080 in a compose file), which are
        # normal for an internal Label Studio; _url_clean has checked the address instead.
        connection.full_clean(exclude=["url"])
        connection.save()
        audit_record(
            actor=actor,
            action="label_studio.connection_save",
            obj=connection,
            before=before,
            after={"url": url, "token_hint": connection.token_hint, "label_studio_version": version},
        )
    return connection


def label_studio_client(connection: LabelStudioConnection | None = None) -> ls.LabelStudioClient:
    """A client for the saved connection, or a ValidationError saying what to do first."""
    connection = connection or label_studio_connection_get()
    if connection is None:
        raise ValidationError(
            "Set up the Label Studio connection first: an administrator enters its address and an access token."
        )
    try:
        token = _fernet().decrypt(bytes(connection.token_encrypted)).decode()
    except InvalidToken:
        raise ValidationError(
            "The saved Label Studio token cannot be read (the site's SECRET_KEY changed); enter the token again."
        ) from None
    return ls.LabelStudioClient(connection.url, token)


# --- push --------------------------------------------------------------------------------------------------------


def label_studio_push(*, project: AnnotationProject, actor) -> AnnotationProject:
    """Create the project in Label Studio with one task per Task, and remember the ids on both sides.

    If Label Studio fails midway, the half-made Label Studio project is deleted (best effort) and our rows stay as
    they were.
    """
    version_require_approved(project.version)
    if not project.is_open:
        raise ValidationError("This project is finished; reopen it before sending it to Label Studio.")
    if project.label_studio_project_id:
        raise ValidationError(
            f"This project is already in Label Studio (project {project.label_studio_project_id} at "
            f"{project.label_studio_url}); pull its answers instead."
        )
    client = label_studio_client()
    tasks = list(project.tasks.select_related("example").order_by("position"))
    payloads = [
        ls.task_payload(task_id=task.pk, input=task.example.input, target=task.example.target) for task in tasks
    ]

    with client:
        try:
            ls_project_id = client.create_project(
                project.name, ls.label_config(project.schema), ls.instructions_html(project.schema)
            )
        except ls.LabelStudioUnavailable as exc:
            raise ValidationError(exc.message) from None
        try:
            client.import_tasks(ls_project_id, payloads)
            # Map by td_task_id as Label Studio lists them, rather than trusting the order of the returned ids.
            ls_ids: dict[int, int] = {}
            for ls_task in client.export(ls_project_id, all_tasks=True):
                task_id = _td_task_id(ls_task)
                if task_id is not None:
                    ls_ids[task_id] = int(ls_task["id"])
            missing = [task for task in tasks if task.pk not in ls_ids]
            if missing:
                raise ls.LabelStudioUnavailable(
                    f"Label Studio at {client.url} kept {len(tasks) - len(missing)} of {len(tasks)} examples; "
                    "nothing was sent. Try again, and ask its administrator if it repeats."
                )
            with transaction.atomic():
                locked = AnnotationProject.objects.select_for_update().get(pk=project.pk)
                if locked.label_studio_project_id:  # someone pushed it at the same time
                    raise ls.LabelStudioUnavailable(
                        f"This project was sent to Label Studio by someone else a moment ago "
                        f"(project {locked.label_studio_project_id}); pull its answers instead."
                    )
                for task in tasks:
                    task.label_studio_task_id = ls_ids[task.pk]
                Task.objects.bulk_update(tasks, ["label_studio_task_id"], batch_size=2000)
                locked.label_studio_project_id = ls_project_id
                locked.label_studio_url = client.url
                locked.save(update_fields=["label_studio_project_id", "label_studio_url"])
                audit_record(
                    actor=actor,
                    action="annotation_project.label_studio_push",
                    obj=locked,
                    after={"label_studio_project_id": ls_project_id, "url": client.url, "tasks": len(tasks)},
                )
        except BaseException as exc:
            with contextlib.suppress(ls.LabelStudioUnavailable):
                client.delete_project(ls_project_id)
            if isinstance(exc, ls.LabelStudioUnavailable):
                raise ValidationError(exc.message) from None
            raise
    project.refresh_from_db()
    return project


# --- pull --------------------------------------------------------------------------------------------------------


def _td_task_id(ls_task: dict) -> int | None:
    for source in (ls_task.get("data"), ls_task.get("meta")):
        value = source.get("td_task_id") if isinstance(source, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    return None


def _completed_by(annotation: dict) -> tuple[int | None, str]:
    """Label Studio's user id and e-mail; older exports give a dict, 1.23 gives the id."""
    value = annotation.get("completed_by")
    if isinstance(value, dict):
        return value.get("id"), str(value.get("email") or "")
    return (int(value), "") if isinstance(value, int) else (None, "")


def _users_by_email(emails: set[str]) -> dict[str, object]:
    """{lower-case e-mail: user} for e-mails that belong to exactly one of our users."""
    lowered = {email.lower() for email in emails if email}
    found: dict[str, list] = {}
    for user in get_user_model().objects.annotate(email_lower=Lower("email")).filter(email_lower__in=lowered):
        found.setdefault(user.email_lower, []).append(user)
    return {email: users[0] for email, users in found.items() if len(users) == 1}


def _latest_answers(project: AnnotationProject, exported: list[dict], ls_users: dict) -> tuple[dict, list, list, int]:
    """From Label Studio's export: each (task, annotator)'s latest answer that fits the schema, the Label Studio
    tasks with answers that this project did not send, the answers that do not fit, and how many were cancelled."""
    tasks = {task.pk: task for task in project.tasks.all()}
    unknown_tasks: list[int] = []
    invalid: list[dict] = []
    skipped = 0
    # (task id, LS user id or email) -> the latest annotation: LS lets one user annotate a task more than once.
    latest: dict[tuple[int, object], tuple[Task, dict, dict, int | None, str]] = {}
    for ls_task in exported:
        annotations = [a for a in ls_task.get("annotations") or [] if isinstance(a, dict)]
        task = tasks.get(_td_task_id(ls_task))
        if task is None or task.label_studio_task_id not in (None, ls_task.get("id")):
            if annotations:
                unknown_tasks.append(ls_task.get("id"))
            continue
        for annotation in sorted(annotations, key=lambda a: a.get("id") or 0):
            if annotation.get("was_cancelled"):
                skipped += 1
                continue
            try:
                answer = ls.answer_from_result(project.schema, annotation.get("result"))
            except SchemaError as exc:
                invalid.append({"task": ls_task.get("id"), "annotation": annotation.get("id"), "error": str(exc)})
                continue
            user_id, email = _completed_by(annotation)
            email = email or ls_users.get(user_id, "")
            latest[(task.pk, email.lower() or user_id)] = (task, annotation, answer, user_id, email)
    return latest, unknown_tasks, invalid, skipped


def label_studio_pull(*, project: AnnotationProject, actor) -> dict:
    """Store the answers given in Label Studio; safe to run again (unchanged answers are left alone).

    Answers on tasks this project did not send, and answers that do not fit the schema (a label added in Label
    Studio), are listed in the report and not imported. Label Studio users are matched to ours by e-mail;
    others are kept as ``label-studio:<e-mail>``. One transaction: if Label Studio fails, nothing is written.
    """
    if not project.label_studio_project_id:
        raise ValidationError("This project has not been sent to Label Studio yet; send it first.")
    if not project.is_open:
        raise ValidationError("This project is finished; reopen it to pull new answers from Label Studio.")
    client = label_studio_client()
    if client.url != project.label_studio_url.rstrip("/"):
        client.close()
        raise ValidationError(
            f"This project was sent to Label Studio at {project.label_studio_url}, but the connection now points "
            f"at {client.url}; set the connection back to pull its answers."
        )
    with client:
        try:
            exported = client.export(project.label_studio_project_id)
            ls_users = client.users()
        except ls.LabelStudioUnavailable as exc:
            raise ValidationError(exc.message) from None

    latest, unknown_tasks, invalid, skipped = _latest_answers(project, exported, ls_users)

    users = _users_by_email({entry[4] for entry in latest.values()})
    counts = {"imported": 0, "updated": 0, "unchanged": 0}
    with transaction.atomic():
        for task, annotation, answer, user_id, email in latest.values():
            user = users.get(email.lower())
            name = user.get_username() if user else f"{EXTERNAL_PREFIX}{email or user_id or 'unknown'}"
            ls_annotation_id = int(annotation["id"])
            existing = Annotation.objects.filter(task=task, annotator_name=name).first()
            moved = (
                Annotation.objects.filter(task=task, label_studio_annotation_id=ls_annotation_id)
                .exclude(annotator_name=name)
                .first()
            )
            if moved is not None and existing is None:
                # The same Label Studio answer, now matched to one of our users (their e-mail was added here).
                moved.annotator, moved.annotator_name = user, name
                moved.save(update_fields=["annotator", "annotator_name"])
                existing = moved
            elif moved is not None:
                invalid.append(
                    {
                        "task": task.label_studio_task_id,
                        "annotation": ls_annotation_id,
                        "error": f"{name} already has another answer on this example; this one was not imported.",
                    }
                )
                continue
            if existing is not None and existing.source == Annotation.Source.APP:
                invalid.append(
                    {
                        "task": task.label_studio_task_id,
                        "annotation": ls_annotation_id,
                        "error": f"{name} already answered this example in Tuning Desk; that answer is kept.",
                    }
                )
                continue
            if (
                existing is not None
                and existing.answer == answer
                and existing.label_studio_annotation_id == ls_annotation_id
                and moved is None
            ):
                counts["unchanged"] += 1
                continue
            counts["updated" if existing is not None else "imported"] += 1
            annotation_record_external(
                task=task,
                annotator=user,
                annotator_name=name,
                answer=answer,
                seconds=float(annotation.get("lead_time") or 0.0),
                label_studio_annotation_id=ls_annotation_id,
            )
        project.label_studio_pulled_at = timezone.now()
        project.save(update_fields=["label_studio_pulled_at"])
        report = {**counts, "unknown_tasks": unknown_tasks, "invalid": invalid, "skipped": skipped}
        report["message"] = _pull_message(report)
        audit_record(
            actor=actor,
            action="annotation_project.label_studio_pull",
            obj=project,
            after={key: value for key, value in report.items() if key != "message"},
        )
    return report


def _pull_message(report: dict) -> str:
    parts = [
        f"Pulled from Label Studio: {_plural(report['imported'], 'new answer', 'new answers')}, "
        f"{report['updated']} changed, {report['unchanged']} unchanged."
    ]
    if report["unknown_tasks"]:
        n = len(report["unknown_tasks"])
        parts.append(
            f"{_plural(n, 'example', 'examples')} in Label Studio "
            f"{'was' if n == 1 else 'were'} not sent from this project, so "
            f"{'its answers were' if n == 1 else 'their answers were'} ignored."
        )
    if report["invalid"]:
        n = len(report["invalid"])
        parts.append(
            f"{_plural(n, 'answer does', 'answers do')} not fit this project's fields "
            "(for example a label added in Label Studio) and "
            f"{'was' if n == 1 else 'were'} not imported."
        )
    return " ".join(parts)
