"""The API keeps its contract: schemathesis sends generated requests to every operation of the OpenAPI schema.

Each answer must be documented (status and content type), JSON that matches the schema, never a 5xx; input that
breaks the schema must be refused, and an endpoint that needs a token must refuse a request without one.

The run is bounded and repeatable: a fixed seed, derandomized Hypothesis, ``MAX_EXAMPLES`` generated requests per
operation on top of schemathesis' fixed coverage cases (boundary values, nulls, wrong types, missing fields). It
runs in this process against the WSGI app, so no server is started, inside the test database with real objects:
a version with examples, an upload, deduplication and privacy runs, a training job, a trained and promoted model,
evaluations, KPIs, a use case, an annotation project with answers. Each operation is called with the token of the
role that owns it (the smallest role holding its permission: annotators reserve and answer, reviewers adjudicate,
curators upload, privacy reviewers decide findings, engineers train, managers read, admins read the audit log).

When it fails, the message names the check, the operation and a curl command that reproduces the request.
"""

import contextlib
import json
import re
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.urls import resolve
from hypothesis import HealthCheck, settings
from jsonschema import Draft4Validator, FormatChecker
from rest_framework.permissions import AllowAny
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation

from accounts.roles import ROLES

pytestmark = pytest.mark.contract

MAX_EXAMPLES = 8
SEED = 20261207


def _openapi() -> dict:
    """The schema exactly as /api/schema/?format=json serves it (generated here: no request, no database)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {
            # Every built-in check, except:
            # - positive_data_acceptance: a body that fits the schema may still name a version that is not approved,
            #   a job that is already finished, a name that is taken... The API answers those with 400 and a
            #   sentence; no OpenAPI schema can say which objects exist and in which state, so this check would fail
            #   most writes. Server errors and schema violations on these paths are still checked.
            # use_after_free, ensure_resource_availability and object_level_authorization are on but judge chains
            # of calls (delete then read, create then read, one user's object read by another); this test sends
            # each operation on its own, so they have nothing to judge. Who may read what is tested call by call in
            # tests/test_permission_matrix.py.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
schema.app = get_wsgi_application()


# ------------------------------------------------------------------------------------------------ DRF's readings

SCALARS = {"string", "integer", "number", "boolean"}


def _errors(instance, subschema: dict) -> list:
    validator = Draft4Validator({**subschema, "components": OPENAPI["components"]}, format_checker=FormatChecker())
    return list(validator.iter_errors(instance))


def _scalar_read_as_scalar(error) -> bool:
    expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    value = error.instance
    return error.validator == "type" and set(expected) <= SCALARS and isinstance(value, str | int | float | bool)


def _read_by_drf_as_sent(case) -> bool:
    """Whether the "invalid" request is one DRF reads, by design, as a valid one:

    - a JSON scalar of another scalar type that DRF converts without loss (0 for "0", 0 for false, "2" for 2):
      DRF fields are lenient that way, and a stricter reading would refuse clients for no gain;
    - an optional query parameter sent empty (``?start=``): DRF reads it as not given, as browsers send forms.
    Anything else (a null, a missing field, an object for a list, an unknown choice, a bad date) still fails.
    """
    meta = case.meta
    if meta is None or any(meta.is_negative_at(place) for place in (ParameterLocation.PATH, ParameterLocation.HEADER)):
        return False
    operation = OPENAPI["paths"][case.operation.path][case.operation.method.lower()]
    problems = 0
    if meta.is_negative_at(ParameterLocation.BODY):
        content = operation.get("requestBody", {}).get("content", {}).get(case.media_type or "")
        errors = _errors(case.body, content["schema"]) if content and isinstance(case.body, dict) else [None]
        if not errors or not all(error is not None and _scalar_read_as_scalar(error) for error in errors):
            return False
        problems += len(errors)
    if meta.is_negative_at(ParameterLocation.QUERY):
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query" or parameter["name"] not in (case.query or {}):
                continue
            value = case.query[parameter["name"]]
            if _errors(value, parameter["schema"]):
                if value != "" or parameter.get("required"):
                    return False
                problems += 1
    return problems > 0


@schema.hook("filter_failure")
def filter_failure(context, failure, case, response) -> bool:
    return not (isinstance(failure, AcceptedNegativeData) and _read_by_drf_as_sent(case))


# ------------------------------------------------------------------------------------------------ who calls what


def _permission(path: str, method: str) -> str | None:
    """The permission the view checks; "" for any signed-in user, None when no sign-in is needed."""
    view = resolve(re.sub(r"\{\w+\}", "1", path)).func.cls
    permission = view.permission_classes[0]
    if permission is AllowAny:
        return None
    if getattr(permission, "perms", None):
        return permission.perms[method]
    return getattr(permission, "perm", "")


@cache
def owner(path: str, method: str) -> str | None:
    """The role whose token calls this operation: the smallest role that holds its permission."""
    perm = _permission(path, method)
    if perm is None:
        return None
    holders = [role for role in ROLES if not perm or perm in role.permissions]
    return min(holders, key=lambda role: len(role.permissions)).slug


# ------------------------------------------------------------------------------------------------ the data


class Seed:
    """One of everything the API shows, made once for the module (each test rolls its own changes back)."""

    def __init__(self, tmp_path):
        from django.core.files import File
        from django.core.files.base import ContentFile

        from accounts.services import roles_sync
        from annotation import services as annotation
        from curation import services as curation
        from evaluation import services as evaluation
        from evaluation.models import EvalRun, Prediction
        from tests.curation.test_views_review import make_review
        from tests.factories import ExampleFactory, UserFactory, VersionFactory
        from training import services as training
        from training.models import TrainedModel
        from training.tinymodels import build_tiny_llama

        roles_sync()
        self.users = {role.slug: UserFactory(username=f"contract-{role.slug}", roles=[role.slug]) for role in ROLES}
        curator, annotator = self.users["curator"], self.users["annotator"]

        self.version = version = VersionFactory(row_count=12, privacy="approved", content_hash="c0ffee")
        for i in range(12):
            ExampleFactory(
                version=version,
                row_index=i,
                input=f"Ticket {i}: my invoice shows the wrong amount since the update.",
                target="Sorry about that; we corrected the invoice.",
                group=("clinic", "hospital")[i % 2],
                split=(["train"] * 8 + ["validation"] * 2 + ["test"] * 2)[i],
            )
        self.dedupe_run = curation.dedupe_run_start(version=version, actor=curator, mode="exact")
        curation.dedupe_run_execute(run_id=self.dedupe_run.pk)  # the worker's part, run here
        self.redaction = make_review(None)
        self.finding = self.redaction.findings.order_by("id").first()

        path = tmp_path / "tickets.csv"
        path.write_text("question,answer\nWhere is my refund?,It was sent on Monday.\n", encoding="utf-8")
        with open(path, "rb") as handle:
            upload = curation.upload_create(
                actor=curator, file=File(handle, name=path.name), original_name=path.name, dataset_name="contract"
            )
        curation.upload_start_validation(upload=upload, actor=curator)
        self.upload = curation.upload_stage(upload_id=upload.pk)

        llama = build_tiny_llama(Path(__file__).resolve().parent.parent / "var" / "test-models" / "tiny-llama")
        self.base_model = training.base_model_ensure(name="tiny-llama", source=str(llama))
        self.job = training.training_job_create(version=version, base_model=self.base_model, actor=None)
        done = training.training_job_create(version=version, base_model=self.base_model, actor=None)
        type(done).objects.filter(pk=done.pk).update(status="succeeded")
        prefix = f"{done.artifact_prefix}/adapter"
        training.artifact_storage().save(f"{prefix}/adapter_config.json", ContentFile(b'{"r": 8}'))
        self.trained = TrainedModel.objects.create(
            name="contract-adapter",
            job=done,
            base_model=self.base_model,
            dataset_version=version,
            task="sft",
            artifact_prefix=prefix,
            files=[{"name": "adapter_config.json", "size": 8, "sha256": "0" * 64}],
            sha256="0" * 64,
        )
        self.eval_run = EvalRun.objects.create(
            kind="base",
            base_model=self.base_model,
            dataset_version=version,
            task="sft",
            status="succeeded",
            metrics={"rougeL": 0.5},
        )
        Prediction.objects.create(run=self.eval_run, example=version.examples.first(), output="We corrected it.")
        EvalRun.objects.create(
            kind="adapter",
            trained_model=self.trained,
            base_model=self.base_model,
            dataset_version=version,
            task="sft",
            status="succeeded",
            metrics={"rougeL": 0.6},
        )
        self.use_case = evaluation.use_case_save(
            slug="contract",
            name="Contract",
            task="sft",
            dataset=version.dataset,
            actor=None,
            gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 1.0}],
        )
        evaluation.model_promote(use_case=self.use_case, trained=self.trained, to_stage="production", actor=None)
        evaluation.kpi_ensure(slug="csat", name="CSAT", unit="points", higher_is_better=True)
        self.kpi_header = header = "kpi,model,period_start,period_end,segment,value,sample_size\n"
        rows = [
            f"csat,{name},2026-10-{day:02},2026-10-{day + 6:02},,{value},100"
            for day in (5, 12)
            for name, value in ((self.base_model.name, 4.1 + day / 100), (self.trained.name, 4.3 + day / 50))
        ]
        evaluation.kpi_import_csv(text=header + "\n".join(rows) + "\n", actor=None)

        self.project = annotation.annotation_project_create(
            name="contract-annotation",
            version=version,
            actor=curator,
            annotations_per_example=1,
            schema=annotation.default_schema(version.dataset),
        )
        self.label_schema = annotation.default_schema(version.dataset)
        answered = annotation.assignment_next(project=self.project, annotator=annotator)
        annotation.annotation_submit(
            assignment=answered, annotator=annotator, answer={"response": "We corrected it.", "quality": 4}
        )
        self.task = answered.task
        self.assignment = annotation.assignment_next(project=self.project, annotator=annotator)
        self.publish_run = annotation.publish_run_start(project=self.project, actor=curator)

    def path_ids(self) -> dict[str, int | str]:
        """The id to put after each collection's name in a path (``/versions/{version_id}/`` → the version)."""
        return {
            "datasets": self.version.dataset_id,
            "versions": self.version.pk,
            "examples": self.version.examples.first().pk,
            "dedupe-runs": self.dedupe_run.pk,
            "uploads": self.upload.pk,
            "redaction-runs": self.redaction.pk,
            "findings": self.finding.pk,
            "training-jobs": self.job.pk,
            "models": self.trained.pk,
            "evaluation-runs": self.eval_run.pk,
            "use-cases": self.use_case.slug,
            "projects": self.project.pk,
            "assignments": self.assignment.pk,
            "tasks": self.task.pk,
            "publish-runs": self.publish_run.pk,
        }

    def references(self) -> dict[str, int | str]:
        """Body and query fields that name another object: generated values would name nothing."""
        return {
            "version": self.version.pk,
            "dataset_version": self.version.pk,
            "eval_version": self.version.pk,
            "dataset": self.version.dataset.name,
            "base_model": self.base_model.name,
            "retrain_base_model": self.base_model.name,
            "model": self.trained.name,
            "baseline": self.base_model.name,
            "candidate": self.trained.name,
            "models": f"{self.base_model.name},{self.trained.name}",
            "project": self.project.pk,
            "example": self.finding.example_id,
            "schema": self.label_schema,
            "source": self.base_model.source,
            "base_url": "http://127.0.0.1:9/v1",  # allowed in tests (ENDPOINT_ALLOWED_HOSTS); nothing listens
            "csv": f"{self.kpi_header}csat,{self.trained.name},2026-10-19,2026-10-25,,4.5,80\n",
        }


def _token(username: str) -> str:
    from rest_framework.test import APIClient

    response = APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": "pw-for-tests-123"}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


@pytest.fixture(scope="module")
def seed(django_db_setup, django_db_blocker, tmp_path_factory):
    """The data and one token per role, in a transaction rolled back when the module ends.

    The WSGI app runs in this thread on the same connection; Django's per-request connection clean-up would close
    it mid-transaction, so it is switched off here as Django's own test client does.
    """
    with django_db_blocker.unblock(), transaction.atomic():
        data = Seed(tmp_path_factory.mktemp("contract"))
        tokens = {slug: _token(user.username) for slug, user in data.users.items()}
        # After the test client's requests: it connects the clean-up again when it finishes.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        yield data, data.path_ids(), data.references(), tokens
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        transaction.set_rollback(True)


# ------------------------------------------------------------------------------------------------ no outbound calls


def _local_addresses() -> set[str]:
    """Loopback plus the database, cache and broker hosts the test may reach."""
    from django.conf import settings

    hosts = {"localhost", "127.0.0.1", "::1"}
    hosts |= {db.get("HOST") or "localhost" for db in settings.DATABASES.values()}
    for url in [backend.get("LOCATION") for backend in settings.CACHES.values()] + [settings.CELERY_BROKER_URL]:
        for location in url if isinstance(url, list | tuple) else [url]:
            if isinstance(location, str) and "://" in location:
                hosts.add(urlsplit(location).hostname or "localhost")
    addresses = set(hosts)
    for host in hosts:
        with contextlib.suppress(OSError):
            addresses |= {info[4][0] for info in socket.getaddrinfo(host, None)}
    return addresses


@pytest.fixture(autouse=True)
def _no_outbound_network(monkeypatch):
    """Generated bodies carry addresses (an endpoint's base_url, Label Studio's url) the app would try to reach:
    any connection or name lookup outside this machine's services fails at once, as it does with no network."""
    allowed = _local_addresses()
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in allowed and str(host) not in allowed:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (outbound network is off in tests)")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in allowed:
            raise ConnectionRefusedError(f"Outbound network is off in tests ({host})")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


# ------------------------------------------------------------------------------------------------ the test


def _point_at_real_objects(case, path_ids: dict, references: dict) -> None:
    """Valid path parameters name the seeded objects (ids the generator invents would all be 404s); invalid ones
    (a string for an id) stay, to check that a route miss answers JSON. Fields naming other objects likewise."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.PATH):
        segments = case.operation.path.strip("/").split("/")
        for index, segment in enumerate(segments):
            name = segment.strip("{}")
            if segment.startswith("{") and name in (case.path_parameters or {}):
                case.path_parameters[name] = path_ids.get(segments[index - 1], case.path_parameters[name])
    for location, container in ((ParameterLocation.BODY, case.body), (ParameterLocation.QUERY, case.query)):
        if isinstance(container, dict) and (meta is None or not meta.is_negative_at(location)):
            for key in container.keys() & references.keys():
                container[key] = references[key]


@schema.parametrize()
# One database transaction per operation, shared by its generated requests on purpose (rolled back afterwards);
# no deadline, as a shared CI machine's timings vary.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_api_keeps_its_contract(case, seed, db):
    _, path_ids, references, tokens = seed
    role = owner(case.operation.path, case.operation.method.upper())
    _point_at_real_objects(case, path_ids, references)
    headers = {"Authorization": f"Token {tokens[role]}"} if role else {}
    case.call_and_validate(headers=headers)
