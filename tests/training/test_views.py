"""The training pages, as each persona sees them: real services, real templates, no mocks.

No worker runs here (CELERY_TASK_ALWAYS_EAGER is off and on_commit callbacks do not fire inside a test's
transaction), so launched jobs stay queued; running and finished jobs are written as the worker would write them.
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.http import urlencode

from accounts.models import AuditEvent
from curation.models import DatasetVersion
from tests.factories import ExampleFactory, VersionFactory
from training import runner, services
from training.models import BaseModel, JobAttempt, TrainedModel, TrainingJob, TrainingMetric, Worker

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")
TRAINERS = {"engineer", "admin"}  # launch, manage, register, download
WATCHERS = TRAINERS | {"manager"}  # view jobs, base models and trained models

ADAPTER_FILES = {
    "adapter_model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 4,
    "adapter_config.json": b'{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}',
}


@pytest.fixture
def artifacts(settings, tmp_path):
    """Artifact storage in this test's own folder, so stored names never collide between tests."""
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "artifacts")},
        },
    }
    return services.artifact_storage()


def _base_model(name: str = "tiny-llama", **fields) -> BaseModel:
    """A base model row for pages that never read its folder."""
    defaults = {
        "source": "/models/tiny-llama",
        "architecture": "LlamaForCausalLM",
        "model_type": "llama",
        "parameter_count": 412_000,
        "hidden_size": 64,
        "num_layers": 2,
        "vocab_size": 1000,
        "task_types": ["sft"],
    }
    return BaseModel.objects.create(name=name, **{**defaults, **fields})


def _job(version, base_model, actor, **fields) -> TrainingJob:
    config = runner.apply_preset("quick", {}, task="sft").to_dict()
    return TrainingJob.objects.create(
        dataset_version=version,
        base_model=base_model,
        task="sft",
        preset="quick",
        config=config,
        created_by=actor,
        **fields,
    )


def _trained(job: TrainingJob, storage, files: dict[str, bytes] = ADAPTER_FILES) -> TrainedModel:
    """An adapter in the registry with its files in artifact storage, as the worker leaves it."""
    import hashlib

    prefix = f"{job.artifact_prefix}/adapter"
    entries = []
    for name, content in files.items():
        storage.save(f"{prefix}/{name}", ContentFile(content))
        entries.append({"name": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    return TrainedModel.objects.create(
        name=f"{job.base_model.name}-job{job.pk}",
        job=job,
        base_model=job.base_model,
        dataset_version=job.dataset_version,
        task=job.task,
        artifact_prefix=prefix,
        files=entries,
        sha256=entries[0]["sha256"],
        size_bytes=sum(entry["size"] for entry in entries),
        card={
            "base_model": {"name": job.base_model.name, "source": job.base_model.source},
            "dataset": {"content_hash": job.dataset_version.content_hash},
            "preset": "quick",
            "hyperparameters": job.config,
            "wall_time_seconds": 190.0,
            "hardware": {"device": "cpu", "device_name": "x86_64", "precision": "fp32"},
            "launched_by": job.created_by.username,
        },
        metrics={"train_loss": 2.51, "eval_loss": 2.734567, "steps": 30},
    )


@pytest.fixture
def site(make_user, approved_version, artifacts):
    """One of everything the pages show: a queued job, a finished one with its adapter."""
    owner = make_user("engineer", username="owner")
    version = approved_version()
    base_model = _base_model()
    queued = _job(version, base_model, owner)
    done = _job(
        version,
        base_model,
        owner,
        status=TrainingJob.Status.SUCCEEDED,
        step=30,
        max_steps=30,
        final_metrics={"train_loss": 2.51, "eval_loss": 2.73},
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    return {
        "owner": owner,
        "version": version,
        "base_model": base_model,
        "queued": queued,
        "done": done,
        "trained": _trained(done, artifacts),
    }


def _url(site, name: str) -> str:
    args = {
        "job_list": [],
        "queue": [],
        "job_create": [],
        "job_detail": [site["queued"].pk],
        "job_progress_json": [site["queued"].pk],
        "model_list": [],
        "model_detail": [site["trained"].pk],
        "model_download": [site["trained"].pk],
        "base_model_list": [],
    }[name]
    return reverse(f"training:{name}", args=args)


PAGES = {
    "job_list": WATCHERS,
    "queue": WATCHERS,
    "job_create": TRAINERS,
    "job_detail": WATCHERS,
    "job_progress_json": WATCHERS,
    "model_list": WATCHERS,
    "model_detail": WATCHERS,
    "model_download": TRAINERS,
    "base_model_list": WATCHERS,
}

POST_ONLY = {
    "training:job_estimate": lambda site: [],
    "training:job_cancel": lambda site: [site["queued"].pk],
    "training:job_retry": lambda site: [site["queued"].pk],
    "training:base_model_register": lambda site: [],
    "training:model_merge": lambda site: [site["trained"].pk],
}


# --- who may open what -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_opens_for_the_roles_that_may_see_it_and_no_one_else(client, site, make_user, page, persona):
    client.force_login(make_user(persona))
    response = client.get(_url(site, page))
    expected = 200 if persona in PAGES[page] else 403
    assert response.status_code == expected, f"{persona} on {page}"
    if expected == 200 and response["Content-Type"].startswith("text/html"):
        assert b"Log out" in response.content  # the full page, with the navigation bar


@pytest.mark.parametrize("page", sorted(PAGES))
def test_anonymous_visitors_are_sent_to_the_login_page(client, site, page):
    response = client.get(_url(site, page))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_views_that_change_data_refuse_get(client, site, admin_user, name):
    client.force_login(admin_user)
    assert client.get(reverse(name, args=POST_ONLY[name](site))).status_code == 405


@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_views_that_change_data_refuse_people_without_permission(client, site, manager, name):
    client.force_login(manager)
    assert client.post(reverse(name, args=POST_ONLY[name](site))).status_code == 403
    assert TrainingJob.objects.get(pk=site["queued"].pk).status == TrainingJob.Status.QUEUED


@pytest.mark.parametrize(
    "name",
    ["job_detail", "job_progress_json", "job_cancel", "job_retry", "model_detail", "model_download"],
)
def test_unknown_ids_are_not_found(client, site, admin_user, name):
    client.force_login(admin_user)
    url = reverse(f"training:{name}", args=[987654])
    response = client.post(url) if name in ("job_cancel", "job_retry") else client.get(url)
    assert response.status_code == 404


def test_navigation_shows_training_and_models_to_those_who_may_see_them(client, make_user):
    nav = re.compile(r'<nav aria-label="Main">(.*?)</nav>', re.S)
    client.force_login(make_user("manager"))
    items = nav.search(client.get(reverse("home")).content.decode()).group(1)
    assert ">Training</a>" in items and ">Models</a>" in items
    client.force_login(make_user("curator"))
    items = nav.search(client.get(reverse("home")).content.decode()).group(1)
    assert "Training" not in items and "Models" not in items


# --- job list and queue ------------------------------------------------------------------------


def test_job_list_shows_each_job_in_plain_words_and_filters(client, site, make_user):
    other = make_user("engineer", username="someone-else")
    mine_failed = _job(site["version"], site["base_model"], other, status=TrainingJob.Status.FAILED)
    running = _job(
        site["version"], site["base_model"], site["owner"], status=TrainingJob.Status.RUNNING, step=12, max_steps=30
    )
    client.force_login(site["owner"])
    html = client.get(reverse("training:job_list")).content.decode()
    assert "Waiting for a worker" in html and "Finished" in html and "Failed" in html
    assert "step 12 of 30" in html and 'value="40"' in html  # the small progress bar
    assert f'{site["version"].dataset.name} <span class="nowrap">· version {site["version"].number}</span>' in html
    assert "tiny-llama" in html and "someone-else" in html
    assert "New training job" in html

    html = client.get(reverse("training:job_list"), {"status": "failed"}).content.decode()
    assert f"Job #{mine_failed.pk}<" in html and f"Job #{running.pk}<" not in html
    html = client.get(reverse("training:job_list"), {"mine": "on"}).content.decode()
    assert f"Job #{running.pk}<" in html and f"Job #{mine_failed.pk}<" not in html
    html = client.get(reverse("training:job_list"), {"queue": "gpu-recovery"}).content.decode()
    assert "No job matches these filters" in html


def test_manager_sees_jobs_but_no_launch_or_manage_buttons(client, site, manager):
    client.force_login(manager)
    assert "New training job" not in client.get(reverse("training:job_list")).content.decode()
    html = client.get(reverse("training:job_detail", args=[site["queued"].pk])).content.decode()
    assert "Cancel job" not in html and "Waiting for a worker" in html


def test_queue_page_says_plainly_when_nobody_serves_a_queue(client, site, engineer):
    Worker.objects.create(
        hostname="gpu-box-1",
        queues=["gpu"],
        gpu_count=2,
        gpu_names=["NVIDIA H200", "NVIDIA H200"],
        gpu_memory_bytes=141 * 2**30,
        cpu_count=16,
        memory_bytes=128 * 2**30,
        last_seen=timezone.now(),
    )
    Worker.objects.create(
        hostname="laptop", queues=["gpu-recovery"], cpu_count=2, memory_bytes=8 * 2**30, last_seen=timezone.now()
    )
    Worker.objects.create(
        hostname="dead-box", queues=["gpu"], gpu_count=1, last_seen=timezone.now() - timezone.timedelta(hours=1)
    )
    client.force_login(engineer)
    html = client.get(reverse("training:queue")).content.decode()
    assert "gpu-box-1" in html and "2 GPUs: NVIDIA H200, NVIDIA H200" in html
    assert "laptop" in html and "CPU only" in html
    assert "dead-box" not in html  # no sign of life for an hour: not live
    assert f"Job #{site['queued'].pk}" in html and f"Job #{site['done'].pk}<" not in html
    Worker.objects.filter(hostname__in=["gpu-box-1", "laptop"]).delete()
    html = client.get(reverse("training:queue")).content.decode()
    assert "No worker is serving “gpu” right now, so the 1 waiting job will not start" in html


# --- launching -----------------------------------------------------------------------------------


def _launch_data(version, base_model, **fields) -> dict:
    return {"dataset_version": version.pk, "base_model": base_model.pk, "preset": "quick", "queue": "gpu", **fields}


def test_launch_form_offers_approved_versions_presets_and_advanced_settings(client, engineer, approved_version):
    approved = approved_version()
    raw = VersionFactory(dataset__name="Raw tickets")
    _base_model()
    client.force_login(engineer)
    html = client.get(reverse("training:job_create")).content.decode()
    assert f'<option value="{approved.pk}">' in html and "Raw tickets" not in html
    for preset in ("Quick", "Balanced", "Thorough"):
        assert f"<strong>{preset}</strong>" in html
    assert "<summary>Advanced settings</summary>" in html
    for name in (
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "epochs",
        "max_steps",
        "batch_size",
        "grad_accum",
        "max_seq_length",
        "eval_fraction",
        "seed",
        "precision",
        "qlora",
        "queue",
        "checkpoint_every",
    ):
        assert f'name="{name}"' in html, name
    assert 'id="preset-values"' in html and '"balanced"' in html  # the presets for the page script
    assert raw.pk  # made, and not offered


def test_launch_form_says_a_privacy_reviewer_must_approve_a_version_first(client, engineer):
    VersionFactory()  # ready, not reviewed
    client.force_login(engineer)
    html = client.get(reverse("training:job_create")).content.decode()
    assert "A privacy reviewer must approve a version first" in html
    assert reverse("curation:dataset_list") in html


def test_qlora_is_switched_off_with_the_reason_when_no_gpu_worker_is_live(client, engineer, approved_version):
    approved_version()
    client.force_login(engineer)
    available, _ = runner.qlora_available()
    html = client.get(reverse("training:job_create")).content.decode()
    box = re.search(r'<input type="checkbox" name="qlora"[^>]*>', html).group(0)
    if not available:  # this machine has no CUDA: the box is off and says why
        assert "disabled" in box
        assert "QLoRA needs a worker with an NVIDIA GPU (CUDA), and none is running" in html
    Worker.objects.create(
        hostname="gpu-box", queues=["gpu"], gpu_count=1, gpu_memory_bytes=2**34, last_seen=timezone.now()
    )
    html = client.get(reverse("training:job_create")).content.decode()
    assert "disabled" not in re.search(r'<input type="checkbox" name="qlora"[^>]*>', html).group(0)


def test_launching_creates_a_queued_job_and_opens_its_page(client, engineer, tiny_base_model, approved_version):
    version = approved_version()
    client.force_login(engineer)
    data = _launch_data(
        version,
        tiny_base_model,
        max_steps="12",
        learning_rate="0.0005",
        target_modules="q_proj, v_proj",
        lr_scheduler="",
    )
    response = client.post(reverse("training:job_create"), data)
    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training:job_detail", args=[job.pk])
    assert job.status == TrainingJob.Status.QUEUED and job.created_by == engineer and job.queue == "gpu"
    assert job.config["max_steps"] == 12 and job.config["learning_rate"] == 0.0005
    assert job.config["target_modules"] == ["q_proj", "v_proj"]
    assert job.config["lora_r"] == runner.PRESETS["quick"]["lora_r"]  # blank fields come from the preset
    assert job.config["lr_scheduler"] == "linear"
    html = client.get(response["Location"]).content.decode()
    assert f"Training job #{job.pk} is launched" in html and "Waiting for a worker" in html
    assert "Estimate before launch" in html and re.search(r"<dd>[0-9.]+ (GiB|MiB)</dd>", html)


def test_an_unapproved_version_from_a_crafted_request_gets_the_privacy_gate_message(client, engineer, tiny_base_model):
    raw = VersionFactory(privacy=DatasetVersion.Privacy.RAW)
    ExampleFactory(version=raw, input="Maria Lopez, SSN 123-45-6789, wants a refund.")
    client.force_login(engineer)
    response = client.post(reverse("training:job_create"), _launch_data(raw, tiny_base_model))
    html = response.content.decode()
    assert response.status_code == 200
    errors = re.search(r'<div class="form-errors" role="alert">(.*?)</div>', html, re.S).group(1)
    assert "has not passed privacy review" in errors
    assert not TrainingJob.objects.exists()


def test_an_out_of_range_learning_rate_is_explained_next_to_the_field(
    client, engineer, tiny_base_model, approved_version
):
    client.force_login(engineer)
    response = client.post(
        reverse("training:job_create"), _launch_data(approved_version(), tiny_base_model, learning_rate="5")
    )
    html = response.content.decode()
    field = re.search(r'<div class="field has-error" id="field-learning_rate">(.*?)</div>', html, re.S).group(1)
    assert "Learning rate must be between 0.000001 and 0.01." in field
    assert '<details class="step" id="advanced" open>' in html  # the error is not hidden in a closed section
    assert 'value="5' in field  # what was typed stays
    assert not TrainingJob.objects.exists()


def test_text_in_a_number_field_gets_a_plain_error(client, engineer, tiny_base_model, approved_version):
    client.force_login(engineer)
    html = client.post(
        reverse("training:job_create"), _launch_data(approved_version(), tiny_base_model, batch_size="four")
    ).content.decode()
    field = re.search(r'id="field-batch_size">(.*?)</div>', html, re.S).group(1)
    assert "Enter a whole number, for example 8." in field


def test_missing_choices_are_explained(client, engineer, approved_version):
    approved_version()
    client.force_login(engineer)
    html = client.post(reverse("training:job_create"), {"preset": "quick", "queue": "gpu"}).content.decode()
    assert "Choose the dataset version to train on." in html and "Choose a base model." in html


def test_estimate_answers_memory_time_and_warnings(client, engineer, tiny_base_model, approved_version):
    client.force_login(engineer)
    version = approved_version()
    response = client.post(reverse("training:job_estimate"), _launch_data(version, tiny_base_model, max_steps="20"))
    data = response.json()
    assert data["ok"] is True and data["memory_gib"] > 0 and data["time"]
    assert re.fullmatch(r"[0-9.]+ (GiB|MiB)", data["memory_text"])
    assert any("No worker is serving the “gpu” queue" in line for line in data["warnings"])

    Worker.objects.create(hostname="small", queues=["gpu"], cpu_count=1, memory_bytes=1024, last_seen=timezone.now())
    data = client.post(reverse("training:job_estimate"), _launch_data(version, tiny_base_model)).json()
    assert any("but the largest worker on “gpu” has" in line for line in data["warnings"])

    data = client.post(reverse("training:job_estimate"), _launch_data(version, tiny_base_model, lora_r="0")).json()
    assert data["ok"] is False and any(line.startswith("LoRA rank must be between") for line in data["errors"])
    data = client.post(reverse("training:job_estimate"), _launch_data(version, tiny_base_model, seed="x")).json()
    assert data["errors"] == ["Seed: Enter a whole number, for example 8."]
    assert not TrainingJob.objects.exists()


# --- the job page ------------------------------------------------------------------------------


def test_cancel_a_queued_job(client, site, engineer):
    client.force_login(engineer)
    job = site["queued"]
    assert "Cancel job" in client.get(reverse("training:job_detail", args=[job.pk])).content.decode()
    response = client.post(reverse("training:job_cancel", args=[job.pk]), follow=True)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.CANCELLED
    html = response.content.decode()
    assert "The job is cancelled" in html and "Cancel job" not in html and ">Retry</button>" in html
    assert "cancelled before it started" in html and "No worker ever started this job" in html
    assert AuditEvent.objects.filter(action="training.cancel", object_id=str(job.pk)).exists()

    response = client.post(reverse("training:job_cancel", args=[job.pk]), follow=True)
    assert "there is nothing to stop" in response.content.decode()  # the service's message, as a message


def test_retry_queues_a_failed_job_again(client, site, engineer):
    job = site["queued"]
    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingJob.Status.FAILED,
        error="Out of memory.",
        error_hint="Lower the batch size.",
        last_checkpoint_step=20,
    )
    client.force_login(engineer)
    response = client.post(reverse("training:job_retry", args=[job.pk]), follow=True)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.QUEUED and not job.error
    assert "It resumes from step 20." in response.content.decode()


def test_a_failed_job_shows_its_error_and_hint_in_a_clear_box(client, site, engineer):
    job = site["queued"]
    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingJob.Status.FAILED,
        error="The GPU ran out of memory at step 3.",
        error_hint="Lower the batch size or the maximum sequence length, or turn on QLoRA.",
        attempt_count=1,
    )
    JobAttempt.objects.create(job=job, number=1, worker="gpu-box-1", outcome="failed", error="Out of memory")
    client.force_login(engineer)
    html = client.get(reverse("training:job_detail", args=[job.pk])).content.decode()
    box = re.search(r'<div class="error-box" role="alert">(.*?)</div>', html, re.S).group(1)
    assert "The GPU ran out of memory at step 3." in box and "Lower the batch size" in box
    assert "gpu-box-1" in html and ">Retry</button>" in html


def test_a_finished_job_links_to_its_trained_model(client, site, manager):
    client.force_login(manager)
    html = client.get(reverse("training:job_detail", args=[site["done"].pk])).content.decode()
    assert reverse("training:model_detail", args=[site["trained"].pk]) in html
    assert "Training finished" in html and "Final results" in html


def test_a_running_job_shows_step_eta_and_figures(client, site, engineer):
    job = site["queued"]
    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingJob.Status.RUNNING,
        phase="training",
        step=12,
        max_steps=30,
        eta_seconds=185,
        loss=2.345678,
        learning_rate=0.0003,
        tokens_per_second=1234.5,
        memory_mb=812.3,
    )
    client.force_login(engineer)
    html = client.get(reverse("training:job_detail", args=[job.pk])).content.decode()
    assert "step 12 of 30" in html and "about 3 minutes left" in html
    assert "2.3457" in html and "3.00e-04" in html and "1,235" in html and "812 MB" in html
    assert 'data-active="true"' in html and "chart.umd.min.js" in html


def test_progress_json_has_the_live_figures_and_only_new_curve_points(client, site, manager):
    job = site["queued"]
    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingJob.Status.RUNNING,
        phase="training",
        step=5,
        max_steps=10,
        eta_seconds=30,
        loss=2.1,
        eval_loss=2.4,
        learning_rate=0.0002,
        tokens_per_second=900.0,
        memory_mb=500.0,
        log_tail="step 5",
        attempt_count=1,
    )
    JobAttempt.objects.create(job=job, number=1, worker="gpu-box-1")
    TrainingMetric.objects.bulk_create(
        [TrainingMetric(job=job, step=step, loss=3 - step / 10, learning_rate=0.0002) for step in range(1, 6)]
        + [TrainingMetric(job=job, kind="eval", step=5, loss=2.4)]
    )
    client.force_login(manager)
    url = reverse("training:job_progress_json", args=[job.pk])
    data = client.get(url).json()
    assert set(data) >= {
        "status",
        "status_display",
        "progress",
        "step",
        "max_steps",
        "eta_seconds",
        "loss",
        "eval_loss",
        "learning_rate",
        "tokens_per_second",
        "memory_mb",
        "log_tail",
        "attempts",
        "is_active",
        "curves",
    }
    assert data["status"] == "running" and data["status_display"] == "Training" and data["is_active"] is True
    assert data["progress"] == 0.5 and data["step"] == 5 and data["eta_seconds"] == 30
    assert data["eta_text"] == "less than a minute left"
    assert data["attempts"][0]["worker"] == "gpu-box-1" and data["attempts"][0]["outcome_display"] == "Running"
    assert [p["step"] for p in data["curves"]["train"]] == [1, 2, 3, 4, 5]

    data = client.get(url, {"since": 3}).json()
    assert [p["step"] for p in data["curves"]["train"]] == [4, 5]
    assert data["curves"]["eval"] == [{"step": 5, "loss": 2.4}]
    assert [p["step"] for p in data["curves"]["learning_rate"]] == [4, 5]
    assert client.get(url, {"since": 5}).json()["curves"]["train"] == []


def test_html_in_a_base_model_name_and_in_the_log_is_escaped(client, site, engineer):
    evil = _base_model(name="<script>alert('model')</script>")
    job = _job(site["version"], evil, engineer, log_tail="12:00:01 loaded <img src=x onerror=alert(1)>")
    client.force_login(engineer)
    for url in (
        reverse("training:job_detail", args=[job.pk]),
        reverse("training:job_list"),
        reverse("training:base_model_list"),
    ):
        html = client.get(url).content.decode()
        assert "<script>alert('model')</script>" not in html, url
        assert "&lt;script&gt;alert(&#x27;model&#x27;)&lt;/script&gt;" in html, url
    html = client.get(reverse("training:job_detail", args=[job.pk])).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# --- trained models ------------------------------------------------------------------------------


def test_model_page_shows_the_card_files_and_download(client, site, engineer, manager):
    trained = site["trained"]
    client.force_login(engineer)
    html = client.get(reverse("training:model_detail", args=[trained.pk])).content.decode()
    assert trained.name in html and "tiny-llama" in html and "c0ffee" in html
    assert "adapter_model.safetensors" in html and trained.files[0]["sha256"] in html
    assert "Candidate" in html and "About 3 minutes" in html and "owner" in html
    assert "2.735" in html  # final evaluation loss
    assert "Download adapter" in html
    client.force_login(manager)
    assert "Download adapter" not in client.get(reverse("training:model_detail", args=[trained.pk])).content.decode()


def test_model_list_filters_by_stage(client, site, manager):
    client.force_login(manager)
    assert site["trained"].name in client.get(reverse("training:model_list")).content.decode()
    html = client.get(reverse("training:model_list"), {"stage": "production"}).content.decode()
    assert site["trained"].name not in html and "No model is in this stage" in html


def test_download_is_a_zip_of_the_stored_files_and_is_audited(client, site, engineer):
    trained = site["trained"]
    client.force_login(engineer)
    response = client.get(reverse("training:model_download", args=[trained.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert f'filename="{trained.name}.zip"' in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert set(archive.namelist()) == set(ADAPTER_FILES)
        for name, content in ADAPTER_FILES.items():
            assert archive.read(name) == content
    assert AuditEvent.objects.filter(action="model.download", object_id=str(trained.pk), actor=engineer).exists()


def test_download_of_an_adapter_whose_files_are_gone_says_so(client, site, engineer, artifacts):
    trained = site["trained"]
    artifacts.delete(f"{trained.artifact_prefix}/adapter_config.json")
    client.force_login(engineer)
    response = client.get(reverse("training:model_download", args=[trained.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("training:model_detail", args=[trained.pk])
    assert "missing from artifact storage" in response.content.decode()
    assert not AuditEvent.objects.filter(action="model.download").exists()


# --- base models -----------------------------------------------------------------------------


def test_base_model_list_shows_size_architecture_tasks_and_licence(client, site, manager):
    _base_model(
        name="minilm",
        architecture="BertModel",
        model_type="bert",
        parameter_count=22_700_000,
        task_types=["classification"],
        licence_note="Apache-2.0",
    )
    client.force_login(manager)
    html = client.get(reverse("training:base_model_list")).content.decode()
    assert "22.7 million" in html and "412 thousand" in html
    assert "BertModel" in html and "Classification" in html and "Instruction / response" in html
    assert "Apache-2.0" in html
    assert "Register a base model" not in html  # managers only read


def test_register_a_base_model_from_a_folder(client, engineer, tiny_llama_path):
    client.force_login(engineer)
    response = client.post(
        reverse("training:base_model_register"),
        {"name": "tiny-llama", "source": str(tiny_llama_path), "licence_note": "Random weights"},
        follow=True,
    )
    model = BaseModel.objects.get(name="tiny-llama")
    assert model.parameter_count > 0 and model.created_by == engineer
    assert "“tiny-llama” is registered" in response.content.decode()


def test_a_folder_without_a_model_is_explained_next_to_the_field_the_same_whether_it_exists(client, engineer, tmp_path):
    """One answer for a missing folder and an existing one, so the form tells nothing about the server's folders."""
    client.force_login(engineer)
    (tmp_path / "empty").mkdir()

    def field_text(source):
        html = client.post(reverse("training:base_model_register"), {"name": "ghost", "source": source}).content
        field = re.search(r'id="field-source">(.*?)</div>', html.decode(), re.S).group(1)
        return field.replace(source, "SOURCE")

    missing, existing = field_text(str(tmp_path / "nowhere")), field_text(str(tmp_path / "empty"))
    assert "No model can be read from “SOURCE”" in missing and "config.json" in missing
    assert missing == existing
    assert not BaseModel.objects.exists()


def test_server_folders_are_shown_only_to_people_who_register_base_models(client, site, manager, engineer):
    trained = site["trained"]
    client.force_login(manager)
    for page in (reverse("training:base_model_list"), reverse("training:model_detail", args=[trained.pk])):
        html = client.get(page).content.decode()
        assert "tiny-llama" in html and "/models/tiny-llama" not in html, page
    assert "Where it is" not in client.get(reverse("training:base_model_list")).content.decode()
    client.force_login(engineer)
    for page in (reverse("training:base_model_list"), reverse("training:model_detail", args=[trained.pk])):
        assert "/models/tiny-llama" in client.get(page).content.decode(), page


def test_export_a_merged_model_from_the_model_page(client, site, engineer):
    client.force_login(engineer)
    trained = site["trained"]
    page = client.get(reverse("training:model_detail", args=[trained.pk]))
    assert b"Export a merged model" in page.content
    early = client.get(reverse("training:model_download", args=[trained.pk]) + "?merged=1")
    assert early.status_code == 302  # nothing merged yet: back to the page with a message
    response = client.post(reverse("training:model_merge", args=[trained.pk]), follow=True)
    assert "Merging on a worker" in response.content.decode()
    trained.refresh_from_db()
    assert trained.merge_status == "queued"


# --- what a new engineer trips over ------------------------------------------------------------


def test_estimate_refuses_an_encoder_for_instruction_data_in_the_words_the_launch_uses(
    client, engineer, approved_version
):
    version = approved_version()  # instruction / response
    _base_model()  # tiny-llama: can write answers
    encoder = _base_model(
        "all-MiniLM-L6-v2", architecture="BertModel", model_type="bert", task_types=["classification"]
    )
    client.force_login(engineer)
    data = client.post(reverse("training:job_estimate"), _launch_data(version, encoder)).json()
    assert data["ok"] is False and "memory_text" not in data
    message = data["field_errors"]["base_model"][0]
    assert message.startswith("all-MiniLM-L6-v2 cannot be trained to write answers (instruction/response data)")
    assert "can only learn to pick a label" in message and "such as tiny-llama" in message
    assert any(message in line for line in data["errors"])
    # Submitting anyway: the same check, the same words next to the field, nothing queued.
    html = client.post(reverse("training:job_create"), _launch_data(version, encoder)).content.decode()
    assert f'<p class="error" id="id_base_model_error">{escape(message)}</p>' in html
    assert not TrainingJob.objects.exists()


def test_long_names_are_cut_in_the_launch_selects_with_the_whole_name_as_title(client, engineer, approved_version):
    version = approved_version()
    long_name = "Customer support tickets from the Nordic clinics, second half of 2026, cleaned"
    version.dataset.name = long_name
    version.dataset.save(update_fields=["name"])
    model = _base_model("tiny-llama-" + "x" * 60)
    client.force_login(engineer)
    html = client.get(reverse("training:job_create")).content.decode()
    facts = f" · version {version.number} ({version.row_count:,} rows, Instruction / response)"
    full, short = long_name + facts, long_name[:39].rstrip() + "…" + facts
    assert f'<option value="{version.pk}" title="{escape(full)}">{escape(short)}</option>' in html
    assert f'title="{model.name} (412 thousand parameters, LlamaForCausalLM)"' in html
    assert f">tiny-llama-{'x' * 28}… (412 thousand parameters" in html


def test_settings_and_results_agree_on_epochs(client, site):
    done = site["done"]
    done.final_metrics = {"train_loss": 2.5, "steps": 30, "epochs": 2.5}
    done.save(update_fields=["final_metrics"])
    client.force_login(site["owner"])
    html = client.get(reverse("training:job_detail", args=[done.pk])).content.decode()
    # Quick preset: maximum steps decides, so the epochs setting says it is not used, and the results say why 2.5.
    assert "<dt>Epochs</dt><dd><code>not used: stops after 30 steps</code></dd>" in html
    assert "<dt>Passes over the training rows (epochs)</dt><dd>2.5</dd>" in html
    assert "30 steps went 2.5 times through the training rows" in html

    done.config = {**done.config, "max_steps": 0, "epochs": 1.0, "grad_accum": 4}
    done.final_metrics = {"steps": 3, "epochs": 1.2}
    done.save(update_fields=["config", "final_metrics"])
    html = client.get(reverse("training:job_detail", args=[done.pk])).content.decode()
    assert "<dt>Epochs</dt><dd><code>1</code></dd>" in html
    assert "asked for 1 epoch; training runs whole steps (each of 4 batches), so its 3 steps went 1.2 times" in html

    done.final_metrics = {"steps": 10, "epochs": 1.0}
    done.save(update_fields=["final_metrics"])
    html = client.get(reverse("training:job_detail", args=[done.pk])).content.decode()
    assert 'id="epochs-note"' not in html  # they agree: nothing to explain


def test_model_page_offers_evaluate_with_the_model_chosen_and_a_try_it_box(client, site, make_user):
    trained = site["trained"]
    client.force_login(site["owner"])
    html = client.get(reverse("training:model_detail", args=[trained.pk])).content.decode()
    url = reverse("evaluation:run_create") + "?" + urlencode({"model": trained.name, "version": site["version"].pk})
    assert f'<a class="button" href="{escape(url)}">Evaluate</a>' in html
    assert f'action="{reverse("training:model_try", args=[trained.pk])}#try"' in html
    form = client.get(url).content.decode()
    assert f'<option value="{trained.name}" selected>' in form

    client.force_login(make_user("manager"))  # may look and try, may not run evaluations
    html = client.get(reverse("training:model_detail", args=[trained.pk])).content.decode()
    assert ">Evaluate</a>" not in html and "Try it</h2>" in html


@pytest.mark.parametrize("persona", PERSONAS)
def test_try_it_is_for_those_who_see_models_and_only_by_post(client, site, make_user, persona):
    url = reverse("training:model_try", args=[site["trained"].pk])
    assert client.post(url, {"prompt": "Hello"})["Location"].startswith(reverse("login"))
    client.force_login(make_user(persona))
    response = client.post(url, {"prompt": ""})
    if persona in WATCHERS:
        assert response.status_code == 200
        assert "Type a message for the model to answer." in response.content.decode()
        assert client.get(url).status_code == 405
    else:
        assert response.status_code == 403


def test_try_it_refuses_a_prompt_that_is_too_long(client, site):
    client.force_login(site["owner"])
    url = reverse("training:model_try", args=[site["trained"].pk])
    html = client.post(url, {"prompt": "x" * (services.TRY_MAX_PROMPT_CHARS + 1)}).content.decode()
    assert f"Keep it under {services.TRY_MAX_PROMPT_CHARS:,} characters" in html and 'id="try-answer"' not in html
