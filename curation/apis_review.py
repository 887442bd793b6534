"""REST API for privacy review: start detection, follow it, decide findings, approve, read pseudonyms.

Every endpoint checks one Django permission (accounts.roles) and names it in its OpenAPI description.
Findings carry the text of their rows, so listing them needs the reviewer's permission, like deciding.
Writes go through curation.services.redaction; its ValidationErrors become 400 JSON answers, except a
decision made on a stale ``revision``, which is 409 Conflict with the service's message.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import REVIEW_REDACTION, VIEW_PSEUDONYMS, VIEW_REDACTION
from curation import pii, selectors, services
from curation.apis import VersionOutput, version_or_404
from curation.forms_review import ENTITY_CHOICES, entity_label
from curation.models import DatasetVersion, Example, Finding, RedactionRun
from projectsite.api import choice_error, describe, error_responses
from projectsite.pagination import CursorPagination
from projectsite.permissions import HasPerm


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


# --- lookups: permission first (403), then the object (404) -----------------------------------


def _run_or_404(run_id: int) -> RedactionRun:
    try:
        return selectors.redaction_run_get(run_id)
    except RedactionRun.DoesNotExist:
        raise exceptions.NotFound(f"There is no personal-data review #{run_id}.") from None


def _finding_or_404(finding_id: int) -> Finding:
    finding = (
        Finding.objects.select_related("run__version__dataset", "example", "decided_by")
        .filter(pk=finding_id, run__version__in=DatasetVersion.objects.ready())
        .first()
    )
    if finding is None:
        raise exceptions.NotFound(f"There is no finding #{finding_id}.")
    return finding


class FindingCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100


# --- output serializers ----------------------------------------------------------------------


class RunProgressOutput(serializers.Serializer):
    fraction = serializers.FloatField(help_text="0 to 1.")
    eta_seconds = serializers.FloatField(allow_null=True, help_text="Estimated seconds left while detecting.")
    rows_done = serializers.IntegerField(help_text="Rows read so far.")
    rows_total = serializers.IntegerField(help_text="Rows in the version.")


class RunCountsOutput(serializers.Serializer):
    findings = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Not reviewed yet; approval needs 0.")
    accepted = serializers.IntegerField(help_text="Will be redacted (replaced once approved).")
    rejected = serializers.IntegerField(help_text="Kept as is: not personal data.")


class RedactionRunOutput(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", help_text="The status in words.")
    progress = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    result_version = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="The redacted, approved version, once approved."
    )

    class Meta:
        model = RedactionRun
        fields = [
            "id",
            "version",
            "status",
            "status_label",
            "progress",
            "counts",
            "config",
            "error",
            "result_version",
            "created_by",
            "approved_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    @extend_schema_field(RunProgressOutput)
    def get_progress(self, run: RedactionRun) -> dict:
        eta = None
        if run.status == RedactionRun.Status.RUNNING and run.started_at and 0.01 <= run.progress < 1:
            elapsed = (timezone.now() - run.started_at).total_seconds()
            eta = elapsed * (1 - run.progress) / run.progress
        return {
            "fraction": run.progress,
            "eta_seconds": eta,
            "rows_done": run.processed,
            "rows_total": run.version.row_count,
        }

    @extend_schema_field(RunCountsOutput)
    def get_counts(self, run: RedactionRun) -> dict:
        totals = selectors.redaction_summary(run)["totals"]
        return {
            "findings": totals["total"],
            "pending": totals["pending"],
            "accepted": totals["accepted"],
            "rejected": totals["rejected"],
        }


class FindingOutput(serializers.ModelSerializer):
    row_index = serializers.IntegerField(source="example.row_index", help_text="The row's number in its version.")
    text = serializers.SerializerMethodField(help_text="The span's text (personal data).")
    entity_label = serializers.SerializerMethodField(help_text="The kind in words.")
    # Plain text here: the decision's enum is described once, on the PATCH input.
    status = serializers.CharField(help_text="pending (not reviewed), accepted (will be redacted) or rejected (kept).")
    status_label = serializers.CharField(source="get_status_display")
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Finding
        fields = [
            "id",
            "run",
            "example",
            "row_index",
            "field",
            "start",
            "end",
            "text",
            "entity_type",
            "entity_label",
            "score",
            "recognizer",
            "status",
            "status_label",
            "revision",
            "decided_by",
            "decided_at",
        ]

    def get_text(self, finding: Finding) -> str:
        text = services.field_text(finding.example, finding.field) or ""
        return text[finding.start : finding.end]

    def get_entity_label(self, finding: Finding) -> str:
        return entity_label(finding.entity_type)


class RedactedVersionOutput(VersionOutput):
    """The approved version a review makes (VersionOutput tells its privacy state)."""


class TypeCountOutput(serializers.Serializer):
    entity_type = serializers.CharField()
    entity_label = serializers.CharField()
    total = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    pending = serializers.IntegerField()
    added = serializers.IntegerField(help_text="Spans reviewers added by hand.")
    acceptance_rate = serializers.FloatField(
        allow_null=True, help_text="Accepted ÷ decided, 0 to 1; null while none is decided."
    )


class ReviewerCountOutput(serializers.Serializer):
    username = serializers.CharField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    added = serializers.IntegerField()


class TotalsOutput(serializers.Serializer):
    total = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    pending = serializers.IntegerField()
    added = serializers.IntegerField()


class SummaryOutput(serializers.Serializer):
    run = RedactionRunOutput()
    by_type = TypeCountOutput(many=True)
    reviewers = ReviewerCountOutput(many=True, help_text="Decisions (accepted or rejected) per reviewer.")
    totals = TotalsOutput()


class BulkDecideOutput(serializers.Serializer):
    changed = serializers.IntegerField(help_text="How many findings changed.")
    pending = serializers.IntegerField(help_text="Findings still not reviewed in this run.")


class PseudonymOutput(serializers.Serializer):
    original = serializers.CharField()
    surrogate = serializers.CharField(help_text="The made-up value in the approved version.")


class PseudonymMapOutput(serializers.Serializer):
    run = serializers.IntegerField()
    entries = PseudonymOutput(many=True)


# --- input serializers -----------------------------------------------------------------------

ENTITY_FIELD = {"choices": ENTITY_CHOICES, "error_messages": choice_error("entity type", ENTITY_CHOICES)}
OPERATOR_CHOICES = [(op, op) for op in pii.OPERATORS]


class RedactionStartInput(serializers.Serializer):
    profile = serializers.ChoiceField(
        choices=list(pii.PROFILES),
        required=False,
        error_messages=choice_error("profile", [(name, name) for name in pii.PROFILES]),
        help_text="What to look for: healthcare (HIPAA Safe Harbor identifiers, the default) or gdpr (adds EU "
        "national IDs). Ignored when entities is given.",
    )
    # Kinds are checked by the service (one message naming every unknown kind); only fields named
    # entity_type carry the enum, so the schema has one EntityTypeEnum.
    entities = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        help_text="Kinds of personal data to look for (default: the healthcare profile, "
        f"{', '.join(pii.DEFAULT_ENTITIES)}).",
    )
    thresholds = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=1),
        required=False,
        help_text='Lowest score per kind, 0 to 1, e.g. {"PERSON": 0.7}.',
    )
    operators = serializers.DictField(
        child=serializers.ChoiceField(
            choices=OPERATOR_CHOICES, error_messages=choice_error("operator", OPERATOR_CHOICES)
        ),
        required=False,
        help_text="Replacement per kind: tag (<PERSON>), mask (****), hash (keyed code) or pseudonym (realistic "
        'made-up value), e.g. {"US_SSN": "mask"}.',
    )
    default_operator = serializers.ChoiceField(
        choices=OPERATOR_CHOICES,
        default="pseudonym",
        error_messages=choice_error("operator", OPERATOR_CHOICES),
        help_text="Replacement for kinds not named in operators.",
    )
    allow_list = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, help_text="Words never to flag."
    )
    deny_list = serializers.DictField(
        child=serializers.CharField(max_length=40),
        required=False,
        help_text='Words always to flag, with their kind, e.g. {"Dr. Okafor": "PERSON"}.',
    )


class FindingFilterInput(serializers.Serializer):
    entity_type = serializers.ChoiceField(required=False, allow_blank=True, **ENTITY_FIELD)
    status = serializers.ChoiceField(
        choices=Finding.Status.choices,
        required=False,
        allow_blank=True,
        error_messages=choice_error("status", Finding.Status.choices),
    )
    min_score = serializers.FloatField(required=False, min_value=0, max_value=1)
    max_score = serializers.FloatField(required=False, min_value=0, max_value=1)
    example = serializers.IntegerField(required=False, min_value=1, help_text="Only the findings of this row (id).")


class FindingDecideInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Finding.Status.choices,
        error_messages=choice_error("status", Finding.Status.choices),
        help_text="accepted (redact it), rejected (keep it as is) or pending (undecide).",
    )
    revision = serializers.IntegerField(
        min_value=0, help_text="The finding's revision as you read it; if it changed since, the answer is 409."
    )
    entity_type = serializers.ChoiceField(required=False, help_text="Change the kind at the same time.", **ENTITY_FIELD)


class FindingAddInput(serializers.Serializer):
    example = serializers.IntegerField(min_value=1, help_text="The row (example id).")
    field = serializers.CharField(max_length=120, help_text="input, target or metadata.<key>.")
    start = serializers.IntegerField(min_value=0, help_text="First character, counted in Unicode code points from 0.")
    end = serializers.IntegerField(min_value=1, help_text="First character after the span.")
    entity_type = serializers.ChoiceField(**ENTITY_FIELD)


class BulkDecideInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[(Finding.Status.ACCEPTED, "accepted"), (Finding.Status.REJECTED, "rejected")],
        error_messages={"invalid_choice": "Choose status accepted or rejected."},
    )
    entity_type = serializers.ChoiceField(
        required=False, allow_blank=True, default="", help_text="Only this kind (default: every kind).", **ENTITY_FIELD
    )
    min_score = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)
    max_score = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)


# --- detection -------------------------------------------------------------------------------


class RedactionRunStartApi(APIView):
    permission_classes = [HasPerm.of(REVIEW_REDACTION)]

    @extend_schema(
        summary="Look for personal data",
        description=describe(
            "Start detecting personal and health data in every text field of a version, in the background. "
            "Poll the run until its status is `review`, decide every finding, then approve. Refused while "
            "another review of the same version is open, and for a version that is already approved.",
            REVIEW_REDACTION,
        ),
        request=RedactionStartInput,
        responses={202: RedactionRunOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, version_id: int):
        version = version_or_404(version_id)
        data = RedactionStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.redaction_run_start(version=version, actor=request.user, config=data.validated_data)
        return Response(RedactionRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class RedactionRunDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_REDACTION)]

    @extend_schema(
        summary="One personal-data review",
        description=describe(
            "Status (and in words), progress while detecting (fraction, rows done, estimated time left), counts "
            "of findings by decision, the settings, the error if it failed and the approved version.",
            VIEW_REDACTION,
        ),
        responses={200: RedactionRunOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        return Response(RedactionRunOutput(_run_or_404(run_id)).data)


class RedactionSummaryApi(APIView):
    permission_classes = [HasPerm.of(VIEW_REDACTION)]

    @extend_schema(
        summary="Summary of a review",
        description=describe(
            "Findings by kind with how many were accepted, rejected or are pending and the acceptance rate, and "
            "the decisions of each reviewer. No text of rows.",
            VIEW_REDACTION,
        ),
        responses={200: SummaryOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        run = _run_or_404(run_id)
        summary = selectors.redaction_summary(run)
        for row in summary["by_type"]:
            row["entity_label"] = entity_label(row["entity_type"])
        return Response(SummaryOutput({"run": run, **summary}).data)


# --- findings --------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="Findings of a review",
        description=describe(
            "The findings with their text, by id, filtered by kind, decision, score range or row. They show "
            "personal data, so only reviewers may list them.",
            REVIEW_REDACTION,
        ),
        parameters=[FindingFilterInput],
        responses={200: FindingOutput(many=True), **error_responses(400, 401, 403, 404)},
    ),
    post=extend_schema(
        summary="Add a missed span",
        description=describe(
            "Mark personal data the detector missed: a row, one of its text fields and the span's characters "
            "(Unicode code points, end excluded). It is accepted at once. Refused when the span is outside the "
            "text or holds only spaces, and once the review is approved.",
            REVIEW_REDACTION,
        ),
        request=FindingAddInput,
        responses={201: FindingOutput, **error_responses(400, 401, 403, 404)},
    ),
)
class FindingListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(REVIEW_REDACTION)]
    serializer_class = FindingOutput
    pagination_class = FindingCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Finding.objects.none()
        run = _run_or_404(self.kwargs["run_id"])
        params = FindingFilterInput(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        filters = {key: value for key, value in params.validated_data.items() if value not in ("", None)}
        return selectors.findings_filter(run, **filters).select_related("example", "decided_by")

    def post(self, request, run_id: int):
        run = _run_or_404(run_id)
        data = FindingAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        example = Example.objects.filter(pk=values.pop("example"), version=run.version).first()
        if example is None:
            raise exceptions.ValidationError({"example": ["This row is not part of the version under review."]})
        finding = services.finding_add(run=run, example=example, actor=request.user, **values)
        return Response(FindingOutput(finding).data, status=status.HTTP_201_CREATED)


class FindingDetailApi(APIView):
    permission_classes = [HasPerm.of(REVIEW_REDACTION)]

    @extend_schema(
        summary="Decide one finding",
        description=describe(
            "Redact (`accepted`), keep as is (`rejected`) or undecide one finding, optionally changing its kind. "
            "Send the `revision` you read: if another reviewer decided since, nothing changes and the answer is "
            "409 with who changed it; read the finding again and decide on what is there now.",
            REVIEW_REDACTION,
        ),
        request=FindingDecideInput,
        responses={200: FindingOutput, **error_responses(400, 401, 403, 404, 409)},
    )
    def patch(self, request, finding_id: int):
        finding = _finding_or_404(finding_id)
        data = FindingDecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            finding = services.finding_decide(
                finding=finding,
                actor=request.user,
                status=values["status"],
                revision=values["revision"],
                entity_type=values.get("entity_type"),
            )
        except DjangoValidationError as exc:
            current = Finding.objects.filter(pk=finding.pk).values_list("revision", flat=True).first()
            if current != values["revision"] and not hasattr(exc, "error_dict"):
                raise Conflict(" ".join(exc.messages)) from None
            raise
        except IntegrityError:
            # The same span is already a finding of the chosen kind (finding_unique_span).
            raise exceptions.ValidationError(
                {"entity_type": [f"This span is already a finding of kind {values['entity_type']}; decide that one."]}
            ) from None
        return Response(FindingOutput(finding).data)


class RedactionBulkDecideApi(APIView):
    permission_classes = [HasPerm.of(REVIEW_REDACTION)]

    @extend_schema(
        summary="Decide many findings",
        description=describe(
            "Redact (`accepted`) or keep as is (`rejected`) every finding not yet reviewed of one kind (or every "
            "kind) within a score range (both ends included). Findings already decided do not change.",
            REVIEW_REDACTION,
        ),
        request=BulkDecideInput,
        responses={200: BulkDecideOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, run_id: int):
        run = _run_or_404(run_id)
        data = BulkDecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        changed = services.findings_bulk_decide(run=run, actor=request.user, **data.validated_data)
        pending = run.findings.pending().count()
        return Response(BulkDecideOutput({"changed": changed, "pending": pending}).data)


class RedactionRunApproveApi(APIView):
    permission_classes = [HasPerm.of(REVIEW_REDACTION)]

    @extend_schema(
        summary="Approve a review",
        description=describe(
            "Make a new version in which every accepted finding is replaced; it is marked approved and may be "
            "exported and used for training. Refused while detection runs and while any finding is pending.",
            REVIEW_REDACTION,
        ),
        request=None,
        responses={201: RedactedVersionOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, run_id: int):
        version = services.redaction_run_approve(run=_run_or_404(run_id), actor=request.user)
        return Response(RedactedVersionOutput(version).data, status=status.HTTP_201_CREATED)


class PseudonymMapApi(APIView):
    permission_classes = [HasPerm.of(VIEW_PSEUDONYMS)]

    @extend_schema(
        summary="Original values behind pseudonyms",
        description=describe(
            "The map from each original value to the made-up value that replaced it in the approved version. "
            "Every read is written to the audit log. Empty until the review is approved.",
            VIEW_PSEUDONYMS,
        ),
        responses={200: PseudonymMapOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        run = _run_or_404(run_id)
        mapping = services.pseudonyms_read(run=run, actor=request.user)
        entries = [{"original": key, "surrogate": value} for key, value in sorted(mapping.items())]
        return Response(PseudonymMapOutput({"run": run.pk, "entries": entries}).data)
