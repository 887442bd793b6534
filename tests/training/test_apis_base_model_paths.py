"""Base models and the server's folders: registering tells nothing about which folders exist, and the folder of a
model is shown only to people who may register base models (managers read the list without it)."""

import json

from django.urls import reverse

from training import runner
from training.models import BaseModel, TrainedModel, TrainingJob
from training.services import BASE_MODEL_UNREADABLE


def register(client, source: str, name: str = "probe"):
    return client.post(reverse("api-base-models"), {"name": name, "source": source}, format="json")


def test_registering_answers_the_same_whether_or_not_the_folder_exists(api_client, engineer, tmp_path):
    """As found: a missing folder said "does not exist", an existing one what it lacked: a way to probe folders."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "a-file").write_text("not a folder")
    client = api_client(engineer)
    answers = set()
    for source in ("nowhere", "empty", "half", "a-file"):
        path = str(tmp_path / source)
        response = register(client, path)
        assert response.status_code == 400, source
        assert response.json()["fields"]["source"] == [BASE_MODEL_UNREADABLE.format(source=path)], source
        answers.add(json.dumps(response.json()).replace(path, "SOURCE"))
    assert len(answers) == 1, answers
    assert not BaseModel.objects.exists()


def test_a_real_model_folder_still_registers(api_client, engineer, tiny_llama_path):
    response = register(api_client(engineer), str(tiny_llama_path), name="tiny")
    assert response.status_code == 201
    assert response.json()["source"] == str(tiny_llama_path)  # the person who gave the path sees it


def test_the_list_shows_server_folders_only_to_people_who_register_base_models(
    api_client, manager, engineer, tiny_base_model, approved_version
):
    def rows(user):
        response = api_client(user).get(reverse("api-base-models"))
        assert response.status_code == 200
        body = response.json()
        return body["results"] if isinstance(body, dict) else body

    [seen_by_manager] = rows(manager)
    assert seen_by_manager["name"] == "tiny-llama" and seen_by_manager["parameter_count"] > 0
    assert seen_by_manager["source"] is None
    assert tiny_base_model.source not in json.dumps(seen_by_manager)
    [seen_by_engineer] = rows(engineer)
    assert seen_by_engineer["source"] == tiny_base_model.source


def test_model_cards_hide_the_base_model_folder_from_people_who_cannot_register(
    api_client, manager, engineer, tiny_base_model, approved_version
):
    version = approved_version()
    job = TrainingJob.objects.create(
        dataset_version=version,
        base_model=tiny_base_model,
        task="sft",
        config=runner.apply_preset("quick", {}, task="sft").to_dict(),
        status=TrainingJob.Status.SUCCEEDED,
    )
    trained = TrainedModel.objects.create(
        name="tiny-adapter",
        job=job,
        base_model=tiny_base_model,
        dataset_version=version,
        task="sft",
        card={"base_model": {"name": "tiny-llama", "source": tiny_base_model.source}, "preset": "quick"},
    )
    url = reverse("api-model", args=[trained.pk])
    card = api_client(manager).get(url).json()["card"]
    assert card["base_model"] == {"name": "tiny-llama", "source": None} and card["preset"] == "quick"
    assert api_client(engineer).get(url).json()["card"]["base_model"]["source"] == tiny_base_model.source
    trained.refresh_from_db()
    assert trained.card["base_model"]["source"] == tiny_base_model.source  # only the answer hides it
