from django.conf import settings
from django.db import models
from django.db.models import Q

from curation.models import TaskType


class BaseModel(models.Model):
    """A model that adapters are trained on: a local folder or a hub id, checked when registered."""

    name = models.CharField(max_length=120, unique=True)
    source = models.CharField(max_length=500, help_text="A local folder or a model hub id.")
    architecture = models.CharField(max_length=120)
    model_type = models.CharField(max_length=60)
    parameter_count = models.BigIntegerField()
    hidden_size = models.PositiveIntegerField(default=0)
    num_layers = models.PositiveIntegerField(default=0)
    vocab_size = models.PositiveIntegerField(default=0)
    task_types = models.JSONField(default=list, help_text="Which tasks it can be trained for: sft, classification.")
    licence_note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def can_do(self, task: str) -> bool:
        return task in self.task_types


class TrainingJobQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=TrainingJob.ACTIVE_STATUSES)


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Training"
        CANCELLING = "cancelling", "Stopping"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.CANCELLING)
    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    dataset_version = models.ForeignKey(
        "curation.DatasetVersion", on_delete=models.PROTECT, related_name="training_jobs"
    )
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="training_jobs")
    task = models.CharField(max_length=20, choices=TaskType.choices)
    preset = models.CharField(max_length=20, blank=True)
    config = models.JSONField(help_text="The full runner configuration, preset and advanced fields applied.")
    queue = models.CharField(max_length=40, default="gpu", help_text="The Celery queue (worker class) it runs on.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    estimate = models.JSONField(default=dict, blank=True)

    # Live progress, written by the worker at most about once a second.
    phase = models.CharField(max_length=20, blank=True)
    step = models.PositiveIntegerField(default=0)
    max_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0.0)
    loss = models.FloatField(null=True, blank=True)
    eval_loss = models.FloatField(null=True, blank=True)
    learning_rate = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    memory_mb = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    log_tail = models.TextField(blank=True)

    # Dispatch and recovery.
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    cancel_requested = models.BooleanField(default=False)
    last_checkpoint_step = models.PositiveIntegerField(default=0)

    # Outcome.
    error_code = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    error_hint = models.TextField(blank=True)
    final_metrics = models.JSONField(default=dict, blank=True)
    hardware = models.JSONField(default=dict, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TrainingJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]),
                name="trainingjob_status_valid",
            ),
            models.CheckConstraint(condition=Q(task__in=["sft", "classification"]), name="trainingjob_task_valid"),
        ]
        indexes = [models.Index(fields=["status", "queue"]), models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Training job #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def progress(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return min(self.step / self.max_steps, 1.0) if self.max_steps else 0.0

    @property
    def can_cancel(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self.status in (self.Status.FAILED, self.Status.CANCELLED)

    @property
    def artifact_prefix(self) -> str:
        return f"training/jobs/{self.pk}"


class TrainingMetric(models.Model):
    """One point of the loss curves: a training step, or an evaluation at a checkpoint."""

    class Kind(models.TextChoices):
        TRAIN = "train", "Training"
        EVAL = "eval", "Evaluation"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metrics")
    kind = models.CharField(max_length=5, choices=Kind.choices, default=Kind.TRAIN)
    step = models.PositiveIntegerField()
    epoch = models.FloatField(default=0.0)
    loss = models.FloatField()
    learning_rate = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    memory_mb = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["job", "kind", "step"]
        constraints = [models.UniqueConstraint(fields=["job", "kind", "step"], name="trainingmetric_unique_step")]

    def __str__(self) -> str:
        return f"{self.kind} loss at step {self.step} of job #{self.job_id}"


class JobAttempt(models.Model):
    """One try of a job on one worker; the reaper and Retry add more."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        WORKER_LOST = "worker_lost", "Worker stopped responding"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    resumed_from_step = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="jobattempt_unique_number")]

    def __str__(self) -> str:
        return f"Attempt {self.number} of job #{self.job_id}"


class Worker(models.Model):
    """A Celery worker that advertises what it has; refreshed by its heartbeat."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    gpu_count = models.PositiveIntegerField(default=0)
    gpu_names = models.JSONField(default=list, blank=True)
    gpu_memory_bytes = models.BigIntegerField(default=0, help_text="Memory of one GPU (the smallest, if they differ).")
    cpu_count = models.PositiveIntegerField(default=0)
    memory_bytes = models.BigIntegerField(default=0)
    software = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def usable_memory_bytes(self) -> int:
        """What one training process can use: a GPU's memory, or the machine's memory on a CPU worker."""
        return self.gpu_memory_bytes if self.gpu_count else self.memory_bytes


class TrainedModelQuerySet(models.QuerySet):
    def in_stage(self, stage: str):
        return self.filter(stage=stage)


class TrainedModel(models.Model):
    """A trained adapter in the registry, with its model card and its stage."""

    class Stage(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        STAGING = "staging", "Staging"
        PRODUCTION = "production", "Production"
        ARCHIVED = "archived", "Archived"

    name = models.CharField(max_length=200, unique=True)
    job = models.OneToOneField(TrainingJob, on_delete=models.PROTECT, related_name="trained_model")
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="trained_models")
    dataset_version = models.ForeignKey(
        "curation.DatasetVersion", on_delete=models.PROTECT, related_name="trained_models"
    )
    task = models.CharField(max_length=20, choices=TaskType.choices)
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.CANDIDATE)
    artifact_prefix = models.CharField(max_length=300, help_text="Folder of the adapter in artifact storage.")
    files = models.JSONField(default=list, help_text="[{name, size, sha256}] of every adapter file.")
    sha256 = models.CharField(max_length=64, help_text="Of adapter_model.safetensors.")
    size_bytes = models.BigIntegerField(default=0)
    card = models.JSONField(default=dict, help_text="The model card's facts.")
    metrics = models.JSONField(default=dict, blank=True)
    merged_prefix = models.CharField(max_length=300, blank=True, help_text="Merged full model, when exported.")
    merged_files = models.JSONField(default=list, blank=True)
    merge_status = models.CharField(
        max_length=10, blank=True, help_text="Blank (never asked), queued, running, done or failed."
    )
    merge_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    stage_changed_at = models.DateTimeField(null=True, blank=True)

    objects = TrainedModelQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("download_trainedmodel", "Can download trained adapters")]
        constraints = [
            models.CheckConstraint(
                condition=Q(stage__in=["candidate", "staging", "production", "archived"]),
                name="trainedmodel_stage_valid",
            )
        ]

    def __str__(self) -> str:
        return self.name
