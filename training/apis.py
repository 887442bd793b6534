"""REST API for training: base models, jobs (launch, follow, cancel, retry), queues and the adapter registry.

Every endpoint checks one Django permission (accounts.roles) and names it in its OpenAPI description.
Writes go through training.services; their ValidationErrors become 400 JSON answers with field messages.
"""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import (
    DOWNLOAD_MODELS,
    LAUNCH_JOBS,
    MANAGE_JOBS,
    REGISTER_BASE_MODELS,
    VIEW_BASE_MODELS,
    VIEW_JOBS,
    VIEW_MODELS,
)
from curation.apis import version_ready_or_invalid
from projectsite.api import choice_error, describe, error_responses
from projectsite.pagination import NewestFirst
from projectsite.permissions import HasPerm, HasPermPerMethod
from training import runner, selectors, services
from training.models import BaseModel, JobAttempt, TrainedModel, TrainingJob


def _job_or_404(job_id: int) -> TrainingJob:
    try:
        return selectors.job_get(job_id)
    except TrainingJob.DoesNotExist:
        raise exceptions.NotFound(f"There is no training job #{job_id}.") from None


def _trained_or_404(model_id: int) -> TrainedModel:
    trained = selectors.trained_model_list().filter(pk=model_id).first()
    if trained is None:
        raise exceptions.NotFound(f"There is no trained model #{model_id}.")
    return trained


# --- output serializers ----------------------------------------------------------------------


def _paths_shown(serializer: serializers.Serializer) -> bool:
    """Server folders are shown only to people who may register base models (they give such paths themselves)."""
    request = serializer.context.get("request")
    return request is not None and request.user.has_perm(REGISTER_BASE_MODELS)


class BaseModelOutput(serializers.ModelSerializer):
    source = serializers.SerializerMethodField(
        help_text="The folder on the workers; null for people who cannot register base models."
    )

    class Meta:
        model = BaseModel
        fields = [
            "id",
            "name",
            "source",
            "architecture",
            "model_type",
            "parameter_count",
            "hidden_size",
            "num_layers",
            "vocab_size",
            "task_types",
            "licence_note",
            "created_at",
        ]

    def get_source(self, model: BaseModel) -> str | None:
        return model.source if _paths_shown(self) else None


class AttemptOutput(serializers.ModelSerializer):
    outcome_label = serializers.CharField(source="get_outcome_display")

    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "worker",
            "outcome",
            "outcome_label",
            "resumed_from_step",
            "error",
            "started_at",
            "finished_at",
        ]


class JobErrorOutput(serializers.Serializer):
    code = serializers.CharField(help_text="out_of_memory, disk_full, model_missing, worker_lost, …")
    message = serializers.CharField()
    hint = serializers.CharField(help_text="What to try next.")


class TrainingJobOutput(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", help_text="The status in words.")
    progress = serializers.FloatField(help_text="0 to 1.")
    dataset_version = serializers.PrimaryKeyRelatedField(read_only=True)
    base_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    attempts = AttemptOutput(many=True, read_only=True)
    error = serializers.SerializerMethodField()
    trained_model = serializers.SerializerMethodField(help_text="The adapter in the registry, once finished.")

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "status",
            "status_label",
            "dataset_version",
            "base_model",
            "task",
            "preset",
            "queue",
            "config",
            "estimate",
            "progress",
            "phase",
            "step",
            "max_steps",
            "epoch",
            "loss",
            "eval_loss",
            "learning_rate",
            "tokens_per_second",
            "memory_mb",
            "eta_seconds",
            "log_tail",
            "worker",
            "heartbeat_at",
            "attempt_count",
            "max_attempts",
            "last_checkpoint_step",
            "attempts",
            "error",
            "final_metrics",
            "hardware",
            "trained_model",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    @extend_schema_field(JobErrorOutput(allow_null=True))
    def get_error(self, job: TrainingJob) -> dict | None:
        if not job.error:
            return None
        return {"code": job.error_code, "message": job.error, "hint": job.error_hint}

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_trained_model(self, job: TrainingJob) -> int | None:
        return TrainedModel.objects.filter(job=job).values_list("pk", flat=True).first()


class CurvePointOutput(serializers.Serializer):
    step = serializers.IntegerField()
    loss = serializers.FloatField()


class LearningRatePointOutput(serializers.Serializer):
    step = serializers.IntegerField()
    value = serializers.FloatField()


class CurvesOutput(serializers.Serializer):
    train = CurvePointOutput(many=True)
    eval = CurvePointOutput(many=True)
    learning_rate = LearningRatePointOutput(many=True)


class EstimateOutput(serializers.Serializer):
    memory_bytes = serializers.IntegerField()
    seconds = serializers.FloatField()
    tokens = serializers.IntegerField()
    device = serializers.CharField()
    notes = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField(), help_text="e.g. no worker can fit the job.")
    largest_worker_bytes = serializers.IntegerField()


class WorkerOutput(serializers.Serializer):
    hostname = serializers.CharField()
    gpu_count = serializers.IntegerField()
    gpu_names = serializers.ListField(child=serializers.CharField())
    gpu_memory_bytes = serializers.IntegerField()
    cpu_count = serializers.IntegerField()
    memory_bytes = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


class QueueOutput(serializers.Serializer):
    queue = serializers.CharField(help_text="The worker class.")
    waiting = serializers.IntegerField()
    running = serializers.IntegerField()
    workers = WorkerOutput(many=True)
    jobs = serializers.SerializerMethodField(help_text="Active jobs, oldest first (ids).")

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_jobs(self, row) -> list[int]:
        return [job.pk for job in row["jobs"]]


class TrainedModelOutput(serializers.ModelSerializer):
    base_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    stage_label = serializers.CharField(source="get_stage_display")

    class Meta:
        model = TrainedModel
        fields = [
            "id",
            "name",
            "job",
            "base_model",
            "dataset_version",
            "task",
            "stage",
            "stage_label",
            "files",
            "sha256",
            "size_bytes",
            "card",
            "metrics",
            "merge_status",
            "merge_error",
            "merged_files",
            "created_at",
            "stage_changed_at",
        ]

    def to_representation(self, trained: TrainedModel) -> dict:
        data = super().to_representation(trained)
        base = (data.get("card") or {}).get("base_model")
        if isinstance(base, dict) and "source" in base and not _paths_shown(self):
            data["card"] = {**data["card"], "base_model": {**base, "source": None}}
        return data


# --- input serializers -----------------------------------------------------------------------


class BaseModelInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    source = serializers.CharField(max_length=500, help_text="A local folder on the workers, or a model hub id.")
    licence_note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class JobInput(serializers.Serializer):
    dataset_version = serializers.IntegerField(help_text="An approved (privacy-reviewed) version.")
    base_model = serializers.CharField(help_text="The base model's name.")
    preset = serializers.ChoiceField(
        choices=list(runner.PRESETS),
        default="quick",
        error_messages=choice_error("preset", [(p, p) for p in runner.PRESETS]),
    )
    queue = serializers.CharField(default="gpu", help_text="The worker class (Celery queue).")
    settings = serializers.DictField(
        required=False,
        default=dict,
        help_text=f"Advanced settings over the preset: {', '.join(services.SETTABLE_FIELDS)}.",
    )

    def resolve(self) -> dict:
        values = self.validated_data
        version = version_ready_or_invalid(values["dataset_version"], field="dataset_version")
        base_model = BaseModel.objects.filter(name=values["base_model"]).first()
        if base_model is None:
            raise serializers.ValidationError(
                {"base_model": f"There is no base model called “{values['base_model']}”."}
            )
        return {
            "version": version,
            "base_model": base_model,
            "preset": values["preset"],
            "overrides": values["settings"],
            "queue": values["queue"],
        }


class JobFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=TrainingJob.Status.choices,
        required=False,
        allow_blank=True,
        error_messages=choice_error("status", TrainingJob.Status.choices),
    )
    queue = serializers.CharField(required=False, allow_blank=True)
    base_model = serializers.CharField(required=False, allow_blank=True)


# --- endpoints -------------------------------------------------------------------------------


class BaseModelListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_BASE_MODELS, POST=REGISTER_BASE_MODELS)]
    serializer_class = BaseModelOutput

    def get_queryset(self):
        return selectors.base_model_list()

    @extend_schema(
        summary="List base models",
        description=describe("Models that adapters can be trained on.", VIEW_BASE_MODELS),
        responses={200: BaseModelOutput(many=True), **error_responses(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register a base model",
        description=describe(
            "Register a local folder (on the workers). Its configuration and weight headers are read to check it "
            "and count its parameters. A folder that does not hold a readable model is refused with one answer, "
            "whether or not it exists (the reason is in the server log), so the API tells nothing about the "
            "server's folders. `source` is shown only to people who can register base models.",
            REGISTER_BASE_MODELS,
        ),
        request=BaseModelInput,
        responses={201: BaseModelOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = BaseModelInput(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.base_model_register(actor=request.user, **data.validated_data)
        return Response(BaseModelOutput(model, context={"request": request}).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        summary="List training jobs",
        description=describe("Newest first; filter by status, worker class (queue) or base model.", VIEW_JOBS),
        parameters=[JobFilterInput],
        responses={200: TrainingJobOutput(many=True), **error_responses(400, 401, 403)},
    )
)
class TrainingJobListApi(generics.ListAPIView):
    permission_classes = [HasPermPerMethod.of(GET=VIEW_JOBS, POST=LAUNCH_JOBS)]
    serializer_class = TrainingJobOutput
    pagination_class = NewestFirst

    def get_queryset(self):
        filters = JobFilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.job_list(**filters.validated_data).prefetch_related("attempts")

    @extend_schema(
        summary="Launch a training job",
        description=describe(
            "Queue a LoRA fine-tuning job on an approved dataset version. `settings` overrides the preset "
            "(out-of-range values are refused with a message per field). The job is queued on its worker class "
            "after the request commits; follow it on its detail endpoint.",
            LAUNCH_JOBS,
        ),
        request=JobInput,
        responses={201: TrainingJobOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = JobInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.training_job_create(actor=request.user, via="api", **data.resolve())
        return Response(TrainingJobOutput(job).data, status=status.HTTP_201_CREATED)


class TrainingEstimateApi(APIView):
    permission_classes = [HasPerm.of(LAUNCH_JOBS)]

    @extend_schema(
        summary="Estimate a job before launching it",
        description=describe(
            "Memory and time for the job described as for launching, and warnings when no live worker of the "
            "chosen class can hold it. Nothing is queued. Refused (400) for the same reasons as a launch: a version "
            "that has not passed privacy review or has no training rows, a base model that cannot learn the "
            "version's task (an encoder with instruction/response data), an unknown worker class.",
            LAUNCH_JOBS,
        ),
        request=JobInput,
        responses={200: EstimateOutput, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        data = JobInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.resolve()
        version, base_model = values["version"], values["base_model"]
        task = version.dataset.task_type
        labels = services.training_job_check(version=version, base_model=base_model, queue=values["queue"])
        config = services.training_config_build(
            task=task, preset=values["preset"], overrides=values["overrides"], labels=labels
        )
        estimate = services.training_estimate(
            base_model=base_model, config=config, version=version, queue=values["queue"]
        )
        return Response(EstimateOutput(estimate).data)


class TrainingJobDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_JOBS)]

    @extend_schema(
        summary="Follow a training job",
        description=describe(
            "Status in words, progress, the latest loss, learning rate, speed and memory, the log tail, every "
            "attempt (a worker that died shows as `worker_lost`), and the error with a hint when it failed.",
            VIEW_JOBS,
        ),
        responses={200: TrainingJobOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, job_id: int):
        return Response(TrainingJobOutput(_job_or_404(job_id)).data)


class TrainingJobCurvesApi(APIView):
    permission_classes = [HasPerm.of(VIEW_JOBS)]

    @extend_schema(
        summary="Loss curves of a job",
        description=describe("Training and evaluation loss by step, and the learning rate.", VIEW_JOBS),
        responses={200: CurvesOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, job_id: int):
        return Response(CurvesOutput(selectors.job_curves(_job_or_404(job_id))).data)


class TrainingJobCancelApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_JOBS)]

    @extend_schema(
        summary="Cancel a training job",
        description=describe(
            "A waiting job is cancelled at once. A running job is asked to stop: it finishes its current step "
            "(or checkpoint save), frees the GPU within seconds and ends as `cancelled`.",
            MANAGE_JOBS,
        ),
        request=None,
        responses={202: TrainingJobOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, job_id: int):
        job = services.training_job_cancel(job=_job_or_404(job_id), actor=request.user)
        return Response(TrainingJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class TrainingJobRetryApi(APIView):
    permission_classes = [HasPerm.of(MANAGE_JOBS)]

    @extend_schema(
        summary="Retry a failed or cancelled job",
        description=describe("Queue it again; it resumes from its last checkpoint when it has one.", MANAGE_JOBS),
        request=None,
        responses={202: TrainingJobOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, job_id: int):
        job = services.training_job_retry(job=_job_or_404(job_id), actor=request.user)
        return Response(TrainingJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class TrainingQueueApi(APIView):
    permission_classes = [HasPerm.of(VIEW_JOBS)]

    @extend_schema(
        summary="Queues and workers",
        description=describe(
            "Per worker class: how many jobs wait and run, which jobs, and the live workers with their GPUs.",
            VIEW_JOBS,
        ),
        responses={200: QueueOutput(many=True), **error_responses(401, 403)},
    )
    def get(self, request):
        return Response(QueueOutput(selectors.queue_overview(), many=True).data)


@extend_schema_view(
    get=extend_schema(
        summary="List trained models",
        description=describe("The adapter registry, newest first; filter by `stage`.", VIEW_MODELS),
        responses={200: TrainedModelOutput(many=True), **error_responses(401, 403)},
    )
)
class TrainedModelListApi(generics.ListAPIView):
    permission_classes = [HasPerm.of(VIEW_MODELS)]
    serializer_class = TrainedModelOutput
    pagination_class = NewestFirst

    def get_queryset(self):
        return selectors.trained_model_list(stage=self.request.query_params.get("stage", ""))


class TrainedModelDetailApi(APIView):
    permission_classes = [HasPerm.of(VIEW_MODELS)]

    @extend_schema(
        summary="A trained model and its card",
        description=describe("Files with sha256 and size, the model card, metrics and stage.", VIEW_MODELS),
        responses={200: TrainedModelOutput, **error_responses(401, 403, 404)},
    )
    def get(self, request, model_id: int):
        return Response(TrainedModelOutput(_trained_or_404(model_id), context={"request": request}).data)


class TrainedModelDownloadApi(APIView):
    permission_classes = [HasPerm.of(DOWNLOAD_MODELS)]

    @extend_schema(
        summary="Download an adapter",
        description=describe(
            "A zip of the adapter: adapter_model.safetensors, adapter_config.json, the tokenizer and README.md "
            "(the model card). Audited.",
            DOWNLOAD_MODELS,
        ),
        responses={(200, "application/zip"): bytes, **error_responses(401, 403, 404)},
    )
    def get(self, request, model_id: int):
        trained = _trained_or_404(model_id)
        merged = request.query_params.get("merged") in ("1", "true", "yes")
        if merged and trained.merge_status != "done":
            raise exceptions.ValidationError({"merged": "This model has no merged export yet: start one first."})
        archive = selectors.trained_model_zip(trained, merged=merged)
        services.trained_model_download_record(trained=trained, actor=request.user, via="api")
        name = f"{trained.name}-merged.zip" if merged else f"{trained.name}.zip"
        return FileResponse(archive, as_attachment=True, filename=name, content_type="application/zip")


class TrainedModelMergeApi(APIView):
    permission_classes = [HasPerm.of(DOWNLOAD_MODELS)]

    @extend_schema(
        summary="Export a merged model",
        description=describe(
            "Merge the adapter into its base model on a worker (a standalone model, as large as the base). "
            "Follow `merge_status` on the model; download with `download/?merged=true` when it is `done`.",
            DOWNLOAD_MODELS,
        ),
        request=None,
        responses={202: TrainedModelOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, model_id: int):
        trained = services.trained_model_merge_start(trained=_trained_or_404(model_id), actor=request.user)
        return Response(TrainedModelOutput(trained, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
