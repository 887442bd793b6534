"""REST API for evaluation: runs and re-scoring, KPIs and their import, the dashboard, comparison, use cases with
their promotion gate, promotion and rollback, external endpoints.

Every endpoint checks one Django permission (accounts.roles) and names it in its OpenAPI description.
Managers hold the read permissions only.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.files.uploadhandler import StopUpload
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, generics, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import (
    IMPORT_KPIS,
    MANAGE_ENDPOINTS,
    MANAGE_USE_CASES,
    PROMOTE,
    RUN_EVALUATIONS,
    VIEW_DATASETS,
    VIEW_EVALUATIONS,
    VIEW_EXAMPLES,
    VIEW_KPIS,
    VIEW_USE_CASES,
)
from curation.apis import version_ready_or_invalid
from curation.models import Dataset, DatasetVersion, Split
from evaluation import metrics as metric_lib
from evaluation import selectors, services
from evaluation.models import (
    EvalRun,
    ExternalEndpoint,
    Kpi,
    KpiImportRun,
    KpiObservation,
    Pilot,
    Prediction,
    UseCase,
)
from projectsite.api import ErrorOutput, RequiredBooleanField, describe, error_responses
from projectsite.pagination import CursorPagination, NewestFirst
from projectsite.permissions import HasPerm, HasPermPerMethod
from training.models import BaseModel, TrainedModel


def _run_or_404(run_id: int) -> EvalRun:
    try:
        return selectors.run_get(run_id)
    except EvalRun.DoesNotExist:
        raise exceptions.NotFound(f"There is no evaluation #{run_id}.") from None


def _use_case_or_404(slug: str) -> UseCase:
    use_case = selectors.use_case_list().filter(slug=slug).first()
    if use_case is None:
        raise exceptions.NotFound(f"There is no use case “{slug}”.")
    return use_case


# --- serializers -----------------------------------------------------------------------------


class EvalRunOutput(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display")
    model = serializers.CharField(source="subject_name", help_text="The evaluated model's name.")
    empty_outputs = serializers.IntegerField(help_text="Rows whose answer has no text (counted when scored).")
    mostly_empty = serializers.BooleanField(
        source="is_mostly_empty",
        help_text=f"True when more than {EvalRun.EMPTY_OUTPUT_LIMIT:.0%} of the answers have no text: the scores are "
        "not a result, and the promotion gate refuses the model.",
    )
    empty_outputs_text = serializers.CharField(
        help_text='In words, e.g. "The model produced no text for 100% of rows (51 of 51)."; blank when none is empty.'
    )

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "kind",
            "model",
            "dataset_version",
            "split",
            "task",
            "labels",
            "status",
            "status_label",
            "progress",
            "total",
            "metrics",
            "per_group",
            "fairness",
            "fairness_threshold",
            "judge_agreement",
            "empty_outputs",
            "mostly_empty",
            "empty_outputs_text",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class EvalRunInput(serializers.Serializer):
    model = serializers.CharField(help_text="Name of a trained model, a base model or an external endpoint.")
    dataset_version = serializers.IntegerField(help_text="An approved version (its test split is used).")
    split = serializers.ChoiceField(choices=Split.choices, default=Split.TEST)
    judge = serializers.CharField(
        required=False, allow_blank=True, help_text="An endpoint's name, to rate answers 1–5."
    )
    rubric = serializers.CharField(required=False, allow_blank=True, default="")
    fairness_threshold = serializers.FloatField(default=0.1, min_value=0, max_value=1)

    def resolve(self) -> dict:
        values = self.validated_data
        version = version_ready_or_invalid(values["dataset_version"], field="dataset_version")
        judge = None
        if values.get("judge"):
            judge = ExternalEndpoint.objects.filter(name=values["judge"]).first()
            if judge is None:
                raise serializers.ValidationError({"judge": f"There is no endpoint called “{values['judge']}”."})
        return {
            "subject": services.subject_resolve(values["model"]),
            "version": version,
            "split": values["split"],
            "judge": judge,
            "rubric": values.get("rubric", ""),
            "fairness_threshold": values["fairness_threshold"],
        }


class PredictionOutput(serializers.ModelSerializer):
    row_index = serializers.IntegerField(source="example.row_index")
    input = serializers.CharField(source="example.input")
    reference = serializers.CharField(
        help_text="What the answer was scored against: the expected answer (instruction/response) or the label "
        "(classification)."
    )
    group = serializers.CharField(source="example.group")

    class Meta:
        model = Prediction
        fields = [
            "id",
            "row_index",
            "input",
            "reference",
            "group",
            "output",
            "judge_score",
            "judge_reason",
            "human_score",
        ]


class RescoreInput(serializers.Serializer):
    metrics = serializers.ListField(
        child=serializers.CharField(), min_length=1, help_text=f"Any of: {', '.join(metric_lib.METRICS)}."
    )


class KpiOutput(serializers.ModelSerializer):
    class Meta:
        model = Kpi
        fields = ["id", "slug", "name", "unit", "higher_is_better", "kind", "description"]


class KpiInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=60)
    name = serializers.CharField(max_length=120)
    unit = serializers.CharField(max_length=30)
    higher_is_better = RequiredBooleanField()
    kind = serializers.ChoiceField(choices=Kpi.Kind.choices, default=Kpi.Kind.MEAN)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class KpiObservationOutput(serializers.ModelSerializer):
    kpi = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = KpiObservation
        fields = [
            "id",
            "kpi",
            "model_name",
            "period_start",
            "period_end",
            "segment",
            "value",
            "sample_size",
            "std",
            "source",
        ]


class KpiImportInput(serializers.Serializer):
    csv = serializers.CharField(
        help_text="CSV text with the columns kpi, model, period_start, period_end, segment, value, sample_size "
        f"(optional: std, unit). All rows are imported or none, in the request: at most "
        f"{services.KPI_TEXT_MAX_LINES:,} lines. Send larger files as `file` (multipart).",
        trim_whitespace=False,
    )

    def validate_csv(self, value: str) -> str:
        if value.count("\n") > services.KPI_TEXT_MAX_LINES:
            raise serializers.ValidationError(
                f"At most {services.KPI_TEXT_MAX_LINES:,} lines can be sent as text. Send the file as multipart "
                "form data (field `file`): the worker imports it and you follow its progress."
            )
        return value


class KpiImportFileInput(serializers.Serializer):
    file = serializers.FileField(
        help_text=f"A CSV file (UTF-8) with the same columns, up to {services.KPI_FILE_MAX_MB} MB. The worker checks "
        "every line, then imports all of them or none: the answer is 202 with the run to follow."
    )


class KpiProblemOutput(serializers.Serializer):
    line = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class KpiImportOutput(serializers.Serializer):
    imported = serializers.IntegerField()
    problems = KpiProblemOutput(many=True)
    error = serializers.CharField(required=False, help_text="Only when nothing was imported: how many problems.")


class KpiImportErrorOutput(ErrorOutput):
    """A 400: the request itself was wrong (`fields`), or rows of the CSV were (`problems`; nothing imported)."""

    imported = serializers.IntegerField(required=False, help_text="0 when the rows had problems.")
    problems = KpiProblemOutput(many=True, required=False)


class KpiImportRunOutput(serializers.ModelSerializer):
    status = serializers.CharField(help_text="queued, checking, writing, done or failed.")
    status_label = serializers.CharField(source="get_status_display")
    progress = serializers.SerializerMethodField(help_text="From 0 to 1.")
    file_name = serializers.CharField(source="original_name")
    rows_total = serializers.IntegerField(help_text="Lines of figures in the file (an estimate until checked).")
    rows_checked = serializers.IntegerField()
    imported = serializers.IntegerField(help_text="Figures written: all lines when done, 0 otherwise.")
    problem_count = serializers.IntegerField(help_text="Problems found; nothing is imported when there is any.")
    problems = KpiProblemOutput(
        many=True, help_text=f"The first {services.KPI_PROBLEMS_KEPT:,} problems, by line in the file."
    )
    error = serializers.CharField(help_text="Why nothing was imported (failed only).")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    url = serializers.SerializerMethodField(help_text="Read this address until `status` is done or failed.")

    class Meta:
        model = KpiImportRun
        fields = [
            "id",
            "status",
            "status_label",
            "progress",
            "file_name",
            "size",
            "rows_total",
            "rows_checked",
            "imported",
            "problem_count",
            "problems",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "url",
        ]

    def get_progress(self, run: KpiImportRun) -> float:
        return selectors.kpi_import_run_progress(run)["fraction"]

    def get_url(self, run: KpiImportRun) -> str:
        return self.context["request"].build_absolute_uri(reverse("api-kpi-import-run", args=[run.pk]))


class UseCaseOutput(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    production = serializers.SlugRelatedField(slug_field="name", read_only=True)
    staging = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = UseCase
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "task",
            "dataset",
            "eval_version",
            "gate",
            "production",
            "staging",
            "retrain_enabled",
            "retrain_every_hours",
            "last_retrain_at",
        ]


class GateRuleInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["metric", "kpi"], default="metric")
    name = serializers.CharField()
    rule = serializers.ChoiceField(choices=["improve", "no_regress"], default="no_regress")
    margin = serializers.FloatField(default=0.0, min_value=0)


class UseCaseInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=60)
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    dataset = serializers.CharField(help_text="The dataset's name.")
    eval_version = serializers.IntegerField(required=False, allow_null=True, default=None)
    gate = GateRuleInput(many=True)
    retrain_enabled = serializers.BooleanField(default=False)
    retrain_every_hours = serializers.IntegerField(default=168, min_value=1)
    retrain_base_model = serializers.CharField(required=False, allow_blank=True, default="")


class GateCheckOutput(serializers.Serializer):
    name = serializers.CharField(help_text="The metric or KPI of the rule (answers: the check on empty answers).")
    kind = serializers.CharField(help_text="metric, kpi, answers (empty answers) or gate (no rules).")
    rule = serializers.CharField()
    label = serializers.CharField(help_text="The rule's subject in plain words, e.g. ROUGE-L.")
    candidate = serializers.FloatField(required=False)
    baseline = serializers.FloatField(required=False)
    delta = serializers.FloatField(required=False)
    passed = serializers.BooleanField()
    reason = serializers.CharField()


class GateOutput(serializers.Serializer):
    passed = serializers.BooleanField()
    baseline = serializers.CharField(help_text="The production model, or the base model when there is none.")
    candidate = serializers.CharField()
    checks = GateCheckOutput(many=True)


class PromoteInput(serializers.Serializer):
    model = serializers.CharField(help_text="The trained model's name.")
    stage = serializers.ChoiceField(choices=["staging", "production"], default="production")
    note = serializers.CharField(required=False, allow_blank=True, default="")


class StageChangeOutput(serializers.Serializer):
    model = serializers.CharField(source="trained_model.name")
    from_stage = serializers.CharField()
    to_stage = serializers.CharField()
    replaced = serializers.CharField(source="replaced.name", allow_null=True, default=None)
    gate_result = serializers.JSONField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


class EndpointOutput(serializers.ModelSerializer):
    has_api_key = serializers.SerializerMethodField()
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, default=None, help_text="Who may change it, besides admins."
    )

    class Meta:
        model = ExternalEndpoint
        fields = [
            "id",
            "name",
            "base_url",
            "model",
            "timeout_seconds",
            "has_api_key",
            "api_key_hint",
            "created_by",
            "created_at",
        ]

    def get_has_api_key(self, endpoint: ExternalEndpoint) -> bool:
        return bool(endpoint.api_key_encrypted)


class EndpointInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    base_url = serializers.URLField(max_length=300)
    model = serializers.CharField(max_length=200)
    api_key = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        write_only=True,
        help_text="Empty keeps the stored key, except when base_url changes: then the key must be entered again.",
    )
    timeout_seconds = serializers.FloatField(default=30.0, min_value=0.5, max_value=600)


# --- endpoints -------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="List evaluations",
        description=describe("Newest first; `status` and `model` filter.", VIEW_EVALUATIONS),
        responses={200: EvalRunOutput(many=True), **error_responses(401, 403)},
    )
)
class EvalRunListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_EVALUATIONS, POST=RUN_EVALUATIONS)]
    serializer_class = EvalRunOutput
    pagination_class = NewestFirst

    def get_queryset(self):
        params = self.request.query_params
        return selectors.run_list(status=params.get("status", ""), subject=params.get("model", ""))

    @extend_schema(
        summary="Evaluate a model",
        description=describe(
            "Run a trained adapter, a base model alone or an external endpoint on the test split of an approved "
            "version; every prediction is stored, then scored overall and per group (fairness). An unapproved "
            "version is refused.",
            RUN_EVALUATIONS,
        ),
        request=EvalRunInput,
        responses={201: EvalRunOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = EvalRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.eval_run_create(actor=request.user, via="api", **data.resolve())
        return Response(EvalRunOutput(run).data, status=status.HTTP_201_CREATED)


class EvalRunDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_EVALUATIONS)]

    @extend_schema(
        summary="An evaluation and its scores",
        description=describe(
            "Metrics, per-group metrics, fairness gaps (flagged past the threshold).", VIEW_EVALUATIONS
        ),
        responses={200: EvalRunOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        return Response(EvalRunOutput(_run_or_404(run_id)).data)


@extend_schema_view(
    get=extend_schema(
        summary="Predictions of an evaluation",
        description=describe("Each input, its reference and the model's output (row text).", VIEW_EXAMPLES),
        responses={200: PredictionOutput(many=True), **error_responses(401, 403, 404)},
    )
)
class PredictionListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_EXAMPLES)]
    serializer_class = PredictionOutput

    class pagination_class(CursorPagination):  # noqa: N801 (DRF attribute)
        ordering = "id"
        page_size = 100

    def get_queryset(self):
        return _run_or_404(self.kwargs["run_id"]).predictions.select_related("example")


class EvalRunRescoreApi(APIView):
    permission_classes = [HasPerm.of(RUN_EVALUATIONS)]

    @extend_schema(
        summary="Score saved predictions again",
        description=describe("Add metrics from the stored predictions, without generating again.", RUN_EVALUATIONS),
        request=RescoreInput,
        responses={200: EvalRunOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, run_id: int):
        data = RescoreInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.eval_run_rescore(
            run=_run_or_404(run_id), metric_names=data.validated_data["metrics"], actor=request.user
        )
        return Response(EvalRunOutput(run).data)


class KpiListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_KPIS, POST=IMPORT_KPIS)]
    serializer_class = KpiOutput
    queryset = Kpi.objects.all()

    @extend_schema(
        summary="List KPIs",
        description=describe("Business KPI definitions.", VIEW_KPIS),
        responses={200: KpiOutput(many=True), **error_responses(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Define a KPI",
        description=describe("Create or update a KPI (name, unit, whether higher is better).", IMPORT_KPIS),
        request=KpiInput,
        responses={201: KpiOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = KpiInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(KpiOutput(services.kpi_ensure(**data.validated_data)).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        summary="List KPI observations",
        description=describe("Filter by `kpi` (slug) and `model`.", VIEW_KPIS),
        responses={200: KpiObservationOutput(many=True), **error_responses(401, 403)},
    )
)
class KpiObservationListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_KPIS, POST=IMPORT_KPIS)]
    serializer_class = KpiObservationOutput

    class pagination_class(CursorPagination):  # noqa: N801 (DRF attribute)
        ordering = "id"
        page_size = 200

    def get_queryset(self):
        rows = KpiObservation.objects.select_related("kpi")
        if self.request.query_params.get("kpi"):
            rows = rows.filter(kpi__slug=self.request.query_params["kpi"])
        if self.request.query_params.get("model"):
            rows = rows.filter(model_name=self.request.query_params["model"])
        return rows

    parser_classes = [JSONParser, MultiPartParser]

    def handle_exception(self, exc):
        # The upload size handler stops reading the body; make that a 413 wherever it surfaced.
        if isinstance(exc, StopUpload) or getattr(self.request, "upload_too_large", False):
            exc = KpiFileTooLarge()
        return super().handle_exception(exc)

    @extend_schema(
        summary="Import KPI observations (CSV)",
        description=describe(
            "All rows or none: unknown KPIs or models, wrong units, sample sizes below 1, duplicate periods are "
            "reported by line and nothing is imported.\n\n"
            f"- A file (multipart form data, field `file`, up to {services.KPI_FILE_MAX_MB} MB) is imported by the "
            "worker: the answer is "
            "202 with the import run (`Location` and `url` give its address); read it until `status` is `done` "
            "(`imported` figures) or `failed` (`error`, and `problems` by line).\n"
            f"- CSV text as JSON (`csv`, at most {services.KPI_TEXT_MAX_LINES:,} lines) is imported in the request: "
            "201 with the count, or 400 with `problems`.",
            IMPORT_KPIS,
        ),
        request={"application/json": KpiImportInput, "multipart/form-data": KpiImportFileInput},
        responses={
            201: KpiImportOutput,
            202: KpiImportRunOutput,
            400: KpiImportErrorOutput,
            **error_responses(401, 403, 413),
        },
    )
    def post(self, request):
        if request.content_type.startswith("multipart/"):
            upload = KpiImportFileInput(data=request.data)
            upload.is_valid(raise_exception=True)
            run = services.kpi_import_run_start(file=upload.validated_data["file"], actor=request.user, source="api")
            body = KpiImportRunOutput(run, context={"request": request}).data
            return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
        data = KpiImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.kpi_import_csv(text=data.validated_data["csv"], actor=request.user, source="api")
        code = status.HTTP_201_CREATED if not result["problems"] else status.HTTP_400_BAD_REQUEST
        if result["problems"]:
            result = {**result, "error": f"{len(result['problems'])} problem(s); nothing was imported."}
        return Response(result, status=code)


class KpiFileTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"
    default_detail = (
        f"The file is larger than the upload limit. Split it into files of at most {services.KPI_FILE_MAX_MB} MB."
    )


class KpiImportRunApi(APIView):
    permission_classes = [HasPerm.of(IMPORT_KPIS)]

    @extend_schema(
        summary="A KPI import run and its progress",
        description=describe(
            "Where a KPI file import stands: progress while the worker checks and saves, then the number of figures "
            "imported, or why nothing was (`error`, and `problems` by line).",
            IMPORT_KPIS,
        ),
        responses={200: KpiImportRunOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        run = KpiImportRun.objects.select_related("created_by").filter(pk=run_id).first()
        if run is None:
            raise exceptions.NotFound(f"There is no KPI import #{run_id}.")
        return Response(KpiImportRunOutput(run, context={"request": request}).data)


class DashboardKpiOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    unit = serializers.CharField()
    higher_is_better = serializers.BooleanField()
    kind = serializers.CharField()


class DashboardPointOutput(serializers.Serializer):
    period = serializers.DateField(help_text="The first day of the period.")
    value = serializers.FloatField(help_text="The mean over the period, weighted by the counts.")
    n = serializers.IntegerField(help_text="Observations in the period.")


class DashboardSeriesOutput(serializers.Serializer):
    model = serializers.CharField()
    points = DashboardPointOutput(many=True)


class KpiComparisonOutput(serializers.Serializer):
    """One model against another; without a standard error on both sides there is no test (nulls)."""

    delta = serializers.FloatField()
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    significant = serializers.BooleanField()
    better = serializers.BooleanField()
    df = serializers.FloatField(allow_null=True)


class KpiIntervalOutput(serializers.Serializer):
    """A model's mean over the periods, weighted by the counts, with its 95% interval."""

    mean = serializers.FloatField()
    low = serializers.FloatField(allow_null=True, help_text="Null when the spread is unknown (a single period).")
    high = serializers.FloatField(allow_null=True)
    se = serializers.FloatField(allow_null=True, help_text="Standard error of the mean.")
    df = serializers.FloatField(allow_null=True, help_text="Degrees of freedom; null for the normal approximation.")
    n = serializers.IntegerField(help_text="Observations.")
    periods = serializers.IntegerField()
    method = serializers.ChoiceField(choices=["pooled", "binomial", "periods"])


class DashboardBarOutput(KpiIntervalOutput):
    model = serializers.CharField()
    comparison = KpiComparisonOutput(allow_null=True, help_text="Against the reference; null for the reference.")
    is_reference = serializers.BooleanField()


class KpiDashboardOutput(serializers.Serializer):
    """One KPI on the dashboard (KPIs without observations in the filters are left out)."""

    kpi = DashboardKpiOutput()
    reference = serializers.CharField(help_text="The model the others are compared against.")
    series = DashboardSeriesOutput(many=True)
    bars = DashboardBarOutput(many=True)


class KpiDashboardApi(APIView):
    permission_classes = [HasPerm.of(VIEW_KPIS)]

    @extend_schema(
        summary="KPI dashboard data",
        description=describe(
            "Per KPI: a series per model, each model's mean with a 95% interval, and its difference from the "
            "reference model (production by default) with significance. Filters: `start`, `end` (dates), `segment`, "
            "`reference` (a model name).",
            VIEW_KPIS,
        ),
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE),
            OpenApiParameter("end", OpenApiTypes.DATE),
            OpenApiParameter("segment", OpenApiTypes.STR),
            OpenApiParameter("reference", OpenApiTypes.STR),
        ],
        responses={200: KpiDashboardOutput(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request):
        filters = DashboardFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return Response(selectors.kpi_dashboard(**filters.validated_data))


class DashboardFilterInput(serializers.Serializer):
    start = serializers.DateField(required=False, allow_null=True, default=None)
    end = serializers.DateField(required=False, allow_null=True, default=None)
    segment = serializers.CharField(required=False, allow_blank=True, default="")
    reference = serializers.CharField(required=False, allow_blank=True, default="")


class ComparisonApi(APIView):
    permission_classes = [HasPerm.of(VIEW_EVALUATIONS)]

    @extend_schema(
        summary="Compare 2–4 models",
        description=describe(
            "`models=a,b[,c,d]`: metrics of each model's latest evaluation on the same version, fairness gaps and "
            "KPIs. Outputs side by side are in the web page and the CSV export.",
            VIEW_EVALUATIONS,
        ),
        parameters=[OpenApiParameter("models", OpenApiTypes.STR, required=True)],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 403)},
    )
    def get(self, request):
        names = [n.strip() for n in request.query_params.get("models", "").split(",") if n.strip()]
        if not 2 <= len(names) <= 4:
            raise exceptions.ValidationError({"models": "Name 2 to 4 models, separated by commas."})
        for name in names:
            services.subject_resolve(name)
        data = selectors.comparison(names)
        return Response(
            {
                "models": names,
                "runs": [run.pk if run else None for run in data["runs"]],
                "metrics": data["metrics"],
                "fairness": data["fairness"],
                "kpis": [
                    {"kpi": row["kpi"].slug, "unit": row["kpi"].unit, "values": row["values"]} for row in data["kpis"]
                ],
            }
        )


class UseCaseListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_USE_CASES, POST=MANAGE_USE_CASES)]
    serializer_class = UseCaseOutput

    def get_queryset(self):
        return selectors.use_case_list()

    @extend_schema(
        summary="List use cases",
        description=describe("Use cases with their gate and production model.", VIEW_USE_CASES),
        responses={200: UseCaseOutput(many=True), **error_responses(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create or update a use case",
        description=describe("Its dataset, evaluation version, gate rules and retraining schedule.", MANAGE_USE_CASES),
        request=UseCaseInput,
        responses={201: UseCaseOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = UseCaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        dataset = Dataset.objects.filter(name=values.pop("dataset")).first()
        if dataset is None:
            raise exceptions.ValidationError({"dataset": "There is no dataset with that name."})
        version_id = values.pop("eval_version")
        version = DatasetVersion.objects.filter(pk=version_id, dataset=dataset).first() if version_id else None
        base_name = values.pop("retrain_base_model")
        base = BaseModel.objects.filter(name=base_name).first() if base_name else None
        use_case = services.use_case_save(
            task=dataset.task_type,
            dataset=dataset,
            eval_version=version,
            retrain_base_model=base,
            actor=request.user,
            **values,
        )
        return Response(UseCaseOutput(use_case).data, status=status.HTTP_201_CREATED)


class GateApi(APIView):
    permission_classes = [HasPerm.of(VIEW_USE_CASES)]

    @extend_schema(
        summary="Check the promotion gate",
        description=describe(
            "`model=NAME`: every rule, the candidate's and the baseline's value, pass or why not.", VIEW_USE_CASES
        ),
        parameters=[OpenApiParameter("model", OpenApiTypes.STR, required=True)],
        responses={200: GateOutput, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request, slug: str):
        use_case = _use_case_or_404(slug)
        trained = TrainedModel.objects.filter(name=request.query_params.get("model", "")).first()
        if trained is None:
            raise exceptions.ValidationError({"model": "Name a trained model."})
        return Response(GateOutput(selectors.gate_check(use_case=use_case, candidate=trained)).data)


class PromoteApi(APIView):
    permission_classes = [HasPerm.of(PROMOTE)]

    @extend_schema(
        summary="Promote a model",
        description=describe("Only when the gate passes; otherwise 400 says which rules fail. Audited.", PROMOTE),
        request=PromoteInput,
        responses={200: StageChangeOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, slug: str):
        use_case = _use_case_or_404(slug)
        data = PromoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        trained = TrainedModel.objects.filter(name=data.validated_data["model"]).first()
        if trained is None:
            raise exceptions.ValidationError({"model": "There is no trained model with that name."})
        change = services.model_promote(
            use_case=use_case,
            trained=trained,
            to_stage=data.validated_data["stage"],
            actor=request.user,
            note=data.validated_data["note"],
        )
        return Response(StageChangeOutput(change).data)


class RollbackApi(APIView):
    permission_classes = [HasPerm.of(PROMOTE)]

    @extend_schema(
        summary="Roll back production",
        description=describe("Put back the production model that the current one replaced. Audited.", PROMOTE),
        request=None,
        responses={200: StageChangeOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, slug: str):
        change = services.model_rollback(use_case=_use_case_or_404(slug), actor=request.user)
        return Response(StageChangeOutput(change).data)


class EndpointListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_EVALUATIONS, POST=MANAGE_ENDPOINTS)]
    serializer_class = EndpointOutput
    queryset = ExternalEndpoint.objects.select_related("created_by")

    @extend_schema(
        summary="List external endpoints",
        description=describe("OpenAI-compatible endpoints (keys are never shown).", VIEW_EVALUATIONS),
        responses={200: EndpointOutput(many=True), **error_responses(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Add or update an external endpoint",
        description=describe(
            "The API key is stored encrypted and never shown. An existing name updates that endpoint: only the "
            "person who added it or an admin may (403 otherwise), and a new base_url needs the API key again. The "
            "address must be allowed by ENDPOINT_ALLOWED_HOSTS (private and loopback addresses are refused unless "
            "listed). Audited.",
            MANAGE_ENDPOINTS,
        ),
        request=EndpointInput,
        responses={201: EndpointOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            endpoint = services.endpoint_save(actor=request.user, **data.validated_data)
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        return Response(EndpointOutput(endpoint).data, status=status.HTTP_201_CREATED)


class PilotInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    baseline = serializers.CharField(help_text="The model compared against (e.g. production).")
    candidate = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    segment = serializers.CharField(required=False, allow_blank=True, default="")


class PilotResultOutput(serializers.Serializer):
    kpi = serializers.CharField(help_text="The KPI's slug.")
    unit = serializers.CharField()
    higher_is_better = serializers.BooleanField()
    baseline = KpiIntervalOutput()
    candidate = KpiIntervalOutput()
    comparison = KpiComparisonOutput()


class PilotOutput(serializers.ModelSerializer):
    results = serializers.SerializerMethodField(help_text="Per KPI: both means with 95% intervals and the difference.")

    class Meta:
        model = Pilot
        fields = [
            "id",
            "name",
            "description",
            "baseline",
            "candidate",
            "period_start",
            "period_end",
            "segment",
            "results",
        ]

    @extend_schema_field(PilotResultOutput(many=True))
    def get_results(self, pilot) -> list[dict]:
        return [
            {
                "kpi": row["kpi"].slug,
                "unit": row["kpi"].unit,
                "higher_is_better": row["higher_is_better"],
                "baseline": row["baseline"],
                "candidate": row["candidate"],
                "comparison": row["comparison"],
            }
            for row in selectors.pilot_results(pilot)
        ]


class PilotListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_KPIS, POST=IMPORT_KPIS)]
    serializer_class = PilotOutput
    queryset = Pilot.objects.all()

    @extend_schema(
        summary="List pilots",
        description=describe("Two models compared on every KPI over the same period, with intervals.", VIEW_KPIS),
        responses={200: PilotOutput(many=True), **error_responses(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Start a pilot",
        description=describe("Name two models and a period (and optionally a segment).", IMPORT_KPIS),
        request=PilotInput,
        responses={201: PilotOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = PilotInput(data=request.data)
        data.is_valid(raise_exception=True)
        pilot = services.pilot_create(actor=request.user, **data.validated_data)
        return Response(PilotOutput(pilot).data, status=status.HTTP_201_CREATED)


class BalanceGroupOutput(serializers.Serializer):
    n = serializers.IntegerField(help_text="Rows in the group.")
    labels = serializers.DictField(child=serializers.IntegerField(), help_text="Rows per label.")
    shares = serializers.DictField(child=serializers.FloatField(), help_text="Share of the group's rows per label.")


class BalanceOutput(serializers.Serializer):
    groups = serializers.DictField(child=BalanceGroupOutput())
    labels = serializers.ListField(child=serializers.CharField())
    max_share_gap = serializers.FloatField(
        allow_null=True, help_text="The largest difference of a label's share between groups; null without labels."
    )


class VersionBalanceApi(APIView):
    permission_classes = [HasPerm.of(VIEW_DATASETS)]

    @extend_schema(
        summary="Label balance per group",
        description=describe(
            "How a version's labels spread over its groups (share of each label per group) and the largest "
            "difference between groups; no groups and a null gap when the version has no labels or no groups.",
            VIEW_DATASETS,
        ),
        responses={200: BalanceOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, version_id: int):
        version = DatasetVersion.objects.ready().filter(pk=version_id).first()
        if version is None:
            raise exceptions.NotFound(f"There is no ready version #{version_id}.")
        # An empty report rather than a JSON null, which DRF would send as an empty body.
        report = selectors.version_balance(version) or {"groups": {}, "labels": [], "max_share_gap": None}
        return Response(BalanceOutput(report).data)
