from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from curation.models import TaskType


class ExternalEndpoint(models.Model):
    """An OpenAI-compatible chat endpoint: the off-the-shelf baseline, or the judge."""

    name = models.CharField(max_length=120, unique=True)
    base_url = models.URLField(max_length=300, help_text="e.g. https://api.example.com/v1")
    model = models.CharField(max_length=200, help_text="The model name the endpoint expects.")
    api_key_encrypted = models.BinaryField(blank=True, default=b"")
    api_key_hint = models.CharField(max_length=8, blank=True, help_text="The key's last four characters.")
    timeout_seconds = models.FloatField(default=30.0)
    # Who may change it besides admins; blank for endpoints added before this was recorded (admins only).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EvalRun(models.Model):
    """One model against the test split of an approved version: every prediction stored, then scored."""

    class Kind(models.TextChoices):
        BASE = "base", "Base model alone"
        ADAPTER = "adapter", "Trained adapter"
        ENDPOINT = "endpoint", "External endpoint"

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Generating"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    # A run whose answers are empty for more than this share of its rows is flagged everywhere it is shown and
    # never passes a promotion gate: its scores (all near 0) and fairness gaps (all near 0) say nothing.
    EMPTY_OUTPUT_LIMIT = 0.5

    kind = models.CharField(max_length=10, choices=Kind.choices)
    base_model = models.ForeignKey(
        "training.BaseModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    trained_model = models.ForeignKey(
        "training.TrainedModel", null=True, blank=True, on_delete=models.PROTECT, related_name="eval_runs"
    )
    endpoint = models.ForeignKey(ExternalEndpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    dataset_version = models.ForeignKey("curation.DatasetVersion", on_delete=models.PROTECT, related_name="eval_runs")
    split = models.CharField(max_length=10, default="test")
    task = models.CharField(max_length=20, choices=TaskType.choices)
    labels = models.JSONField(default=list, blank=True)
    judge = models.ForeignKey(ExternalEndpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rubric = models.TextField(blank=True)
    queue = models.CharField(max_length=40, default="gpu")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    total = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    per_group = models.JSONField(default=dict, blank=True)
    fairness = models.JSONField(default=dict, blank=True)
    judge_agreement = models.JSONField(default=dict, blank=True)
    fairness_threshold = models.FloatField(default=0.1)
    empty_outputs = models.PositiveIntegerField(
        default=0, help_text="Answers with no text (blank or only spaces), counted when the run is scored."
    )
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="base", base_model__isnull=False, trained_model__isnull=True, endpoint__isnull=True)
                    | Q(kind="adapter", trained_model__isnull=False, endpoint__isnull=True)
                    | Q(kind="endpoint", endpoint__isnull=False, trained_model__isnull=True, base_model__isnull=True)
                ),
                name="evalrun_one_subject",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]), name="evalrun_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Evaluation #{self.pk} of {self.subject_name}"

    @property
    def subject_name(self) -> str:
        if self.kind == self.Kind.ADAPTER and self.trained_model_id:
            return self.trained_model.name
        if self.kind == self.Kind.ENDPOINT and self.endpoint_id:
            return self.endpoint.name
        return self.base_model.name if self.base_model_id else "?"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def reference_field(self) -> str:
        """The example field the answers are scored against: the label to choose, or the answer to write."""
        return "label" if self.task == TaskType.CLASSIFICATION else "target"

    def reference_of(self, example) -> str:
        """What this run scored an answer against, as people read it next to the answer."""
        return getattr(example, self.reference_field)

    @property
    def empty_share(self) -> float:
        """The share of the rows whose answer has no text (0 before the run is scored)."""
        return self.empty_outputs / self.total if self.total else 0.0

    @property
    def is_mostly_empty(self) -> bool:
        """Finished with no text for more than EMPTY_OUTPUT_LIMIT of its rows: its scores are not a result."""
        return (
            self.status == self.Status.SUCCEEDED
            and self.empty_outputs > 0
            and (self.empty_share > self.EMPTY_OUTPUT_LIMIT)
        )

    @property
    def empty_outputs_share_text(self) -> str:
        """E.g. "100% of rows (51 of 51)"; blank when every answer has text."""
        if not self.empty_outputs:
            return ""
        percent = self.empty_share * 100
        # Rounded down, so that 99.6% never reads as all of them.
        shown = "100" if self.empty_outputs >= self.total else ("less than 1" if percent < 1 else f"{int(percent)}")
        return f"{shown}% of rows ({self.empty_outputs:,} of {self.total:,})"

    @property
    def empty_outputs_text(self) -> str:
        """E.g. "The model produced no text for 100% of rows (51 of 51)."; blank when every answer has text."""
        share = self.empty_outputs_share_text
        return f"The model produced no text for {share}." if share else ""


class Prediction(models.Model):
    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="predictions")
    example = models.ForeignKey("curation.Example", on_delete=models.PROTECT, related_name="+")
    output = models.TextField(blank=True)
    judge_score = models.PositiveSmallIntegerField(null=True, blank=True)
    judge_reason = models.CharField(max_length=500, blank=True)
    human_score = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="A person's 1–5 rating, when given."
    )

    class Meta:
        ordering = ["run", "example__row_index"]
        constraints = [models.UniqueConstraint(fields=["run", "example"], name="prediction_unique_example")]

    def __str__(self) -> str:
        return f"Prediction of run #{self.run_id} for example #{self.example_id}"

    @property
    def reference(self) -> str:
        """What the answer was scored against (the run's task decides: label or target)."""
        return self.run.reference_of(self.example)


class Kpi(models.Model):
    """A business measure: customer satisfaction, time to resolution, escalation rate, developer time saved…"""

    class Kind(models.TextChoices):
        MEAN = "mean", "Average of a measurement"
        PROPORTION = "proportion", "Share of cases (0 to 1)"

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    unit = models.CharField(max_length=30, help_text="e.g. points (1–5), hours, %, minutes")
    higher_is_better = models.BooleanField()
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.MEAN)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class KpiObservation(models.Model):
    """A KPI measured for one model (or deployment) over one period and segment, with its sample size."""

    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="observations")
    model_name = models.CharField(max_length=200, help_text="A trained model, base model or endpoint name.")
    trained_model = models.ForeignKey(
        "training.TrainedModel", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    period_start = models.DateField()
    period_end = models.DateField()
    segment = models.CharField(max_length=120, blank=True, help_text="Blank: all customers.")
    value = models.FloatField()
    sample_size = models.PositiveIntegerField()
    std = models.FloatField(null=True, blank=True, help_text="Standard deviation within the period, when known.")
    source = models.CharField(max_length=20, default="csv")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kpi", "model_name", "period_start", "segment"]
        constraints = [
            models.UniqueConstraint(
                fields=["kpi", "model_name", "period_start", "segment"], name="kpiobservation_unique_period"
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")), name="kpiobservation_period_order"
            ),
            models.CheckConstraint(condition=Q(sample_size__gt=0), name="kpiobservation_sample_positive"),
        ]
        indexes = [models.Index(fields=["model_name", "kpi", "period_start"])]

    def __str__(self) -> str:
        return f"{self.kpi_id} of {self.model_name} from {self.period_start}"


class KpiImportRun(models.Model):
    """A KPI file imported by the worker: a 40,000-line file took two minutes, too long for a web request.

    Every line is checked first; only when all are right are the figures written, in one transaction.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        CHECKING = "checking", "Checking every line"
        WRITING = "writing", "Saving the figures"
        DONE = "done", "Imported"
        FAILED = "failed", "Nothing was imported"

    UNFINISHED = (Status.QUEUED, Status.CHECKING, Status.WRITING)
    # The worker writes its heartbeat about once a second while checking, and just before it starts writing (a
    # transaction of a minute at most); the reaper fails a started run silent for longer than this.
    STALE_AFTER = timedelta(minutes=5)
    LOST_MESSAGE = "The worker stopped responding while importing this file. Nothing was imported; import it again."

    file = models.FileField(upload_to="kpi-imports/%Y/%m/", max_length=300)
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    source = models.CharField(max_length=20, default="csv", help_text="csv (the web page) or api.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(
        default=0, help_text="Lines of figures in the file (an estimate until checked: a quoted value may span lines)."
    )
    rows_checked = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0, help_text="Figures written; 0 unless the run is done.")
    problem_count = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="The first problems: [{line, field, message}].")
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(imported=0) | Q(status="done"), name="kpiimportrun_imported_only_when_done"
            ),
        ]

    def __str__(self) -> str:
        return f"KPI import #{self.pk} ({self.original_name})"

    @property
    def is_finished(self) -> bool:
        return self.status not in self.UNFINISHED

    @property
    def progress_key(self) -> str:
        """The cache key of the saving stage's progress (it runs in one transaction, so not on this row)."""
        return f"kpi-import-run-{self.pk}"

    @property
    def fraction(self) -> float:
        """Checking is most of the work; saving the figures the last fifth (its own progress is in the cache)."""
        if self.status == self.Status.DONE:
            return 1.0
        if self.status == self.Status.WRITING:
            return 0.8
        if self.status == self.Status.CHECKING and self.rows_total:
            return 0.8 * min(self.rows_checked / self.rows_total, 1.0)
        return 0.0


class Pilot(models.Model):
    """Two models (or deployments) compared on the KPIs over the same period, e.g. a four-week A/B pilot."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    baseline = models.CharField(max_length=200, help_text="The model the pilot compares against.")
    candidate = models.CharField(max_length=200)
    period_start = models.DateField()
    period_end = models.DateField()
    segment = models.CharField(max_length=120, blank=True, help_text="Blank: all customers.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(period_end__gte=models.F("period_start")), name="pilot_period_order")
        ]

    def __str__(self) -> str:
        return self.name


class UseCase(models.Model):
    """What a model is for (e.g. client replies); its promotion gate, its production model and its retraining."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=20, choices=TaskType.choices)
    dataset = models.ForeignKey("curation.Dataset", on_delete=models.PROTECT, related_name="use_cases")
    eval_version = models.ForeignKey(
        "curation.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Where candidates are compared; blank: the candidate's own test split.",
    )
    gate = models.JSONField(
        default=list,
        help_text='Rules: [{"kind": "metric"|"kpi", "name": "rougeL", "rule": "improve"|"no_regress", "margin": 0.01}]',
    )
    production = models.ForeignKey(
        "training.TrainedModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    staging = models.ForeignKey(
        "training.TrainedModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    retrain_enabled = models.BooleanField(default=False)
    retrain_every_hours = models.PositiveIntegerField(default=24 * 7)
    retrain_base_model = models.ForeignKey(
        "training.BaseModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    last_retrain_at = models.DateTimeField(null=True, blank=True)
    last_trained_version = models.ForeignKey(
        "curation.DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        permissions = [("promote_usecase", "Can promote and roll back models")]

    def __str__(self) -> str:
        return self.name


class StageChange(models.Model):
    """Every promotion, demotion and rollback, with the gate's verdict at that moment."""

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="stage_changes")
    trained_model = models.ForeignKey("training.TrainedModel", on_delete=models.PROTECT, related_name="stage_changes")
    from_stage = models.CharField(max_length=12)
    to_stage = models.CharField(max_length=12)
    replaced = models.ForeignKey(
        "training.TrainedModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    gate_result = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.trained_model_id}: {self.from_stage} → {self.to_stage}"


class RetrainRun(models.Model):
    """One scheduled retraining: new approved data → a candidate → its evaluation → a proposal (or not)."""

    class Status(models.TextChoices):
        TRAINING = "training", "Training a candidate"
        EVALUATING = "evaluating", "Evaluating the candidate"
        PROPOSED = "proposed", "Passed the gate: proposed for promotion"
        NOT_BETTER = "not_better", "Did not pass the gate"
        FAILED = "failed", "Failed"

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="retrain_runs")
    dataset_version = models.ForeignKey("curation.DatasetVersion", on_delete=models.PROTECT, related_name="+")
    job = models.ForeignKey("training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    eval_run = models.ForeignKey(EvalRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.TRAINING)
    gate_result = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Retraining #{self.pk} of {self.use_case_id}"
