"""`manage.py train`: the same checks as the form, and one JSON line at the end."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from curation.models import DatasetVersion
from training.models import TrainedModel, TrainingJob


@pytest.fixture(autouse=True)
def _no_heartbeat_thread(settings):
    settings.TRAINING_HEARTBEAT_SECONDS = 3600


def train(*args) -> dict:
    out = io.StringIO()
    call_command("train", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_train_here_prints_the_job_and_its_metrics(engineer, tiny_base_model, approved_version):
    version = approved_version()
    result = train(
        "--dataset-version",
        str(version.pk),
        "--base-model",
        "tiny-llama",
        "--set",
        "max_steps=3",
        "--set",
        "max_seq_length=64",
        "--set",
        "batch_size=2",
        "--user",
        engineer.username,
        "--here",
    )
    assert result["status"] == "succeeded" and result["metrics"]["steps"] == 3
    job = TrainingJob.objects.get(pk=result["job_id"])
    assert job.created_by == engineer
    assert TrainedModel.objects.get(job=job).pk == result["trained_model_id"]


def test_train_without_wait_queues_and_says_so(tiny_base_model, approved_version):
    result = train("--dataset-version", str(approved_version().pk), "--base-model", "tiny-llama")
    assert result["status"] == "queued" and result["metrics"] == {}


def test_train_refuses_a_version_that_is_not_approved(tiny_base_model, approved_version):
    version = approved_version()
    DatasetVersion.objects.filter(pk=version.pk).update(privacy=DatasetVersion.Privacy.RAW)
    with pytest.raises(CommandError, match="has not passed privacy review"):
        train("--dataset-version", str(version.pk), "--base-model", "tiny-llama")
    assert not TrainingJob.objects.exists()


def test_train_explains_bad_arguments(tiny_base_model, approved_version):
    version = approved_version()
    with pytest.raises(CommandError, match="no base model called “gpt-99”. Registered: tiny-llama"):
        train("--dataset-version", str(version.pk), "--base-model", "gpt-99")
    with pytest.raises(CommandError, match="not a training setting"):
        train("--dataset-version", str(version.pk), "--base-model", "tiny-llama", "--set", "speed=fast")
    with pytest.raises(CommandError, match="Learning rate"):
        train("--dataset-version", str(version.pk), "--base-model", "tiny-llama", "--set", "learning_rate=9")
    with pytest.raises(CommandError, match="no dataset version #424242"):
        train("--dataset-version", "424242", "--base-model", "tiny-llama")
