"""Forms of the annotation pages. They check what a person typed; the services check the rules.

Answers are not a Django form: their fields come from the project's label schema, and ``answer_clean`` (through the
services) is the one place that checks them, so the labelling page, the review page, the REST API and Label Studio
all give the same messages. ``answer_from_post`` only reads the posted values.
"""

from __future__ import annotations

import json
import math

from django import forms
from django.core.exceptions import ValidationError

from curation.models import DatasetVersion, TaskType

ANSWER_PREFIX = "answer-"


def answer_input_name(field_name: str) -> str:
    return f"{ANSWER_PREFIX}{field_name}"


def answer_from_post(schema: dict, data) -> dict:
    """{field name: value} from a posted form: text and single choices as strings, multiple choices as lists,
    ratings as the text the browser sent (``answer_clean`` turns digits into numbers). Fields not sent are left out."""
    answer: dict = {}
    for field in schema["fields"]:
        key = answer_input_name(field["name"])
        if field["kind"] == "choice" and field.get("multiple"):
            values = data.getlist(key)
            if values:
                answer[field["name"]] = values
        elif key in data:
            answer[field["name"]] = data.get(key)
    return answer


def seconds_from_post(value) -> float | None:
    """The page's count of visible seconds, or None when it is missing or not a sensible number."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def revision_from_post(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version: DatasetVersion) -> str:
        task = TaskType(version.dataset.task_type).label
        return f"{version.dataset.name} · version {version.number} ({version.row_count:,} rows, {task})"


class ProjectForm(forms.Form):
    name = forms.CharField(
        label="Project name",
        max_length=120,
        help_text="Annotators see this name in their list, e.g. “Support replies, May”.",
    )
    # Any ready version is accepted here and only approved ones are offered: the privacy gate in the service decides,
    # so a crafted request for another version gets the gate's own message.
    version = VersionChoiceField(
        label="Dataset version",
        queryset=DatasetVersion.objects.ready().select_related("dataset"),
        empty_label="— choose an approved version —",
        help_text="Only versions that passed privacy review can be annotated.",
        error_messages={
            "required": "Choose the dataset version to annotate.",
            "invalid_choice": "Choose a version from the list.",
        },
    )
    annotations_per_example = forms.IntegerField(
        label="Answers per example",
        min_value=1,
        max_value=10,
        initial=2,
        help_text="How many different people answer each example. With 2 or more, Tuning Desk measures how well "
        "they agree and sends the examples they disagree on to a reviewer.",
    )
    reservation_minutes = forms.IntegerField(
        label="Minutes an example stays reserved",
        min_value=1,
        max_value=24 * 60,
        initial=30,
        help_text="While someone works on an example nobody else gets it. If they leave, it goes back after this "
        "many minutes.",
    )
    limit = forms.IntegerField(
        label="Only the first … examples",
        min_value=1,
        required=False,
        help_text="Leave empty to annotate every example of the version.",
    )
    gold_count = forms.IntegerField(
        label="Gold examples",
        min_value=0,
        initial=0,
        required=False,
        help_text="Examples whose label is already known, used to check annotators: their answers are compared "
        "with the known label. Annotators do not see which examples are gold.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["version"]
        approved = DatasetVersion.objects.approved().select_related("dataset").order_by("dataset__name", "-number")
        field.choices = [("", field.empty_label), *((v.pk, field.label_from_instance(v)) for v in approved)]
        self.has_versions = len(field.choices) > 1


class SchemaForm(forms.Form):
    schema = forms.CharField(
        label="Label schema (JSON)",
        widget=forms.Textarea(attrs={"rows": 24, "spellcheck": "false", "class": "code-input"}),
        error_messages={"required": "Write the schema: what annotators fill in for each example."},
    )

    def clean_schema(self):
        text = self.cleaned_data["schema"]
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"This is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
                "Check for a missing comma or quote near there."
            ) from None


class PublishForm(forms.Form):
    finish = forms.BooleanField(
        label="Also finish the project (annotators can no longer add answers)",
        required=False,
    )
    settled_only = forms.BooleanField(
        label="Keep only the examples with a settled answer",
        required=False,
    )


class LabelStudioConnectionForm(forms.Form):
    # A CharField: the service checks the address itself, and also accepts internal names (http://labelstudio:8080)
    # that Django's URL validator refuses.
    url = forms.CharField(
        label="Label Studio address",
        max_length=200,
        help_text="The address you open Label Studio at, e.g. https://label-studio.example.org.",
        error_messages={
            "required": "Enter the address of your Label Studio.",
            "invalid": "Enter a full address, starting with http:// or https://.",
        },
    )
    token = forms.CharField(
        label="Access token",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="In Label Studio: your account menu › Account & Settings › Access Token. "
        "It is stored encrypted and never shown again.",
        error_messages={"required": "Paste the access token from Label Studio."},
    )
