"""Who may call which /api/v1/ endpoint: every endpoint × every role, with the exact status expected.

The endpoint list comes from the URL resolver, so a new endpoint fails
``test_every_api_endpoint_has_decided_permissions`` until its row is added to ``EXPECTED`` below.
Allowed callers send a valid request and get the endpoint's success status; roles without the
permission get 403; anonymous callers get 401 (token authentication answers with WWW-Authenticate).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pytest
from django.core.cache import cache
from django.core.files import File
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from accounts.roles import ROLES as ROLE_DEFINITIONS
from curation import services
from curation.models import Example
from tests.factories import ExampleFactory, VersionFactory

ANONYMOUS = "anonymous"
ROLES = (*(role.slug for role in ROLE_DEFINITIONS), "outsider", ANONYMOUS)
PASSWORD = "pw-for-tests-123"

EVERYONE = frozenset(ROLES)
SIGNED_IN = EVERYONE - {ANONYMOUS}
DATASET_READERS = frozenset({"curator", "privacy_reviewer", "engineer", "manager", "admin"})  # view_dataset
EXAMPLE_READERS = frozenset({"curator", "privacy_reviewer", "engineer", "admin"})  # view_example
UPLOADERS = frozenset({"curator", "engineer", "admin"})  # add_upload
CURATORS = frozenset({"curator", "engineer", "admin"})  # change_dataset
EXPORTERS = frozenset({"curator", "engineer", "admin"})  # export_datasetversion
AUDITORS = frozenset({"admin"})  # view_auditevent
RUN_VIEWERS = frozenset({"curator", "privacy_reviewer", "engineer", "admin"})  # view_redactionrun
PRIVACY_REVIEWERS = frozenset({"privacy_reviewer", "admin"})  # review_redactionrun, view_pseudonyms
TRAINING_READERS = frozenset({"engineer", "manager", "admin"})  # view_trainingjob, view_basemodel, view_trainedmodel
TRAINERS = frozenset({"engineer", "admin"})  # add/change_trainingjob, add_basemodel, download_trainedmodel
RESULT_READERS = frozenset({"engineer", "manager", "admin"})  # view_evalrun, view_kpiobservation, view_usecase
EVALUATORS = frozenset({"engineer", "admin"})  # add_evalrun, add_kpiobservation, change_usecase, promote_usecase, ...
PROJECT_READERS = frozenset(
    {"curator", "annotator", "annotation_reviewer", "engineer", "manager", "admin"}
)  # view_annotationproject
PROJECT_MANAGERS = frozenset({"curator", "engineer", "admin"})  # add_annotationproject
ANNOTATORS = frozenset({"annotator", "annotation_reviewer", "admin"})  # add_annotation
ANSWER_READERS = frozenset({"curator", "annotation_reviewer", "engineer", "admin"})  # view_annotation
ADJUDICATORS = frozenset({"curator", "annotation_reviewer", "admin"})  # adjudicate_task
LABEL_STUDIO_ADMINS = frozenset({"engineer", "admin"})  # change_labelstudioconnection

CSV = "question,answer\nWhere is my refund?,It was sent on Monday.\nHow do I log in?,Use the link.\n,empty\n"


class World:
    """The objects one request needs, made on first use; uploads belong to the caller (uploads are private)."""

    def __init__(self, user, make_user, tmp_path):
        self.user = user
        self.make_user = make_user
        self.tmp_path = tmp_path

    @cached_property
    def version(self):
        version = VersionFactory(row_count=3, privacy="approved")  # exports need a privacy-approved version
        same = {"input": "Where is my refund?", "target": "It was sent on Monday."}
        Example.objects.bulk_create(
            [ExampleFactory.build(version=version, row_index=i, **row) for i, row in enumerate([same, {}, same], 1)]
        )
        return version

    @cached_property
    def run(self):
        run = services.dedupe_run_start(version=self.version, actor=None, mode="exact")
        services.dedupe_run_execute(run_id=run.pk)  # the worker's part, run here
        return run

    @cached_property
    def raw_version(self):
        version = VersionFactory(row_count=1)  # not yet through privacy review
        ExampleFactory(version=version, input="Maria Lopez asked for a refund.")
        return version

    @cached_property
    def redaction(self):
        """A detection run ready for review, its findings stored as the worker would."""
        from tests.curation.test_views_review import make_review

        return make_review(None)

    @cached_property
    def decided_redaction(self):
        run = self.redaction
        run.findings.update(status="accepted")
        return run

    @cached_property
    def base_model(self):
        from pathlib import Path

        from training.services import base_model_ensure
        from training.tinymodels import build_tiny_llama

        path = build_tiny_llama(Path(__file__).resolve().parent.parent / "var" / "test-models" / "tiny-llama")
        return base_model_ensure(name="tiny-llama", source=str(path))

    def job(self, *, status: str = "queued"):
        from training import services as training

        job = training.training_job_create(version=self.version, base_model=self.base_model, actor=None)
        type(job).objects.filter(pk=job.pk).update(status=status)
        return job

    @cached_property
    def trained(self):
        from django.core.files.base import ContentFile

        from training.models import TrainedModel
        from training.services import artifact_storage

        job = self.job(status="succeeded")
        prefix = f"{job.artifact_prefix}/adapter"
        artifact_storage().save(f"{prefix}/adapter_config.json", ContentFile(b'{"r": 8}'))
        return TrainedModel.objects.create(
            name=f"matrix-{job.pk}",
            job=job,
            base_model=self.base_model,
            dataset_version=self.version,
            task="sft",
            artifact_prefix=prefix,
            files=[{"name": "adapter_config.json", "size": 8, "sha256": "0" * 64}],
            sha256="0" * 64,
        )

    @cached_property
    def eval_run(self):
        from evaluation.models import EvalRun, Prediction

        version = self.version
        run = EvalRun.objects.create(
            kind="base",
            base_model=self.base_model,
            dataset_version=version,
            task="sft",
            status="succeeded",
            metrics={"rougeL": 0.5},
        )
        Prediction.objects.create(run=run, example=version.examples.first(), output="Sent on Monday.")
        return run

    @cached_property
    def use_case(self):
        from evaluation.services import use_case_save

        return use_case_save(
            slug="matrix",
            name="Matrix",
            task="sft",
            dataset=self.version.dataset,
            actor=None,
            gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 1.0}],
        )

    @cached_property
    def promotable(self):
        """A trained model that passes the use case's gate (its rougeL is measured, like the base model's)."""
        from evaluation.models import EvalRun

        self.eval_run  # noqa: B018 (the baseline's evaluation)
        trained = self.trained
        EvalRun.objects.create(
            kind="adapter",
            trained_model=trained,
            base_model=self.base_model,
            dataset_version=self.version,
            task="sft",
            status="succeeded",
            metrics={"rougeL": 0.6},
        )
        return trained

    @cached_property
    def rolled_use_case(self):
        """A use case whose production model replaced an earlier one, so rollback has somewhere to go."""
        from evaluation.services import model_promote

        use_case = self.use_case
        model_promote(use_case=use_case, trained=self.promotable, to_stage="production", actor=None)
        first = self.promotable
        second_job = self.job(status="succeeded")
        from training.models import TrainedModel

        second = TrainedModel.objects.create(
            name="matrix-second",
            job=second_job,
            base_model=self.base_model,
            dataset_version=self.version,
            task="sft",
            artifact_prefix="x",
            sha256="0" * 64,
        )
        from evaluation.models import EvalRun

        EvalRun.objects.create(
            kind="adapter",
            trained_model=second,
            base_model=self.base_model,
            dataset_version=self.version,
            task="sft",
            status="succeeded",
            metrics={"rougeL": 0.6},
        )
        model_promote(use_case=use_case, trained=second, to_stage="production", actor=None)
        assert first != second
        return use_case

    @cached_property
    def annotation_project(self):
        """One answer per example, so a single submission settles an example (publish needs one)."""
        from annotation.services import annotation_project_create, default_schema

        return annotation_project_create(
            name="matrix-annotation",
            version=self.version,
            actor=None,
            annotations_per_example=1,
            schema=default_schema(self.version.dataset),
        )

    @cached_property
    def annotator(self):
        """The caller, who reserves and answers examples; someone else when the caller is anonymous."""
        return self.user or self.make_user(None, username="matrix-annotator")

    @cached_property
    def assignment(self):
        """The caller's own reservation (anyone else's is 404 to them)."""
        from annotation.services import assignment_next

        return assignment_next(project=self.annotation_project, annotator=self.annotator)

    @cached_property
    def answered_project(self):
        """A project where the caller answered one example (so it is settled and can be undone or published)."""
        from annotation.services import annotation_submit

        annotation_submit(assignment=self.assignment, annotator=self.annotator, answer=ANSWER)
        return self.annotation_project

    @cached_property
    def publish_run(self):
        from annotation.services import publish_run_start

        return publish_run_start(project=self.answered_project, actor=None)

    @cached_property
    def kpi_import_run(self):
        from django.core.files.uploadedfile import SimpleUploadedFile

        from evaluation.services import kpi_import_run_start

        header = b"kpi,model,period_start,period_end,segment,value,sample_size\n"
        return kpi_import_run_start(file=SimpleUploadedFile("kpis.csv", header), actor=None)

    @cached_property
    def annotated_task(self):
        return self.answered_project.tasks.filter(annotation_count__gt=0).get()

    def upload(self, *, checked: bool = False):
        path = self.tmp_path / "tickets.csv"
        path.write_text(CSV, encoding="utf-8")
        with open(path, "rb") as handle:
            upload = services.upload_create(
                actor=self.user,
                file=File(handle, name=path.name),
                original_name=path.name,
                dataset_name="matrix-upload",
            )
        if checked:
            services.upload_start_validation(upload=upload, actor=self.user)
            upload = services.upload_stage(upload_id=upload.pk)
        return upload

    def credentials(self) -> dict:
        user = self.user or self.make_user(None, username="someone")
        return {"username": user.username, "password": PASSWORD}

    @cached_property
    def api_token(self):
        """A token of the caller (of someone else for anonymous callers, who get 401 before it matters)."""
        from accounts.services import api_token_create

        user = self.user or self.make_user(None, username="token-owner")
        return api_token_create(user=user, name="matrix")[0]


@dataclass(frozen=True)
class Endpoint:
    allowed: frozenset[str]
    ok: int
    call: Callable[[World, APIClient], object]


def get(name: str, arg: Callable[[World], int] | None = None, query: str = ""):
    return lambda w, c: c.get(reverse(name, args=[arg(w)] if arg else []) + query)


def post(name: str, arg: Callable[[World], int] | None = None, data: Callable[[World], dict] | None = None):
    return lambda w, c: c.post(reverse(name, args=[arg(w)] if arg else []), data(w) if data else {}, format="json")


def _upload_post(w: World, c: APIClient):
    path = w.tmp_path / "new.csv"
    path.write_text(CSV, encoding="utf-8")
    with open(path, "rb") as handle:
        return c.post(
            reverse("api-upload-list"),
            {
                "file": handle,
                "dataset_name": "matrix-new",
                "task_type": "sft",
                "mapping": json.dumps({"input": "question", "target": "answer"}),
            },
            format="multipart",
        )


def version_id(w):
    return w.version.pk


def dataset_id(w):
    return w.version.dataset_id


def example_id(w):
    return w.version.examples.first().pk


def run_id(w):
    return w.run.pk


def publish_run_id(w):
    return w.publish_run.pk


def redaction_id(w):
    return w.redaction.pk


def decided_redaction_id(w):
    return w.decided_redaction.pk


def finding_id(w):
    return w.redaction.findings.order_by("id").first().pk


def patch(name: str, arg: Callable[[World], int], data: Callable[[World], dict]):
    return lambda w, c: c.patch(reverse(name, args=[arg(w)]), data(w), format="json")


def _add_span(w: World) -> dict:
    example = w.redaction.version.examples.order_by("row_index").last()
    return {"example": example.pk, "field": "target", "start": 0, "end": 2, "entity_type": "PERSON"}


def upload_id(w):
    return w.upload().pk


def _kpi_post(w: World, c: APIClient):
    from evaluation.services import kpi_ensure

    kpi_ensure(slug="csat", name="CSAT", unit="points", higher_is_better=True)
    header = "kpi,model,period_start,period_end,segment,value,sample_size\n"
    text = header + f"csat,{w.base_model.name},2026-10-05,2026-10-11,,4.2,100\n"
    return c.post(reverse("api-kpi-observations"), {"csv": text}, format="json")


def _job_input(w: World) -> dict:
    return {"dataset_version": w.version.pk, "base_model": w.base_model.name, "settings": {"max_steps": 2}}


def checked_upload_id(w):
    return w.upload(checked=True).pk


def put(name: str, arg: Callable[[World], int] | None = None, data: Callable[[World], dict] | None = None):
    return lambda w, c: c.put(reverse(name, args=[arg(w)] if arg else []), data(w) if data else {}, format="json")


def delete(name: str, arg: Callable[[World], int]):
    return lambda w, c: c.delete(reverse(name, args=[arg(w)]))


ANSWER = {"response": "It was sent on Monday.", "quality": 4}  # fits the default schema of an SFT dataset


def annotation_project_id(w):
    return w.annotation_project.pk


def answered_project_id(w):
    return w.answered_project.pk


def assignment_id(w):
    return w.assignment.pk


def annotated_task_id(w):
    return w.annotated_task.pk


def _annotation_project_input(w: World) -> dict:
    from annotation.services import default_schema

    return {"name": "matrix-new", "version": w.version.pk, "limit": 2, "schema": default_schema(w.version.dataset)}


EXPECTED: dict[tuple[str, str], Endpoint] = {
    ("api/v1/auth/token/", "POST"): Endpoint(EVERYONE, 200, post("api-token", data=World.credentials)),
    ("api/v1/auth/tokens/", "GET"): Endpoint(SIGNED_IN, 200, get("api-token-list")),
    ("api/v1/auth/tokens/<int:token_id>/", "DELETE"): Endpoint(
        SIGNED_IN, 204, delete("api-token-revoke", lambda w: w.api_token.pk)
    ),
    ("api/v1/me/", "GET"): Endpoint(SIGNED_IN, 200, get("api-me")),
    ("api/v1/audit-events/", "GET"): Endpoint(AUDITORS, 200, get("api-audit-events")),
    ("api/v1/datasets/", "GET"): Endpoint(DATASET_READERS, 200, get("api-dataset-list")),
    ("api/v1/datasets/<int:dataset_id>/", "GET"): Endpoint(DATASET_READERS, 200, get("api-dataset-detail", dataset_id)),
    ("api/v1/datasets/<int:dataset_id>/versions/", "GET"): Endpoint(
        DATASET_READERS, 200, get("api-dataset-versions", dataset_id)
    ),
    ("api/v1/versions/<int:version_id>/", "GET"): Endpoint(DATASET_READERS, 200, get("api-version-detail", version_id)),
    ("api/v1/versions/<int:version_id>/examples/", "GET"): Endpoint(
        EXAMPLE_READERS, 200, get("api-version-examples", version_id, "?q=refund&split=train")
    ),
    ("api/v1/examples/<int:example_id>/", "GET"): Endpoint(EXAMPLE_READERS, 200, get("api-example-detail", example_id)),
    ("api/v1/versions/<int:version_id>/export/", "GET"): Endpoint(
        EXPORTERS, 200, get("api-version-export", version_id, "?format=csv")
    ),
    ("api/v1/versions/<int:version_id>/split/", "POST"): Endpoint(
        CURATORS,
        201,
        post(
            "api-version-split",
            version_id,
            lambda w: {"seed": 3, "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        ),
    ),
    ("api/v1/versions/<int:version_id>/filter/", "POST"): Endpoint(
        CURATORS, 201, post("api-version-filter", version_id, lambda w: {"min_chars": 5})
    ),
    ("api/v1/versions/<int:version_id>/dedupe-runs/", "POST"): Endpoint(
        CURATORS, 202, post("api-dedupe-start", version_id, lambda w: {"mode": "near", "threshold": 0.7})
    ),
    ("api/v1/dedupe-runs/<int:run_id>/", "GET"): Endpoint(DATASET_READERS, 200, get("api-dedupe-detail", run_id)),
    ("api/v1/dedupe-runs/<int:run_id>/groups/", "GET"): Endpoint(
        EXAMPLE_READERS, 200, get("api-dedupe-groups", run_id)
    ),
    ("api/v1/dedupe-runs/<int:run_id>/apply/", "POST"): Endpoint(CURATORS, 201, post("api-dedupe-apply", run_id)),
    ("api/v1/versions/<int:version_id>/redaction-runs/", "POST"): Endpoint(
        PRIVACY_REVIEWERS,
        202,
        post("api-redaction-start", lambda w: w.raw_version.pk, lambda w: {"entities": ["PERSON"]}),
    ),
    ("api/v1/redaction-runs/<int:run_id>/", "GET"): Endpoint(
        RUN_VIEWERS, 200, get("api-redaction-detail", redaction_id)
    ),
    ("api/v1/redaction-runs/<int:run_id>/summary/", "GET"): Endpoint(
        RUN_VIEWERS, 200, get("api-redaction-summary", redaction_id)
    ),
    ("api/v1/redaction-runs/<int:run_id>/findings/", "GET"): Endpoint(
        PRIVACY_REVIEWERS, 200, get("api-redaction-findings", redaction_id, "?entity_type=PERSON&min_score=0.5")
    ),
    ("api/v1/redaction-runs/<int:run_id>/findings/", "POST"): Endpoint(
        PRIVACY_REVIEWERS, 201, post("api-redaction-findings", redaction_id, _add_span)
    ),
    ("api/v1/findings/<int:finding_id>/", "PATCH"): Endpoint(
        PRIVACY_REVIEWERS, 200, patch("api-finding-detail", finding_id, lambda w: {"status": "accepted", "revision": 0})
    ),
    ("api/v1/redaction-runs/<int:run_id>/bulk-decide/", "POST"): Endpoint(
        PRIVACY_REVIEWERS,
        200,
        post("api-redaction-bulk-decide", redaction_id, lambda w: {"status": "rejected", "entity_type": "US_SSN"}),
    ),
    ("api/v1/redaction-runs/<int:run_id>/approve/", "POST"): Endpoint(
        PRIVACY_REVIEWERS, 201, post("api-redaction-approve", decided_redaction_id)
    ),
    ("api/v1/redaction-runs/<int:run_id>/pseudonyms/", "GET"): Endpoint(
        PRIVACY_REVIEWERS, 200, get("api-redaction-pseudonyms", redaction_id)
    ),
    ("api/v1/base-models/", "GET"): Endpoint(TRAINING_READERS, 200, get("api-base-models")),
    ("api/v1/base-models/", "POST"): Endpoint(
        TRAINERS, 201, post("api-base-models", data=lambda w: {"name": "again", "source": w.base_model.source})
    ),
    ("api/v1/training-jobs/", "GET"): Endpoint(TRAINING_READERS, 200, get("api-training-jobs", query="?status=queued")),
    ("api/v1/training-jobs/", "POST"): Endpoint(TRAINERS, 201, post("api-training-jobs", data=_job_input)),
    ("api/v1/training-jobs/estimate/", "POST"): Endpoint(TRAINERS, 200, post("api-training-estimate", data=_job_input)),
    ("api/v1/training-jobs/<int:job_id>/", "GET"): Endpoint(
        TRAINING_READERS, 200, get("api-training-job", lambda w: w.job().pk)
    ),
    ("api/v1/training-jobs/<int:job_id>/curves/", "GET"): Endpoint(
        TRAINING_READERS, 200, get("api-training-curves", lambda w: w.job().pk)
    ),
    ("api/v1/training-jobs/<int:job_id>/cancel/", "POST"): Endpoint(
        TRAINERS, 202, post("api-training-cancel", lambda w: w.job().pk)
    ),
    ("api/v1/training-jobs/<int:job_id>/retry/", "POST"): Endpoint(
        TRAINERS, 202, post("api-training-retry", lambda w: w.job(status="failed").pk)
    ),
    ("api/v1/training-queues/", "GET"): Endpoint(TRAINING_READERS, 200, get("api-training-queues")),
    ("api/v1/models/", "GET"): Endpoint(TRAINING_READERS, 200, get("api-models", query="?stage=candidate")),
    ("api/v1/models/<int:model_id>/", "GET"): Endpoint(TRAINING_READERS, 200, get("api-model", lambda w: w.trained.pk)),
    ("api/v1/models/<int:model_id>/merge/", "POST"): Endpoint(
        TRAINERS, 202, post("api-model-merge", lambda w: w.trained.pk)
    ),
    ("api/v1/models/<int:model_id>/download/", "GET"): Endpoint(
        TRAINERS, 200, get("api-model-download", lambda w: w.trained.pk)
    ),
    ("api/v1/evaluation-runs/", "GET"): Endpoint(RESULT_READERS, 200, get("api-eval-runs")),
    ("api/v1/evaluation-runs/", "POST"): Endpoint(
        EVALUATORS,
        201,
        post(
            "api-eval-runs",
            data=lambda w: {"model": w.base_model.name, "dataset_version": w.version.pk, "split": "train"},
        ),
    ),
    ("api/v1/evaluation-runs/<int:run_id>/", "GET"): Endpoint(
        RESULT_READERS, 200, get("api-eval-run", lambda w: w.eval_run.pk)
    ),
    ("api/v1/evaluation-runs/<int:run_id>/predictions/", "GET"): Endpoint(
        EXAMPLE_READERS, 200, get("api-eval-predictions", lambda w: w.eval_run.pk)
    ),
    ("api/v1/evaluation-runs/<int:run_id>/rescore/", "POST"): Endpoint(
        EVALUATORS, 200, post("api-eval-rescore", lambda w: w.eval_run.pk, lambda w: {"metrics": ["exact_match"]})
    ),
    ("api/v1/kpis/", "GET"): Endpoint(RESULT_READERS, 200, get("api-kpis")),
    ("api/v1/kpis/", "POST"): Endpoint(
        EVALUATORS,
        201,
        post("api-kpis", data=lambda w: {"slug": "csat", "name": "CSAT", "unit": "points", "higher_is_better": True}),
    ),
    ("api/v1/kpi-observations/", "GET"): Endpoint(RESULT_READERS, 200, get("api-kpi-observations")),
    ("api/v1/kpi-observations/", "POST"): Endpoint(EVALUATORS, 201, lambda w, c: _kpi_post(w, c)),
    ("api/v1/kpi-import-runs/<int:run_id>/", "GET"): Endpoint(
        EVALUATORS, 200, get("api-kpi-import-run", lambda w: w.kpi_import_run.pk)
    ),
    ("api/v1/kpi-dashboard/", "GET"): Endpoint(RESULT_READERS, 200, get("api-kpi-dashboard", query="?segment=")),
    ("api/v1/comparison/", "GET"): Endpoint(
        RESULT_READERS,
        200,
        lambda w, c: c.get(reverse("api-comparison") + f"?models={w.base_model.name},{w.trained.name}"),
    ),
    ("api/v1/use-cases/", "GET"): Endpoint(RESULT_READERS, 200, get("api-use-cases")),
    ("api/v1/use-cases/", "POST"): Endpoint(
        EVALUATORS,
        201,
        post(
            "api-use-cases",
            data=lambda w: {
                "slug": "uc",
                "name": "UC",
                "dataset": w.version.dataset.name,
                "gate": [{"name": "rougeL"}],
            },
        ),
    ),
    ("api/v1/use-cases/<slug:slug>/gate/", "GET"): Endpoint(
        RESULT_READERS,
        200,
        lambda w, c: c.get(reverse("api-use-case-gate", args=[w.use_case.slug]) + f"?model={w.trained.name}"),
    ),
    ("api/v1/use-cases/<slug:slug>/promote/", "POST"): Endpoint(
        EVALUATORS,
        200,
        lambda w, c: c.post(
            reverse("api-use-case-promote", args=[w.use_case.slug]), {"model": w.promotable.name}, format="json"
        ),
    ),
    ("api/v1/use-cases/<slug:slug>/rollback/", "POST"): Endpoint(
        EVALUATORS, 200, lambda w, c: c.post(reverse("api-use-case-rollback", args=[w.rolled_use_case.slug]))
    ),
    ("api/v1/endpoints/", "GET"): Endpoint(RESULT_READERS, 200, get("api-endpoints")),
    ("api/v1/endpoints/", "POST"): Endpoint(
        EVALUATORS,
        201,
        post("api-endpoints", data=lambda w: {"name": "ext", "base_url": "http://127.0.0.1:9/v1", "model": "m"}),
    ),
    ("api/v1/pilots/", "GET"): Endpoint(RESULT_READERS, 200, get("api-pilots")),
    ("api/v1/pilots/", "POST"): Endpoint(
        EVALUATORS,
        201,
        post(
            "api-pilots",
            data=lambda w: {
                "name": "p",
                "baseline": w.base_model.name,
                "candidate": w.trained.name,
                "period_start": "2026-10-05",
                "period_end": "2026-10-11",
            },
        ),
    ),
    ("api/v1/versions/<int:version_id>/balance/", "GET"): Endpoint(
        DATASET_READERS, 200, get("api-version-balance", version_id)
    ),
    ("api/v1/uploads/", "GET"): Endpoint(UPLOADERS, 200, get("api-upload-list")),
    ("api/v1/uploads/", "POST"): Endpoint(UPLOADERS, 201, _upload_post),
    ("api/v1/uploads/<int:upload_id>/", "GET"): Endpoint(UPLOADERS, 200, get("api-upload-detail", upload_id)),
    ("api/v1/uploads/<int:upload_id>/mapping/", "POST"): Endpoint(
        UPLOADERS,
        200,
        post("api-upload-mapping", upload_id, lambda w: {"mapping": {"input": "answer", "target": "question"}}),
    ),
    ("api/v1/uploads/<int:upload_id>/preview/", "GET"): Endpoint(UPLOADERS, 200, get("api-upload-preview", upload_id)),
    ("api/v1/uploads/<int:upload_id>/validate/", "POST"): Endpoint(
        UPLOADERS, 202, post("api-upload-validate", upload_id)
    ),
    ("api/v1/uploads/<int:upload_id>/import/", "POST"): Endpoint(
        UPLOADERS, 201, post("api-upload-import", checked_upload_id)
    ),
    ("api/v1/uploads/<int:upload_id>/cancel/", "POST"): Endpoint(UPLOADERS, 200, post("api-upload-cancel", upload_id)),
    ("api/v1/uploads/<int:upload_id>/problems/", "GET"): Endpoint(
        UPLOADERS, 200, get("api-upload-problems", checked_upload_id)
    ),
    ("api/v1/uploads/<int:upload_id>/report/", "GET"): Endpoint(
        UPLOADERS, 200, get("api-upload-report", checked_upload_id)
    ),
    ("api/v1/annotation/projects/", "GET"): Endpoint(
        PROJECT_READERS, 200, get("api-annotation-projects", query="?status=open")
    ),
    ("api/v1/annotation/projects/", "POST"): Endpoint(
        PROJECT_MANAGERS, 201, post("api-annotation-projects", data=_annotation_project_input)
    ),
    ("api/v1/annotation/projects/<int:project_id>/", "GET"): Endpoint(
        PROJECT_READERS, 200, get("api-annotation-project", annotation_project_id)
    ),
    ("api/v1/annotation/projects/<int:project_id>/next/", "POST"): Endpoint(
        ANNOTATORS, 200, post("api-annotation-next", annotation_project_id)
    ),
    ("api/v1/annotation/projects/<int:project_id>/undo/", "POST"): Endpoint(
        ANNOTATORS, 200, post("api-annotation-undo", answered_project_id)
    ),
    ("api/v1/annotation/projects/<int:project_id>/agreement/", "GET"): Endpoint(
        PROJECT_READERS, 200, get("api-annotation-agreement", answered_project_id)
    ),
    ("api/v1/annotation/projects/<int:project_id>/tasks/", "GET"): Endpoint(
        ANSWER_READERS, 200, get("api-annotation-tasks", answered_project_id, "?status=agreed")
    ),
    ("api/v1/annotation/projects/<int:project_id>/publish/", "POST"): Endpoint(
        PROJECT_MANAGERS, 202, post("api-annotation-publish", answered_project_id, lambda w: {"finish": True})
    ),
    ("api/v1/annotation/publish-runs/<int:run_id>/", "GET"): Endpoint(
        PROJECT_MANAGERS, 200, get("api-annotation-publish-run", publish_run_id)
    ),
    # No Label Studio connection here: allowed callers get the service's 400 "Set up the Label Studio connection
    # first" (push) and "not been sent to Label Studio yet" (pull). tests/annotation/test_apis.py runs both against
    # a real Label Studio.
    ("api/v1/annotation/projects/<int:project_id>/label-studio/push/", "POST"): Endpoint(
        PROJECT_MANAGERS, 400, post("api-annotation-label-studio-push", annotation_project_id)
    ),
    ("api/v1/annotation/projects/<int:project_id>/label-studio/pull/", "POST"): Endpoint(
        PROJECT_MANAGERS, 400, post("api-annotation-label-studio-pull", annotation_project_id)
    ),
    ("api/v1/annotation/assignments/", "GET"): Endpoint(
        ANNOTATORS, 200, get("api-annotation-assignments", query="?status=active")
    ),
    ("api/v1/annotation/assignments/<int:assignment_id>/", "GET"): Endpoint(
        ANNOTATORS, 200, get("api-annotation-assignment", assignment_id)
    ),
    ("api/v1/annotation/assignments/<int:assignment_id>/draft/", "PUT"): Endpoint(
        ANNOTATORS,
        200,
        put("api-annotation-draft", assignment_id, lambda w: {"draft": {"response": "Sent"}, "revision": 0}),
    ),
    ("api/v1/annotation/assignments/<int:assignment_id>/draft/", "POST"): Endpoint(
        ANNOTATORS,
        200,
        post("api-annotation-draft", assignment_id, lambda w: {"draft": {"response": "Sent"}, "revision": 0}),
    ),
    ("api/v1/annotation/assignments/<int:assignment_id>/submit/", "POST"): Endpoint(
        ANNOTATORS, 201, post("api-annotation-submit", assignment_id, lambda w: {"answer": ANSWER})
    ),
    ("api/v1/annotation/assignments/<int:assignment_id>/skip/", "POST"): Endpoint(
        ANNOTATORS, 200, post("api-annotation-skip", assignment_id)
    ),
    ("api/v1/annotation/tasks/<int:task_id>/", "GET"): Endpoint(
        ANSWER_READERS, 200, get("api-annotation-task", annotated_task_id)
    ),
    ("api/v1/annotation/tasks/<int:task_id>/adjudicate/", "POST"): Endpoint(
        ADJUDICATORS, 200, post("api-annotation-adjudicate", annotated_task_id, lambda w: {"answer": ANSWER})
    ),
    ("api/v1/annotation/tasks/<int:task_id>/gold/", "POST"): Endpoint(
        ADJUDICATORS, 200, post("api-annotation-gold", annotated_task_id, lambda w: {"answer": ANSWER})
    ),
    ("api/v1/annotation/tasks/<int:task_id>/gold/", "DELETE"): Endpoint(
        ADJUDICATORS, 200, delete("api-annotation-gold", annotated_task_id)
    ),
    ("api/v1/annotation/datasets/<int:dataset_id>/schema/", "GET"): Endpoint(
        PROJECT_READERS, 200, get("api-annotation-label-schema", dataset_id)
    ),
    ("api/v1/annotation/datasets/<int:dataset_id>/schema/", "PUT"): Endpoint(
        PROJECT_MANAGERS,
        200,
        put(
            "api-annotation-label-schema",
            dataset_id,
            lambda w: {"schema": {"fields": [{"name": "reply", "kind": "text"}]}},
        ),
    ),
    ("api/v1/annotation/label-studio/", "GET"): Endpoint(LABEL_STUDIO_ADMINS, 200, get("api-annotation-label-studio")),
    # Nothing listens on port 9: allowed callers get the service's 400 saying the server cannot be reached.
    ("api/v1/annotation/label-studio/", "PUT"): Endpoint(
        LABEL_STUDIO_ADMINS,
        400,
        put("api-annotation-label-studio", data=lambda w: {"url": "http://127.0.0.1:9", "token": "matrix-token"}),
    ),
}


def api_v1_endpoints() -> set[tuple[str, str]]:
    """(route, METHOD) for every view under /api/v1/, found by walking the URL resolver."""
    found: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                view_class = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
                assert view_class is not None, f"{route} is not a class-based DRF view"
                for method in ("get", "post", "put", "patch", "delete"):
                    if hasattr(view_class, method):
                        found.add((route, method.upper()))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_api_endpoint_has_decided_permissions():
    endpoints = api_v1_endpoints()
    missing = sorted(endpoints - set(EXPECTED))
    assert not missing, f"Decide who may call these endpoints and add them to EXPECTED: {missing}"
    stale = sorted(set(EXPECTED) - endpoints)
    assert not stale, f"EXPECTED lists endpoints that no longer exist: {stale}"


def test_the_roles_in_the_matrix_are_all_the_roles():
    assert set(ROLES) == {role.slug for role in ROLE_DEFINITIONS} | {"outsider", ANONYMOUS}
    assert len(ROLES) == 9  # seven roles (incl. annotation_reviewer), outsider, anonymous


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("route", "method"), sorted(EXPECTED))
def test_permission_matrix(route, method, role, make_user, tmp_path):
    cache.clear()  # progress and cancel flags are keyed by ids that repeat between tests
    endpoint = EXPECTED[(route, method)]
    user = None if role == ANONYMOUS else make_user(role)
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)

    response = endpoint.call(World(user, make_user, tmp_path), client)
    body = b"".join(response.streaming_content) if response.streaming else response.content

    if role in endpoint.allowed:
        expected = endpoint.ok
    elif role == ANONYMOUS:
        expected = 401
    else:
        expected = 403
    assert response.status_code == expected, body[:500]
    if expected == 401:
        assert response["WWW-Authenticate"] == "Token"
    if expected in (401, 403):
        assert json.loads(body)["error"]
