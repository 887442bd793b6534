"""Annotation: label schemas, projects over approved versions, reservations, answers, review, Label Studio."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from curation.models import Dataset, DatasetVersion, Example


class LabelSchema(models.Model):
    """What annotators fill in for the examples of one dataset (see ``annotation.schema``)."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, related_name="label_schema")
    schema = models.JSONField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Label schema of {self.dataset}"


class AnnotationProject(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open for annotation"
        FINISHED = "finished", "Finished"

    name = models.CharField(max_length=120, unique=True)
    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="annotation_projects")
    schema = models.JSONField(help_text="A copy of the dataset's label schema, frozen when the project was created.")
    annotations_per_example = models.PositiveSmallIntegerField(default=2)
    reservation_minutes = models.PositiveSmallIntegerField(default=30)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    task_count = models.PositiveIntegerField(default=0)
    label_studio_project_id = models.PositiveIntegerField(null=True, blank=True)
    label_studio_url = models.URLField(blank=True, help_text="The server the project was pushed to.")
    label_studio_pulled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(annotations_per_example__gte=1) & Q(annotations_per_example__lte=10),
                name="annotations_per_example_1_10",
            ),
            models.CheckConstraint(
                condition=Q(reservation_minutes__gte=1) & Q(reservation_minutes__lte=24 * 60),
                name="reservation_minutes_1_1440",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class TaskQuerySet(models.QuerySet):
    def needing_review(self) -> "TaskQuerySet":
        return self.filter(status=Task.Status.DISAGREEMENT)


class Task(models.Model):
    """One example of a project: how many answers it has, and its settled answer once there is one."""

    class Status(models.TextChoices):
        OPEN = "open", "Needs annotations"
        AGREED = "agreed", "Annotators agree"
        DISAGREEMENT = "disagreement", "Annotators disagree: needs a reviewer"
        ADJUDICATED = "adjudicated", "Settled by a reviewer"

    SETTLED = (Status.AGREED, Status.ADJUDICATED)

    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="tasks")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField(help_text="Order in which annotators meet the examples.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    annotation_count = models.PositiveSmallIntegerField(default=0)
    answer = models.JSONField(null=True, blank=True, help_text="The consensus or adjudicated answer.")
    disagreements = models.JSONField(default=list, blank=True, help_text="Fields the annotators disagree on.")
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(null=True, blank=True)
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    adjudicated_at = models.DateTimeField(null=True, blank=True)
    label_studio_task_id = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change of its answers, status or gold answer.")

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["project", "position"]
        permissions = [("adjudicate_task", "Can settle disagreements and mark gold examples")]
        # In the order assignment_next reads (examples with answers first), so it stops at the first free one.
        indexes = [models.Index(fields=["project", "status", "-annotation_count", "position"], name="task_next_idx")]
        constraints = [
            models.UniqueConstraint(fields=["project", "example"], name="task_example_once_per_project"),
            models.UniqueConstraint(fields=["project", "position"], name="task_position_unique"),
            models.CheckConstraint(condition=Q(is_gold=False) | Q(gold_answer__isnull=False), name="gold_has_answer"),
        ]

    def __str__(self) -> str:
        return f"{self.project} #{self.position + 1}"

    @property
    def is_settled(self) -> bool:
        return self.status in self.SETTLED

    @property
    def settled_stamp(self) -> str:
        """Who settled it and when, as one string: a reviewer's page sends it back, so a save can tell that someone
        else settled the example meanwhile. Empty while no reviewer has."""
        if self.adjudicated_at is None:
            return ""
        return f"{self.adjudicated_by_id or 0}@{self.adjudicated_at.isoformat()}"


class Assignment(models.Model):
    """An example reserved for one annotator until ``expires_at``; also holds their autosaved draft."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Being annotated"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Reservation ran out"
        UNDONE = "undone", "Submission taken back"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    reserved_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    draft = models.JSONField(default=dict, blank=True)
    draft_saved_at = models.DateTimeField(null=True, blank=True)
    revision = models.PositiveIntegerField(default=0, help_text="Bumped on every draft save (two tabs).")
    active_seconds = models.FloatField(default=0.0, help_text="Time the page was open and visible.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-reserved_at", "-id"]
        indexes = [models.Index(fields=["annotator", "status"])]
        constraints = [
            # Nobody else gets an example while it is reserved.
            models.UniqueConstraint(fields=["task"], condition=Q(status="active"), name="one_active_reservation"),
            models.CheckConstraint(condition=Q(expires_at__gt=F("reserved_at")), name="reservation_ends_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.task} for {self.annotator}"


class Annotation(models.Model):
    """One annotator's submitted answer to one task, from the browser, the API or Label Studio."""

    class Source(models.TextChoices):
        APP = "app", "Tuning Desk"
        LABEL_STUDIO = "label_studio", "Label Studio"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    annotator_name = models.CharField(max_length=200, help_text="Username, or the Label Studio user's e-mail.")
    answer = models.JSONField()
    seconds = models.FloatField(default=0.0, help_text="Time spent on the example.")
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.APP)
    label_studio_annotation_id = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator_name"], name="one_answer_per_annotator"),
            models.UniqueConstraint(
                fields=["task", "label_studio_annotation_id"],
                condition=Q(label_studio_annotation_id__isnull=False),
                name="label_studio_annotation_once",
            ),
            models.CheckConstraint(condition=Q(seconds__gte=0), name="annotation_seconds_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_name} on {self.task}"


class LabelStudioConnection(models.Model):
    """The organisation's Label Studio server. One row: a Tuning Desk install serves one organisation."""

    url = models.URLField()
    token_encrypted = models.BinaryField()
    token_hint = models.CharField(max_length=8, blank=True, help_text="The token's last four characters.")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="one_label_studio_connection")]

    def __str__(self) -> str:
        return f"Label Studio at {self.url}"


class PublishRun(models.Model):
    """Making a new dataset version from a project's settled answers, in the worker: checking the text annotators
    wrote for personal data takes minutes on large projects, too long for a web request."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        CHECKING = "checking", "Checking the text annotators wrote for personal data"
        WRITING = "writing", "Writing the new version"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    UNFINISHED = (Status.QUEUED, Status.CHECKING, Status.WRITING)
    # The worker writes its progress about once a second while checking; writing a large version takes a minute.
    STALE_AFTER = timedelta(minutes=5)
    LOST_MESSAGE = "The worker stopped responding while making this version. Nothing was written; start again."

    project = models.ForeignKey(AnnotationProject, on_delete=models.CASCADE, related_name="publish_runs")
    finish = models.BooleanField(default=False, help_text="Also close the project to annotators.")
    settled_only = models.BooleanField(default=False, help_text="Keep only the rows with a settled answer.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    texts_total = models.PositiveIntegerField(default=0)
    texts_checked = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    version = models.ForeignKey(DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
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
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "checking", "writing"]),
                name="one_publish_run_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"Publish #{self.pk} of {self.project}"

    @property
    def is_finished(self) -> bool:
        """No longer going: done, failed, or lost (its worker died)."""
        return self.status not in self.UNFINISHED or self.is_lost

    @property
    def error_text(self) -> str:
        return self.LOST_MESSAGE if self.is_lost else self.error

    @property
    def is_lost(self) -> bool:
        """Started, but its worker has been silent too long (it died): nothing was written."""
        return (
            self.status in (self.Status.CHECKING, self.Status.WRITING)
            and self.heartbeat_at is not None
            and timezone.now() - self.heartbeat_at > self.STALE_AFTER
        )

    @property
    def fraction(self) -> float:
        """Checking is most of the work; writing the version the last tenth."""
        if self.status == self.Status.DONE:
            return 1.0
        if self.status == self.Status.WRITING:
            return 0.9
        if self.status == self.Status.CHECKING and self.texts_total:
            return 0.9 * self.texts_checked / self.texts_total
        return 0.0
