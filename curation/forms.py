"""Forms of the dataset pages. They check what a person typed; the services check the rules."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from curation.models import DedupeRun, Split, TaskType, Upload
from curation.text import DEFAULT_RATIOS
from projectsite.errors import error_messages

NONE_CHOICE = ("", "— none —")


def human_size(size: int) -> str:
    """2147483648 -> "2 GB": a size a person reads at a glance."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


def too_large_message() -> str:
    return f"The file is larger than the limit of {human_size(settings.TUNINGDESK_MAX_UPLOAD_BYTES)}."


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ValidationError next to the matching fields, the rest above the form."""
    for name, errors in error_messages(error).items():
        form.add_error(name if name in form.fields else None, errors)


class UploadForm(forms.Form):
    # The file comes last: browsers send fields in page order, so the name and task type
    # still arrive when the upload handler stops reading a file that is too large.
    dataset_name = forms.CharField(
        label="Dataset name",
        max_length=120,
        widget=forms.TextInput(attrs={"list": "dataset-names", "autocomplete": "off"}),
        help_text="A new name makes a new dataset. The name of an existing dataset adds a new version to it.",
    )
    task_type = forms.ChoiceField(
        label="What is in the file?",
        choices=TaskType.choices,
        initial=TaskType.SFT,
        widget=forms.RadioSelect,
        help_text="Instruction / response: a prompt and the answer the model should give. "
        "Classification: a text and the category it belongs to.",
    )
    format = forms.ChoiceField(
        label="File format",
        choices=[("", "Tell from the file name"), *Upload.Format.choices],
        required=False,
    )
    file = forms.FileField(
        label="File", error_messages={"required": "Choose a file to upload.", "empty": "The file is empty."}
    )

    def __init__(self, *args, too_large: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.too_large = too_large
        limit = human_size(settings.TUNINGDESK_MAX_UPLOAD_BYTES)
        self.fields["file"].help_text = f"JSON Lines, JSON, CSV or TSV, saved as UTF-8. Up to {limit}."
        self.fields["file"].widget.attrs["data-max-bytes"] = settings.TUNINGDESK_MAX_UPLOAD_BYTES
        self.fields["file"].widget.attrs["data-too-large"] = too_large_message()
        if too_large:
            # The rest of the request was never read: only the size problem is worth showing.
            for field in self.fields.values():
                field.required = False

    def clean_file(self):
        if self.too_large:
            raise ValidationError(too_large_message())
        return self.cleaned_data["file"]


class MappingForm(forms.Form):
    """Which column of the file fills which role; the other chosen columns go to metadata."""

    input = forms.ChoiceField(label="Input (prompt or text)", required=False)
    target = forms.ChoiceField(label="Target (response)", required=False)
    label = forms.ChoiceField(label="Label (category)", required=False)
    group = forms.ChoiceField(
        label="Group", required=False, help_text="Optional: for example a region or customer type, to compare later."
    )
    metadata = forms.MultipleChoiceField(
        label="Keep these other columns as metadata",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    task_type = forms.ChoiceField(label="What is in the file?", choices=TaskType.choices, widget=forms.RadioSelect)

    def __init__(self, *args, upload: Upload, **kwargs):
        mapping = upload.mapping or {}
        roles = {mapping.get(role) for role in ("input", "target", "label", "group")}
        kwargs.setdefault(
            "initial",
            {
                "input": mapping.get("input", ""),
                "target": mapping.get("target", ""),
                "label": mapping.get("label", ""),
                "group": mapping.get("group", ""),
                "metadata": mapping.get("metadata", [c for c in upload.columns if c not in roles]),
                "task_type": upload.task_type,
            },
        )
        super().__init__(*args, **kwargs)
        columns = [(column, column) for column in upload.columns]
        for role in ("input", "target", "label", "group"):
            self.fields[role].choices = [NONE_CHOICE, *columns]
        self.fields["metadata"].choices = columns

    def mapping(self) -> dict:
        """The mapping the person chose (after is_valid()), or the saved one for a form not yet sent."""
        data = self.cleaned_data if self.is_bound else self.initial
        mapping: dict = {role: data[role] for role in ("input", "target", "label", "group") if data.get(role)}
        mapping["metadata"] = list(data.get("metadata") or [])
        return mapping


class SplitForm(forms.Form):
    seed = forms.IntegerField(
        label="Seed", help_text="The same seed and shares always give the same split.", min_value=0, max_value=2**31 - 1
    )
    train = forms.DecimalField(label="Train %", min_value=0, max_value=100, decimal_places=2)
    validation = forms.DecimalField(label="Validation %", min_value=0, max_value=100, decimal_places=2)
    test = forms.DecimalField(label="Test %", min_value=0, max_value=100, decimal_places=2)

    def __init__(self, *args, version=None, **kwargs):
        if version is not None:
            ratios = version.split_ratios or DEFAULT_RATIOS
            kwargs.setdefault(
                "initial",
                {"seed": version.split_seed, **{name: round(ratios.get(name, 0) * 100, 2) for name in DEFAULT_RATIOS}},
            )
        super().__init__(*args, **kwargs)

    def ratios(self) -> dict[str, float]:
        return {name: float(self.cleaned_data[name]) / 100 for name in DEFAULT_RATIOS}


class FilterForm(forms.Form):
    min_chars = forms.IntegerField(label="Shortest allowed (characters)", required=False, min_value=0)
    max_chars = forms.IntegerField(label="Longest allowed (characters)", required=False, min_value=0)
    drop_empty_target = forms.BooleanField(label="Drop rows with an empty response", required=False)
    drop_not_english = forms.BooleanField(label="Drop rows that are probably not English", required=False)
    label_set = forms.CharField(
        label="Keep only these labels",
        required=False,
        help_text="Separate labels with commas, for example: billing, delivery, refund.",
    )

    def __init__(self, *args, classification: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not classification:
            del self.fields["label_set"]
            self.fields["min_chars"].help_text = "Counted over the input and the response together."

    def clean_label_set(self) -> list[str]:
        return [label.strip() for label in self.cleaned_data["label_set"].split(",") if label.strip()]

    def options(self) -> dict:
        data = self.cleaned_data
        return {
            "min_chars": data["min_chars"],
            "max_chars": data["max_chars"],
            "drop_empty_target": data["drop_empty_target"],
            "drop_not_english": data["drop_not_english"],
            "label_set": data.get("label_set") or None,
        }


class DedupeForm(forms.Form):
    mode = forms.ChoiceField(
        label="Which rows count as duplicates?",
        choices=DedupeRun.Mode.choices,
        initial=DedupeRun.Mode.EXACT,
        widget=forms.RadioSelect,
    )
    threshold = forms.FloatField(
        label="Similarity for near-duplicates",
        initial=0.8,
        min_value=0.5,
        max_value=1.0,
        help_text="From 0.5 (loosely similar) to 1 (almost the same). 0.8 is a good start.",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )


class BrowseForm(forms.Form):
    """The search box and filters of a version's table, read from the address (GET)."""

    q = forms.CharField(label="Search the text", required=False, max_length=200)
    split = forms.ChoiceField(label="Split", required=False)
    label = forms.ChoiceField(label="Label", required=False)
    group = forms.ChoiceField(label="Group", required=False)
    flag = forms.TypedChoiceField(label="Flag", required=False, coerce=int, empty_value=None)
    after = forms.IntegerField(required=False, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, stats: dict, flag_choices: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["split"].choices = [("", "All splits"), *Split.choices]
        self.fields["label"].choices = [("", "All labels"), *((v, v) for v in sorted(stats.get("labels", {})) if v)]
        self.fields["group"].choices = [("", "All groups"), *((v, v) for v in sorted(stats.get("groups", {})) if v)]
        self.fields["flag"].choices = [("", "Any flags"), *flag_choices]
        if len(self.fields["label"].choices) == 1:
            del self.fields["label"]
        if len(self.fields["group"].choices) == 1:
            del self.fields["group"]

    def _valid_data(self) -> dict:
        # A value that is not valid in the address (a removed label, ?after=abc) is ignored, the rest applies.
        if not self.is_bound:
            return {}
        self.is_valid()
        return self.cleaned_data

    def filters(self) -> dict:
        """The filters for selectors.example_search."""
        data = self._valid_data()
        return {
            "q": data.get("q") or "",
            "split": data.get("split") or "",
            "label": data.get("label") or "",
            "group": data.get("group") or "",
            "flag": data.get("flag") or None,
        }

    def position(self) -> tuple[int | None, int | None]:
        data = self._valid_data()
        return data.get("after"), data.get("before")


def parse_keep(post) -> dict[int, list[int]]:
    """The rows chosen to keep in each duplicate group shown on the page (``keep_<group>`` checkboxes)."""
    keep: dict[int, list[int]] = {}
    for raw_group in post.getlist("groups"):
        try:
            group_id = int(raw_group)
            keep[group_id] = [int(value) for value in post.getlist(f"keep_{group_id}")]
        except ValueError:
            raise ValidationError("The form was damaged; reload the page and try again.") from None
    return keep
