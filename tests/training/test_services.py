"""Training services: launch checks, the claim, a real (tiny) training run in-process, cancel, retry, the reaper."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages

from accounts.models import AuditEvent
from curation.models import DatasetVersion
from training import broker, selectors, services
from training.models import JobAttempt, TrainedModel, TrainingJob, TrainingMetric
from training.services import jobs as job_services
from training.tasks import training_job_run

FAST = {"max_steps": 6, "batch_size": 2, "max_seq_length": 64, "checkpoint_every": 3, "learning_rate": 0.001}


@pytest.fixture(autouse=True)
def _no_heartbeat_thread(settings):
    """In-process runs happen inside the test's transaction, which the heartbeat thread's connection cannot see."""
    settings.TRAINING_HEARTBEAT_SECONDS = 3600


@pytest.fixture
def purge_broker():
    from projectsite.celery import app

    app.control.purge()
    yield
    app.control.purge()


def launch(version, base_model, actor, **overrides):
    return services.training_job_create(
        version=version, base_model=base_model, actor=actor, preset="quick", overrides={**FAST, **overrides}
    )


def test_launch_is_refused_on_a_version_that_has_not_passed_privacy_review(engineer, tiny_base_model, approved_version):
    version = approved_version()
    DatasetVersion.objects.filter(pk=version.pk).update(privacy=DatasetVersion.Privacy.RAW)
    version.refresh_from_db()
    with pytest.raises(ValidationError, match="has not passed privacy review"):
        launch(version, tiny_base_model, engineer)
    assert not TrainingJob.objects.exists()


def test_launch_is_refused_for_a_task_the_model_cannot_do(engineer, tiny_base_model, approved_version):
    version = approved_version(task_type="classification")
    with pytest.raises(ValidationError) as error:
        launch(version, tiny_base_model, engineer)
    assert "cannot be trained to pick a label (classification data)" in error.value.message_dict["base_model"][0]


def test_try_it_answers_with_the_trained_adapter(engineer, tiny_base_model, approved_version):
    job = services.training_job_execute(
        job_id=launch(approved_version(), tiny_base_model, engineer).pk, worker="test@here"
    )
    assert job.status == TrainingJob.Status.SUCCEEDED, (job.error, job.log_tail)
    trained = TrainedModel.objects.get(job=job)
    answer = services.trained_model_try(trained=trained, prompt="  Ticket 3: my billing page shows an error.  ")
    assert answer.prompt == "Ticket 3: my billing page shows an error."
    assert answer.text.strip() and not answer.cut_short
    # Greedy decoding: the same prompt gets the same answer.
    assert services.trained_model_try(trained=trained, prompt=answer.prompt).text == answer.text
    with pytest.raises(ValidationError, match="Type a message"):
        services.trained_model_try(trained=trained, prompt="   ")


def test_launch_is_refused_on_a_version_without_training_rows(engineer, tiny_base_model, approved_version):
    version = approved_version(rows=3, validation=3)
    with pytest.raises(ValidationError, match="has no training rows"):
        launch(version, tiny_base_model, engineer)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", 5.0),
        ("lora_r", 0),
        ("lora_dropout", 1.5),
        ("batch_size", 0),
        ("max_seq_length", 1),
        ("eval_fraction", 0.9),
    ],
)
def test_out_of_range_settings_are_refused_per_field(engineer, tiny_base_model, approved_version, field, value):
    with pytest.raises(ValidationError) as error:
        launch(approved_version(), tiny_base_model, engineer, **{field: value})
    assert field in error.value.message_dict
    assert not TrainingJob.objects.exists()


def test_unknown_settings_and_presets_are_refused(engineer, tiny_base_model, approved_version):
    with pytest.raises(ValidationError, match="Unknown training settings: warp_speed"):
        launch(approved_version(), tiny_base_model, engineer, warp_speed=9)
    with pytest.raises(ValidationError) as error:
        services.training_job_create(
            version=approved_version(), base_model=tiny_base_model, actor=engineer, preset="ludicrous"
        )
    assert "preset" in error.value.message_dict


def test_qlora_is_refused_without_a_gpu_worker(engineer, tiny_base_model, approved_version):
    with pytest.raises(ValidationError) as error:
        launch(approved_version(), tiny_base_model, engineer, qlora=True)
    assert "NVIDIA GPU" in error.value.message_dict["qlora"][0]


def test_command_line_settings_are_typed():
    assert services.training_overrides_parse(["lora_r=16", "learning_rate=3e-4", "target_modules=q_proj, v_proj"]) == {
        "lora_r": 16,
        "learning_rate": 3e-4,
        "target_modules": ["q_proj", "v_proj"],
    }
    with pytest.raises(ValidationError, match="not a valid value for lora_r"):
        services.training_overrides_parse(["lora_r=sixteen"])
    with pytest.raises(ValidationError, match="not key=value"):
        services.training_overrides_parse(["lora_r"])


def test_a_launched_job_waits_in_the_broker_for_its_worker_class(
    engineer, tiny_base_model, approved_version, django_capture_on_commit_callbacks, purge_broker
):
    with django_capture_on_commit_callbacks(execute=True):
        job = launch(approved_version(), tiny_base_model, engineer)
    assert job.status == TrainingJob.Status.QUEUED
    assert job.config["max_steps"] == 6 and job.config["task"] == "sft"
    assert job.estimate["memory_bytes"] > 0 and job.estimate["tokens"] > 0 and job.estimate["seconds"] >= 0
    assert job.celery_task_id in broker.task_ids_held("gpu")
    assert AuditEvent.objects.filter(action="training.launch", object_id=str(job.pk)).exists()


def test_a_job_trains_registers_its_adapter_and_records_its_curves(engineer, tiny_base_model, approved_version):
    job = launch(approved_version(), tiny_base_model, engineer)
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.SUCCEEDED, (job.error, job.error_hint, job.log_tail)
    assert job.step == 6 and job.progress == 1.0
    assert job.final_metrics["steps"] == 6 and job.final_metrics["train_loss"] > 0
    assert list(TrainingMetric.objects.filter(job=job, kind="train").values_list("step", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert TrainingMetric.objects.filter(job=job, kind="eval").exists()
    attempt = job.attempts.get()
    assert attempt.outcome == JobAttempt.Outcome.SUCCEEDED and attempt.worker == "test@here"

    trained = TrainedModel.objects.get(job=job)
    names = {entry["name"] for entry in trained.files}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= names
    storage = storages["artifacts"]
    import hashlib

    with storage.open(f"{trained.artifact_prefix}/adapter_model.safetensors", "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == trained.sha256
    assert trained.card["dataset"]["content_hash"] == "c0ffee"
    assert trained.card["launched_by"] == engineer.username
    assert trained.card["hyperparameters"]["max_steps"] == 6
    with storage.open(f"{trained.artifact_prefix}/adapter_config.json") as handle:
        assert json.load(handle)["r"] == job.config["lora_r"]
    # Checkpoints are only for resuming: gone once the adapter is stored.
    assert job_services._checkpoint_steps(storage, job.artifact_prefix) == []

    import zipfile

    with zipfile.ZipFile(selectors.trained_model_zip(trained)) as archive:
        assert set(archive.namelist()) == names


def test_a_second_delivery_of_the_same_message_does_not_train_again(engineer, tiny_base_model, approved_version):
    job = launch(approved_version(), tiny_base_model, engineer)
    assert services.training_job_execute(job_id=job.pk, worker="first@here").status == TrainingJob.Status.SUCCEEDED
    assert services.training_job_execute(job_id=job.pk, worker="second@here") is None
    job.refresh_from_db()
    assert job.attempt_count == 1 and TrainedModel.objects.filter(job=job).count() == 1


def test_a_missing_base_model_folder_fails_with_a_plain_message(engineer, tiny_base_model, approved_version, tmp_path):
    job = launch(approved_version(), tiny_base_model, engineer)
    type(tiny_base_model).objects.filter(pk=tiny_base_model.pk).update(source=str(tmp_path / "gone"))
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.FAILED
    assert job.error_code == "model_missing" and job.error and job.error_hint
    assert job.attempts.get().outcome == JobAttempt.Outcome.FAILED


def test_disk_full_while_storing_the_adapter_fails_with_advice(
    engineer, tiny_base_model, approved_version, monkeypatch
):
    """A full disk cannot be made safely here, so the artifact storage's save raises ENOSPC as a full disk would."""
    job = launch(approved_version(), tiny_base_model, engineer, checkpoint_every=100)
    storage = storages["artifacts"]

    def full(name, content, max_length=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "save", full)
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.FAILED and job.error_code == "disk_full"
    assert "Free space" in job.error_hint and not TrainedModel.objects.filter(job=job).exists()


def test_cancel_during_a_checkpoint_save_keeps_the_checkpoint_and_retry_resumes(
    engineer, tiny_base_model, approved_version, monkeypatch
):
    job = launch(approved_version(), tiny_base_model, engineer, max_steps=9, checkpoint_every=3)
    original = job_services._JobReporter.checkpoint

    def checkpoint_then_cancel(self, path, step):
        # The person presses Cancel while the first checkpoint is being copied.
        services.training_job_cancel(job=TrainingJob.objects.get(pk=self.job_id), actor=engineer)
        self.cancel.set()
        original(self, path, step)

    monkeypatch.setattr(job_services._JobReporter, "checkpoint", checkpoint_then_cancel)
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.CANCELLED
    assert job.last_checkpoint_step == 3
    assert job_services._checkpoint_steps(storages["artifacts"], job.artifact_prefix) == [3]
    assert not TrainedModel.objects.filter(job=job).exists()

    monkeypatch.setattr(job_services._JobReporter, "checkpoint", original)
    services.training_job_retry(job=job, actor=engineer)
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.SUCCEEDED and job.step == 9
    second = job.attempts.get(number=2)
    assert second.resumed_from_step == 3
    assert job.final_metrics["steps"] == 9


def test_a_checkpoint_the_job_record_never_heard_of_is_discarded_so_the_curve_has_no_gap(
    engineer, tiny_base_model, approved_version, monkeypatch, tmp_path
):
    """A worker killed after saving checkpoint 6 to its disk but before writing the row (and the curve since step 3)."""
    job = launch(approved_version(), tiny_base_model, engineer, max_steps=9, checkpoint_every=3)
    original = job_services._JobReporter.checkpoint
    kept = tmp_path / "checkpoint-6"

    def dies_before_recording(self, path, step):
        if step < 6:
            return original(self, path, step)
        shutil.copytree(path, kept)  # what the killed worker leaves on its disk
        services.training_job_cancel(job=TrainingJob.objects.get(pk=self.job_id), actor=engineer)
        self.cancel.set()

    monkeypatch.setattr(job_services._JobReporter, "checkpoint", dies_before_recording)
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.last_checkpoint_step == 3
    TrainingMetric.objects.filter(job=job, step__gt=3).delete()  # the curve points that were never written
    local = Path(settings.TRAINING_WORK_DIR) / f"job-{job.pk}" / "output" / "checkpoints"
    local.mkdir(parents=True, exist_ok=True)
    shutil.copytree(kept, local / "checkpoint-6")

    monkeypatch.setattr(job_services._JobReporter, "checkpoint", original)
    services.training_job_retry(job=job, actor=engineer)
    job = services.training_job_execute(job_id=job.pk, worker="test@here")
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert "Discarded checkpoint 6" in job.log_tail and "Resumed from checkpoint 3" in job.log_tail
    steps = list(TrainingMetric.objects.filter(job=job, kind="train").values_list("step", flat=True).order_by("step"))
    assert steps == list(range(1, 10))


def test_cancel_of_a_waiting_job_is_immediate_and_a_finished_job_cannot_be_cancelled(
    engineer, tiny_base_model, approved_version
):
    job = launch(approved_version(), tiny_base_model, engineer)
    job = services.training_job_cancel(job=job, actor=engineer)
    assert job.status == TrainingJob.Status.CANCELLED
    assert services.training_job_execute(job_id=job.pk, worker="late@here") is None
    with pytest.raises(ValidationError, match="nothing to stop"):
        services.training_job_cancel(job=job, actor=engineer)


def _running(job, *, attempts=1, seconds_ago=600, status=TrainingJob.Status.RUNNING):
    from django.utils import timezone

    TrainingJob.objects.filter(pk=job.pk).update(
        status=status,
        attempt_count=attempts,
        worker="dead@host",
        heartbeat_at=timezone.now() - timezone.timedelta(seconds=seconds_ago),
    )
    JobAttempt.objects.create(job=job, number=attempts, worker="dead@host")
    job.refresh_from_db()
    return job


def test_the_reaper_requeues_a_job_whose_worker_died(engineer, tiny_base_model, approved_version, purge_broker):
    job = _running(launch(approved_version(), tiny_base_model, engineer))
    fresh = _running(launch(approved_version(), tiny_base_model, engineer), seconds_ago=1)
    result = services.training_jobs_reap(stale_after_seconds=60)
    assert result["requeued"] == [job.pk] and fresh.pk not in result["requeued"]
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.QUEUED
    assert job.attempts.get().outcome == JobAttempt.Outcome.WORKER_LOST
    assert job.celery_task_id in broker.task_ids_held("gpu")
    # The resumed attempt is the second.
    assert services.training_job_execute(job_id=job.pk, worker="alive@host").attempt_count == 2


def test_the_reaper_gives_up_after_the_maximum_attempts(engineer, tiny_base_model, approved_version):
    job = launch(approved_version(), tiny_base_model, engineer)
    job = _running(job, attempts=job.max_attempts)
    assert services.training_jobs_reap(stale_after_seconds=60)["failed"] == [job.pk]
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED and job.error_code == "worker_lost"
    assert "Retry" in job.error_hint


def test_the_reaper_finishes_a_cancel_whose_worker_died(engineer, tiny_base_model, approved_version):
    job = _running(launch(approved_version(), tiny_base_model, engineer), status=TrainingJob.Status.CANCELLING)
    assert services.training_jobs_reap(stale_after_seconds=60)["cancelled"] == [job.pk]
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.CANCELLED


def test_waiting_jobs_whose_message_the_broker_lost_are_published_again(
    engineer, tiny_base_model, approved_version, django_capture_on_commit_callbacks, purge_broker
):
    from projectsite.celery import app

    with django_capture_on_commit_callbacks(execute=True):
        job = launch(approved_version(), tiny_base_model, engineer)
    assert job.celery_task_id in broker.task_ids_held("gpu")
    app.control.purge()  # what a broker restarted without persistence forgets
    assert job.celery_task_id not in broker.task_ids_held("gpu")
    assert services.training_jobs_reap()["republished"] == [job.pk]
    assert job.celery_task_id in broker.task_ids_held("gpu")
    # A job still in the broker is left alone: no pile of duplicates.
    assert services.training_jobs_reap()["republished"] == []


def test_the_task_runs_the_job_and_is_harmless_twice(engineer, tiny_base_model, approved_version):
    job = launch(approved_version(), tiny_base_model, engineer)
    training_job_run.apply(args=[job.pk])
    training_job_run.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED and job.attempt_count == 1


def test_several_training_processes_run_through_torchrun(engineer, tiny_base_model, approved_version, settings):
    """The path a worker with several GPUs takes (one process per GPU), run here with two CPU processes."""
    settings.TRAINING_PROCESSES = 2
    job = launch(approved_version(), tiny_base_model, engineer, max_steps=4, checkpoint_every=2)
    job = services.training_job_execute(job_id=job.pk, worker="two@here")
    assert job.status == TrainingJob.Status.SUCCEEDED, (job.error, job.error_hint, job.log_tail)
    assert "Training with 2 processes" in job.log_tail
    assert job.hardware["processes"] == 2
    assert job.final_metrics["steps"] == 4
    assert TrainedModel.objects.filter(job=job).exists()


def test_a_merged_export_is_a_standalone_model_with_the_adapters_behaviour(engineer, tiny_base_model, approved_version):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    job = launch(approved_version(), tiny_base_model, engineer, learning_rate=0.01)
    trained = TrainedModel.objects.get(job=services.training_job_execute(job_id=job.pk, worker="test@here"))
    services.trained_model_merge_start(trained=trained, actor=engineer)
    with pytest.raises(ValidationError, match="already being merged"):
        services.trained_model_merge_start(trained=trained, actor=engineer)
    trained = services.trained_model_merge_execute(model_id=trained.pk)
    assert trained.merge_status == "done", trained.merge_error
    assert services.trained_model_merge_execute(model_id=trained.pk) is None  # a second delivery does nothing

    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(selectors.trained_model_zip(trained, merged=True)).extractall(f"{tmp}/merged")
        services.adapter_download(trained, Path(tmp) / "adapter")
        merged = AutoModelForCausalLM.from_pretrained(f"{tmp}/merged")
        with_adapter = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_base_model.source), f"{tmp}/adapter"
        )
        ids = torch.tensor([[1, 5, 9, 12, 40]])
        with torch.no_grad():
            assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)
