"""Label Studio: the label config, task payloads and answers for our label schemas, and a small client.

Plain Python, no Django: ``annotation.services_label_studio`` feeds it schemas and rows and stores what it returns.
Every failure of the server (down, slow, wrong token, deleted project, an answer that is not Label Studio's)
becomes ``LabelStudioUnavailable`` with one sentence a curator can act on. Tested against a real Label Studio
1.23.2 with label-studio-sdk 2.1.2 (see docs/label-studio.md).
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import quoteattr

from annotation.schema import SchemaError, answer_clean, hotkeys

# Names of the two object tags. Field names are lower case (``schema.NAME``), so these never collide with one.
INPUT_TAG = "Example"
TARGET_TAG = "Target"
IMPORT_BATCH = 500
TITLE_MIN, TITLE_MAX = 3, 50  # Label Studio refuses project titles outside 3..50 characters
RESULT_TYPES = {"text": ("textarea", "text"), "choice": ("choices", "choices"), "rating": ("rating", "rating")}


class LabelStudioUnavailable(Exception):
    """Label Studio could not do what we asked; ``message`` is one plain sentence for the person who asked."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


# --- label config ------------------------------------------------------------------------------------------------


def _display(text: str) -> str:
    """Text for a Header ``value``: Label Studio replaces ``$word`` there with task data, so a zero-width space after
    each ``$`` keeps "Price in $USD" literal. The caller still XML-escapes it."""
    return text.replace("$", "$\u200b")


def _attrs(**attributes: object) -> str:
    return "".join(
        f" {name}={quoteattr(str(value).lower() if isinstance(value, bool) else str(value))}"
        for name, value in attributes.items()
        if value is not None
    )


def label_config(schema: dict) -> str:
    """Label Studio XML for a cleaned schema: the example, the original target when there is a text field, then one
    control per field (TextArea, Choices, Rating) named after the field. Every title and option is XML-escaped."""
    keys = hotkeys(schema)
    fields = schema["fields"]
    has_text = any(field["kind"] == "text" for field in fields)
    lines = ["<View>", f"  <Header{_attrs(value='Example')}/>", f"  <Text{_attrs(name=INPUT_TAG, value='$input')}/>"]
    if has_text:
        lines += [
            f"  <Header{_attrs(value='Original target')}/>",
            f"  <Text{_attrs(name=TARGET_TAG, value='$target')}/>",
        ]
    for field in fields:
        name, title, required = field["name"], _display(field["title"]), bool(field["required"])
        lines.append(f"  <Header{_attrs(value=title, size='5')}/>")
        if field["kind"] == "text":
            # `value` prefills the box from task data; it is submitted as is if the annotator does not change it.
            prefill = "$target" if field["writes"] == "target" else None
            attributes = _attrs(
                name=name,
                toName=INPUT_TAG,
                editable=True,
                transcription=True,
                rows=6,
                maxSubmissions=1,
                required=required,
                value=prefill,
            )
            lines.append(f"  <TextArea{attributes}/>")
        elif field["kind"] == "choice":
            choice = "multiple" if field["multiple"] else "single"
            attributes = _attrs(name=name, toName=INPUT_TAG, choice=choice, showInline=True, required=required)
            lines.append(f"  <Choices{attributes}>")
            for option in field["options"]:
                lines.append(f"    <Choice{_attrs(value=option, hotkey=keys[name].get(option))}/>")
            lines.append("  </Choices>")
        else:
            for score, text in field.get("rubric", {}).items():
                lines.append(f"  <Header{_attrs(value=f'{score}: {_display(text)}', size='6')}/>")
            attributes = _attrs(name=name, toName=INPUT_TAG, maxRating=field["scale"], required=required)
            lines.append(f"  <Rating{attributes}/>")
    lines.append("</View>")
    return "\n".join(lines)


def instructions_html(schema: dict) -> str:
    """The schema's instructions for Label Studio, which shows them as HTML: escaped, line breaks kept."""
    return html.escape(schema.get("instructions") or "").replace("\n", "<br>")


def project_title(name: str) -> str:
    title = name.strip()[:TITLE_MAX].strip()
    return title if len(title) >= TITLE_MIN else f"Tuning Desk: {title}"[:TITLE_MAX]


def task_payload(*, task_id: int, input: str, target: str) -> dict:
    """One Label Studio task; ``td_task_id`` (our Task id) in data and meta maps its annotations back."""
    return {"data": {"input": input, "target": target, "td_task_id": task_id}, "meta": {"td_task_id": task_id}}


# --- answers -----------------------------------------------------------------------------------------------------


def answer_from_result(schema: dict, result: list[dict]) -> dict:
    """A Label Studio result list as a cleaned answer (``schema.answer_clean``); SchemaError if it does not fit."""
    if not isinstance(result, list):
        raise SchemaError({"__all__": "Label Studio sent an answer in a shape Tuning Desk does not know."})
    fields = {field["name"]: field for field in schema["fields"]}
    raw: dict[str, Any] = {}
    for item in result:
        name = item.get("from_name") if isinstance(item, dict) else None
        field = fields.get(name)
        if field is None:
            raise SchemaError(
                {"__all__": f"Label Studio sent an answer for “{name}”, which this project does not ask."}
            )
        expected_type, key = RESULT_TYPES[field["kind"]]
        value = (item.get("value") or {}).get(key)
        if item.get("type") != expected_type or value is None:
            raise SchemaError(
                {
                    name: f"Label Studio sent a “{item.get('type')}” answer for “{field['title']}”, "
                    f"which expects {expected_type}."
                }
            )
        if field["kind"] == "text":
            value = "\n".join(value) if isinstance(value, list) else value
        raw[name] = value
    return answer_clean(schema, raw)


def result_from_answer(schema: dict, answer: dict) -> list[dict]:
    """The reverse of ``answer_from_result``: what Label Studio stores for an answer."""
    result = []
    for field in schema["fields"]:
        value = answer.get(field["name"])
        if value in (None, "", []):
            continue
        result_type, key = RESULT_TYPES[field["kind"]]
        if field["kind"] == "text":
            value = [value]
        elif field["kind"] == "choice":
            value = value if isinstance(value, list) else [value]
        result.append({"from_name": field["name"], "to_name": INPUT_TAG, "type": result_type, "value": {key: value}})
    return result


# --- client ------------------------------------------------------------------------------------------------------


class LabelStudioClient:
    """The few calls Tuning Desk makes, over ``label_studio_sdk.LabelStudio``. Writes are never retried (a retried
    POST after a 5xx could create a project or task twice); reads keep the SDK's retries."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0):
        import httpx
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        # Our own httpx client, so that close() (or leaving a ``with`` block) releases its connections.
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._sdk = LabelStudio(base_url=self.url, api_key=token or "-", timeout=timeout, httpx_client=self._http)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    NO_RETRY = {"max_retries": 0}

    @contextlib.contextmanager
    def _errors(self, *, project_id: int | None = None) -> Iterator[None]:
        import httpx
        from label_studio_sdk.core import ApiError

        try:
            yield
        except httpx.TimeoutException:
            raise LabelStudioUnavailable(
                f"Label Studio at {self.url} took too long to answer; try again in a minute."
            ) from None
        except httpx.TransportError:
            raise LabelStudioUnavailable(
                f"Label Studio at {self.url} does not answer; check the address and that it is running."
            ) from None
        except ApiError as exc:
            raise LabelStudioUnavailable(self._api_message(exc.status_code, exc.body, project_id)) from None
        except (ValueError, TypeError, KeyError, AttributeError):
            # Not JSON, or JSON not shaped like Label Studio's (pydantic's errors are ValueErrors).
            raise LabelStudioUnavailable(
                f"{self.url} answered with something that is not Label Studio data; check the address."
            ) from None

    def _api_message(self, status: int | None, body: object, project_id: int | None) -> str:
        """One sentence from an ApiError: ``str(ApiError)`` starts with every response header, so never that."""
        where = f"Label Studio at {self.url}"
        gone = f"Label Studio project {project_id} no longer exists at {self.url}; it may have been deleted there."
        detail = str(body.get("detail") or "").strip() if isinstance(body, dict) else ""
        if status in (401, 403):
            return (
                f"{where} refused the access token ({detail or 'not allowed'}); "
                "copy the token again from Account & Settings in Label Studio."
            )
        if status == 404 and project_id is not None:
            # Label Studio answers a missing project with JSON, or (on imports) with its HTML 404 page.
            return gone
        if not isinstance(body, dict):
            # A web page instead of JSON: a wrong address, or a proxy in front of the server.
            return f"The address {self.url} does not look like a Label Studio server: it answered with a web page."
        if status == 404:
            return f"{where} does not know this address ({detail or 'not found'}); check the address."
        if status == 400:
            errors = body.get("validation_errors") or {}
            if isinstance(errors, dict):
                reasons = "; ".join(
                    f"{key}: {' '.join(map(str, value)) if isinstance(value, list) else value}"
                    for key, value in errors.items()
                )
            else:
                reasons = str(errors)
            return f"{where} refused the request: {reasons or detail or 'invalid data'}."
        if status is not None and status >= 500:
            return f"{where} had an internal error (HTTP {status}); try again, and ask its administrator if it repeats."
        return f"{where} answered with an error (HTTP {status}: {detail or 'no detail'})."

    def check(self) -> str:
        """The server's version, after proving the token works (``/api/version`` needs no token)."""
        with self._errors():
            self._sdk.users.whoami(request_options=self.NO_RETRY)
            return str(self._sdk.versions.get(request_options=self.NO_RETRY).release)

    def create_project(self, title: str, label_config: str, instructions: str = "") -> int:
        with self._errors():
            project = self._sdk.projects.create(
                title=project_title(title),
                label_config=label_config,
                description="Sent from Tuning Desk.",
                expert_instruction=instructions,
                show_instruction=bool(instructions),
                request_options=self.NO_RETRY,
            )
            return int(project.id)

    def delete_project(self, project_id: int) -> None:
        with self._errors(project_id=project_id):
            self._sdk.projects.delete(id=project_id, request_options=self.NO_RETRY)

    def import_tasks(self, project_id: int, payloads: list[dict]) -> list[int]:
        ids: list[int] = []
        with self._errors(project_id=project_id):
            for start in range(0, len(payloads), IMPORT_BATCH):
                response = self._sdk.projects.import_tasks(
                    id=project_id,
                    request=payloads[start : start + IMPORT_BATCH],
                    return_task_ids=True,
                    request_options=self.NO_RETRY,
                )
                ids.extend(int(task_id) for task_id in response.task_ids or [])
        return ids

    def export(self, project_id: int, *, all_tasks: bool = False) -> list[dict]:
        """Tasks (``id``, ``data``, ``meta``, ``annotations``) as Label Studio's JSON export: annotated ones only,
        unless ``all_tasks``. The open-source server answers this synchronously; nothing is stored there."""
        with self._errors(project_id=project_id):
            chunks = self._sdk.projects.exports.download_sync(
                project_id, export_type="JSON", download_all_tasks=all_tasks
            )
            tasks = json.loads(b"".join(chunks))
            if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
                raise ValueError("not a list of tasks")
            return tasks

    def users(self) -> dict[int, str]:
        with self._errors():
            return {int(user.id): str(user.email or "") for user in self._sdk.users.list()}
