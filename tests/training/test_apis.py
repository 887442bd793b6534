"""REST API for training: launch with field errors, the privacy gate, follow, cancel, retry, registry, download."""

from __future__ import annotations

import io
import zipfile

import pytest

from curation.models import DatasetVersion
from training import services
from training.models import TrainedModel, TrainingJob

FAST = {"max_steps": 4, "batch_size": 2, "max_seq_length": 64, "checkpoint_every": 2}


@pytest.fixture(autouse=True)
def _no_heartbeat_thread(settings):
    settings.TRAINING_HEARTBEAT_SECONDS = 3600


def test_launch_follow_and_download(api_client, engineer, tiny_base_model, approved_version):
    client = api_client(engineer)
    version = approved_version()
    answer = client.post(
        "/api/v1/training-jobs/",
        {"dataset_version": version.pk, "base_model": "tiny-llama", "preset": "quick", "settings": FAST},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    job_id = answer.json()["id"]
    assert answer.json()["status"] == "queued" and answer.json()["status_label"] == "Waiting for a worker"

    services.training_job_execute(job_id=job_id, worker="api-test@here")  # the worker's part, run here
    job = client.get(f"/api/v1/training-jobs/{job_id}/").json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["step"] == 4
    assert job["attempts"][0]["outcome"] == "succeeded" and job["error"] is None
    curves = client.get(f"/api/v1/training-jobs/{job_id}/curves/").json()
    assert [point["step"] for point in curves["train"]] == [1, 2, 3, 4]

    model_id = job["trained_model"]
    model = client.get(f"/api/v1/models/{model_id}/").json()
    assert model["stage"] == "candidate" and len(model["sha256"]) == 64
    download = client.get(f"/api/v1/models/{model_id}/download/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(archive.namelist())
    assert "tiny-llama" in archive.read("README.md").decode()


def test_the_api_refuses_training_on_a_version_that_is_not_approved(
    api_client, engineer, tiny_base_model, approved_version
):
    version = approved_version()
    DatasetVersion.objects.filter(pk=version.pk).update(privacy=DatasetVersion.Privacy.RAW)
    answer = api_client(engineer).post(
        "/api/v1/training-jobs/", {"dataset_version": version.pk, "base_model": "tiny-llama"}, format="json"
    )
    assert answer.status_code == 400
    assert "has not passed privacy review" in answer.json()["error"]
    assert not TrainingJob.objects.exists()


def test_field_errors_are_named(api_client, engineer, tiny_base_model, approved_version):
    answer = api_client(engineer).post(
        "/api/v1/training-jobs/",
        {
            "dataset_version": approved_version().pk,
            "base_model": "tiny-llama",
            "settings": {"learning_rate": 3, "lora_r": -1},
        },
        format="json",
    )
    assert answer.status_code == 400
    assert {"learning_rate", "lora_r"} <= set(answer.json()["fields"])
    unknown = api_client(engineer).post(
        "/api/v1/training-jobs/", {"dataset_version": 999999, "base_model": "nope"}, format="json"
    )
    assert unknown.status_code == 400 and "dataset_version" in unknown.json()["fields"]


def test_estimate_warns_when_no_worker_serves_the_queue(api_client, engineer, tiny_base_model, approved_version):
    answer = api_client(engineer).post(
        "/api/v1/training-jobs/estimate/",
        {"dataset_version": approved_version().pk, "base_model": "tiny-llama", "settings": FAST},
        format="json",
    )
    assert answer.status_code == 200
    assert answer.json()["memory_bytes"] > 0
    assert any("No worker is serving" in warning for warning in answer.json()["warnings"])


def test_estimate_refuses_a_base_model_that_cannot_learn_the_task(api_client, engineer, approved_version, minilm):
    services.base_model_register(name="all-MiniLM-L6-v2", source=str(minilm), actor=engineer)
    answer = api_client(engineer).post(
        "/api/v1/training-jobs/estimate/",
        {"dataset_version": approved_version().pk, "base_model": "all-MiniLM-L6-v2", "settings": FAST},
        format="json",
    )
    assert answer.status_code == 400
    assert "cannot be trained to write answers" in answer.json()["fields"]["base_model"][0]


def test_cancel_and_retry(api_client, engineer, tiny_base_model, approved_version):
    client = api_client(engineer)
    job = services.training_job_create(
        version=approved_version(), base_model=tiny_base_model, actor=engineer, overrides=FAST
    )
    cancelled = client.post(f"/api/v1/training-jobs/{job.pk}/cancel/")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/training-jobs/{job.pk}/cancel/")
    assert again.status_code == 400 and "nothing to stop" in again.json()["error"]
    retried = client.post(f"/api/v1/training-jobs/{job.pk}/retry/")
    assert retried.status_code == 202 and retried.json()["status"] == "queued"


def test_managers_read_but_cannot_launch(api_client, manager, tiny_base_model, approved_version):
    client = api_client(manager)
    assert client.get("/api/v1/training-jobs/").status_code == 200
    assert client.get("/api/v1/models/").status_code == 200
    answer = client.post(
        "/api/v1/training-jobs/", {"dataset_version": approved_version().pk, "base_model": "tiny-llama"}, format="json"
    )
    assert answer.status_code == 403


def test_register_a_base_model_checks_the_folder(api_client, engineer, tiny_llama_path, tmp_path):
    client = api_client(engineer)
    missing = client.post("/api/v1/base-models/", {"name": "ghost", "source": str(tmp_path / "nothing")}, format="json")
    assert missing.status_code == 400 and "source" in missing.json()["fields"]
    made = client.post("/api/v1/base-models/", {"name": "tiny", "source": str(tiny_llama_path)}, format="json")
    assert made.status_code == 201
    assert made.json()["parameter_count"] > 0 and made.json()["task_types"] == ["sft"]
    assert client.get("/api/v1/base-models/").json()["results"][0]["name"] == "tiny"


def test_queues_show_waiting_jobs_and_workers(api_client, engineer, tiny_base_model, approved_version):
    services.worker_heartbeat(
        hostname="gpu-box@a",
        queues=["gpu"],
        facts={"gpu_count": 2, "gpu_memory_bytes": 80 * 2**30, "gpu_names": ["H100"]},
    )
    job = services.training_job_create(version=approved_version(), base_model=tiny_base_model, actor=engineer)
    queues = {row["queue"]: row for row in api_client(engineer).get("/api/v1/training-queues/").json()}
    assert queues["gpu"]["waiting"] == 1 and queues["gpu"]["jobs"] == [job.pk]
    assert queues["gpu"]["workers"][0]["gpu_count"] == 2
    assert TrainedModel.objects.count() == 0
