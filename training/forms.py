"""Forms of the training pages. They check what a person typed; the services and the runner check the rules.

The advanced fields are named like the runner's settings (training.runner.TrainConfig), so the field errors of
``runner.config_errors`` (raised by the services) land next to the field of the same name.
"""

from __future__ import annotations

from django import forms

from curation.models import DatasetVersion, TaskType
from training import runner, selectors
from training.infra import training_queues
from training.models import BaseModel, TrainedModel, TrainingJob

PRESET_HELP = {
    "quick": "A short run to check that the data and settings work. Minutes, not hours.",
    "balanced": "One pass over the training rows with a medium-sized adapter. A good default.",
    "thorough": "Three passes with a larger adapter and a gentle schedule: the best quality, three times as long.",
}

USE_PRESET = ("", "As in the preset")

# Settings a person may change under "Advanced", in the order they are shown.
ADVANCED_FIELDS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_seq_length",
    "eval_fraction",
    "checkpoint_every",
    "seed",
    "precision",
)

_NUMBER = {"invalid": "Enter a number, for example 0.0002.", "required": "Enter a number."}
_WHOLE = {"invalid": "Enter a whole number, for example 8.", "required": "Enter a whole number."}


def human_count(value: int | None) -> str:
    """124_440_000 -> "124 million": parameter counts a person reads at a glance."""
    if not value:
        return "unknown"
    for unit, factor in (("billion", 10**9), ("million", 10**6), ("thousand", 10**3)):
        if value >= factor:
            return f"{value / factor:.3g} {unit}"
    return str(value)


def _number(label: str, help_text: str, *, whole: bool = False, step: str = "any") -> forms.Field:
    if whole:
        return forms.IntegerField(label=label, help_text=help_text, required=False, error_messages=_WHOLE)
    return forms.FloatField(
        label=label,
        help_text=help_text,
        required=False,
        error_messages=_NUMBER,
        widget=forms.NumberInput(attrs={"step": step}),
    )


# A name longer than this is cut with "…" in a select, so the facts after it (rows, task, size) stay in view; the
# option's title (tooltip) holds the whole text.
SELECT_NAME_CHARS = 40


def short_name(name: str, limit: int = SELECT_NAME_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


class TitledSelect(forms.Select):
    """A select whose options carry their full text as a title, for labels shortened to fit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.titles: dict[str, str] = {}

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        title = self.titles.get(str(value))
        if title and title != label:
            option["attrs"]["title"] = title
        return option


class _ShortLabels:
    """label_from_instance gives the shortened text; full_label the whole one (the option's title)."""

    widget = TitledSelect

    def label_from_instance(self, obj) -> str:
        return self.full_label(obj, short_name)

    def set_titles(self, objects) -> None:
        self.widget.titles = {str(obj.pk): self.full_label(obj, str) for obj in objects}


class VersionChoiceField(_ShortLabels, forms.ModelChoiceField):
    def full_label(self, version: DatasetVersion, name=str) -> str:
        task = TaskType(version.dataset.task_type).label
        return f"{name(version.dataset.name)} · version {version.number} ({version.row_count:,} rows, {task})"


class BaseModelChoiceField(_ShortLabels, forms.ModelChoiceField):
    def full_label(self, model: BaseModel, name=str) -> str:
        return f"{name(model.name)} ({human_count(model.parameter_count)} parameters, {model.architecture})"


class JobForm(forms.Form):
    # Any ready version is accepted here and only approved ones are offered: the privacy gate in the service
    # decides, so a crafted request for another version gets the gate's own message.
    dataset_version = VersionChoiceField(
        label="Dataset version",
        queryset=DatasetVersion.objects.ready().select_related("dataset"),
        empty_label="— choose an approved version —",
        error_messages={
            "required": "Choose the dataset version to train on.",
            "invalid_choice": "Choose a version from the list.",
        },
    )
    base_model = BaseModelChoiceField(
        label="Base model",
        queryset=BaseModel.objects.all(),
        empty_label="— choose a base model —",
        help_text="The model the adapter is trained on. The adapter only works with this model.",
        error_messages={"required": "Choose a base model.", "invalid_choice": "Choose a base model from the list."},
    )
    preset = forms.ChoiceField(
        label="How much training?",
        widget=forms.RadioSelect,
        initial="quick",
        error_messages={"required": "Choose quick, balanced or thorough."},
    )
    queue = forms.ChoiceField(
        label="Worker class",
        help_text="Which group of workers (Celery queue) runs the job.",
        error_messages={"invalid_choice": "Choose a worker class from the list."},
    )

    lora_r = _number("LoRA rank (r)", "Size of the adapter: larger can learn more but needs more memory.", whole=True)
    lora_alpha = _number("LoRA alpha", "How strongly the adapter counts. Usually twice the rank.", whole=True)
    lora_dropout = _number(
        "LoRA dropout", "Share of the adapter's inputs left out at random while training (0 to 0.5).", step="0.01"
    )
    target_modules = forms.CharField(
        label="Target modules",
        required=False,
        max_length=500,
        help_text="Layer names separated by commas, for example q_proj, v_proj. Leave empty to choose automatically.",
    )
    learning_rate = _number("Learning rate", "How big each training step is. Typical values: 0.0001 to 0.0003.")
    lr_scheduler = forms.ChoiceField(
        label="Learning-rate schedule",
        required=False,
        choices=[
            USE_PRESET,
            ("linear", "Linear: falls steadily to zero"),
            ("cosine", "Cosine: falls slowly, then faster"),
            ("constant", "Constant: stays the same"),
        ],
    )
    warmup_ratio = _number("Warm-up share", "Share of the steps at the start with a rising learning rate (0 to 0.5).")
    epochs = _number("Epochs", "How many times to go through the training rows. Used when maximum steps is 0.")
    max_steps = _number("Maximum steps", "Stop after this many steps. 0 means: train for the epochs above.", whole=True)
    batch_size = _number("Batch size", "Rows per step on each GPU. Lower it when memory runs out.", whole=True)
    grad_accum = _number(
        "Gradient accumulation", "Steps added up before each update: a larger batch without more memory.", whole=True
    )
    max_seq_length = _number(
        "Maximum sequence length", "Longest text in tokens; longer rows are cut. Lower needs less memory.", whole=True
    )
    eval_fraction = _number(
        "Evaluation share",
        "Share of training rows held back to measure progress when the version has no validation rows (0 to 0.5).",
    )
    checkpoint_every = _number(
        "Checkpoint every (steps)", "Save progress this often, so a stopped job resumes. 0 turns it off.", whole=True
    )
    seed = _number("Seed", "The same seed and settings give the same result.", whole=True)
    precision = forms.ChoiceField(
        label="Precision",
        required=False,
        choices=[
            USE_PRESET,
            ("auto", "Automatic: the best the GPU supports"),
            ("bf16", "bf16"),
            ("fp16", "fp16"),
            ("fp32", "fp32 (slowest, most memory)"),
        ],
    )
    qlora = forms.BooleanField(
        label="QLoRA: load the base model in 4 bits",
        required=False,
        help_text="Needs about a quarter of the memory for the base model; a little slower. Needs an NVIDIA GPU.",
    )

    def __init__(self, *args, qlora_reason: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        versions = list(selectors.approved_versions())
        self.fields["dataset_version"].choices = [
            ("", self.fields["dataset_version"].empty_label),
            *((v.pk, self.fields["dataset_version"].label_from_instance(v)) for v in versions),
        ]
        self.fields["dataset_version"].set_titles(versions)
        self.fields["base_model"].queryset = selectors.base_model_list()
        self.fields["base_model"].set_titles(self.fields["base_model"].queryset)
        self.fields["preset"].choices = [(name, name.capitalize()) for name in runner.PRESETS]
        queues = _queue_choices()
        self.fields["queue"].choices = queues
        self.fields["queue"].initial = "gpu" if any(value == "gpu" for value, _ in queues) else queues[0][0]
        self.qlora_reason = qlora_reason
        if qlora_reason:
            self.fields["qlora"].disabled = True
            self.fields["qlora"].help_text = qlora_reason

    def clean_target_modules(self) -> list[str] | None:
        names = [name.strip() for name in self.cleaned_data["target_modules"].split(",") if name.strip()]
        return names or None

    def presets(self) -> list[tuple[str, str, str]]:
        """(value, label, one line on what it means) for the preset cards."""
        return [(value, label, PRESET_HELP.get(value, "")) for value, label in self.fields["preset"].choices]

    def advanced(self) -> list[forms.BoundField]:
        return [self[name] for name in ADVANCED_FIELDS]

    def overrides(self) -> dict:
        """The advanced settings the person filled in; blank ones come from the preset."""
        data = self.cleaned_data
        overrides = {name: data[name] for name in ADVANCED_FIELDS if data.get(name) not in (None, "")}
        if data.get("qlora"):
            overrides["qlora"] = True
        return overrides


def _queue_choices() -> list[tuple[str, str]]:
    live = selectors.workers_live()
    choices = []
    for queue in training_queues():
        serving = [worker for worker in live if queue in worker.queues]
        if not serving:
            note = "no worker running now"
        else:
            gpus = sum(worker.gpu_count for worker in serving)
            note = f"{len(serving)} worker{'s' if len(serving) != 1 else ''} running"
            note += f", {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else ", CPU only"
        choices.append((queue, f"{queue} ({note})"))
    return choices


class JobFilterForm(forms.Form):
    """The filters of the job list, read from the address (GET)."""

    status = forms.ChoiceField(label="Status", required=False)
    base_model = forms.ChoiceField(label="Base model", required=False)
    queue = forms.ChoiceField(label="Worker class", required=False)
    mine = forms.BooleanField(label="Only jobs I launched", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "Any status"), *TrainingJob.Status.choices]
        names = selectors.base_model_list().values_list("name", flat=True)
        self.fields["base_model"].choices = [("", "Any base model"), *((name, name) for name in names)]
        self.fields["queue"].choices = [("", "Any worker class"), *((q, q) for q in training_queues())]

    def filters(self) -> dict:
        """Keyword arguments of selectors.job_list (without ``mine_of``); a value not valid here is ignored."""
        if not self.is_bound:
            return {"status": "", "queue": "", "base_model": "", "mine": False}
        self.is_valid()
        data = self.cleaned_data
        return {key: data.get(key) or "" for key in ("status", "queue", "base_model")} | {
            "mine": bool(data.get("mine"))
        }


class StageFilterForm(forms.Form):
    stage = forms.ChoiceField(label="Stage", required=False, choices=[("", "Any stage"), *TrainedModel.Stage.choices])

    def stage_value(self) -> str:
        return self.cleaned_data.get("stage", "") if self.is_bound and self.is_valid() else ""


class BaseModelForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=120,
        help_text="How people will find it in the lists, for example “llama-3.2-1b”.",
        error_messages={"required": "Give the model a name."},
    )
    source = forms.CharField(
        label="Where it is",
        max_length=500,
        help_text="A folder that every worker can read (holding config.json and the weights), or a model hub id.",
        error_messages={"required": "Say where the model is: a folder or a model hub id."},
    )
    licence_note = forms.CharField(
        label="Licence",
        max_length=300,
        required=False,
        help_text="Optional: the licence and anything people must know before using it, for example “Apache-2.0”.",
    )


class TryForm(forms.Form):
    """The prompt box of a trained model's page ("Try it")."""

    prompt = forms.CharField(
        label="Your message",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Written as a row of the training data's input would be. The model answers here, in a few seconds.",
        error_messages={"required": "Type a message for the model to answer."},
    )
