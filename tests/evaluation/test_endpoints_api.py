"""External endpoints through the API and the evaluation that uses them: who may change one, what a change needs,
the audit log, and where the key and the approved rows go.

Listeners on 127.0.0.1 (tests/evaluation/openai_server.py) stand in for the real endpoint and for an engineer's own
server; what each receives is what is asserted. The test settings list 127.0.0.1 in ENDPOINT_ALLOWED_HOSTS; tests of
the refusal set it back to empty, as in production.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import AuditEvent
from evaluation import services
from evaluation.models import EvalRun, ExternalEndpoint
from tests.evaluation.openai_server import OpenAIServer

SECRET = "sk-real-secret-7Qz9"


@pytest.fixture
def engineer2(make_user):
    return make_user("engineer", username="engineer2")


@pytest.fixture
def real_endpoint():
    """The company's real endpoint: it only accepts the real key."""
    with OpenAIServer(api_key=SECRET) as server:
        yield server


@pytest.fixture
def listener():
    """An engineer's own server, recording whatever is sent to it."""
    with OpenAIServer() as server:
        yield server


def save(client, **data):
    return client.post(reverse("api-endpoints"), {"model": "gpt-x", **data}, format="json")


def keys_received(server: OpenAIServer) -> set[str]:
    return {request["headers"].get("Authorization", "") for request in server.requests}


def run_on(endpoint, version, actor, **kwargs) -> EvalRun:
    run = services.eval_run_create(subject=endpoint, version=version, actor=actor, **kwargs)
    return services.eval_run_execute(run_id=run.pk)


def test_the_stored_key_cannot_be_sent_to_a_new_address(
    api_client, engineer, engineer2, real_endpoint, listener, approved_version
):
    """As found: POST endpoints/ with an existing name, a new base_url and no key kept the stored key, and the next
    evaluation sent `Authorization: Bearer <stored key>` and the approved rows to the new address."""
    version = approved_version(rows=12, test=3)
    owner, other = api_client(engineer), api_client(engineer2)
    assert save(owner, name="baseline", base_url=real_endpoint.base_url, api_key=SECRET).status_code == 201

    # Another engineer cannot change it at all.
    response = save(other, name="baseline", base_url=listener.base_url)
    assert response.status_code == 403
    assert response.json()["error"] == (
        "The endpoint “baseline” was added by engineer: only they or an admin can change it. "
        "Choose another name to add your own."
    )
    # Its owner cannot move it without entering the key again.
    response = save(owner, name="baseline", base_url=listener.base_url)
    assert response.status_code == 400
    assert response.json()["fields"]["api_key"] == [
        "The address changed, so enter the API key again: the stored key is only ever sent to "
        f"{real_endpoint.base_url}."
    ]
    endpoint = ExternalEndpoint.objects.get(name="baseline")
    assert endpoint.base_url == real_endpoint.base_url

    # The evaluation and its judge still go to the real endpoint, with the real key; the listener hears nothing.
    run = run_on(endpoint, version, engineer, judge=endpoint)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    assert listener.requests == []
    assert keys_received(real_endpoint) == {f"Bearer {SECRET}"} and len(real_endpoint.requests) == 6

    # With a key entered again, the new address gets that key, never the stored one.
    response = save(owner, name="baseline", base_url=listener.base_url, api_key="sk-my-own-key")
    assert response.status_code == 201 and response.json()["api_key_hint"] == "-key"
    run = run_on(ExternalEndpoint.objects.get(name="baseline"), version, engineer)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    assert keys_received(listener) == {"Bearer sk-my-own-key"}
    assert not any(SECRET in json.dumps(request) for request in listener.requests)


def test_the_model_name_and_timeout_change_without_the_key(api_client, engineer, real_endpoint, approved_version):
    client = api_client(engineer)
    save(client, name="baseline", base_url=real_endpoint.base_url, api_key=SECRET)
    response = save(client, name="baseline", base_url=real_endpoint.base_url + "/", model="gpt-y", timeout_seconds=5)
    assert response.status_code == 201, response.json()
    assert response.json()["model"] == "gpt-y" and response.json()["has_api_key"] is True
    run = run_on(ExternalEndpoint.objects.get(name="baseline"), approved_version(rows=12, test=2), engineer)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error  # the server accepted the kept key
    assert real_endpoint.requests[-1]["body"]["model"] == "gpt-y"


def test_an_endpoint_without_a_key_may_move(api_client, engineer, listener):
    client = api_client(engineer)
    save(client, name="local", base_url="http://127.0.0.1:9/v1")
    response = save(client, name="local", base_url=listener.base_url)
    assert response.status_code == 201 and response.json()["base_url"] == listener.base_url


def test_an_admin_may_change_anyones_endpoint_and_old_endpoints_are_admins_only(
    api_client, engineer, admin_user, real_endpoint, listener
):
    save(api_client(engineer), name="baseline", base_url=real_endpoint.base_url, api_key=SECRET)
    response = save(api_client(admin_user), name="baseline", base_url=listener.base_url, api_key="sk-admin-0001")
    assert response.status_code == 201
    assert response.json()["created_by"] == "engineer"  # still the engineer's to change
    assert response.json()["base_url"] == listener.base_url

    old = ExternalEndpoint.objects.create(name="older", base_url=real_endpoint.base_url, model="m")  # no creator
    response = save(api_client(engineer), name="older", base_url=real_endpoint.base_url, model="m2")
    assert response.status_code == 403 and "was added by an admin" in response.json()["error"]
    assert save(api_client(admin_user), name="older", base_url=old.base_url, model="m2").status_code == 201


def test_every_change_is_audited_without_the_key(api_client, engineer, engineer2, real_endpoint, listener):
    client = api_client(engineer)
    save(client, name="baseline", base_url=real_endpoint.base_url, api_key=SECRET)
    save(client, name="baseline", base_url=listener.base_url, api_key="sk-second-8Kp2")
    save(api_client(engineer2), name="baseline", base_url=real_endpoint.base_url)  # refused: nothing written
    events = list(AuditEvent.objects.filter(object_type="evaluation.externalendpoint").order_by("pk"))
    assert [(e.action, e.actor.username) for e in events] == [
        ("endpoint.create", "engineer"),
        ("endpoint.update", "engineer"),
    ]
    create, update = events
    assert create.before == {}
    assert create.after == {
        "base_url": real_endpoint.base_url,
        "model": "gpt-x",
        "timeout_seconds": 30.0,
        "has_api_key": True,
        "api_key_hint": "7Qz9",
        "api_key_changed": True,
    }
    assert update.before["base_url"] == real_endpoint.base_url and update.before["api_key_hint"] == "7Qz9"
    assert update.after["base_url"] == listener.base_url and update.after["api_key_hint"] == "8Kp2"
    stored = json.dumps([e.before for e in events] + [e.after for e in events])
    assert SECRET not in stored and "sk-second-8Kp2" not in stored


def test_the_list_shows_who_added_each_endpoint_and_never_the_key(api_client, engineer, manager, real_endpoint):
    save(api_client(engineer), name="baseline", base_url=real_endpoint.base_url, api_key=SECRET)
    response = api_client(manager).get(reverse("api-endpoints"))
    assert response.status_code == 200
    body = response.json()
    [row] = body["results"] if isinstance(body, dict) else body  # a page, or the plain list
    assert row["created_by"] == "engineer" and row["has_api_key"] is True and row["api_key_hint"] == "7Qz9"
    assert SECRET not in response.content.decode() and "api_key_encrypted" not in row


# --- the allow-list: at save time, when a run is started, before each request -------------------------------------


@pytest.mark.parametrize(
    "address",
    ["http://127.0.0.1:{port}/v1", "http://localhost:{port}/v1", "http://[::1]:{port}/v1", "http://10.0.0.5/v1"],
)
def test_private_and_loopback_addresses_are_refused_unless_listed(api_client, engineer, settings, listener, address):
    settings.ENDPOINT_ALLOWED_HOSTS = []
    url = address.format(port=listener.port)
    response = save(api_client(engineer), name="sneaky", base_url=url, api_key="k")
    assert response.status_code == 400
    assert response.json()["fields"]["base_url"] == [
        f"The endpoint at {url.rstrip('/')} leads to a private or local network address, which Tuning Desk does not "
        "call unless an administrator lists the host in ENDPOINT_ALLOWED_HOSTS."
    ]
    assert not ExternalEndpoint.objects.filter(name="sneaky").exists()
    settings.ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1", "::1", "localhost", "10.0.0.0/8"]
    assert save(api_client(engineer), name="sneaky", base_url=url, api_key="k").status_code == 201


def test_an_endpoint_no_longer_allowed_is_not_called(engineer, settings, listener, approved_version):
    """Saved while its address was allowed; the setting changed since (or the name now resolves elsewhere)."""
    version = approved_version(rows=12, test=3)
    endpoint = services.endpoint_save(name="local", base_url=listener.base_url, model="m", api_key="k", actor=engineer)
    run = services.eval_run_create(subject=endpoint, version=version, actor=engineer)
    settings.ENDPOINT_ALLOWED_HOSTS = []
    run = services.eval_run_execute(run_id=run.pk)
    assert run.status == EvalRun.Status.FAILED and "private or local network address" in run.error
    assert listener.requests == []
    # Starting a new run is refused at once, next to the field.
    with pytest.raises(ValidationError, match="private or local network address") as caught:
        services.eval_run_create(subject=endpoint, version=version, actor=engineer)
    assert "model" in caught.value.message_dict


def test_the_judge_goes_through_the_same_check(engineer, settings, approved_version):
    """The judge is an endpoint too: refused before each request, so it receives neither key nor rows."""
    version = approved_version(rows=12, test=3)
    with OpenAIServer() as subject_server, OpenAIServer(host="127.0.0.2") as judge_server:
        settings.ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1", "127.0.0.2"]
        subject = services.endpoint_save(name="s", base_url=subject_server.base_url, model="m", actor=engineer)
        judge = services.endpoint_save(
            name="j", base_url=judge_server.base_url, model="m", api_key="sk-judge", actor=engineer
        )
        run = services.eval_run_create(subject=subject, version=version, actor=engineer, judge=judge)
        settings.ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1"]
        run = services.eval_run_execute(run_id=run.pk)
    assert run.status == EvalRun.Status.FAILED
    assert run.error.startswith(f"The endpoint at {judge_server.base_url} leads to a private or local network")
    assert len(subject_server.requests) == 3 and judge_server.requests == []


def test_the_web_run_form_refuses_an_endpoint_that_is_not_allowed(
    client, engineer, settings, listener, approved_version
):
    version = approved_version(rows=12, test=3)
    endpoint = services.endpoint_save(name="local", base_url=listener.base_url, model="m", api_key="k", actor=engineer)
    settings.ENDPOINT_ALLOWED_HOSTS = []
    client.force_login(engineer)
    response = client.post(
        reverse("evaluation:run_create"),
        {"model": endpoint.name, "dataset_version": version.pk, "split": "test", "fairness_threshold": "0.1"},
    )
    assert response.status_code == 200
    assert "leads to a private or local network address" in response.context["form"].errors["model"][0]
    assert "leads to a private or local network address" in response.content.decode()
    assert not EvalRun.objects.exists() and listener.requests == []
