from django.conf import settings
from django.db import models
from django.db.models import F, Q


class TaskType(models.TextChoices):
    SFT = "sft", "Instruction / response"
    CLASSIFICATION = "classification", "Classification"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"


class DatasetQuerySet(models.QuerySet):
    def visible(self) -> "DatasetQuerySet":
        """Datasets with at least one finished version (a staged import alone is not shown)."""
        return self.filter(versions__status=DatasetVersion.Status.READY).distinct()


class Dataset(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=20, choices=TaskType.choices, default=TaskType.SFT)
    label_set = models.JSONField(default=list, blank=True, help_text="Known labels, for classification.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def latest_version(self) -> "DatasetVersion | None":
        return self.versions.ready().order_by("-number").first()


class DatasetVersionQuerySet(models.QuerySet):
    def ready(self) -> "DatasetVersionQuerySet":
        """Finished versions (a staged import waits for the curator and is not used anywhere)."""
        return self.filter(status=DatasetVersion.Status.READY)

    def approved(self) -> "DatasetVersionQuerySet":
        """Ready versions a privacy reviewer approved: what the privacy gate lets export, annotation, training and
        evaluation use (curation.services.version_require_approved)."""
        return self.ready().filter(privacy=DatasetVersion.Privacy.APPROVED)


class DatasetVersion(models.Model):
    """An immutable set of examples. Every import or curation step makes a new one."""

    class Status(models.TextChoices):
        STAGED = "staged", "Waiting for the curator's decision"
        READY = "ready", "Ready"

    class Operation(models.TextChoices):
        IMPORT = "import", "Import"
        DEDUPE = "dedupe", "Deduplicate"
        FILTER = "filter", "Quality filter"
        SPLIT = "split", "Re-split"
        REDACT = "redact", "Redact (privacy review approved)"
        ANNOTATE = "annotate", "Annotated (consensus and reviewed answers)"

    class Privacy(models.TextChoices):
        RAW = "raw", "Not reviewed: may contain personal data"
        APPROVED = "approved", "Redacted and approved by a privacy reviewer"

    class PrivacyState(models.TextChoices):
        """Privacy as the API tells it: a raw version whose review is open is told apart (not stored)."""

        RAW = "raw", "Not reviewed: may contain personal data"
        IN_REVIEW = "in_review", "Privacy review under way: may contain personal data"
        APPROVED = "approved", "Redacted and approved by a privacy reviewer"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STAGED)
    operation = models.CharField(max_length=10, choices=Operation.choices)
    operation_params = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    privacy = models.CharField(max_length=10, choices=Privacy.choices, default=Privacy.RAW)
    split_seed = models.IntegerField(default=13)
    split_ratios = models.JSONField(default=dict)
    stats = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetVersionQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "-number"]
        permissions = [("export_datasetversion", "Can export dataset versions")]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="version_number_unique_per_dataset"),
            models.CheckConstraint(condition=~Q(parent=F("id")), name="version_not_own_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY

    @property
    def is_approved(self) -> bool:
        return self.is_ready and self.privacy == self.Privacy.APPROVED

    @property
    def privacy_review_id(self) -> int | None:
        """The open privacy review (redaction run) of this version, if any. Lists annotate it as
        ``open_review_id`` (curation.selectors) so that each row costs no query."""
        if self.privacy == self.Privacy.APPROVED:
            return None
        if "open_review_id" in self.__dict__:
            return self.__dict__["open_review_id"]
        return self.redaction_runs.filter(status__in=RedactionRun.ACTIVE_STATUSES).values_list("pk", flat=True).first()

    @property
    def privacy_state(self) -> str:
        if self.privacy == self.Privacy.APPROVED:
            return self.PrivacyState.APPROVED
        return self.PrivacyState.IN_REVIEW if self.privacy_review_id else self.PrivacyState.RAW


class Flag(models.IntegerChoices):
    """Quality flags, stored as bits in Example.flags."""

    SHORT = 1, "Very short"
    LONG = 2, "Very long"
    NOT_ENGLISH = 4, "Probably not English"
    UNKNOWN_LABEL = 8, "Label outside the label set"


class ExampleQuerySet(models.QuerySet):
    def flagged(self, flag: int) -> "ExampleQuerySet":
        return self.alias(_flag_bit=F("flags").bitand(flag)).filter(_flag_bit__gt=0)


class Example(models.Model):
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="examples")
    row_index = models.BigIntegerField(help_text="Order within the version; the keyset for paging.")
    source_line = models.BigIntegerField(help_text="Line (JSONL/CSV) or element number (JSON) in the upload.")
    input = models.TextField()
    target = models.TextField(blank=True)
    label = models.CharField(max_length=200, blank=True)
    group = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    split = models.CharField(max_length=10, choices=Split.choices)
    row_hash = models.CharField(max_length=32, help_text="Hash of the mapped content, exact.")
    text_hash = models.CharField(max_length=32, help_text="Hash of the normalised text, for deduplication.")
    flags = models.IntegerField(default=0)

    objects = ExampleQuerySet.as_manager()

    class Meta:
        ordering = ["version", "row_index"]
        constraints = [models.UniqueConstraint(fields=["version", "row_index"], name="example_row_unique")]

    def __str__(self) -> str:
        return f"{self.version} row {self.row_index}"

    def flag_labels(self) -> list[str]:
        return [flag.label for flag in Flag if self.flags & flag]


class UploadQuerySet(models.QuerySet):
    def active(self) -> "UploadQuerySet":
        return self.filter(status__in=Upload.ACTIVE_STATUSES)


class Upload(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded", "Waiting for column mapping"
        VALIDATING = "validating", "Checking rows"
        VALIDATED = "validated", "Checked: waiting for your decision"
        IMPORTED = "imported", "Imported"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSON Lines (.jsonl)"
        JSON = "json", "JSON array (.json)"
        CSV = "csv", "CSV (.csv)"
        TSV = "tsv", "TSV (.tsv)"

    ACTIVE_STATUSES = (Status.VALIDATING, Status.VALIDATED)

    file = models.FileField(upload_to="uploads/%Y/%m/", max_length=300)
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    format = models.CharField(max_length=5, choices=Format.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UPLOADED)
    columns = models.JSONField(default=list, blank=True)
    dataset_name = models.CharField(max_length=120)
    task_type = models.CharField(max_length=20, choices=TaskType.choices, default=TaskType.SFT)
    mapping = models.JSONField(default=dict, blank=True)
    version = models.ForeignKey(DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    total_rows = models.PositiveIntegerField(default=0)
    good_rows = models.PositiveIntegerField(default=0)
    rejected_rows = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UploadQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset_name"],
                condition=Q(status__in=["validating", "validated"]),
                name="one_active_import_per_dataset",
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="upload_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"Upload #{self.pk} {self.original_name}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.IMPORTED, self.Status.CANCELLED, self.Status.FAILED)


class UploadProblem(models.Model):
    class Reason(models.TextChoices):
        BAD_JSON = "bad_json", "Not valid JSON"
        NOT_OBJECT = "not_object", "Not an object with named fields"
        MISSING_FIELD = "missing_field", "Mapped field missing"
        EMPTY_TEXT = "empty_text", "Empty text"
        TOO_LONG = "too_long", "Too long"
        INVALID_UTF8 = "invalid_utf8", "Invalid UTF-8"
        DUPLICATE = "duplicate", "Duplicate row"
        RAGGED_ROW = "ragged_row", "Wrong number of columns"
        BAD_TYPE = "bad_type", "Field is not text"
        TOO_DEEP = "too_deep", "Nested too deeply"
        BAD_CSV = "bad_csv", "Not valid CSV"

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="problems")
    line = models.BigIntegerField()
    field = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    message = models.CharField(max_length=500)
    excerpt = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["upload", "line", "id"]
        indexes = [models.Index(fields=["upload", "line"])]

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class DedupeRun(models.Model):
    class Mode(models.TextChoices):
        EXACT = "exact", "Exact (same text after normalising case, spaces and punctuation)"
        NEAR = "near", "Near-duplicates (MinHash similarity)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Looking for duplicates"
        DONE = "done", "Ready for review"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed"

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="dedupe_runs")
    mode = models.CharField(max_length=5, choices=Mode.choices)
    threshold = models.FloatField(default=0.8)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    group_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    result_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(threshold__gt=0) & Q(threshold__lte=1), name="dedupe_threshold_0_1"),
        ]

    def __str__(self) -> str:
        return f"Dedupe #{self.pk} of {self.version}"


class DuplicateGroup(models.Model):
    run = models.ForeignKey(DedupeRun, on_delete=models.CASCADE, related_name="groups")
    example_ids = models.JSONField(help_text="Members, in row order; the first is kept unless the curator chooses.")
    similarity = models.FloatField()

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"Group of {len(self.example_ids)}"


class RedactionRun(models.Model):
    """Detection of personal data over one version, its review, and (when approved) the redacted version."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Looking for personal data"
        REVIEW = "review", "Ready for review"
        APPROVED = "approved", "Approved"
        FAILED = "failed", "Failed"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.REVIEW)

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="redaction_runs")
    config = models.JSONField(default=dict, help_text="Entity types, thresholds, operators, allow/deny lists.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    processed = models.PositiveIntegerField(default=0)
    last_row_index = models.BigIntegerField(default=0, help_text="Detection resumes after this row.")
    finding_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pseudonym_map = models.BinaryField(blank=True, default=b"", help_text="Encrypted original → surrogate map.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("review_redactionrun", "Can review and approve personal-data findings"),
            ("view_pseudonyms", "Can read the original values behind pseudonyms"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["version"],
                condition=Q(status__in=["queued", "running", "review"]),
                name="one_open_redaction_per_version",
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="redaction_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"Redaction #{self.pk} of {self.version}"

    @property
    def is_detecting(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)


class FindingQuerySet(models.QuerySet):
    def pending(self) -> "FindingQuerySet":
        return self.filter(status=Finding.Status.PENDING)

    def accepted(self) -> "FindingQuerySet":
        return self.filter(status=Finding.Status.ACCEPTED)


class Finding(models.Model):
    """One span of personal data in one field of one example, proposed by a recognizer or added by a reviewer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Not reviewed"
        ACCEPTED = "accepted", "Will be redacted"
        REJECTED = "rejected", "Kept"

    run = models.ForeignKey(RedactionRun, on_delete=models.CASCADE, related_name="findings")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="findings")
    field = models.CharField(max_length=120, help_text="input, target, or metadata.<key>")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    entity_type = models.CharField(max_length=40)
    score = models.FloatField()
    recognizer = models.CharField(max_length=80, help_text="Which recognizer proposed it, or 'reviewer'.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    revision = models.PositiveIntegerField(default=0, help_text="Bumped on every decision (optimistic locking).")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = FindingQuerySet.as_manager()

    class Meta:
        ordering = ["run", "example", "field", "start"]
        indexes = [
            models.Index(fields=["run", "status", "entity_type"]),
            models.Index(fields=["run", "example"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="finding_span_not_empty"),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="finding_score_0_1"),
            models.UniqueConstraint(
                fields=["run", "example", "field", "start", "end", "entity_type"], name="finding_unique_span"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entity_type} {self.field}[{self.start}:{self.end}]"
