"""REST API for datasets: browse versions and examples, export, curate, and import uploads.

Every endpoint checks one Django permission (accounts.roles) and names it in its OpenAPI description.
Reads go through curation.selectors, writes through curation.services; services raise Django
ValidationErrors with plain messages, which projectsite.api turns into 400 JSON answers.
Only ready versions exist for the API: a staged import is 404 until it is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadhandler import StopUpload
from django.http import StreamingHttpResponse
from django.template.defaultfilters import filesizeformat
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, generics, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import CURATE, EXPORT, UPLOAD, VIEW_DATASETS, VIEW_EXAMPLES
from curation import formats, selectors, services
from curation.models import (
    Dataset,
    DatasetVersion,
    DedupeRun,
    DuplicateGroup,
    Example,
    Flag,
    Split,
    TaskType,
    Upload,
    UploadProblem,
)
from projectsite.api import ErrorOutput, choice_error, describe, error_responses
from projectsite.errors import error_text
from projectsite.pagination import CursorPagination
from projectsite.permissions import HasPerm
from projectsite.progress import progress_read

MAPPING_ROLES = ("input", "target", "label", "group", "metadata")


class NotApproved(exceptions.APIException):
    """The request is valid, but the version's state forbids it: it has not passed privacy review."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "not_approved"


# --- pagination ------------------------------------------------------------------------------


class RowCursorPagination(CursorPagination):
    """Keyset pages by row: no COUNT(*), no OFFSET, the same cost on page 1 and page 20 000."""

    ordering = "row_index"
    page_size = selectors.PAGE_SIZE


class ProblemCursorPagination(RowCursorPagination):
    ordering = ("line", "id")


class GroupCursorPagination(RowCursorPagination):
    ordering = "id"
    page_size = 20


# --- lookups: permission first (403), then the object (404) -----------------------------------


def version_or_404(version_id: int) -> DatasetVersion:
    try:
        return selectors.version_ready_get(version_id)
    except DatasetVersion.DoesNotExist:
        raise exceptions.NotFound(f"There is no ready version #{version_id}.") from None


def version_ready_or_invalid(version_id: int, *, field: str) -> DatasetVersion:
    """For an input serializer's ``resolve()``: the ready version, or a 400 that names ``field``."""
    try:
        return selectors.version_ready_get(version_id)
    except DatasetVersion.DoesNotExist:
        raise serializers.ValidationError({field: f"There is no ready version #{version_id}."}) from None


def dataset_or_404(dataset_id: int) -> Dataset:
    dataset = selectors.dataset_list_summary().filter(pk=dataset_id).first()
    if dataset is None:
        raise exceptions.NotFound(f"There is no dataset #{dataset_id} with a ready version.")
    return dataset


def _upload_or_404(request, upload_id: int) -> Upload:
    upload = selectors.upload_list_for(request.user).filter(pk=upload_id).first()
    if upload is None:
        raise exceptions.NotFound(f"You have no upload #{upload_id}.")
    return upload


def _run_or_404(run_id: int) -> DedupeRun:
    try:
        return selectors.dedupe_run_get(run_id)
    except DedupeRun.DoesNotExist:
        raise exceptions.NotFound(f"There is no deduplication run #{run_id}.") from None


def _download(chunks, *, filename: str, content_type: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


class _JsonErrorsNegotiation(DefaultContentNegotiation):
    """Downloads stream files; their errors are always JSON, whatever ``?format=`` or Accept say.

    DRF reads ``?format=`` as a renderer choice (and answers 404 for an unknown one); on these
    endpoints it picks the file type instead.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# --- output serializers ----------------------------------------------------------------------


class DatasetOutput(serializers.ModelSerializer):
    task_type_label = serializers.CharField(source="get_task_type_display")
    latest_version = serializers.IntegerField(
        source="latest_version_id", allow_null=True, help_text="Id of the newest ready version."
    )
    latest_number = serializers.IntegerField(allow_null=True)
    latest_rows = serializers.IntegerField(allow_null=True, help_text="Rows in the newest ready version.")

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "description",
            "task_type",
            "task_type_label",
            "label_set",
            "created_at",
            "latest_version",
            "latest_number",
            "latest_rows",
        ]


class VersionOutput(serializers.ModelSerializer):
    operation_label = serializers.CharField(source="get_operation_display")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    privacy = serializers.ChoiceField(
        source="privacy_state",
        choices=DatasetVersion.PrivacyState.choices,
        read_only=True,
        help_text="raw: not reviewed, may hold personal data; in_review: personal-data detection or its review is "
        "open (`privacy_review`); approved: redacted and approved by a privacy reviewer.",
    )
    privacy_label = serializers.SerializerMethodField(help_text="The privacy state in words.")
    privacy_review = serializers.IntegerField(
        source="privacy_review_id",
        allow_null=True,
        read_only=True,
        help_text="The open redaction run (/api/v1/redaction-runs/{id}/) while in review; null otherwise.",
    )
    exportable = serializers.BooleanField(
        source="is_approved",
        read_only=True,
        help_text="True once the version passed privacy review: it can be exported (with the export permission), "
        "annotated, trained and evaluated on. Otherwise those are refused.",
    )

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "dataset",
            "number",
            "parent",
            "operation",
            "operation_label",
            "operation_params",
            "content_hash",
            "row_count",
            "privacy",
            "privacy_label",
            "privacy_review",
            "exportable",
            "split_seed",
            "split_ratios",
            "stats",
            "created_by",
            "created_at",
        ]

    def get_privacy_label(self, version: DatasetVersion) -> str:
        return DatasetVersion.PrivacyState(version.privacy_state).label


class ExampleOutput(serializers.ModelSerializer):
    flag_labels = serializers.ListField(child=serializers.CharField(), help_text="The quality flags in words.")

    class Meta:
        model = Example
        fields = [
            "id",
            "version",
            "row_index",
            "source_line",
            "input",
            "target",
            "label",
            "group",
            "metadata",
            "split",
            "flags",
            "flag_labels",
        ]


class UploadCountsOutput(serializers.Serializer):
    total = serializers.IntegerField(source="total_rows", help_text="Rows read from the file.")
    good = serializers.IntegerField(source="good_rows", help_text="Rows that will be imported.")
    rejected = serializers.IntegerField(source="rejected_rows", help_text="Rows left out; see problems.")


class UploadProgressOutput(serializers.Serializer):
    fraction = serializers.FloatField(help_text="0 to 1.")
    eta_seconds = serializers.FloatField(allow_null=True, help_text="Estimated seconds left while checking.")
    rows_checked = serializers.IntegerField(allow_null=True)


class UploadOutput(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", help_text="The status in words.")
    progress = serializers.SerializerMethodField()
    counts = UploadCountsOutput(source="*")
    version = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="The version this upload made; it can be browsed once imported."
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Upload
        fields = [
            "id",
            "original_name",
            "size",
            "format",
            "dataset_name",
            "task_type",
            "status",
            "status_label",
            "progress",
            "counts",
            "error",
            "columns",
            "mapping",
            "version",
            "created_by",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(UploadProgressOutput)
    def get_progress(self, upload: Upload) -> dict:
        if upload.status == Upload.Status.VALIDATING:
            # Staging runs in one transaction, so live progress travels through the cache.
            live = progress_read(services.upload_progress_key(upload.pk)) or {}
            return {
                "fraction": live.get("fraction", upload.progress),
                "eta_seconds": live.get("eta_seconds"),
                "rows_checked": live.get("rows"),
            }
        fraction = 1.0 if upload.status in (Upload.Status.VALIDATED, Upload.Status.IMPORTED) else upload.progress
        return {"fraction": fraction, "eta_seconds": None, "rows_checked": None}


class ProblemOutput(serializers.ModelSerializer):
    reason_label = serializers.CharField(source="get_reason_display")

    class Meta:
        model = UploadProblem
        fields = ["id", "line", "field", "reason", "reason_label", "message", "excerpt"]


class PreviewRowOutput(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line (JSONL/CSV) or element number (JSON) in the file.")
    problem = serializers.CharField(required=False, help_text="Why this row would be left out.")
    input = serializers.CharField(required=False)
    target = serializers.CharField(required=False)
    label = serializers.CharField(required=False)
    group = serializers.CharField(required=False)
    metadata = serializers.DictField(required=False)


class PreviewOutput(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    mapping = serializers.DictField()
    rows = PreviewRowOutput(many=True)


class DedupeRunOutput(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = DedupeRun
        fields = [
            "id",
            "version",
            "mode",
            "threshold",
            "status",
            "status_label",
            "progress",
            "group_count",
            "duplicate_count",
            "error",
            "result_version",
            "created_by",
            "created_at",
        ]


class GroupMemberOutput(serializers.ModelSerializer):
    class Meta:
        model = Example
        fields = ["id", "row_index", "split", "input", "target", "label"]


class DuplicateGroupOutput(serializers.ModelSerializer):
    example_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Members in row order; the first is kept by default."
    )
    members = serializers.SerializerMethodField()

    class Meta:
        model = DuplicateGroup
        fields = ["id", "similarity", "example_ids", "members"]

    @extend_schema_field(GroupMemberOutput(many=True))
    def get_members(self, group: DuplicateGroup) -> list:
        members = self.context.get("members", {}).get(group.pk, [])
        return GroupMemberOutput(members, many=True).data


# --- input serializers -----------------------------------------------------------------------


class ExampleFilterInput(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Words to look for in input and target (full-text on PostgreSQL).",
    )
    split = serializers.ChoiceField(
        choices=Split.choices, required=False, allow_blank=True, error_messages=choice_error("split", Split.choices)
    )
    label = serializers.CharField(required=False, allow_blank=True, max_length=200)
    group = serializers.CharField(required=False, allow_blank=True, max_length=200)
    flag = serializers.ChoiceField(
        choices=Flag.choices,
        required=False,
        allow_blank=True,
        error_messages=choice_error("flag", Flag.choices),
        help_text="One quality flag bit: 1 very short, 2 very long, 4 probably not English, 8 label outside "
        "the label set.",
    )


class ExportInput(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=[("jsonl", "JSON Lines"), ("csv", "CSV")],
        default="jsonl",
        error_messages={"invalid_choice": "Choose format=jsonl or format=csv."},
    )


class _MappingMixin:
    def _parse_mapping(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError(
                'The mapping must be a JSON object, like {"input": "question", "target": "answer"}.'
            )
        unknown = sorted(set(value) - set(MAPPING_ROLES))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown mapping key(s): {', '.join(unknown)}. Use {', '.join(MAPPING_ROLES)}."
            )
        for role in ("input", "target", "label", "group"):
            if value.get(role) is not None and not isinstance(value[role], str):
                raise serializers.ValidationError(f"“{role}” must name one column of the file.")
        metadata = value.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, list) or not all(isinstance(column, str) for column in metadata)
        ):
            raise serializers.ValidationError("“metadata” must be a list of column names.")
        return value


MAPPING_SCHEMA = {
    "type": "object",
    "properties": {
        "input": {"type": "string", "description": "Column with the prompt or text."},
        "target": {"type": "string", "description": "Column with the response (instruction/response data)."},
        "label": {"type": "string", "description": "Column with the class (classification data)."},
        "group": {"type": "string", "description": "Column with a segment to compare results by."},
        "metadata": {"type": "array", "items": {"type": "string"}, "description": "Columns to keep as metadata."},
    },
    "additionalProperties": False,
    "example": {"input": "question", "target": "answer"},
}


@extend_schema_field(MAPPING_SCHEMA)
class MappingField(serializers.JSONField):
    pass


class UploadCreateInput(_MappingMixin, serializers.Serializer):
    file = serializers.FileField(help_text="JSON Lines, JSON array, CSV or TSV, UTF-8.")
    dataset_name = serializers.CharField(max_length=120, help_text="New or existing dataset to import into.")
    task_type = serializers.ChoiceField(
        choices=TaskType.choices, error_messages=choice_error("task type", TaskType.choices)
    )
    format = serializers.ChoiceField(
        choices=Upload.Format.choices,
        required=False,
        error_messages=choice_error("format", Upload.Format.choices),
        help_text="Leave out to tell it from the file name.",
    )
    mapping = serializers.CharField(
        required=False,
        help_text='Column mapping as a JSON object string, e.g. {"input": "question", "target": "answer", '
        '"metadata": ["source"]}. Leave out to use the suggested mapping.',
    )
    start = serializers.BooleanField(default=False, help_text="Start checking the rows at once.")

    def validate_mapping(self, value: str) -> dict:
        try:
            parsed = json.loads(value)
        except ValueError:
            raise serializers.ValidationError(
                'The mapping is not valid JSON. Send an object like {"input": "question", "target": "answer"}.'
            ) from None
        return self._parse_mapping(parsed)


class MappingInput(_MappingMixin, serializers.Serializer):
    mapping = MappingField()
    task_type = serializers.ChoiceField(
        choices=TaskType.choices, required=False, error_messages=choice_error("task type", TaskType.choices)
    )

    def validate_mapping(self, value) -> dict:
        return self._parse_mapping(value)


class RatiosInput(serializers.Serializer):
    train = serializers.FloatField(min_value=0, max_value=1)
    validation = serializers.FloatField(min_value=0, max_value=1)
    test = serializers.FloatField(min_value=0, max_value=1)


@extend_schema_field(RatiosInput)
class RatiosField(serializers.Field):
    """Shares per split; checked by the service so the message names the problem (sum, unknown split…)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict) or not all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in data.values()
        ):
            raise serializers.ValidationError(
                'Give each split a share as a number, like {"train": 0.8, "validation": 0.1, "test": 0.1}.'
            )
        return {str(name): float(value) for name, value in data.items()}

    def to_representation(self, value):
        return value


class SplitInput(serializers.Serializer):
    seed = serializers.IntegerField(
        min_value=-(2**31), max_value=2**31 - 1, help_text="Same seed and ratios give the same split."
    )
    ratios = RatiosField()


class FilterInput(serializers.Serializer):
    min_chars = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="Drop rows whose input + target are shorter."
    )
    max_chars = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="Drop rows whose input + target are longer."
    )
    drop_empty_target = serializers.BooleanField(default=False)
    drop_not_english = serializers.BooleanField(default=False)
    label_set = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Keep only rows with one of these labels.",
    )


class DedupeStartInput(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=DedupeRun.Mode.choices, error_messages={"invalid_choice": "Choose mode exact or near."}
    )
    threshold = serializers.FloatField(default=0.8, help_text="Near mode: similarity above 0 and at most 1.")

    def validate_threshold(self, value: float) -> float:
        if not 0 < value <= 1:
            raise serializers.ValidationError("The similarity threshold must be above 0 and at most 1, like 0.8.")
        return value


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "integer"}},
        "description": "For a duplicate group id, the example ids to keep. Groups left out keep their first row.",
        "example": {"12": [345, 346]},
    }
)
class KeepField(serializers.Field):
    def to_internal_value(self, data) -> dict[int, list[int]]:
        message = 'Send keep as {"<group id>": [<example id>, ...]}, for example {"12": [345]}.'
        if not isinstance(data, dict):
            raise serializers.ValidationError(message)
        keep: dict[int, list[int]] = {}
        for key, ids in data.items():
            if not str(key).isdigit() or not isinstance(ids, list):
                raise serializers.ValidationError(message)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise serializers.ValidationError(message)
            keep[int(key)] = ids
        return keep

    def to_representation(self, value):
        return value


class DedupeApplyInput(serializers.Serializer):
    keep = KeepField(required=False)


# --- datasets and versions -------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="List datasets",
        description=describe(
            "Datasets with at least one ready version, by name, with their newest version.", VIEW_DATASETS
        ),
        responses={200: DatasetOutput(many=True), **error_responses(401, 403)},
    )
)
class DatasetListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_DATASETS)]
    serializer_class = DatasetOutput

    def get_queryset(self):
        return selectors.dataset_list_summary()


class DatasetDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_DATASETS)]

    @extend_schema(
        summary="One dataset",
        description=describe("A dataset with its newest ready version.", VIEW_DATASETS),
        responses={200: DatasetOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, dataset_id: int):
        return Response(DatasetOutput(dataset_or_404(dataset_id)).data)


@extend_schema_view(
    get=extend_schema(
        summary="Versions of a dataset",
        description=describe("The ready versions of a dataset, newest first.", VIEW_DATASETS),
        responses={200: VersionOutput(many=True), **error_responses(401, 403, 404)},
    )
)
class DatasetVersionListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_DATASETS)]
    serializer_class = VersionOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DatasetVersion.objects.none()
        return selectors.version_list(dataset_or_404(self.kwargs["dataset_id"])).select_related("created_by")


class VersionDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_DATASETS)]

    @extend_schema(
        summary="One version",
        description=describe(
            "A ready version: how it was made (operation, parameters, parent), its content hash, split and statistics.",
            VIEW_DATASETS,
        ),
        responses={200: VersionOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, version_id: int):
        return Response(VersionOutput(version_or_404(version_id)).data)


# --- examples --------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="Browse the rows of a version",
        description=describe(
            "Rows in order, a page at a time. Follow `next`/`previous`: the cursor is a position in the row "
            "order, so every page is as fast as the first, and rows are never skipped or repeated. Filters "
            "combine.",
            VIEW_EXAMPLES,
        ),
        parameters=[ExampleFilterInput],
        responses={200: ExampleOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class ExampleListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_EXAMPLES)]
    serializer_class = ExampleOutput
    pagination_class = RowCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Example.objects.none()
        version = version_or_404(self.kwargs["version_id"])
        filters = ExampleFilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.example_search(version, **filters.validated_data)


class ExampleDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_EXAMPLES)]

    @extend_schema(
        summary="One row",
        description=describe("One example of a ready version.", VIEW_EXAMPLES),
        responses={200: ExampleOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, example_id: int):
        try:
            example = selectors.example_ready_get(example_id)
        except Example.DoesNotExist:
            raise exceptions.NotFound(f"There is no example #{example_id} in a ready version.") from None
        return Response(ExampleOutput(example).data)


_EXPORT_FILE = "The rows: JSON Lines (one object a line) or CSV (a header row, then one row each)."


class VersionExportApi(APIView):
    permission_classes = [HasPerm.of(EXPORT)]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonErrorsNegotiation

    @extend_schema(
        summary="Download a version",
        description=describe(
            "All rows of an approved (redacted and privacy-reviewed) version in row order, streamed as JSON Lines "
            "or CSV; a version that has not passed privacy review is refused with 409 and a JSON error, never a "
            "file (its `exportable` field says so beforehand). "
            "(`Content-Disposition` names the file). In CSV, cells that start with = + - @, a tab or a "
            "carriage return get a leading ' so spreadsheet programs do not run them as formulas. "
            "Each download is written to the audit log.",
            EXPORT,
        ),
        parameters=[ExportInput],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description=_EXPORT_FILE),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=_EXPORT_FILE),
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(ErrorOutput, description="The version has not passed privacy review."),
        },
    )
    def get(self, request, version_id: int):
        version = version_or_404(version_id)
        params = ExportInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        try:
            chunks, filename, content_type = services.version_export(
                version=version, actor=request.user, fmt=params.validated_data["format"], via="api"
            )
        except services.VersionNotApproved as exc:
            raise NotApproved(error_text(exc)) from None
        return _download(chunks, filename=filename, content_type=content_type)


# --- curation steps: each makes a new version ------------------------------------------------


class VersionSplitApi(APIView):
    permission_classes = [HasPerm.of(CURATE)]

    @extend_schema(
        summary="Re-split a version",
        description=describe(
            "Make a new version with the same rows and a fresh seeded, label-stratified train/validation/test "
            "split. The shares must add up to 1.",
            CURATE,
        ),
        request=SplitInput,
        responses={201: VersionOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, version_id: int):
        version = version_or_404(version_id)
        data = SplitInput(data=request.data)
        data.is_valid(raise_exception=True)
        new = services.version_split(version=version, actor=request.user, **data.validated_data)
        return Response(VersionOutput(new).data, status=status.HTTP_201_CREATED)


class VersionFilterApi(APIView):
    permission_classes = [HasPerm.of(CURATE)]

    @extend_schema(
        summary="Filter a version",
        description=describe(
            "Make a new version without the rows that fail the chosen quality filters (choose at least one).",
            CURATE,
        ),
        request=FilterInput,
        responses={201: VersionOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, version_id: int):
        version = version_or_404(version_id)
        data = FilterInput(data=request.data)
        data.is_valid(raise_exception=True)
        new = services.version_filter(version=version, actor=request.user, **data.validated_data)
        return Response(VersionOutput(new).data, status=status.HTTP_201_CREATED)


class DedupeRunStartApi(APIView):
    permission_classes = [HasPerm.of(CURATE)]

    @extend_schema(
        summary="Look for duplicates",
        description=describe(
            "Start looking for exact or near duplicates in the background. Poll the run until its status is "
            "`done`, review its groups, then apply it.",
            CURATE,
        ),
        request=DedupeStartInput,
        responses={202: DedupeRunOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, version_id: int):
        version = version_or_404(version_id)
        data = DedupeStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.dedupe_run_start(version=version, actor=request.user, **data.validated_data)
        return Response(DedupeRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class DedupeRunDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_DATASETS)]

    @extend_schema(
        summary="One deduplication run",
        description=describe(
            "Status, progress, how many groups and duplicate rows were found, and the version it made once applied.",
            VIEW_DATASETS,
        ),
        responses={200: DedupeRunOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        return Response(DedupeRunOutput(_run_or_404(run_id)).data)


@extend_schema_view(
    get=extend_schema(
        summary="Duplicate groups of a run",
        description=describe(
            "The groups found, with their member rows (in row order; the first is kept unless you choose).",
            VIEW_EXAMPLES,
        ),
        responses={200: DuplicateGroupOutput(many=True), **error_responses(401, 403, 404)},
    )
)
class DedupeGroupListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_EXAMPLES)]
    serializer_class = DuplicateGroupOutput
    pagination_class = GroupCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DuplicateGroup.objects.none()
        return _run_or_404(self.kwargs["run_id"]).groups.all()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        members = {group.pk: rows for group, rows in selectors.duplicate_groups_with_members(page)}
        data = DuplicateGroupOutput(page, many=True, context={"members": members}).data
        return self.get_paginated_response(data)


class DedupeRunApplyApi(APIView):
    permission_classes = [HasPerm.of(CURATE)]

    @extend_schema(
        summary="Apply a deduplication run",
        description=describe(
            "Make a new version that keeps, in each duplicate group, the rows listed in `keep` (the first row "
            "of groups left out).",
            CURATE,
        ),
        request=DedupeApplyInput,
        responses={201: VersionOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, run_id: int):
        run = _run_or_404(run_id)
        data = DedupeApplyInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.dedupe_run_apply(run=run, actor=request.user, keep=data.validated_data.get("keep"))
        return Response(VersionOutput(version).data, status=status.HTTP_201_CREATED)


# --- uploads ---------------------------------------------------------------------------------


class UploadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


def _too_large() -> UploadTooLarge:
    limit = settings.TUNINGDESK_MAX_UPLOAD_BYTES
    return UploadTooLarge(
        f"The file is larger than the upload limit of {filesizeformat(limit)} ({limit:,} bytes). "
        "Split it into smaller files, or ask an admin to raise TUNINGDESK_MAX_UPLOAD_BYTES."
    )


class UploadGone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_code = "upload_gone"


def _mapping_errors(exc: DjangoValidationError) -> DjangoValidationError:
    """Name mapping problems after the field the client sent (``mapping.input``), not the bare role."""
    if not hasattr(exc, "error_dict"):
        return exc
    return DjangoValidationError(
        {(f"mapping.{key}" if key in MAPPING_ROLES else key): errors for key, errors in exc.error_dict.items()}
    )


@extend_schema_view(
    get=extend_schema(
        summary="Your uploads",
        description=describe("Your uploads, newest first (admins see everyone's).", UPLOAD),
        responses={200: UploadOutput(many=True), **error_responses(401, 403)},
    )
)
class UploadListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(UPLOAD)]
    serializer_class = UploadOutput
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return selectors.upload_list_for(self.request.user)

    def handle_exception(self, exc):
        # The size limit handler stops reading the body; make that a 413 wherever it surfaced.
        if isinstance(exc, StopUpload) or getattr(self.request, "upload_too_large", False):
            exc = _too_large()
        return super().handle_exception(exc)

    @extend_schema(
        summary="Upload a file",
        description=describe(
            "Send a file as multipart form data. Its columns are read and a mapping is suggested; send "
            "`mapping` to choose it and `start=true` to begin checking rows at once (then poll the upload). "
            "If the mapping or the start is refused, nothing is kept. Files over the upload limit get 413.",
            UPLOAD,
        ),
        request=UploadCreateInput,
        responses={201: UploadOutput, **error_responses(400, 401, 403, 413)},
    )
    def post(self, request):
        try:
            data = request.data
        except StopUpload:
            data = {}
        if getattr(request, "upload_too_large", False):
            raise _too_large()
        form = UploadCreateInput(data=data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        file = values["file"]
        upload = services.upload_create(
            actor=request.user,
            file=file,
            original_name=file.name,
            dataset_name=values["dataset_name"],
            fmt=values.get("format"),
            task_type=values["task_type"],
        )
        try:
            if "mapping" in values:
                upload = services.upload_set_mapping(upload=upload, actor=request.user, mapping=values["mapping"])
            if values["start"]:
                upload = services.upload_start_validation(upload=upload, actor=request.user)
        except DjangoValidationError as exc:
            # The client never learns this upload's id, so keep nothing half-made.
            services.upload_cancel(upload=upload, actor=request.user)
            raise _mapping_errors(exc) from None
        return Response(UploadOutput(upload).data, status=status.HTTP_201_CREATED)


class UploadDetailApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]

    @extend_schema(
        summary="One upload",
        description=describe(
            "Status (and in words), progress while rows are checked, counts of good and rejected rows, the "
            "error if it failed, the file's columns, the mapping and the version it made.",
            UPLOAD,
        ),
        responses={200: UploadOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, upload_id: int):
        return Response(UploadOutput(_upload_or_404(request, upload_id)).data)


class UploadMappingApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]

    @extend_schema(
        summary="Choose the column mapping",
        description=describe(
            "Say which column holds the input, the target (instruction/response data), the label "
            "(classification), the group, and which to keep as metadata. Only before checking starts.",
            UPLOAD,
        ),
        request=MappingInput,
        responses={200: UploadOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, upload_id: int):
        upload = _upload_or_404(request, upload_id)
        data = MappingInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            upload = services.upload_set_mapping(upload=upload, actor=request.user, **data.validated_data)
        except DjangoValidationError as exc:
            raise _mapping_errors(exc) from None
        return Response(UploadOutput(upload).data)


class PreviewInput(serializers.Serializer):
    rows = serializers.IntegerField(default=10, min_value=1, max_value=50, help_text="How many rows (1–50).")


class UploadPreviewApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]

    @extend_schema(
        summary="Preview the mapped rows",
        description=describe(
            "The first rows of the file with the current mapping applied, and for each row the problem that "
            "would leave it out, if any.",
            UPLOAD,
        ),
        parameters=[PreviewInput],
        responses={200: PreviewOutput, **error_responses(400, 401, 403, 404, 410)},
    )
    def get(self, request, upload_id: int):
        upload = _upload_or_404(request, upload_id)
        params = PreviewInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        if upload.status == Upload.Status.CANCELLED or not upload.file or not Path(upload.file.path).exists():
            raise UploadGone("This upload was cancelled and its file deleted; upload the file again.")
        try:
            rows = selectors.upload_preview(upload, upload.mapping, rows=params.validated_data["rows"])
        except formats.FileRejected as exc:
            raise exceptions.ValidationError({"file": [str(exc)]}) from None
        return Response(PreviewOutput({"columns": upload.columns, "mapping": upload.mapping, "rows": rows}).data)


class UploadValidateApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]

    @extend_schema(
        summary="Check the rows",
        description=describe(
            "Start checking every row in the background with the current mapping; poll the upload for "
            "progress. Refused while another file is being imported into the same dataset.",
            UPLOAD,
        ),
        request=None,
        responses={202: UploadOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, upload_id: int):
        upload = _upload_or_404(request, upload_id)
        try:
            upload = services.upload_start_validation(upload=upload, actor=request.user)
        except DjangoValidationError as exc:
            raise _mapping_errors(exc) from None
        return Response(UploadOutput(upload).data, status=status.HTTP_202_ACCEPTED)


class UploadImportApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]

    @extend_schema(
        summary="Import the good rows",
        description=describe(
            "Keep the good rows of a checked upload: its staged version becomes a ready version.", UPLOAD
        ),
        request=None,
        responses={201: VersionOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, upload_id: int):
        upload = _upload_or_404(request, upload_id)
        version = services.upload_commit(upload=upload, actor=request.user)
        return Response(VersionOutput(version).data, status=status.HTTP_201_CREATED)


class UploadCancelApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]

    @extend_schema(
        summary="Cancel an upload",
        description=describe(
            "Cancel an upload before it is imported; its file and any staged rows are removed. While rows are "
            "being checked the answer is 202: the check stops at its next step, poll the upload.",
            UPLOAD,
        ),
        request=None,
        responses={200: UploadOutput, 202: UploadOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, upload_id: int):
        upload = services.upload_cancel(upload=_upload_or_404(request, upload_id), actor=request.user)
        pending = upload.status == Upload.Status.VALIDATING
        return Response(UploadOutput(upload).data, status=status.HTTP_202_ACCEPTED if pending else status.HTTP_200_OK)


@extend_schema_view(
    get=extend_schema(
        summary="Rejected rows of an upload",
        description=describe("Why each rejected row was left out, in line order.", UPLOAD),
        responses={200: ProblemOutput(many=True), **error_responses(401, 403, 404)},
    )
)
class UploadProblemListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(UPLOAD)]
    serializer_class = ProblemOutput
    pagination_class = ProblemCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return UploadProblem.objects.none()
        return _upload_or_404(self.request, self.kwargs["upload_id"]).problems.all()


class UploadReportApi(APIView):
    permission_classes = [HasPerm.of(UPLOAD)]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonErrorsNegotiation

    @extend_schema(
        summary="Download the rejected rows",
        description=describe(
            "A CSV file with the line, field, reason and message of every rejected row, to fix the file.", UPLOAD
        ),
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="line, field, reason, message, excerpt"),
            **error_responses(401, 403, 404),
        },
    )
    def get(self, request, upload_id: int):
        upload = _upload_or_404(request, upload_id)
        stem = slugify(Path(upload.original_name).stem) or "upload"
        return _download(
            selectors.upload_report_csv(upload),
            filename=f"{stem}-rejected-rows.csv",
            content_type="text/csv; charset=utf-8",
        )
