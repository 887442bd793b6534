"""Forms of the evaluation pages. They check what a person typed; the services check the rules."""

from __future__ import annotations

from django import forms

from curation.models import DatasetVersion, TaskType
from evaluation import metrics as metric_lib
from evaluation.models import ExternalEndpoint, KpiObservation
from evaluation.services import KPI_FILE_MAX_BYTES, KPI_FILE_MAX_MB, KPI_TEXT_MAX_LINES
from training.models import BaseModel, TrainedModel
from training.selectors import approved_versions

MAX_COMPARED = 4


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version: DatasetVersion) -> str:
        task = TaskType(version.dataset.task_type).label
        return f"{version.dataset.name} · version {version.number} ({version.row_count:,} rows, {task})"


def model_name_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every model that can be evaluated, by name, grouped as the person thinks of them."""
    groups = [
        ("Trained models", list(TrainedModel.objects.order_by("-created_at").values_list("name", flat=True))),
        ("Base models (without an adapter)", list(BaseModel.objects.values_list("name", flat=True))),
        ("External endpoints", list(ExternalEndpoint.objects.values_list("name", flat=True))),
    ]
    return [(label, [(name, name) for name in names]) for label, names in groups if names]


class DashboardFilterForm(forms.Form):
    """The dashboard's filters, read from the address (GET); a value that is not valid is ignored."""

    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Periods starting on"
    )
    end = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="or before this day"
    )
    segment = forms.ChoiceField(label="Customer segment", required=False)
    reference = forms.ChoiceField(label="Compare with", required=False)

    def __init__(self, *args, segments: list[str], models: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segment"].choices = [("", "All customers"), *((s, s) for s in segments)]
        self.fields["reference"].choices = [("", "The production model"), *((m, m) for m in models)]

    def filters(self) -> dict:
        """Keyword arguments of selectors.kpi_dashboard."""
        if not self.is_bound:
            return {"start": None, "end": None, "segment": "", "reference": ""}
        self.is_valid()
        data = self.cleaned_data
        return {
            "start": data.get("start"),
            "end": data.get("end"),
            "segment": data.get("segment") or "",
            "reference": data.get("reference") or "",
        }

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The end comes before the start.")
        return data


def kpi_model_names() -> list[str]:
    return list(KpiObservation.objects.order_by("model_name").values_list("model_name", flat=True).distinct())


class KpiImportForm(forms.Form):
    """A file goes to the worker (``kpi_import_run_start``); pasted rows are imported at once (``kpi_import_csv``)."""

    file = forms.FileField(
        label="CSV file",
        required=False,
        help_text=f"Saved as UTF-8, up to {KPI_FILE_MAX_MB} MB. Files are checked in the background, with a progress "
        "bar.",
    )
    text = forms.CharField(
        label="Or paste the rows",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "mono"}),
        help_text=f"The same columns, with the header line first; up to {KPI_TEXT_MAX_LINES:,} lines.",
    )

    def __init__(self, *args, too_large: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.too_large = too_large

    def clean(self):
        data = super().clean()
        if self.too_large:
            self.add_error(
                "file",
                f"The file is larger than the upload limit. Split it into files of at most {KPI_FILE_MAX_MB} MB.",
            )
            return data
        upload, text = data.get("file"), (data.get("text") or "").strip()
        if upload and text:
            raise forms.ValidationError("Choose a file or paste rows, not both.")
        if not upload and not text:
            raise forms.ValidationError("Choose a CSV file or paste its rows.")
        if upload and upload.size > KPI_FILE_MAX_BYTES:
            self.add_error("file", f"The file is larger than {KPI_FILE_MAX_MB} MB. Split it into smaller files.")
        if not upload and text.count("\n") >= KPI_TEXT_MAX_LINES:
            self.add_error(
                "text", f"Paste at most {KPI_TEXT_MAX_LINES:,} lines. For more, save them as a CSV file and choose it."
            )
        data["csv_text"] = text
        return data


class RunForm(forms.Form):
    model = forms.ChoiceField(
        label="Model",
        help_text="A trained adapter (with its base model), a base model on its own, or an external endpoint.",
        error_messages={"required": "Choose the model to evaluate.", "invalid_choice": "Choose a model from the list."},
    )
    # Any ready version is accepted and only approved ones are offered: the privacy gate in the service decides,
    # so a crafted request for another version gets the gate's own message.
    dataset_version = VersionChoiceField(
        label="Dataset version",
        queryset=DatasetVersion.objects.ready().select_related("dataset"),
        empty_label="— choose an approved version —",
        help_text="The model answers every row of the chosen part of this version.",
        error_messages={
            "required": "Choose the dataset version to evaluate on.",
            "invalid_choice": "Choose a version from the list.",
        },
    )
    split = forms.ChoiceField(
        label="Rows",
        choices=[
            ("test", "Test rows (kept apart from training)"),
            ("validation", "Validation rows"),
            ("train", "Training rows"),
        ],
        initial="test",
    )
    judge = forms.ModelChoiceField(
        label="Judge (optional)",
        queryset=ExternalEndpoint.objects.all(),
        required=False,
        empty_label="— no judge —",
        help_text="An external model that rates each written answer from 1 to 5. Not for classification.",
    )
    rubric = forms.CharField(
        label="What the judge looks for (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Leave empty for the standard rubric: correct and complete against the reference, easy to act on, "
        "calm and professional in tone.",
    )
    fairness_threshold = forms.FloatField(
        label="Fairness threshold",
        initial=0.1,
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        help_text="The largest acceptable gap in a score between two groups of rows (e.g. customer types). "
        "Scores from 0 to 1: 0.1 means ten points.",
        error_messages={"invalid": "Enter a number between 0 and 1, for example 0.1."},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "— choose a model —"), *model_name_choices()]
        field = self.fields["dataset_version"]
        field.choices = [("", field.empty_label), *((v.pk, field.label_from_instance(v)) for v in approved_versions())]


class RescoreForm(forms.Form):
    metrics = forms.MultipleChoiceField(
        label="Metrics",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Tick at least one metric."},
        help_text="Scored from the saved answers: nothing is generated again.",
    )

    def __init__(self, *args, task: str, measured: set[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = []
        for name, spec in metric_lib.METRICS.items():
            if task in spec.tasks and spec.source == "predictions":
                choices.append((name, f"{spec.label} (measured)" if name in measured else spec.label))
        self.fields["metrics"].choices = choices


class CompareChoice:
    """2 to 4 model names from the address: ``?models=a,b`` (a link) or ``?models=a&models=b`` (the page's form,
    whose four lists share one name). Not a Django form: one field name repeated is not what forms model."""

    def __init__(self, query, *, names: list[str]):
        self.names = names
        self.chosen: list[str] = []
        for value in query.getlist("models"):
            for name in value.split(","):
                if name.strip() and name.strip() not in self.chosen:
                    self.chosen.append(name.strip())

    @property
    def options(self) -> list[str]:
        """The evaluated models, plus any name from the address that is not one of them (it is then reported)."""
        return self.names + [name for name in self.chosen if name not in self.names]

    def slots(self) -> list[dict]:
        """The four lists of the form: their label and the name chosen in each."""
        return [
            {
                "label": f"Model {index + 1}" + (" (optional)" if index >= 2 else ""),
                "selected": self.chosen[index] if index < len(self.chosen) else "",
                "id": f"compare-model-{index + 1}",
            }
            for index in range(MAX_COMPARED)
        ]

    @property
    def ready(self) -> bool:
        return 2 <= len(self.chosen) <= MAX_COMPARED

    @property
    def error(self) -> str:
        if len(self.chosen) > MAX_COMPARED:
            return f"Choose at most {MAX_COMPARED} models: a wider table is hard to read."
        return ""


class PromoteForm(forms.Form):
    model = forms.ModelChoiceField(
        queryset=TrainedModel.objects.all(), error_messages={"invalid_choice": "That model no longer exists."}
    )
    stage = forms.ChoiceField(
        choices=[(TrainedModel.Stage.STAGING, "Staging"), (TrainedModel.Stage.PRODUCTION, "Production")],
        initial=TrainedModel.Stage.PRODUCTION,
    )
