"""Writes for evaluation: endpoints, evaluation runs (generate, score, re-score), KPI imports, the promotion gate,
stage changes with rollback, and scheduled retraining.

The metric, inference and endpoint code is plain Python (evaluation/metrics.py, inference.py, endpoints.py);
these services feed it rows of approved versions and store what it returns.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import math
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.roles import CHANGE_ANY_ENDPOINT
from accounts.services import audit_record
from curation.models import DatasetVersion, TaskType
from curation.selectors import version_labels
from curation.services import version_require_approved
from evaluation import metrics as metric_lib
from evaluation.models import (
    EvalRun,
    ExternalEndpoint,
    Kpi,
    KpiImportRun,
    KpiObservation,
    Pilot,
    Prediction,
    RetrainRun,
    StageChange,
    UseCase,
)
from evaluation.selectors import gate_check
from projectsite.crypto import fernet_for
from projectsite.progress import ProgressReporter
from training.models import BaseModel, TrainedModel, TrainingJob

log = logging.getLogger(__name__)
CHUNK = 64


# ------------------------------------------------------------------------------------------------ endpoints


def _fernet() -> Fernet:
    return fernet_for(settings.SECRET_KEY, "endpoint-keys")


def endpoint_api_key(endpoint: ExternalEndpoint) -> str:
    if not endpoint.api_key_encrypted:
        return ""
    try:
        return _fernet().decrypt(bytes(endpoint.api_key_encrypted)).decode()
    except InvalidToken:
        raise ValidationError(
            "The endpoint's API key cannot be read: SECRET_KEY changed. Enter the key again."
        ) from None


def endpoint_can_change(*, endpoint: ExternalEndpoint, user) -> bool:
    """Whoever added an endpoint may change it; anyone else needs CHANGE_ANY_ENDPOINT (admins). Endpoints added
    before their creator was recorded are admins' only."""
    if user is None or not user.is_authenticated:
        return False
    return user.has_perm(CHANGE_ANY_ENDPOINT) or (
        endpoint.created_by_id is not None and endpoint.created_by_id == user.pk
    )


def endpoint_address_check(base_url: str, *, field: str = "base_url") -> None:
    """ValidationError on `field` unless ENDPOINT_ALLOWED_HOSTS lets Tuning Desk send requests to `base_url`."""
    from evaluation import endpoints

    try:
        endpoints.check_url(base_url, allowed_hosts=settings.ENDPOINT_ALLOWED_HOSTS)
    except endpoints.EndpointError as exc:
        raise ValidationError({field: exc.message}) from None


def _endpoint_audit(endpoint: ExternalEndpoint) -> dict:
    """What the audit log keeps of an endpoint: never the key, only its last four characters."""
    return {
        "base_url": endpoint.base_url,
        "model": endpoint.model,
        "timeout_seconds": endpoint.timeout_seconds,
        "has_api_key": bool(endpoint.api_key_encrypted),
        "api_key_hint": endpoint.api_key_hint,
    }


def endpoint_save(
    *, name: str, base_url: str, model: str, api_key: str = "", timeout_seconds: float = 30.0, actor
) -> ExternalEndpoint:
    """Add an OpenAI-compatible endpoint, or change one (by name) that `actor` may change (endpoint_can_change,
    else PermissionDenied). The key is stored encrypted and never shown again; an empty `api_key` keeps it.

    The key goes wherever the address points, so a new address needs the key again (ValidationError on api_key):
    a stored key is never sent to an address other than the one it was given for. Changing only the model name or
    the timeout keeps it. The address must pass ENDPOINT_ALLOWED_HOSTS (checked again before every request).
    Audited with the state before and after (the key's last four characters at most).
    """
    name, base_url, model, api_key = name.strip(), base_url.strip().rstrip("/"), model.strip(), api_key.strip()
    endpoint_address_check(base_url)
    with transaction.atomic():
        endpoint = ExternalEndpoint.objects.select_for_update().filter(name=name).first()
        if endpoint is None:
            endpoint = ExternalEndpoint(name=name, created_by=actor if actor and actor.is_authenticated else None)
            before = {}
        else:
            if not endpoint_can_change(endpoint=endpoint, user=actor):
                owner = endpoint.created_by.get_username() if endpoint.created_by else "an admin"
                raise PermissionDenied(
                    f"The endpoint “{name}” was added by {owner}: only they or an admin can change it. "
                    "Choose another name to add your own."
                )
            if base_url != endpoint.base_url and endpoint.api_key_encrypted and not api_key:
                raise ValidationError(
                    {
                        "api_key": "The address changed, so enter the API key again: the stored key is only ever "
                        f"sent to {endpoint.base_url}."
                    }
                )
            before = _endpoint_audit(endpoint)
        endpoint.base_url, endpoint.model, endpoint.timeout_seconds = base_url, model, timeout_seconds
        if api_key:
            endpoint.api_key_encrypted = _fernet().encrypt(api_key.encode())
            endpoint.api_key_hint = api_key[-4:]
        endpoint.full_clean()
        endpoint.save()
        audit_record(
            actor=actor,
            action="endpoint.update" if before else "endpoint.create",
            obj=endpoint,
            before=before,
            after={**_endpoint_audit(endpoint), "api_key_changed": bool(api_key)},
        )
    return endpoint


# ---------------------------------------------------------------------------------------- evaluation runs


def subject_resolve(name: str) -> TrainedModel | BaseModel | ExternalEndpoint:
    """A model by its name: a trained adapter, a base model or an external endpoint (in that order)."""
    for model in (TrainedModel, BaseModel, ExternalEndpoint):
        found = model.objects.filter(name=name).first()
        if found is not None:
            return found
    raise ValidationError({"model": f"No trained model, base model or endpoint is called “{name}”."})


def eval_run_create(
    *,
    subject: TrainedModel | BaseModel | ExternalEndpoint,
    version: DatasetVersion,
    actor,
    split: str = "test",
    judge: ExternalEndpoint | None = None,
    rubric: str = "",
    fairness_threshold: float = 0.1,
    via: str = "web",
) -> EvalRun:
    """Check the version (privacy gate, rows in the split, task) and queue the run after commit."""
    version_require_approved(version)
    task = version.dataset.task_type
    if split not in ("test", "validation", "train"):
        raise ValidationError({"split": "Choose test, validation or train."})
    if not version.examples.filter(split=split).exists():
        raise ValidationError({"dataset_version": f"“{version}” has no {split} rows to evaluate on. Split it first."})
    if not 0 <= fairness_threshold <= 1:
        raise ValidationError({"fairness_threshold": "The fairness threshold must be between 0 and 1."})
    run = EvalRun(
        dataset_version=version,
        split=split,
        task=task,
        labels=version_labels(version) if task == TaskType.CLASSIFICATION else [],
        judge=judge,
        rubric=rubric if judge else "",
        fairness_threshold=fairness_threshold,
        created_by=actor,
        celery_task_id=str(uuid.uuid4()),
    )
    if isinstance(subject, TrainedModel):
        if subject.task != task:
            raise ValidationError(
                {"model": f"{subject.name} was trained for {subject.task}, but this version is {task}."}
            )
        run.kind, run.trained_model, run.base_model = EvalRun.Kind.ADAPTER, subject, subject.base_model
    elif isinstance(subject, BaseModel):
        if not subject.can_do(task):
            raise ValidationError({"model": f"{subject.name} cannot do {task}."})
        run.kind, run.base_model = EvalRun.Kind.BASE, subject
    else:
        run.kind, run.endpoint, run.queue = EvalRun.Kind.ENDPOINT, subject, "default"
    if judge and task != TaskType.SFT:
        raise ValidationError({"judge": "A judge rates written answers; this version is for classification."})
    for endpoint, field in ((run.endpoint, "model"), (judge, "judge")):
        if endpoint is not None:  # refused now rather than failing in the worker (which checks again anyway)
            endpoint_address_check(endpoint.base_url, field=field)
    run.full_clean()
    with transaction.atomic():
        run.save()
        audit_record(actor=actor, action="evaluation.start", obj=run, after={"version": version.pk, "via": via})
        _enqueue_on_commit(run)
    return run


def _enqueue_on_commit(run: EvalRun) -> None:
    from evaluation.tasks import eval_run_task

    run_id, queue, task_id = run.pk, run.queue, run.celery_task_id
    transaction.on_commit(lambda: eval_run_task.apply_async(args=[run_id], queue=queue, task_id=task_id))


def eval_run_execute(*, run_id: int) -> EvalRun | None:
    """Claim the run, generate a prediction for every row of the split (stored in chunks), judge, score."""
    now = timezone.now()
    if not EvalRun.objects.filter(pk=run_id, status=EvalRun.Status.QUEUED).update(
        status=EvalRun.Status.RUNNING, started_at=now, heartbeat_at=now
    ):
        return None
    run = EvalRun.objects.select_related("trained_model", "base_model", "endpoint", "judge", "dataset_version").get(
        pk=run_id
    )
    work_dir = Path(tempfile.mkdtemp(prefix=f"eval-{run.pk}-", dir=settings.TRAINING_WORK_DIR))
    try:
        version_require_approved(run.dataset_version)
        examples = list(run.dataset_version.examples.filter(split=run.split).order_by("row_index").only("pk", "input"))
        EvalRun.objects.filter(pk=run.pk).update(total=len(examples))
        done = set(run.predictions.values_list("example_id", flat=True))
        todo = [example for example in examples if example.pk not in done]
        with _predictor(run, work_dir) as (predict, perplexity):
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                outputs = predict([example.input for example in chunk])
                with transaction.atomic():
                    Prediction.objects.bulk_create(
                        [
                            Prediction(run=run, example=example, output=output)
                            for example, output in zip(chunk, outputs, strict=True)
                        ],
                        ignore_conflicts=True,
                    )
                    EvalRun.objects.filter(pk=run.pk).update(
                        progress=(len(examples) - len(todo) + start + len(chunk)) / max(len(examples), 1),
                        heartbeat_at=timezone.now(),
                    )
            if perplexity is not None and "perplexity" not in run.metrics:
                # How likely the model finds the reference answers: from the model itself, not its outputs.
                rows = list(run.dataset_version.examples.filter(split=run.split).values_list("input", "target"))
                value = perplexity([i for i, _ in rows], [t for _, t in rows])
                EvalRun.objects.filter(pk=run.pk).update(metrics={"perplexity": value})
                run.refresh_from_db(fields=["metrics"])
        if run.judge_id:
            _judge(run)
        eval_run_score(run=run)
    except Exception as exc:  # noqa: BLE001 (the person sees why; the log has the traceback)
        message = getattr(exc, "message", None) or str(exc)
        hint = getattr(exc, "hint", "")
        if not isinstance(exc, ValidationError):
            log.exception("Evaluation %s failed", run.pk)
        EvalRun.objects.filter(pk=run.pk).update(
            status=EvalRun.Status.FAILED, error=f"{message} {hint}".strip(), finished_at=timezone.now()
        )
    else:
        EvalRun.objects.filter(pk=run.pk).update(
            status=EvalRun.Status.SUCCEEDED, progress=1.0, finished_at=timezone.now()
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    run.refresh_from_db()
    return run


@contextlib.contextmanager
def _predictor(run: EvalRun, work_dir: Path):
    """A function from inputs to outputs for the run's model, loaded once for all chunks."""
    if run.kind == EvalRun.Kind.ENDPOINT:
        from evaluation import endpoints

        endpoint = run.endpoint
        key = endpoint_api_key(endpoint)

        def predict(inputs):
            return endpoints.endpoint_predict(
                base_url=endpoint.base_url,
                api_key=key,
                model=endpoint.model,
                task=run.task,
                inputs=inputs,
                labels=run.labels,
                timeout=endpoint.timeout_seconds,
                allowed_hosts=settings.ENDPOINT_ALLOWED_HOSTS,
            )

        yield predict, None
        return

    from evaluation import inference

    adapter_dir = None
    config = {}
    if run.kind == EvalRun.Kind.ADAPTER:
        from training.services import adapter_download

        adapter_dir = adapter_download(run.trained_model, work_dir / "adapter")
        config = run.trained_model.job.config
    with inference.Predictor(
        task=run.task,
        base_model=run.base_model.source,
        adapter_dir=adapter_dir,
        labels=run.labels or None,
        prompt_template=config.get("prompt_template"),
    ) as model:
        yield model.predict, (model.perplexity if run.task == TaskType.SFT else None)


def _judge(run: EvalRun) -> None:
    from evaluation import endpoints

    judge = run.judge
    predictions = list(run.predictions.select_related("example").filter(judge_score__isnull=True))
    for start in range(0, len(predictions), CHUNK):
        chunk = predictions[start : start + CHUNK]
        scores = endpoints.judge(
            base_url=judge.base_url,
            api_key=endpoint_api_key(judge),
            model=judge.model,
            rubric=run.rubric or endpoints.DEFAULT_RUBRIC,
            items=[(p.example.input, p.example.target, p.output) for p in chunk],
            timeout=judge.timeout_seconds,
            allowed_hosts=settings.ENDPOINT_ALLOWED_HOSTS,
        )
        for prediction, (score, reason) in zip(chunk, scores, strict=True):
            prediction.judge_score, prediction.judge_reason = score, reason[:500]
        Prediction.objects.bulk_update(chunk, ["judge_score", "judge_reason"])


def eval_run_score(*, run: EvalRun, metric_names: list[str] | None = None) -> EvalRun:
    """Score the stored predictions (no generation): overall, per group, the fairness gaps, judge agreement."""
    rows = list(
        run.predictions.select_related("example")
        .order_by("example__row_index")
        .values_list("output", "example__target", "example__label", "example__group", "judge_score", "human_score")
    )
    outputs = [row[0] for row in rows]
    golds = [row[2] if run.reference_field == "label" else row[1] for row in rows]
    groups = [row[3] for row in rows]
    names = metric_names or [
        name for name in metric_lib.default_metrics(run.task) if name not in ("perplexity", "judge_score")
    ]
    try:
        scores = metric_lib.compute(run.task, golds, outputs, names, labels=run.labels or None) if rows else {}
        by_group = (
            metric_lib.per_group(run.task, groups, golds, outputs, names, labels=run.labels or None) if rows else {}
        )
    except ValueError as exc:
        raise ValidationError({"metrics": str(exc)}) from None
    if run.task == TaskType.CLASSIFICATION and rows:
        scores["confusion"] = metric_lib.classification_metrics(golds, outputs, run.labels or None)["confusion"]
    judged = [row[4] for row in rows if row[4] is not None]
    if judged:
        scores["judge_score"] = sum(judged) / len(judged)
    pairs = [(row[4], row[5]) for row in rows if row[4] is not None and row[5] is not None]
    agreement = {}
    if len(pairs) >= 2:
        from evaluation import endpoints

        agreement = endpoints.judge_agreement([a for a, _ in pairs], [b for _, b in pairs])
    fairness = (
        metric_lib.fairness_gaps(
            by_group, [n for n in names if n in metric_lib.METRICS], threshold=run.fairness_threshold
        )
        if by_group
        else {}
    )
    kept = {key: value for key, value in (run.metrics or {}).items() if key in ("perplexity",)}
    EvalRun.objects.filter(pk=run.pk).update(
        metrics={**run.metrics, **scores} if metric_names else {**kept, **scores},
        per_group=by_group,
        fairness=fairness,
        judge_agreement=agreement,
        empty_outputs=sum(1 for output in outputs if not output.strip()),
    )
    run.refresh_from_db()
    return run


def eval_run_rescore(*, run: EvalRun, metric_names: list[str], actor) -> EvalRun:
    """Add metrics to a finished run from its saved predictions, without generating again."""
    if run.status != EvalRun.Status.SUCCEEDED:
        raise ValidationError("Only a finished evaluation can be scored again.")
    unknown = [name for name in metric_names if name not in metric_lib.METRICS]
    if unknown:
        raise ValidationError(
            {"metrics": f"Unknown metric(s): {', '.join(unknown)}. Known: {', '.join(metric_lib.METRICS)}."}
        )
    with transaction.atomic():
        run = eval_run_score(run=run, metric_names=metric_names)
        audit_record(actor=actor, action="evaluation.rescore", obj=run, after={"metrics": metric_names})
    return run


def eval_runs_reap(*, stale_after_seconds: int | None = None) -> list[int]:
    """Re-queue evaluations whose worker died; the stored predictions stay and the run resumes after them."""
    stale_after = stale_after_seconds if stale_after_seconds is not None else settings.TRAINING_STALE_AFTER_SECONDS
    stale = timezone.now() - dt.timedelta(seconds=stale_after)
    requeued = []
    for run in EvalRun.objects.filter(status=EvalRun.Status.RUNNING, heartbeat_at__lt=stale):
        with transaction.atomic():
            run.celery_task_id = str(uuid.uuid4())
            if EvalRun.objects.filter(pk=run.pk, status=EvalRun.Status.RUNNING, heartbeat_at__lt=stale).update(
                status=EvalRun.Status.QUEUED, celery_task_id=run.celery_task_id
            ):
                _enqueue_on_commit(run)
                requeued.append(run.pk)
    return requeued


# ---------------------------------------------------------------------------------------------------- KPIs

KPI_COLUMNS = ("kpi", "model", "period_start", "period_end", "segment", "value", "sample_size")
KPI_REQUIRED_COLUMNS = ("kpi", "model", "period_start", "value", "sample_size")
# A KPI file is imported by the worker (kpi_import_run_start): up to 50 MB, about 800,000 lines.
KPI_FILE_MAX_MB = 50
KPI_FILE_MAX_BYTES = KPI_FILE_MAX_MB * 1024 * 1024
# Rows pasted on the page or sent as JSON text are imported in the request (kpi_import_csv); more go as a file.
KPI_TEXT_MAX_LINES = 5_000
# A run lists the first problems of a bad file by line and counts the rest.
KPI_PROBLEMS_KEPT = 1_000
_KPI_BATCH = 1_000
_NOT_UTF8 = "The file is not UTF-8 text. Save it as “CSV UTF-8” and try again."


class _RunTakenOver(Exception):
    """The run is no longer this worker's (the reaper marked it failed): stop without writing anything."""


class _Problems:
    """Problems of a KPI file by line; with ``keep``, only the first ``keep`` (by line) are listed, all are counted."""

    def __init__(self, keep: int | None = None):
        self.items: list[dict] = []
        self.count = 0
        self.keep = keep
        self._full = False

    def add(self, line: int, field: str, message: str) -> None:
        self.count += 1
        if not self._full:
            self.items.append({"line": line, "field": field, "message": message})

    def settle(self) -> None:
        """In line order. Called after each batch: later batches only hold later lines, so once ``keep`` problems
        are listed, the rest need only be counted."""
        self.items.sort(key=lambda item: item["line"])
        if self.keep is not None and len(self.items) >= self.keep:
            del self.items[self.keep :]
            self._full = True


def _kpi_reader(handle) -> csv.DictReader:
    reader = csv.DictReader(handle)
    try:
        columns = reader.fieldnames or []
    except UnicodeDecodeError:
        raise ValidationError({"file": _NOT_UTF8}) from None
    except csv.Error as exc:
        raise ValidationError({"file": f"The header line cannot be read as CSV ({exc})."}) from None
    missing = [name for name in KPI_REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValidationError(
            {
                "file": f"The CSV needs the columns {', '.join(KPI_COLUMNS)} (and optionally std, unit); "
                f"missing: {', '.join(missing)}."
            }
        )
    return reader


def _kpi_lines(reader: csv.DictReader):
    """(line number in the file, row); a line the csv module cannot read stops the import with its number."""
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise ValidationError({"file": f"Line {reader.line_num} cannot be read as CSV ({exc})."}) from None
    except UnicodeDecodeError:
        raise ValidationError({"file": _NOT_UTF8}) from None


def _kpi_context() -> dict:
    """What every line is checked against, read once: the KPIs and the names of the models."""
    trained = dict(TrainedModel.objects.values_list("name", "pk"))
    return {
        "kpis": {kpi.slug: kpi for kpi in Kpi.objects.all()},
        "models": set(trained)
        | set(BaseModel.objects.values_list("name", flat=True))
        | set(ExternalEndpoint.objects.values_list("name", flat=True)),
        "trained": trained,
    }


def _kpi_row(row: dict, line: int, context: dict, problems: _Problems) -> tuple[dict | None, tuple | None]:
    """One line: (the observation's fields, or None when the line has a problem; its key, when KPI and start are
    known). Plain fields, not a model instance: the check reads every line and needs none."""
    before = problems.count

    def problem(field: str, message: str) -> None:
        problems.add(line, field, message)

    kpis = context["kpis"]
    kpi = kpis.get((row.get("kpi") or "").strip())
    if kpi is None:
        problem("kpi", f"Unknown KPI “{row.get('kpi')}”. Known: {', '.join(kpis) or 'none yet'}.")
    model = (row.get("model") or "").strip()
    if model not in context["models"]:
        problem("model", f"Unknown model “{model}”: use the name of a trained model, base model or endpoint.")
    unit = (row.get("unit") or "").strip()
    if kpi and unit and unit != kpi.unit:
        problem("unit", f"{kpi.name} is measured in {kpi.unit}, not {unit}.")
    start = _date(row.get("period_start"), "period_start", problem)
    end = _date(row.get("period_end") or row.get("period_start"), "period_end", problem)
    if start and end and end < start:
        problem("period_end", "The period ends before it starts.")
    value = _number(row.get("value"), "value", problem)
    size = _number(row.get("sample_size"), "sample_size", problem)
    if size is not None and (size <= 0 or size != int(size)):
        problem("sample_size", "The sample size must be a whole number above 0.")
    std = _number(row.get("std"), "std", problem) if (row.get("std") or "").strip() else None
    if std is not None and std < 0:
        problem("std", "A standard deviation cannot be negative.")
    if kpi and kpi.kind == Kpi.Kind.PROPORTION and value is not None and not 0 <= value <= 1:
        problem("value", f"{kpi.name} is a share: give it between 0 and 1 (e.g. 0.12 for 12%).")
    segment = (row.get("segment") or "").strip()
    key = (kpi.pk, model, start, segment) if kpi and start else None
    if problems.count > before:
        return None, key
    fields = {
        "kpi": kpi,
        "model_name": model,
        "trained_model_id": context["trained"].get(model),
        "period_start": start,
        "period_end": end,
        "segment": segment,
        "value": value,
        "sample_size": int(size),
        "std": std,
    }
    return fields, key


def _kpi_check(handle, context: dict, problems: _Problems, *, report=None) -> int:
    """Every line of the file checked; the number of lines read. Figures already imported are looked up a batch
    of lines at a time (one query per 1,000 lines, not one per line)."""
    reader = _kpi_reader(handle)
    seen: dict[tuple, int] = {}
    batch: list[tuple[int, tuple]] = []
    rows = 0

    def check_batch() -> None:
        for line in _kpi_already_imported(batch):
            problems.add(line, "period_start", "This KPI, model, period and segment was already imported.")
        batch.clear()
        problems.settle()
        if report:
            report(rows)

    for line, row in _kpi_lines(reader):
        rows += 1
        _, key = _kpi_row(row, line, context, problems)
        if key is not None:
            if key in seen:
                problems.add(
                    line, "period_start", f"The same KPI, model, period and segment is on line {seen[key]} too."
                )
            else:
                seen[key] = line
                batch.append((line, key))
        if rows % _KPI_BATCH == 0:
            check_batch()
    check_batch()
    return rows


def _kpi_already_imported(batch: list[tuple[int, tuple]]) -> list[int]:
    """The lines of the batch whose KPI, model, period and segment is already in the database."""
    if not batch:
        return []
    keys = {key for _, key in batch}
    existing = set(
        KpiObservation.objects.filter(
            kpi_id__in={key[0] for key in keys},
            model_name__in={key[1] for key in keys},
            period_start__in={key[2] for key in keys},
        ).values_list("kpi_id", "model_name", "period_start", "segment")
    )
    return [line for line, key in batch if key in existing]


def _kpi_write(handle, context: dict, *, source: str, report=None) -> tuple[int, Kpi]:
    """Write the figures of a file that passed ``_kpi_check``; call inside a transaction. (written, first KPI)."""
    reader = _kpi_reader(handle)
    problems = _Problems()
    batch: list[KpiObservation] = []
    written, first = 0, None
    for line, row in _kpi_lines(reader):
        fields, _ = _kpi_row(row, line, context, problems)
        if fields is None:  # the KPIs or models changed since the check
            raise ValidationError(f"Line {line}: {problems.items[-1]['message']}")
        first = first or fields["kpi"]
        batch.append(KpiObservation(**fields, source=source))
        if len(batch) >= _KPI_BATCH:
            KpiObservation.objects.bulk_create(batch)
            written += len(batch)
            batch.clear()
            if report:
                report(written)
    KpiObservation.objects.bulk_create(batch)
    return written + len(batch), first


def kpi_import_csv(*, text: str, actor, source: str = "csv") -> dict:
    """Import KPI observations in the caller's time; any bad row → nothing imported and a report of every problem
    by line. For rows pasted on the page or sent as JSON text; a file goes to the worker (``kpi_import_run_start``)."""
    context = _kpi_context()
    problems = _Problems()
    rows = _kpi_check(io.StringIO(text), context, problems)
    if problems.count:
        return {"imported": 0, "problems": problems.items}
    if not rows:
        raise ValidationError({"file": "The CSV has no rows."})
    with transaction.atomic():
        written, first = _kpi_write(io.StringIO(text), context, source=source)
        audit_record(actor=actor, action="kpi.import", obj=first, after={"rows": written, "source": source})
    return {"imported": written, "problems": []}


# --- KPI files, imported by the worker -----------------------------------------------------------


def kpi_import_run_start(*, file, actor, source: str = "csv") -> KpiImportRun:
    """Store a KPI file and queue its import for the worker (see ``kpi_import_run_execute``).

    ``file``: an uploaded file (or any Django File). Only its header line is read here, so a file without the
    needed columns is refused at once; every line is checked by the worker.
    """
    from evaluation.tasks import kpi_import_run_task

    name = Path(file.name or "kpis.csv").name[:255]
    size = file.size or 0
    if size > KPI_FILE_MAX_BYTES:
        raise ValidationError({"file": f"The file is larger than {KPI_FILE_MAX_MB} MB. Split it into smaller files."})
    if size == 0:
        raise ValidationError({"file": "The file is empty."})
    _kpi_header_check(file)
    file.seek(0)
    run = KpiImportRun(original_name=name, size=size, source=source, created_by=actor)
    run.file.save(name, file, save=False)
    with transaction.atomic():
        run.celery_task_id = str(uuid.uuid4())
        run.save()
        audit_record(actor=actor, action="kpi.import_start", obj=run, after={"file": name, "size": size})
        run_id, task_id = run.pk, run.celery_task_id
        transaction.on_commit(lambda: kpi_import_run_task.apply_async(args=[run_id], task_id=task_id))
    return run


def _kpi_header_check(file) -> None:
    file.seek(0)
    head = file.read(64 * 1024)
    first, newline, _ = head.partition(b"\n")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        if newline:
            raise ValidationError({"file": _NOT_UTF8}) from None
        text = ""  # a header longer than 64 KB, cut inside a character: it is not a KPI header anyway
    _kpi_reader(io.StringIO(text + "\n"))


@contextlib.contextmanager
def _kpi_open(run: KpiImportRun):
    with run.file.storage.open(run.file.name, "rb") as raw:
        yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _kpi_count_lines(run: KpiImportRun) -> int:
    """Lines of figures in the file, counted fast for the progress bar (a quoted value spanning lines counts twice)."""
    lines, last = 0, b"\n"
    with run.file.storage.open(run.file.name, "rb") as raw:
        while chunk := raw.read(1024 * 1024):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(lines + (last != b"\n") - 1, 0)


def kpi_import_run_execute(*, run_id: int) -> KpiImportRun | None:
    """Import the file of a queued run: claims the run, so a message delivered twice does nothing.

    Every line is checked first, outside any transaction, with the progress and a heartbeat on the run about once
    a second. A file with any problem fails with the problems by line and nothing written. Otherwise the figures are
    written in one transaction (its progress goes through the cache, which other connections can read).
    """
    now = timezone.now()
    if not KpiImportRun.objects.filter(pk=run_id, status=KpiImportRun.Status.QUEUED).update(
        status=KpiImportRun.Status.CHECKING, started_at=now, heartbeat_at=now
    ):
        return None
    run = KpiImportRun.objects.select_related("created_by").get(pk=run_id)
    mine = KpiImportRun.objects.filter(pk=run_id, status=KpiImportRun.Status.CHECKING)
    try:
        total = _kpi_count_lines(run)
        mine.update(rows_total=total)
        last_report = time.monotonic()

        def report(done: int) -> None:
            nonlocal last_report
            if time.monotonic() - last_report < 1.0:
                return
            last_report = time.monotonic()
            if not mine.update(rows_checked=done, heartbeat_at=timezone.now()):
                raise _RunTakenOver()

        context = _kpi_context()
        problems = _Problems(keep=KPI_PROBLEMS_KEPT)
        with _kpi_open(run) as handle:
            rows = _kpi_check(handle, context, problems, report=report)
        if problems.count:
            lines = sorted({item["line"] for item in problems.items})
            shown = ", ".join(str(line) for line in lines[:10]) + (", …" if len(lines) > 10 else "")
            _kpi_run_fail(
                run_id,
                f"Nothing was imported: {problems.count:,} problem{'s' if problems.count != 1 else ''} in the file "
                f"(line{'s' if len(lines) != 1 else ''} {shown}). Fix them and import the whole file again.",
                rows_total=rows,
                rows_checked=rows,
                problem_count=problems.count,
                problems=problems.items,
            )
        elif not rows:
            _kpi_run_fail(run_id, "The file has no lines of figures under its header.", rows_total=0)
        elif mine.update(
            status=KpiImportRun.Status.WRITING, rows_total=rows, rows_checked=rows, heartbeat_at=timezone.now()
        ):
            progress = ProgressReporter(run.progress_key)
            with transaction.atomic():
                # Locked for the whole write, so the reaper (which skips locked rows) never fails a run mid-write.
                if not KpiImportRun.objects.select_for_update().filter(pk=run_id, status=KpiImportRun.Status.WRITING):
                    return None
                with _kpi_open(run) as handle:
                    written, first = _kpi_write(
                        handle, context, source=run.source, report=lambda n: progress(n / rows, rows=n)
                    )
                audit_record(
                    actor=run.created_by,
                    action="kpi.import",
                    obj=first,
                    after={"rows": written, "source": run.source, "run": run_id},
                )
                KpiImportRun.objects.filter(pk=run_id).update(
                    status=KpiImportRun.Status.DONE, imported=written, finished_at=timezone.now()
                )
            progress(1.0, force=True, rows=written)
    except _RunTakenOver:
        return None
    except ValidationError as exc:
        _kpi_run_fail(run_id, "Nothing was imported: " + " ".join(exc.messages))
    except IntegrityError:
        _kpi_run_fail(
            run_id,
            "Nothing was imported: some of these figures were imported by someone else meanwhile. "
            "Import the file again to see which lines.",
        )
    except Exception as exc:  # noqa: BLE001 (a person must see why; the worker log has the traceback)
        log.exception("KPI import run %s failed", run_id)
        _kpi_run_fail(run_id, f"Nothing was imported because of an unexpected error: {exc}")
    run.refresh_from_db()
    return run


def _kpi_run_fail(run_id: int, error: str, **fields) -> None:
    KpiImportRun.objects.filter(pk=run_id, status__in=KpiImportRun.UNFINISHED).update(
        status=KpiImportRun.Status.FAILED, error=error[:2000], finished_at=timezone.now(), **fields
    )


def kpi_import_runs_reap() -> list[int]:
    """Fail started imports whose worker died (silent for ``STALE_AFTER``): nothing of them was written, as the
    figures go in one transaction. A run being written holds its row locked and is skipped."""
    stale = timezone.now() - KpiImportRun.STALE_AFTER
    with transaction.atomic():
        lost = list(
            KpiImportRun.objects.select_for_update(skip_locked=True)
            .filter(
                status__in=[KpiImportRun.Status.CHECKING, KpiImportRun.Status.WRITING],
                heartbeat_at__lt=stale,
            )
            .values_list("pk", flat=True)
        )
        for run_id in lost:
            _kpi_run_fail(run_id, KpiImportRun.LOST_MESSAGE)
    return lost


def _date(raw, field, problem) -> dt.date | None:
    try:
        return dt.date.fromisoformat((raw or "").strip())
    except ValueError:
        problem(field, f"“{raw or ''}” is not a date like 2026-11-02.")
        return None


def _number(raw, field, problem) -> float | None:
    try:
        number = float((raw or "").strip())
    except ValueError:
        problem(field, f"“{raw or ''}” is not a number.")
        return None
    if not math.isfinite(number):
        problem(field, f"“{raw}” is not a number.")
        return None
    return number


def pilot_create(
    *,
    name: str,
    baseline: str,
    candidate: str,
    period_start: dt.date,
    period_end: dt.date,
    actor,
    segment: str = "",
    description: str = "",
) -> Pilot:
    """A pilot: two models compared on every KPI over one period (and segment)."""
    for field, value in (("baseline", baseline), ("candidate", candidate)):
        try:
            subject_resolve(value)
        except ValidationError:
            raise ValidationError({field: f"No trained model, base model or endpoint is called “{value}”."}) from None
    if baseline == candidate:
        raise ValidationError({"candidate": "A pilot compares two different models."})
    if period_end < period_start:
        raise ValidationError({"period_end": "The period ends before it starts."})
    pilot = Pilot(
        name=name.strip(),
        baseline=baseline,
        candidate=candidate,
        period_start=period_start,
        period_end=period_end,
        segment=segment.strip(),
        description=description,
        created_by=actor,
    )
    pilot.full_clean()
    with transaction.atomic():
        pilot.save()
        audit_record(
            actor=actor, action="pilot.create", obj=pilot, after={"baseline": baseline, "candidate": candidate}
        )
    return pilot


def kpi_ensure(
    *, slug: str, name: str, unit: str, higher_is_better: bool, kind: str = Kpi.Kind.MEAN, description: str = ""
) -> Kpi:
    kpi, _ = Kpi.objects.update_or_create(
        slug=slug,
        defaults={
            "name": name,
            "unit": unit,
            "higher_is_better": higher_is_better,
            "kind": kind,
            "description": description,
        },
    )
    return kpi


# ------------------------------------------------------------------------------------- gate and promotion


def gate_failures(gate: dict) -> list[str]:
    """Why a gate check does not pass, one plain sentence per failing rule, e.g. "ROUGE-L must not get worse by more
    than 0.01." or "ROUGE-L is not measured for this model on …" (no internal names)."""
    sentences = []
    for check in gate["checks"]:
        if check["passed"]:
            continue
        reason = check["reason"]
        if reason.startswith("fails: "):
            reason = f"{check.get('label') or check['name']} {reason.removeprefix('fails: ')}"
        sentences.append(reason if reason.endswith(".") else reason + ".")
    return sentences


def model_promote(*, use_case: UseCase, trained: TrainedModel, to_stage: str, actor, note: str = "") -> StageChange:
    """Candidate → staging → production, only when the gate passes; the replaced model is kept for rollback."""
    if to_stage not in (TrainedModel.Stage.STAGING, TrainedModel.Stage.PRODUCTION):
        raise ValidationError({"stage": "Promote to staging or production."})
    if trained.task != use_case.task:
        raise ValidationError({"model": f"{trained.name} is for {trained.task}; this use case is {use_case.task}."})
    gate = gate_check(use_case=use_case, candidate=trained)
    if not gate["passed"]:
        failing = " ".join(gate_failures(gate))
        raise ValidationError(f"The gate does not pass, so {trained.name} cannot be promoted. {failing}")
    with transaction.atomic():
        use_case = UseCase.objects.select_for_update().get(pk=use_case.pk)
        before = trained.stage
        replaced = use_case.production if to_stage == TrainedModel.Stage.PRODUCTION else use_case.staging
        if replaced and replaced.pk != trained.pk:
            _stage(
                replaced,
                TrainedModel.Stage.ARCHIVED
                if to_stage == TrainedModel.Stage.PRODUCTION
                else TrainedModel.Stage.CANDIDATE,
            )
        if to_stage == TrainedModel.Stage.PRODUCTION:
            use_case.production = trained
            if use_case.staging_id == trained.pk:
                use_case.staging = None
        else:
            use_case.staging = trained
        use_case.save(update_fields=["production", "staging"])
        _stage(trained, to_stage)
        change = StageChange.objects.create(
            use_case=use_case,
            trained_model=trained,
            from_stage=before,
            to_stage=to_stage,
            replaced=replaced if replaced and replaced.pk != trained.pk else None,
            gate_result=gate,
            note=note,
            actor=actor,
        )
        audit_record(
            actor=actor,
            action="model.promote",
            obj=trained,
            before={"stage": before},
            after={"stage": to_stage, "use_case": use_case.slug, "gate": gate["passed"]},
        )
    return change


def model_rollback(*, use_case: UseCase, actor, note: str = "") -> StageChange:
    """Put back the production model that the current one replaced."""
    with transaction.atomic():
        use_case = UseCase.objects.select_for_update().get(pk=use_case.pk)
        last = (
            use_case.stage_changes.filter(to_stage=TrainedModel.Stage.PRODUCTION, trained_model=use_case.production)
            .select_related("replaced")
            .first()
            if use_case.production_id
            else None
        )
        if last is None or last.replaced is None:
            raise ValidationError("There is no earlier production model to roll back to.")
        current, previous = use_case.production, last.replaced
        _stage(current, TrainedModel.Stage.CANDIDATE)
        _stage(previous, TrainedModel.Stage.PRODUCTION)
        use_case.production = previous
        use_case.save(update_fields=["production"])
        change = StageChange.objects.create(
            use_case=use_case,
            trained_model=previous,
            from_stage=TrainedModel.Stage.ARCHIVED,
            to_stage=TrainedModel.Stage.PRODUCTION,
            replaced=current,
            gate_result={},
            note=note or "Rollback",
            actor=actor,
        )
        audit_record(
            actor=actor,
            action="model.rollback",
            obj=previous,
            before={"production": current.name},
            after={"production": previous.name, "use_case": use_case.slug},
        )
    return change


def _stage(trained: TrainedModel, stage: str) -> None:
    TrainedModel.objects.filter(pk=trained.pk).update(stage=stage, stage_changed_at=timezone.now())
    trained.stage = stage


def use_case_save(
    *,
    slug: str,
    name: str,
    task: str,
    dataset,
    gate: list[dict],
    actor,
    eval_version=None,
    description: str = "",
    retrain_enabled: bool = False,
    retrain_every_hours: int = 168,
    retrain_base_model=None,
) -> UseCase:
    for rule in gate:
        if rule.get("kind", "metric") == "metric" and rule.get("name") not in metric_lib.METRICS:
            raise ValidationError({"gate": f"Unknown metric “{rule.get('name')}” in the gate."})
        if rule.get("kind") == "kpi" and not Kpi.objects.filter(slug=rule.get("name")).exists():
            raise ValidationError({"gate": f"Unknown KPI “{rule.get('name')}” in the gate."})
        if rule.get("rule", "no_regress") not in ("improve", "no_regress"):
            raise ValidationError({"gate": "A rule is “improve” or “no_regress”."})
    use_case, _ = UseCase.objects.update_or_create(
        slug=slug,
        defaults={
            "name": name,
            "task": task,
            "dataset": dataset,
            "gate": gate,
            "eval_version": eval_version,
            "description": description,
            "retrain_enabled": retrain_enabled,
            "retrain_every_hours": retrain_every_hours,
            "retrain_base_model": retrain_base_model,
        },
    )
    audit_record(actor=actor, action="use_case.save", obj=use_case, after={"gate": gate})
    return use_case


# --------------------------------------------------------------------------------------- scheduled retraining


def retrain_tick(*, now=None) -> list[int]:
    """Beat: start retraining where new approved data exists and the use case is due; move running ones along."""
    from training.services import training_job_create

    now = now or timezone.now()
    started = []
    for use_case in UseCase.objects.filter(retrain_enabled=True).select_related(
        "dataset", "production__job", "retrain_base_model"
    ):
        if use_case.retrain_runs.filter(status__in=[RetrainRun.Status.TRAINING, RetrainRun.Status.EVALUATING]).exists():
            continue
        if use_case.last_retrain_at and now - use_case.last_retrain_at < dt.timedelta(
            hours=use_case.retrain_every_hours
        ):
            continue
        latest = DatasetVersion.objects.approved().filter(dataset=use_case.dataset).order_by("-number").first()
        if latest is None or (
            use_case.last_trained_version_id and latest.number <= use_case.last_trained_version.number
        ):
            continue
        previous = (
            use_case.production.job
            if use_case.production_id
            else TrainingJob.objects.filter(
                dataset_version__dataset=use_case.dataset, status=TrainingJob.Status.SUCCEEDED
            ).first()
        )
        base = use_case.retrain_base_model or (previous.base_model if previous else None)
        if base is None:
            continue
        overrides = {k: v for k, v in (previous.config if previous else {}).items() if k not in ("task", "labels")}
        with transaction.atomic():
            try:
                job = training_job_create(
                    version=latest,
                    base_model=base,
                    actor=None,
                    preset=previous.preset if previous and previous.preset else "quick",
                    overrides=overrides,
                    via="schedule",
                )
            except ValidationError as exc:
                RetrainRun.objects.create(
                    use_case=use_case,
                    dataset_version=latest,
                    status=RetrainRun.Status.FAILED,
                    message=" ".join(exc.messages),
                    finished_at=now,
                )
                UseCase.objects.filter(pk=use_case.pk).update(last_retrain_at=now, last_trained_version=latest)
                continue
            run = RetrainRun.objects.create(use_case=use_case, dataset_version=latest, job=job)
            UseCase.objects.filter(pk=use_case.pk).update(last_retrain_at=now, last_trained_version=latest)
        started.append(run.pk)
    retrain_advance()
    return started


def retrain_advance() -> None:
    """Training finished → evaluate the candidate; evaluation finished → check the gate and propose (or not)."""
    for run in RetrainRun.objects.filter(
        status__in=[RetrainRun.Status.TRAINING, RetrainRun.Status.EVALUATING]
    ).select_related("job", "eval_run", "use_case"):
        if run.status == RetrainRun.Status.TRAINING and run.job and run.job.is_finished:
            trained = TrainedModel.objects.filter(job=run.job).first()
            if trained is None:
                _retrain_finish(
                    run,
                    RetrainRun.Status.FAILED,
                    f"Training ended as {run.job.get_status_display().lower()}: {run.job.error}",
                )
                continue
            version = run.use_case.eval_version or run.dataset_version
            try:
                eval_run = eval_run_create(subject=trained, version=version, actor=None, via="schedule")
            except ValidationError as exc:
                _retrain_finish(run, RetrainRun.Status.FAILED, " ".join(exc.messages))
                continue
            RetrainRun.objects.filter(pk=run.pk).update(status=RetrainRun.Status.EVALUATING, eval_run=eval_run)
        elif run.status == RetrainRun.Status.EVALUATING and run.eval_run and not run.eval_run.is_active:
            if run.eval_run.status != EvalRun.Status.SUCCEEDED:
                _retrain_finish(run, RetrainRun.Status.FAILED, f"Evaluation failed: {run.eval_run.error}")
                continue
            gate = gate_check(use_case=run.use_case, candidate=run.eval_run.trained_model)
            status = RetrainRun.Status.PROPOSED if gate["passed"] else RetrainRun.Status.NOT_BETTER
            message = (
                "Passed the gate: an engineer can promote it."
                if gate["passed"]
                else "Did not pass the gate: " + " ".join(gate_failures(gate))
            )
            RetrainRun.objects.filter(pk=run.pk).update(gate_result=gate)
            _retrain_finish(run, status, message)


def _retrain_finish(run: RetrainRun, status: str, message: str) -> None:
    RetrainRun.objects.filter(pk=run.pk).update(status=status, message=message[:2000], finished_at=timezone.now())
