"""REST API for annotation: projects and their progress, reservations and answers, agreement, review, publishing,
label schemas and Label Studio.

Every endpoint checks one Django permission (accounts.roles) and names it in its OpenAPI description.
Annotators only ever see their own reservations: someone else's is 404, as if it did not exist. Answers are data:
text is stored and returned as sent (JSON is inert; the pages escape it). Writes go through annotation.services;
their ValidationErrors become 400 JSON answers with field messages, except ``AnnotationConflict`` (a stale draft, a
double submit, a reservation that ran out and went to someone else), which is 409 with the service's message.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import (
    ADJUDICATE,
    ANNOTATE,
    MANAGE_LABEL_STUDIO,
    MANAGE_PROJECTS,
    VIEW_ANSWERS,
    VIEW_PROJECTS,
)
from annotation import schema as schemas
from annotation import selectors, services, services_label_studio
from annotation.models import Annotation, AnnotationProject, Assignment, LabelSchema, PublishRun, Task
from curation.apis import dataset_or_404, version_ready_or_invalid
from curation.models import DatasetVersion
from projectsite.api import choice_error, describe, error_responses
from projectsite.pagination import CursorPagination, NewestFirst
from projectsite.permissions import HasPerm, HasPermPerMethod


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


@contextmanager
def _conflict_is_409():
    """The example's state moved on (another tab, an expired reservation): 409 with the service's sentence."""
    try:
        yield
    except services.AnnotationConflict as exc:
        raise Conflict(" ".join(exc.messages)) from None


# --- lookups: permission first (403), then the object (404) -----------------------------------


def _project_or_404(request, project_id: int) -> AnnotationProject:
    project = selectors.project_list().filter(pk=project_id).first()
    if project is None:
        raise exceptions.NotFound(f"There is no annotation project #{project_id}.")
    return project


def _assignment_or_404(request, assignment_id: int) -> Assignment:
    """The caller's own reservation; anyone else's is answered exactly like one that does not exist."""
    assignment = selectors.assignments_of(request.user).filter(pk=assignment_id).first()
    if assignment is None:
        raise exceptions.NotFound(f"You have no reservation #{assignment_id}.")
    return assignment


def _task_or_404(task_id: int) -> Task:
    task = (
        Task.objects.select_related("project", "example", "adjudicated_by")
        .prefetch_related("annotations")
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise exceptions.NotFound(f"There is no annotation task #{task_id}.")
    return task


# --- output serializers ----------------------------------------------------------------------


class SchemaFieldOutput(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField(help_text="text, choice or rating.")
    title = serializers.CharField()
    writes = serializers.CharField(help_text="target, label, or empty: kept in the metadata under annotation.<name>.")
    required = serializers.BooleanField()
    options = serializers.ListField(child=serializers.CharField(), required=False, help_text="Choice fields.")
    multiple = serializers.BooleanField(required=False, help_text="Choice fields: several options may be chosen.")
    scale = serializers.IntegerField(required=False, help_text="Rating fields: scores 1 to scale.")
    rubric = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Rating fields: {score: description}."
    )


class SchemaOutput(serializers.Serializer):
    instructions = serializers.CharField(allow_blank=True)
    fields = SchemaFieldOutput(many=True)


class MyProgressOutput(serializers.Serializer):
    answers = serializers.IntegerField(help_text="Answers you submitted in this project.")
    percent = serializers.FloatField(help_text="Of the project's examples.")
    median_seconds = serializers.FloatField(allow_null=True)
    today = serializers.IntegerField()


class ProgressOutput(serializers.Serializer):
    tasks = serializers.IntegerField(help_text="Examples in the project.")
    annotations_per_example = serializers.IntegerField()
    answers = serializers.IntegerField()
    answers_needed = serializers.IntegerField()
    percent = serializers.FloatField(help_text="0 to 100.")
    agreed = serializers.IntegerField()
    adjudicated = serializers.IntegerField()
    disagreements = serializers.IntegerField(help_text="Examples waiting for a reviewer.")
    settled = serializers.IntegerField(help_text="Agreed or adjudicated: these go into a published version.")
    gold = serializers.IntegerField()
    working_now = serializers.IntegerField(help_text="Reservations held right now.")
    mine = MyProgressOutput(required=False, help_text="The caller's own work.")


class VersionLinkOutput(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    url = serializers.CharField(help_text="The version's page.")


def _version_link(request, version: DatasetVersion) -> dict:
    url = request.build_absolute_uri(reverse("curation:version_detail", args=[version.pk]))
    return {"id": version.pk, "number": version.number, "url": url}


class ProjectOutput(serializers.ModelSerializer):
    dataset = serializers.IntegerField(source="version.dataset_id")
    # Plain text: the states are listed once, in the help text.
    status = serializers.CharField(help_text="open or finished.")
    status_label = serializers.CharField(source="get_status_display")
    schema = SchemaOutput(help_text="The label schema, frozen when the project was created.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    progress = serializers.SerializerMethodField()
    published_versions = serializers.SerializerMethodField(help_text="Versions made from this project, newest first.")

    class Meta:
        model = AnnotationProject
        fields = [
            "id",
            "name",
            "dataset",
            "version",
            "status",
            "status_label",
            "annotations_per_example",
            "reservation_minutes",
            "task_count",
            "schema",
            "progress",
            "published_versions",
            "label_studio_project_id",
            "label_studio_url",
            "label_studio_pulled_at",
            "created_by",
            "created_at",
        ]

    @extend_schema_field(ProgressOutput)
    def get_progress(self, project: AnnotationProject) -> dict:
        return selectors.project_progress(project, self.context["request"].user, timing=True)

    @extend_schema_field(VersionLinkOutput(many=True))
    def get_published_versions(self, project: AnnotationProject) -> list[dict]:
        request = self.context["request"]
        return [_version_link(request, version) for version in selectors.published_versions(project)]


class AnnotatedExampleOutput(serializers.Serializer):
    id = serializers.IntegerField()
    row_index = serializers.IntegerField()
    input = serializers.CharField(allow_blank=True)
    target = serializers.CharField(allow_blank=True, help_text="The current target, to correct.")


class ReviewedExampleOutput(AnnotatedExampleOutput):
    label = serializers.CharField(allow_blank=True)


class AssignmentOutput(serializers.ModelSerializer):
    project = serializers.IntegerField(source="task.project_id")
    task = serializers.IntegerField(source="task_id")
    position = serializers.IntegerField(source="task.position", help_text="The example's place in the project.")
    example = AnnotatedExampleOutput(source="task.example")
    status = serializers.CharField(help_text="active, submitted, skipped, expired or undone.")
    status_label = serializers.CharField(source="get_status_display")
    draft = serializers.DictField(help_text="The autosaved, half-written answer: {field name: value}.")
    revision = serializers.IntegerField(help_text="Send it back with the next draft; a stale one is refused (409).")
    schema = SchemaOutput(source="task.project.schema")
    hotkeys = serializers.SerializerMethodField(help_text="{field name: {option or score: key}}.")

    class Meta:
        model = Assignment
        fields = [
            "id",
            "project",
            "task",
            "position",
            "example",
            "status",
            "status_label",
            "draft",
            "revision",
            "draft_saved_at",
            "active_seconds",
            "reserved_at",
            "expires_at",
            "finished_at",
            "schema",
            "hotkeys",
        ]

    @extend_schema_field(serializers.DictField(child=serializers.DictField(child=serializers.CharField())))
    def get_hotkeys(self, assignment: Assignment) -> dict:
        return schemas.hotkeys(assignment.task.project.schema)


class AnnotationOutput(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator_name", help_text="Username, or the Label Studio e-mail.")
    answer = serializers.DictField(help_text="{field name: value}.")
    source = serializers.CharField(help_text="app or label_studio.")

    class Meta:
        model = Annotation
        fields = ["id", "task", "annotator", "answer", "seconds", "source", "created_at"]


class TaskOutput(serializers.ModelSerializer):
    status = serializers.CharField(help_text="open, agreed, disagreement or adjudicated.")
    status_label = serializers.CharField(source="get_status_display")
    example = ReviewedExampleOutput()
    answer = serializers.DictField(allow_null=True, help_text="The consensus or adjudicated answer, once settled.")
    disagreements = serializers.ListField(child=serializers.CharField(), help_text="Fields the annotators disagree on.")
    gold_answer = serializers.DictField(allow_null=True)
    adjudicated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    answers = AnnotationOutput(source="annotations", many=True, help_text="Every annotator's answer.")

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "position",
            "example",
            "status",
            "status_label",
            "annotation_count",
            "answer",
            "disagreements",
            "is_gold",
            "gold_answer",
            "adjudicated_by",
            "adjudicated_at",
            "answers",
        ]


class AnnotatorFiguresOutput(serializers.Serializer):
    n = serializers.IntegerField(help_text="Examples they answered.")
    compared = serializers.IntegerField(help_text="Of those, examples someone else also answered.")
    with_consensus = serializers.FloatField(allow_null=True, help_text="Share that matches the others' majority.")
    kappa_vs_others = serializers.FloatField(allow_null=True)
    text_similarity = serializers.FloatField(allow_null=True, required=False, help_text="Text fields: ROUGE-L F1.")


class AgreementSummaryOutput(serializers.Serializer):
    kind = serializers.CharField()
    items = serializers.IntegerField()
    annotators = serializers.IntegerField()
    pairs = serializers.IntegerField()
    percent_agreement = serializers.FloatField(allow_null=True)
    cohen_kappa = serializers.FloatField(allow_null=True)
    fleiss_kappa = serializers.FloatField(allow_null=True)
    krippendorff_alpha = serializers.FloatField(allow_null=True)
    weighted_kappa = serializers.FloatField(allow_null=True)
    text_similarity = serializers.FloatField(allow_null=True)
    headline = serializers.CharField(help_text="The name of the figure to show first.")
    interpretation = serializers.CharField(allow_null=True, help_text="Landis & Koch band of the headline.")
    per_annotator = serializers.DictField(
        child=AnnotatorFiguresOutput(), required=False, help_text=f"Only for callers with `{VIEW_ANSWERS}`."
    )


class OptionAgreementOutput(serializers.Serializer):
    option = serializers.CharField()
    times_chosen = serializers.IntegerField(
        required=False,
        help_text=f"Only for callers with `{VIEW_ANSWERS}`: with two annotators, the counts and one's own answers "
        "tell the other's.",
    )
    headline = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    percent_agreement = serializers.FloatField(allow_null=True)


class FieldAgreementOutput(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    kind = serializers.CharField()
    summary = AgreementSummaryOutput()
    options = OptionAgreementOutput(many=True, help_text="Choice fields: each option against the rest.")


class GoldScoreOutput(serializers.Serializer):
    n = serializers.IntegerField()
    correct = serializers.IntegerField()
    accuracy = serializers.FloatField()


class AnnotatorAgreementOutput(serializers.Serializer):
    name = serializers.CharField()
    answers = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    fields = serializers.DictField(child=AnnotatorFiguresOutput())
    gold = GoldScoreOutput(allow_null=True)
    with_consensus = serializers.FloatField(allow_null=True)
    text_similarity = serializers.FloatField(allow_null=True)


class AgreementOutput(serializers.Serializer):
    fields = FieldAgreementOutput(many=True)
    gold_examples = serializers.IntegerField()
    annotators = AnnotatorAgreementOutput(
        many=True, required=False, help_text=f"Only for callers with `{VIEW_ANSWERS}`."
    )


class LabelSchemaOutput(serializers.Serializer):
    dataset = serializers.IntegerField()
    schema = SchemaOutput()
    is_default = serializers.BooleanField(help_text="True: nothing is saved yet; this is the suggested starting point.")
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class LabelStudioConnectionOutput(serializers.Serializer):
    configured = serializers.BooleanField()
    url = serializers.CharField(allow_blank=True)
    token_hint = serializers.CharField(allow_blank=True, help_text="The token's last four characters; never the token.")
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class InvalidAnswerOutput(serializers.Serializer):
    task = serializers.IntegerField(allow_null=True, help_text="The Label Studio task id.")
    annotation = serializers.IntegerField(allow_null=True, help_text="The Label Studio annotation id.")
    error = serializers.CharField(help_text="Why it was not imported.")


class PullReportOutput(serializers.Serializer):
    imported = serializers.IntegerField(help_text="New answers.")
    updated = serializers.IntegerField(help_text="Answers changed in Label Studio since the last pull.")
    unchanged = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Examples skipped (cancelled) in Label Studio.")
    unknown_tasks = serializers.ListField(
        child=serializers.IntegerField(allow_null=True),
        help_text="Label Studio tasks with answers that were not sent from this project (ignored).",
    )
    invalid = InvalidAnswerOutput(many=True, help_text="Answers that do not fit the label schema (not imported).")
    message = serializers.CharField(help_text="What happened, in one sentence.")


# --- input serializers -----------------------------------------------------------------------


class ProjectInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    version = serializers.IntegerField(help_text="An approved (privacy-reviewed) version.")
    annotations_per_example = serializers.IntegerField(default=2, min_value=1, max_value=10)
    reservation_minutes = serializers.IntegerField(default=30, min_value=1, max_value=24 * 60)
    limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Only the first N examples, in row order."
    )
    schema = serializers.JSONField(
        required=False, allow_null=True, help_text="A label schema; default: the dataset's saved schema."
    )
    gold_count = serializers.IntegerField(
        default=0, min_value=0, help_text="Examples whose label is already known, marked gold with it."
    )

    def resolve(self) -> dict:
        values = dict(self.validated_data)
        values["version"] = version_ready_or_invalid(values["version"], field="version")
        return values


class ProjectFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=AnnotationProject.Status.choices,
        required=False,
        allow_blank=True,
        error_messages=choice_error("status", AnnotationProject.Status.choices),
    )


class DraftInput(serializers.Serializer):
    draft = serializers.DictField(help_text="{field name: value}; fields may be missing or half-written.")
    revision = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="The revision you read; a stale one is 409."
    )
    active_seconds = serializers.FloatField(required=False, allow_null=True, min_value=0)


class SubmitInput(serializers.Serializer):
    answer = serializers.DictField(help_text="{field name: value}, checked against the project's label schema.")
    active_seconds = serializers.FloatField(
        required=False, allow_null=True, min_value=0, help_text="Time the example was on screen."
    )


class AnswerInput(serializers.Serializer):
    answer = serializers.DictField(help_text="{field name: value}, checked against the project's label schema.")


class AssignmentFilterInput(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(
        choices=Assignment.Status.choices,
        required=False,
        allow_blank=True,
        error_messages=choice_error("status", Assignment.Status.choices),
    )


class TaskFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Task.Status.choices,
        required=False,
        allow_blank=True,
        error_messages=choice_error("status", Task.Status.choices),
    )


class PublishInput(serializers.Serializer):
    finish = serializers.BooleanField(default=False, help_text="Also close the project to annotators.")
    settled_only = serializers.BooleanField(
        default=False, help_text="Keep only the rows with a settled answer (default: every row)."
    )


class LabelSchemaInput(serializers.Serializer):
    schema = serializers.JSONField(help_text="{instructions, fields: [...]}: see the output for the field keys.")


class LabelStudioConnectionInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="The Label Studio server, e.g. https://labels.example.org.")
    token = serializers.CharField(max_length=500, write_only=True, help_text="An access token; stored encrypted.")


# --- projects --------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="List annotation projects",
        description=describe(
            "Newest first, each with its progress (answers, settled and disputed examples) and the caller's own.",
            VIEW_PROJECTS,
        ),
        parameters=[ProjectFilterInput],
        responses={200: ProjectOutput(many=True), **error_responses(400, 401, 403)},
    )
)
class ProjectListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_PROJECTS, POST=MANAGE_PROJECTS)]
    serializer_class = ProjectOutput
    pagination_class = NewestFirst

    def get_queryset(self):
        filters = ProjectFilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        projects = selectors.project_list()
        if filters.validated_data.get("status"):
            projects = projects.filter(status=filters.validated_data["status"])
        return projects

    @extend_schema(
        summary="Create an annotation project",
        description=describe(
            "One task per example of an approved version (the first `limit` in row order), each to be answered by "
            "`annotations_per_example` annotators. The label schema is the dataset's saved one unless `schema` is "
            "given; the project keeps its own copy.",
            MANAGE_PROJECTS,
        ),
        request=ProjectInput,
        responses={201: ProjectOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.annotation_project_create(actor=request.user, **data.resolve())
        return Response(ProjectOutput(project, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_PROJECTS)]

    @extend_schema(
        summary="An annotation project and its progress",
        description=describe(
            "The project, its label schema, its progress and the caller's own (`progress.mine`), and the versions "
            "published from it.",
            VIEW_PROJECTS,
        ),
        responses={200: ProjectOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        return Response(ProjectOutput(project, context={"request": request}).data)


class ProjectNextApi(APIView):
    permission_classes = [HasPerm.of(ANNOTATE)]

    @extend_schema(
        summary="Reserve my next example",
        description=describe(
            "The caller's current reservation in the project, or a new one on the next example that nobody else "
            "holds, that still needs answers and that the caller has not answered or skipped. Examples that already "
            "have answers come first. No two annotators ever hold the same example at once. 204 when nothing is "
            "left for the caller.",
            ANNOTATE,
        ),
        request=None,
        responses={
            200: AssignmentOutput,
            204: OpenApiResponse(description="Nothing is left for you to annotate in this project."),
            **error_responses(400, 401, 403, 404),
        },
    )
    def post(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        assignment = services.assignment_next(project=project, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AssignmentOutput(assignment).data)


class ProjectUndoApi(APIView):
    permission_classes = [HasPerm.of(ANNOTATE)]

    @extend_schema(
        summary="Undo my last answer",
        description=describe(
            "Take back the caller's last submitted answer in the project: the example is reserved for them again "
            "with that answer as the draft. 409 when a reviewer already settled it or someone else holds it now.",
            ANNOTATE,
        ),
        request=None,
        responses={200: AssignmentOutput, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        with _conflict_is_409():
            assignment = services.annotation_undo(project=project, annotator=request.user)
        return Response(AssignmentOutput(assignment).data)


class ProjectAgreementApi(APIView):
    permission_classes = [HasPerm.of(VIEW_PROJECTS)]

    @extend_schema(
        summary="Agreement between annotators",
        description=describe(
            "Per field: Cohen's kappa (two annotators) or Fleiss' kappa, Krippendorff's alpha, weighted kappa for "
            "ratings, ROUGE-L similarity for free text, and per option of each choice field. The per-annotator "
            "figures (`annotators`, `per_annotator`) and how often each option was chosen (`times_chosen`) are "
            f"only included for callers with `{VIEW_ANSWERS}`.",
            VIEW_PROJECTS,
        ),
        responses={200: AgreementOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        agreement = selectors.project_agreement(project)
        if not request.user.has_perm(VIEW_ANSWERS):
            # Who agrees with whom tells something about each person's answers: keep it to those who may read them.
            agreement.pop("annotators", None)
            for field in agreement["fields"]:
                field["summary"].pop("per_annotator", None)
                for option in field["options"]:
                    option.pop("times_chosen", None)
        return Response(AgreementOutput(agreement).data)


@extend_schema_view(
    get=extend_schema(
        summary="The examples of a project with their answers",
        description=describe(
            "In project order, with every annotator's answer, the consensus or adjudicated answer and the fields in "
            "dispute; filter by `status` (`disagreement` is the review queue).",
            VIEW_ANSWERS,
        ),
        parameters=[TaskFilterInput],
        responses={200: TaskOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class ProjectTaskListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_ANSWERS)]
    serializer_class = TaskOutput

    class pagination_class(CursorPagination):  # noqa: N801 (DRF attribute)
        ordering = ("position", "id")
        page_size = 100

    def get_queryset(self):
        project = _project_or_404(self.request, self.kwargs["project_id"])
        filters = TaskFilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.project_tasks(project, status=filters.validated_data.get("status") or None).prefetch_related(
            "annotations"
        )


class PublishRunOutput(serializers.ModelSerializer):
    status = serializers.CharField(help_text="queued, checking, writing, done or failed.")
    status_label = serializers.CharField(source="get_status_display")
    progress = serializers.FloatField(source="fraction", help_text="From 0 to 1.")
    texts_total = serializers.IntegerField(help_text="Texts annotators wrote that are checked for personal data.")
    version = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    url = serializers.SerializerMethodField(help_text="Read this address until `status` is done or failed.")

    class Meta:
        model = PublishRun
        fields = [
            "id",
            "project",
            "status",
            "status_label",
            "progress",
            "texts_checked",
            "texts_total",
            "finish",
            "settled_only",
            "error",
            "version",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "url",
        ]

    @extend_schema_field(VersionLinkOutput(allow_null=True))
    def get_version(self, run: PublishRun) -> dict | None:
        return _version_link(self.context["request"], run.version) if run.version else None

    def get_url(self, run: PublishRun) -> str:
        return self.context["request"].build_absolute_uri(reverse("api-annotation-publish-run", args=[run.pk]))

    def to_representation(self, run: PublishRun) -> dict:
        data = super().to_representation(run)
        if run.is_lost:
            data.update(status="failed", status_label="Failed", error=run.error_text)
        return data


class ProjectPublishApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_PROJECTS)]

    @extend_schema(
        summary="Publish a new dataset version",
        description=describe(
            "Starts making a new version of the project's dataset with the settled answers (agreed or adjudicated) "
            "written in: the target, the label, and other fields in each row's metadata under `annotation`. Every "
            "row is kept unless `settled_only`; `finish` also closes the project to annotators. The worker checks "
            "the text annotators wrote for personal data, then writes the version: read the returned `url` until "
            "`status` is `done` (then `version` links to it) or `failed` (then `error` says why). One run per "
            "project at a time.",
            MANAGE_PROJECTS,
        ),
        request=PublishInput,
        responses={202: PublishRunOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        data = PublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.publish_run_start(project=project, actor=request.user, **data.validated_data)
        return Response(PublishRunOutput(run, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class PublishRunApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_PROJECTS)]

    @extend_schema(
        summary="A publish run and its progress",
        description=describe("Where a new version stands: progress, then the version or the error.", MANAGE_PROJECTS),
        responses={200: PublishRunOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, run_id: int):
        run = PublishRun.objects.select_related("version", "created_by").filter(pk=run_id).first()
        if run is None:
            raise exceptions.NotFound(f"There is no publish run #{run_id}.")
        return Response(PublishRunOutput(run, context={"request": request}).data)


# --- my reservations -------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="My reservations",
        description=describe(
            "The caller's own reservations, newest first (never anyone else's); filter by `project` or `status`.",
            ANNOTATE,
        ),
        parameters=[AssignmentFilterInput],
        responses={200: AssignmentOutput(many=True), **error_responses(400, 401, 403)},
    )
)
class AssignmentListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(ANNOTATE)]
    serializer_class = AssignmentOutput

    class pagination_class(CursorPagination):  # noqa: N801 (DRF attribute)
        ordering = ("-reserved_at", "-id")
        page_size = 50

    def get_queryset(self):
        filters = AssignmentFilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        assignments = selectors.assignments_of(self.request.user)
        if values.get("project"):
            assignments = assignments.filter(task__project_id=values["project"])
        if values.get("status"):
            assignments = assignments.filter(status=values["status"])
        return assignments


class AssignmentDetailApi(APIView):
    permission_classes = [HasPerm.of(ANNOTATE)]

    @extend_schema(
        summary="One of my reservations",
        description=describe("The example, the draft and its revision; someone else's reservation is 404.", ANNOTATE),
        responses={200: AssignmentOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, assignment_id: int):
        return Response(AssignmentOutput(_assignment_or_404(request, assignment_id)).data)


_DRAFT_DOC = extend_schema(
    summary="Autosave my draft",
    description=describe(
        "Keep the half-written answer of one of the caller's reservations. Send the `revision` you read: a save from "
        "a tab that missed a newer one, or on a reservation that ran out, is refused with 409 and a plain message. "
        "POST does the same as PUT (for pages that save as they close).",
        ANNOTATE,
    ),
    request=DraftInput,
    responses={200: AssignmentOutput, **error_responses(400, 401, 403, 404, 409)},
)


class AssignmentDraftApi(APIView):
    permission_classes = [HasPerm.of(ANNOTATE)]

    def _save(self, request, assignment_id: int) -> Response:
        assignment = _assignment_or_404(request, assignment_id)
        data = DraftInput(data=request.data)
        data.is_valid(raise_exception=True)
        with _conflict_is_409():
            assignment = services.assignment_draft_save(
                assignment=assignment, annotator=request.user, **data.validated_data
            )
        return Response(AssignmentOutput(_assignment_or_404(request, assignment.pk)).data)

    @_DRAFT_DOC
    def put(self, request, assignment_id: int):
        return self._save(request, assignment_id)

    @_DRAFT_DOC
    def post(self, request, assignment_id: int):
        return self._save(request, assignment_id)


class AssignmentSubmitApi(APIView):
    permission_classes = [HasPerm.of(ANNOTATE)]

    @extend_schema(
        summary="Submit my answer",
        description=describe(
            "Submit the answer to one of the caller's reservations. A value outside the label schema is 400 with "
            "the field's message. Submitting twice, or after the reservation ran out and the example went to "
            "someone else, is 409 with a plain message (the answer is kept as the draft).",
            ANNOTATE,
        ),
        request=SubmitInput,
        responses={201: AnnotationOutput, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request, assignment_id: int):
        assignment = _assignment_or_404(request, assignment_id)
        data = SubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        with _conflict_is_409():
            annotation = services.annotation_submit(
                assignment=assignment, annotator=request.user, **data.validated_data
            )
        return Response(AnnotationOutput(annotation).data, status=status.HTTP_201_CREATED)


class AssignmentSkipApi(APIView):
    permission_classes = [HasPerm.of(ANNOTATE)]

    @extend_schema(
        summary="Skip an example",
        description=describe(
            "Pass on one of the caller's reservations: it goes to someone else and is not offered to the caller "
            "again. 409 when it is no longer reserved for them.",
            ANNOTATE,
        ),
        request=None,
        responses={200: AssignmentOutput, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request, assignment_id: int):
        assignment = _assignment_or_404(request, assignment_id)
        with _conflict_is_409():
            assignment = services.assignment_skip(assignment=assignment, annotator=request.user)
        return Response(AssignmentOutput(_assignment_or_404(request, assignment.pk)).data)


# --- review ----------------------------------------------------------------------------------


class TaskDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_ANSWERS)]

    @extend_schema(
        summary="One example of a project with its answers",
        description=describe("Every annotator's answer, the settled answer and the fields in dispute.", VIEW_ANSWERS),
        responses={200: TaskOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, task_id: int):
        return Response(TaskOutput(_task_or_404(task_id)).data)


class TaskAdjudicateApi(APIView):
    permission_classes = [HasPerm.of(ADJUDICATE)]

    @extend_schema(
        summary="Settle an example",
        description=describe(
            "The reviewer's final answer, whatever the annotators said; it goes into the next published version. "
            "Checked against the label schema (400 with the field's message).",
            ADJUDICATE,
        ),
        request=AnswerInput,
        responses={200: TaskOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, task_id: int):
        task = _task_or_404(task_id)
        data = AnswerInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.task_adjudicate(task=task, actor=request.user, answer=data.validated_data["answer"])
        return Response(TaskOutput(_task_or_404(task_id)).data)


class TaskGoldApi(APIView):
    permission_classes = [HasPerm.of(ADJUDICATE)]

    @extend_schema(
        summary="Mark a gold example",
        description=describe(
            "Mark the example as gold with its correct answer: annotators' accuracy on gold examples shows in the "
            "agreement report.",
            ADJUDICATE,
        ),
        request=AnswerInput,
        responses={200: TaskOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, task_id: int):
        task = _task_or_404(task_id)
        data = AnswerInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.task_gold_set(task=task, actor=request.user, answer=data.validated_data["answer"])
        return Response(TaskOutput(_task_or_404(task_id)).data)

    @extend_schema(
        summary="Unmark a gold example",
        description=describe("The example is no longer gold; its answers stay.", ADJUDICATE),
        request=None,
        responses={200: TaskOutput, **error_responses(401, 403, 404)},
    )
    def delete(self, request, task_id: int):
        task = _task_or_404(task_id)
        services.task_gold_set(task=task, actor=request.user, answer=None)
        return Response(TaskOutput(_task_or_404(task_id)).data)


# --- label schemas ---------------------------------------------------------------------------


def _label_schema_output(dataset) -> dict:
    saved = LabelSchema.objects.select_related("updated_by").filter(dataset=dataset).first()
    if saved is None:
        return {
            "dataset": dataset.pk,
            "schema": schemas.schema_clean(services.default_schema(dataset)),
            "is_default": True,
            "updated_by": None,
            "updated_at": None,
        }
    return {
        "dataset": dataset.pk,
        "schema": saved.schema,
        "is_default": False,
        "updated_by": saved.updated_by.get_username() if saved.updated_by else None,
        "updated_at": saved.updated_at,
    }


class LabelSchemaApi(APIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_PROJECTS, PUT=MANAGE_PROJECTS)]

    @extend_schema(
        summary="The label schema of a dataset",
        description=describe(
            "What annotators fill in for the dataset's examples. When none is saved yet, a suggested schema that "
            "fits the dataset's task is returned with `is_default: true`.",
            VIEW_PROJECTS,
        ),
        responses={200: LabelSchemaOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, dataset_id: int):
        return Response(LabelSchemaOutput(_label_schema_output(dataset_or_404(dataset_id))).data)

    @extend_schema(
        summary="Save the label schema of a dataset",
        description=describe(
            "Create or replace it. Fields are text, choice or rating; a bad schema is refused with a plain message. "
            "Existing projects keep the copy they were created with.",
            MANAGE_PROJECTS,
        ),
        request=LabelSchemaInput,
        responses={200: LabelSchemaOutput, **error_responses(400, 401, 403, 404)},
    )
    def put(self, request, dataset_id: int):
        dataset = dataset_or_404(dataset_id)
        data = LabelSchemaInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.label_schema_save(dataset=dataset, schema=data.validated_data["schema"], actor=request.user)
        return Response(LabelSchemaOutput(_label_schema_output(dataset)).data)


# --- Label Studio ----------------------------------------------------------------------------


def _connection_output(connection) -> dict:
    if connection is None:
        return {"configured": False, "url": "", "token_hint": "", "updated_by": None, "updated_at": None}
    return {
        "configured": True,
        "url": connection.url,
        "token_hint": connection.token_hint,
        "updated_by": connection.updated_by.get_username() if connection.updated_by else None,
        "updated_at": connection.updated_at,
    }


class LabelStudioConnectionApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_LABEL_STUDIO)]

    @extend_schema(
        summary="The Label Studio connection",
        description=describe(
            "The server's address and the last characters of the token; the token itself is never returned.",
            MANAGE_LABEL_STUDIO,
        ),
        responses={200: LabelStudioConnectionOutput, **error_responses(401, 403)},
    )
    def get(self, request):
        return Response(
            LabelStudioConnectionOutput(_connection_output(services_label_studio.label_studio_connection_get())).data
        )

    @extend_schema(
        summary="Set the Label Studio connection",
        description=describe(
            "The organisation's Label Studio server and an access token (stored encrypted). A server that cannot "
            "be reached or refuses the token is 400 with the reason.",
            MANAGE_LABEL_STUDIO,
        ),
        request=LabelStudioConnectionInput,
        responses={200: LabelStudioConnectionOutput, **error_responses(400, 401, 403)},
    )
    def put(self, request):
        data = LabelStudioConnectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        connection = services_label_studio.label_studio_connection_save(actor=request.user, **data.validated_data)
        return Response(LabelStudioConnectionOutput(_connection_output(connection)).data)


class ProjectLabelStudioPushApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_PROJECTS)]

    @extend_schema(
        summary="Push a project to Label Studio",
        description=describe(
            "Create (or update) the project in Label Studio with the label schema and import its examples, so "
            "annotators can work there. 400 with the reason when there is no connection or the server refuses.",
            MANAGE_PROJECTS,
        ),
        request=None,
        responses={200: ProjectOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        project = services_label_studio.label_studio_push(project=project, actor=request.user)
        return Response(ProjectOutput(project, context={"request": request}).data)


class ProjectLabelStudioPullApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_PROJECTS)]

    @extend_schema(
        summary="Pull answers from Label Studio",
        description=describe(
            "Import the answers made in Label Studio: they count like answers made here. Answers that do not fit "
            "the label schema are counted in `invalid` and left out.",
            MANAGE_PROJECTS,
        ),
        request=None,
        responses={200: PullReportOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, project_id: int):
        project = _project_or_404(request, project_id)
        report = services_label_studio.label_studio_pull(project=project, actor=request.user)
        return Response(PullReportOutput(report).data)
