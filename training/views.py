"""HTML pages for training: jobs (list, queue, launch, progress), the adapter registry and base models.

Views are thin: they load the object (404/403), check a form, call a service and redirect.
Services raise ValidationError with plain messages; they are shown next to the field or on top.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import (
    DOWNLOAD_MODELS,
    LAUNCH_JOBS,
    MANAGE_JOBS,
    REGISTER_BASE_MODELS,
    RUN_EVALUATIONS,
    VIEW_BASE_MODELS,
    VIEW_DATASETS,
    VIEW_JOBS,
    VIEW_MODELS,
)
from curation.forms import add_service_errors
from curation.models import TaskType
from projectsite.errors import error_messages, error_text
from training import runner, selectors, services
from training.forms import (
    ADVANCED_FIELDS,
    BaseModelForm,
    JobFilterForm,
    JobForm,
    StageFilterForm,
    TryForm,
    human_count,
)
from training.models import TrainedModel, TrainingJob

LIST_PAGE_SIZE = 50

PHASES = {
    "loading": "Loading the base model and the data",
    "training": "Training",
    "evaluating": "Measuring the loss on the evaluation rows",
    "checkpointing": "Saving a checkpoint",
    "saving": "Saving the adapter",
}

METRIC_LABELS = {
    "train_loss": "Training loss (average)",
    "eval_loss": "Evaluation loss",
    "eval_accuracy": "Evaluation accuracy",
    "steps": "Steps",
    "epochs": "Passes over the training rows (epochs)",
    "runtime_seconds": "Training time (seconds)",
    "train_tokens": "Tokens trained on",
    "tokens_per_second": "Tokens per second",
}

HARDWARE_LABELS = {
    "device": "Device",
    "device_name": "Processor",
    "gpu_count": "GPUs",
    "precision": "Precision",
    "torch_version": "PyTorch",
}


def duration_words(seconds: float | None) -> str:
    """3 * 60 -> "about 3 minutes": a duration a person reads at a glance."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours = seconds / 3600
    if hours < 36:
        return f"about {round(hours)} hours"
    return f"about {round(hours / 24)} days"


def _job_or_404(job_id: int) -> TrainingJob:
    try:
        return selectors.job_get(job_id)
    except TrainingJob.DoesNotExist:
        raise Http404("No such training job.") from None


def _trained_or_404(model_id: int) -> TrainedModel:
    trained = selectors.trained_model_list().filter(pk=model_id).first()
    if trained is None:
        raise Http404("No such trained model.")
    return trained


def _setting_labels() -> dict[str, str]:
    labels = {name: str(JobForm.base_fields[name].label) for name in (*ADVANCED_FIELDS, "qlora")}
    labels.update(task="Task", labels="Labels", prompt_template="Prompt template", device="Device")
    return labels


def _settings_rows(config: dict) -> list[tuple[str, str, object]]:
    """(name, label, value) of a job's configuration, in the order of the launch form."""
    labels = _setting_labels()
    order = {name: index for index, name in enumerate(labels)}
    rows = []
    for name, value in sorted(config.items(), key=lambda item: (order.get(item[0], len(order)), item[0])):
        if name == "target_modules" and not value:
            value = "automatic"
        elif name == "epochs" and config.get("max_steps"):
            # Maximum steps decides the length; the epochs the job makes follow from it (see the results).
            value = f"not used: stops after {config['max_steps']} steps"
        elif value in ("", []):
            continue  # e.g. the labels of a job that writes answers
        elif isinstance(value, list):
            value = ", ".join(str(item) for item in value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, str) and "\n" in value:
            value = value.replace("\n", " ↵ ")  # one line: the prompt template's line breaks, shown
        rows.append((name, labels.get(name, name.replace("_", " ").capitalize()), number_text(value)))
    return rows


def epochs_note(config: dict, metrics: dict) -> str:
    """Why the passes over the data in the results differ from the epochs in the settings, in words; "" if they
    agree. The runner trains whole steps, so the passes it makes are ``steps × batch × accumulation ÷ rows``."""
    done = metrics.get("epochs")
    if done is None or metrics.get("steps") is None:
        return ""
    steps = metrics["steps"]
    if config.get("max_steps"):
        return (
            f"The job was set to stop after {config['max_steps']} steps rather than a number of epochs: "
            f"{steps} steps went {number_text(float(done))} times through the training rows."
        )
    asked = config.get("epochs")
    if asked is None or abs(float(done) - float(asked)) < 0.001:
        return ""
    plural = "" if float(asked) == 1 else "s"
    return (
        f"The settings asked for {number_text(float(asked))} epoch{plural}; training runs whole steps "
        f"(each of {config.get('grad_accum', 1)} batches), so its {steps} steps went {number_text(float(done))} "
        "times through the training rows."
    )


def number_text(value):
    """0.0002 -> "0.0002", 1234.5678 -> "1,235": numbers without exponents or long tails; other values as they are."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if value and abs(value) < 0.01:
        return f"{value:.10f}".rstrip("0")
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _labelled(values: dict, labels: dict) -> list[tuple[str, object]]:
    return [(labels.get(key, key.replace("_", " ").capitalize()), number_text(value)) for key, value in values.items()]


def _estimate_view(estimate: dict) -> dict:
    """A stored or fresh estimate in words: memory in GiB and the time."""
    if not estimate:
        return {}
    memory = estimate.get("memory_bytes", 0)
    return {
        "memory_gib": round(memory / 2**30, 4),
        # Small models need a few MiB: "0.0 GiB" would read as nothing.
        "memory_text": f"{memory / 2**30:.1f} GiB" if memory >= 2**30 / 10 else f"{max(memory / 2**20, 1):.0f} MiB",
        "time": duration_words(estimate.get("seconds")),
        "device": "a GPU" if estimate.get("device") == "cuda" else "CPUs",
        "notes": estimate.get("notes", []),
        "warnings": estimate.get("warnings", []),
    }


# --- jobs ------------------------------------------------------------------------------------


@login_required
@permission_required(VIEW_JOBS, raise_exception=True)
def job_list(request):
    form = JobFilterForm(request.GET or None)
    filters = form.filters()
    mine = filters.pop("mine")
    jobs = selectors.job_list(**filters, mine_of=request.user if mine else None)
    page = Paginator(jobs, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    query = {key: value for key, value in {**filters, "mine": "on" if mine else ""}.items() if value}
    return render(
        request,
        "training/job_list.html",
        {"page": page, "form": form, "filtered": bool(query), "extra": urlencode(query)},
    )


@login_required
@permission_required(VIEW_JOBS, raise_exception=True)
def queue(request):
    return render(request, "training/queue.html", {"queues": selectors.queue_overview()})


def _qlora_reason() -> str:
    """Why QLoRA cannot be chosen now, or "" when it can: a live GPU worker, or a CUDA machine here."""
    if any(worker.gpu_count for worker in selectors.workers_live()):
        return ""
    available, _ = runner.qlora_available()
    if available:
        return ""
    return "Not available now: QLoRA needs a worker with an NVIDIA GPU (CUDA), and none is running."


def _preset_values() -> dict:
    """Every preset's full settings per task, for the page script to show as placeholders."""
    presets = {
        name: {task: runner.apply_preset(name, {}, task=task).to_dict() for task in TaskType.values}
        for name in runner.PRESETS
    }
    versions = {str(v.pk): v.dataset.task_type for v in selectors.approved_versions()}
    return {"presets": presets, "versions": versions, "fields": list(ADVANCED_FIELDS)}


@login_required
@permission_required(LAUNCH_JOBS, raise_exception=True)
def job_create(request):
    qlora_reason = _qlora_reason()
    if request.method == "POST":
        form = JobForm(request.POST, qlora_reason=qlora_reason)
        if form.is_valid():
            data = form.cleaned_data
            try:
                job = services.training_job_create(
                    version=data["dataset_version"],
                    base_model=data["base_model"],
                    actor=request.user,
                    preset=data["preset"],
                    overrides=form.overrides(),
                    queue=data["queue"],
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                # Not "queued": this message stays on the page while the job runs; the notice below the title
                # tells whether it still waits, and the page's poll hides it once a worker starts the job.
                messages.success(request, f"Training job #{job.pk} is launched on worker class “{job.queue}”.")
                return redirect("training:job_detail", job.pk)
    else:
        form = JobForm(qlora_reason=qlora_reason)
    context = {
        "form": form,
        "has_versions": selectors.approved_versions().exists(),
        "has_base_models": selectors.base_model_list().exists(),
        "preset_values": _preset_values(),
        "advanced_open": form.is_bound and any(form[name].errors for name in (*ADVANCED_FIELDS, "qlora")),
    }
    return render(request, "training/job_form.html", context)


@login_required
@permission_required(LAUNCH_JOBS, raise_exception=True)
@require_POST
def job_estimate(request):
    """Memory and time for the launch form as it stands; nothing is saved or queued."""
    form = JobForm(request.POST, qlora_reason=_qlora_reason())
    if not form.is_valid():
        return JsonResponse({"ok": False, "errors": _plain_errors(form.errors)})
    data = form.cleaned_data
    version = data["dataset_version"]
    task = version.dataset.task_type
    try:
        # The launch's own checks first: a base model that cannot learn this task is refused here, before submit.
        labels = services.training_job_check(version=version, base_model=data["base_model"], queue=data["queue"])
        config = services.training_config_build(
            task=task, preset=data["preset"], overrides=form.overrides(), labels=labels
        )
        estimate = services.training_estimate(
            base_model=data["base_model"], config=config, version=version, queue=data["queue"]
        )
    except ValidationError as exc:
        errors = error_messages(exc)
        # field_errors: the page script also shows them next to their field, as a refused launch would.
        fields = {name: list(lines) for name, lines in errors.items() if name in form.fields}
        return JsonResponse({"ok": False, "errors": _plain_errors(errors), "field_errors": fields})
    return JsonResponse({"ok": True, **_estimate_view(estimate), "seconds": estimate["seconds"]})


def _plain_errors(errors) -> list[str]:
    """Field errors as sentences for the estimate box: "Learning rate: Enter a number."."""
    labels = _setting_labels()
    lines = []
    for name, messages_ in errors.items():
        field = JobForm.base_fields.get(name)
        label = str(field.label) if field else labels.get(name, "")
        # "Learning rate must be between …" names its field already; other messages get the field's name.
        named = label.split(" (")[0].lower()
        lines.extend(
            f"{label}: {message}" if label and not str(message).lower().startswith(named) else str(message)
            for message in messages_
        )
    return lines


def _attempt_rows(job: TrainingJob) -> list[dict]:
    return [
        {
            "number": attempt.number,
            "worker": attempt.worker,
            "outcome": attempt.outcome,
            "outcome_display": attempt.get_outcome_display(),
            "resumed_from_step": attempt.resumed_from_step,
            "started_at": attempt.started_at.isoformat() if attempt.started_at else None,
            "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
            "error": attempt.error,
        }
        for attempt in job.attempts.all()
    ]


def _live(job: TrainingJob) -> dict:
    """The parts of the job page that change while it runs."""
    eta = job.eta_seconds if job.status == TrainingJob.Status.RUNNING else None
    return {
        "status": job.status,
        "status_display": job.get_status_display(),
        "phase": job.phase,
        "phase_display": PHASES.get(job.phase, job.phase.capitalize()) if job.is_active else "",
        "progress": job.progress,
        "step": job.step,
        "max_steps": job.max_steps,
        "eta_seconds": eta,
        "eta_text": f"{duration_words(eta)} left" if eta is not None else "",
        "loss": job.loss,
        "eval_loss": job.eval_loss,
        "learning_rate": job.learning_rate,
        # The last report of a finished job is the saving step (0 tokens per second): show the run's average.
        "tokens_per_second": (job.final_metrics or {}).get("tokens_per_second", job.tokens_per_second)
        if job.is_finished
        else job.tokens_per_second,
        "memory_mb": job.memory_mb,
        "log_tail": job.log_tail,
        "is_active": job.is_active,
    }


@login_required
@permission_required(VIEW_JOBS, raise_exception=True)
def job_detail(request, job_id: int):
    job = _job_or_404(job_id)
    context = {
        "job": job,
        "live": _live(job),
        "attempts": job.attempts.all(),
        "settings_rows": _settings_rows(job.config),
        "estimate": _estimate_view(job.estimate),
        "trained": TrainedModel.objects.filter(job=job).first() if job.status == TrainingJob.Status.SUCCEEDED else None,
        "final_metrics": _labelled(job.final_metrics, METRIC_LABELS),
        "epochs_note": epochs_note(job.config, job.final_metrics or {}),
        "took": duration_words((job.finished_at - job.started_at).total_seconds())
        if job.finished_at and job.started_at
        else "",
        "never_ran": job.is_finished and not job.attempt_count,
        "can_manage": request.user.has_perm(MANAGE_JOBS),
        "can_view_datasets": request.user.has_perm(VIEW_DATASETS),
    }
    return render(request, "training/job_detail.html", context)


@login_required
@permission_required(VIEW_JOBS, raise_exception=True)
@require_GET
@never_cache
def job_progress_json(request, job_id: int):
    """Status, progress, latest figures, log tail, attempts and the curve points after ``?since=<step>``."""
    job = _job_or_404(job_id)
    try:
        since = int(request.GET.get("since", -1))
    except ValueError:
        since = -1
    curves = selectors.job_curves(job)
    return JsonResponse(
        {
            **_live(job),
            "attempts": _attempt_rows(job),
            "curves": {name: [point for point in points if point["step"] > since] for name, points in curves.items()},
        }
    )


@login_required
@permission_required(MANAGE_JOBS, raise_exception=True)
@require_POST
def job_cancel(request, job_id: int):
    job = _job_or_404(job_id)
    try:
        job = services.training_job_cancel(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        if job.status == TrainingJob.Status.CANCELLED:
            messages.success(request, "The job is cancelled. It had not started, so nothing was trained.")
        else:
            messages.info(request, "Stopping the job. It finishes its current step and frees the worker in seconds.")
    return redirect("training:job_detail", job.pk)


@login_required
@permission_required(MANAGE_JOBS, raise_exception=True)
@require_POST
def job_retry(request, job_id: int):
    job = _job_or_404(job_id)
    try:
        job = services.training_job_retry(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        resume = f" It resumes from step {job.last_checkpoint_step}." if job.last_checkpoint_step else ""
        messages.success(request, f"The job is queued again.{resume}")
    return redirect("training:job_detail", job.pk)


# --- trained models --------------------------------------------------------------------------


@login_required
@permission_required(VIEW_MODELS, raise_exception=True)
def model_list(request):
    form = StageFilterForm(request.GET or None)
    stage = form.stage_value()
    page = Paginator(selectors.trained_model_list(stage=stage), LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "training/model_list.html",
        {"page": page, "form": form, "stage": stage, "extra": urlencode({"stage": stage}) if stage else ""},
    )


@login_required
@permission_required(VIEW_MODELS, raise_exception=True)
def model_detail(request, model_id: int):
    return _model_page(request, _trained_or_404(model_id))


@login_required
@permission_required(VIEW_MODELS, raise_exception=True)
@require_POST
def model_try(request, model_id: int):
    """The "Try it" box: the adapter answers one prompt now (short, time-limited); the answer is shown, not stored."""
    trained = _trained_or_404(model_id)
    form = TryForm(request.POST)
    answer = None
    if form.is_valid():
        try:
            answer = services.trained_model_try(trained=trained, prompt=form.cleaned_data["prompt"])
        except ValidationError as exc:
            add_service_errors(form, exc)
    return _model_page(request, trained, try_form=form, answer=answer)


def _model_page(request, trained: TrainedModel, *, try_form: TryForm | None = None, answer=None):
    card = trained.card or {}
    context = {
        "trained": trained,
        "card": card,
        "settings_rows": _settings_rows(card.get("hyperparameters") or trained.job.config),
        "metrics": _labelled(trained.metrics or card.get("metrics", {}), METRIC_LABELS),
        "epochs_note": epochs_note(
            card.get("hyperparameters") or trained.job.config, trained.metrics or card.get("metrics", {})
        ),
        "hardware": _labelled(card.get("hardware") or trained.job.hardware, HARDWARE_LABELS),
        "wall_time": duration_words(card.get("wall_time_seconds")),
        "can_download": request.user.has_perm(DOWNLOAD_MODELS),
        "can_view_datasets": request.user.has_perm(VIEW_DATASETS),
        # Server folders only for those who register base models (they give such paths themselves).
        "can_see_paths": request.user.has_perm(REGISTER_BASE_MODELS),
        "can_evaluate": request.user.has_perm(RUN_EVALUATIONS),
        "evaluate_query": urlencode({"model": trained.name, "version": trained.dataset_version_id}),
        "try_form": try_form or TryForm(),
        "answer": answer,
        "try_limits": {"tokens": services.TRY_MAX_NEW_TOKENS, "seconds": round(services.TRY_MAX_SECONDS)},
    }
    return render(request, "training/model_detail.html", context)


@login_required
@permission_required(DOWNLOAD_MODELS, raise_exception=True)
@require_GET
def model_download(request, model_id: int):
    trained = _trained_or_404(model_id)
    merged = request.GET.get("merged") == "1"
    if merged and trained.merge_status != "done":
        messages.error(request, "This model has no merged export yet: start one first.")
        return redirect("training:model_detail", trained.pk)
    try:
        archive = selectors.trained_model_zip(trained, merged=merged)
    except FileNotFoundError:
        messages.error(request, "The model's files are missing from artifact storage; ask an admin to check it.")
        return redirect("training:model_detail", trained.pk)
    services.trained_model_download_record(trained=trained, actor=request.user)
    name = f"{trained.name}-merged.zip" if merged else f"{trained.name}.zip"
    return FileResponse(archive, as_attachment=True, filename=name, content_type="application/zip")


@login_required
@permission_required(DOWNLOAD_MODELS, raise_exception=True)
@require_POST
def model_merge(request, model_id: int):
    trained = _trained_or_404(model_id)
    try:
        services.trained_model_merge_start(trained=trained, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, "Merging on a worker. The download appears here when it is done.")
    return redirect("training:model_detail", trained.pk)


# --- base models -----------------------------------------------------------------------------


def _base_model_page(request, form: BaseModelForm | None = None):
    can_register = request.user.has_perm(REGISTER_BASE_MODELS)
    tasks = dict(TaskType.choices)
    context = {
        "rows": [
            (model, human_count(model.parameter_count), [tasks.get(task, task) for task in model.task_types])
            for model in selectors.base_model_list().select_related("created_by")
        ],
        "can_register": can_register,
        "form": (form or BaseModelForm()) if can_register else None,
    }
    return render(request, "training/base_model_list.html", context)


@login_required
@permission_required(VIEW_BASE_MODELS, raise_exception=True)
def base_model_list(request):
    return _base_model_page(request)


@login_required
@permission_required([VIEW_BASE_MODELS, REGISTER_BASE_MODELS], raise_exception=True)
@require_POST
def base_model_register(request):
    form = BaseModelForm(request.POST)
    if form.is_valid():
        try:
            model = services.base_model_register(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"“{model.name}” is registered and can be chosen for training.")
            return redirect("training:base_model_list")
    return _base_model_page(request, form)
