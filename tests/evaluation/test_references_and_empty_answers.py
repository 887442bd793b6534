"""What an evaluation shows beside each answer, and what happens when the answers are empty.

As found by a new user: an instruction/response version that also maps a label column (question, answer, category)
showed the category as the reference while the scores used the answer; a model whose answers were all empty scored
0.00 everywhere, its fairness panel said "Every gap is within its threshold", and a lenient gate promoted it.

The evaluations run through the worker's service (eval_run_execute) on the real tiny Llama or on the local
OpenAI-compatible server that stands in for a remote endpoint (outside the project).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from lxml import html as lxml_html

from curation.models import Example
from evaluation import services
from evaluation.models import EvalRun, Prediction
from tests.evaluation.openai_server import OpenAIServer
from training.models import TrainedModel, TrainingJob

CATEGORIES = ("category-login", "category-billing")


@pytest.fixture(autouse=True)
def _no_heartbeat_thread(settings):
    settings.TRAINING_HEARTBEAT_SECONDS = 3600


def _with_categories(version):
    """The support-ticket upload: question (input), answer (target) and a category mapped as the label."""
    for example in version.examples.all():
        example.label = CATEGORIES[example.row_index % 2]
        example.save(update_fields=["label"])
    return version


def _evaluate(subject, version, actor) -> EvalRun:
    run = services.eval_run_create(subject=subject, version=version, actor=actor)
    run = services.eval_run_execute(run_id=run.pk)
    assert run.status == EvalRun.Status.SUCCEEDED, run.error
    return run


_CLASS = "contains(concat(' ', normalize-space(@class), ' '), ' %s ')"


def _rows(tree, table_class: str) -> list:
    return tree.xpath(f"//table[{_CLASS % table_class}]/tbody/tr")


def _answer_cells(page: bytes) -> list[list[str]]:
    """The run page's answers table: per row, the text of each cell."""
    tree = lxml_html.fromstring(page)
    return [[cell.text_content().strip() for cell in row.findall("td")] for row in _rows(tree, "answers")]


def _endpoint(server, actor, name="support-llm"):
    return services.endpoint_save(name=name, base_url=server.base_url, model="m", actor=actor)


def test_the_reference_of_an_instruction_response_run_is_the_target_not_the_label(
    engineer, tiny_base_model, approved_version, api_client, client
):
    version = _with_categories(approved_version(rows=20, test=4))
    run = _evaluate(tiny_base_model, version, engineer)
    targets = dict(version.examples.filter(split="test").values_list("row_index", "target"))

    response = api_client(engineer).get(reverse("api-eval-predictions", args=[run.pk]))
    assert response.status_code == 200
    rows = response.json()["results"]
    assert {row["row_index"]: row["reference"] for row in rows} == targets
    assert not {row["reference"] for row in rows} & set(CATEGORIES)

    client.force_login(engineer)
    cells = _answer_cells(client.get(reverse("evaluation:run_detail", args=[run.pk])).content)
    assert len(cells) == 4
    assert {int(row[0]): row[3] for row in cells} == targets  # Row, Group, Input, Reference, Model's answer

    # The comparison's answers side by side say the same.
    with OpenAIServer("echo") as server:
        _evaluate(_endpoint(server, engineer), version, engineer)
    page = client.get(reverse("evaluation:compare"), {"models": [tiny_base_model.name, "support-llm"]})
    tree = lxml_html.fromstring(page.content)
    references = [row.findall("td")[1].text_content().strip() for row in _rows(tree, "side-by-side")]
    assert sorted(references) == sorted(targets.values())


def test_the_reference_of_a_classification_run_is_the_label(engineer, approved_version, api_client):
    version = approved_version(rows=20, test=4, task_type="classification")
    with OpenAIServer("echo") as server:
        run = _evaluate(_endpoint(server, engineer), version, engineer)
    labels = dict(version.examples.filter(split="test").values_list("row_index", "label"))
    rows = api_client(engineer).get(reverse("api-eval-predictions", args=[run.pk])).json()["results"]
    assert {row["row_index"]: row["reference"] for row in rows} == labels
    assert run.metrics["accuracy"] > 0  # scored against the same labels


def test_a_run_whose_answers_are_all_empty_is_flagged_not_shown_as_fair(engineer, approved_version, api_client, client):
    version = approved_version(rows=20, test=4)
    with OpenAIServer("echo", reply=lambda messages: "  ") as server:
        run = _evaluate(_endpoint(server, engineer), version, engineer)
    assert run.empty_outputs == 4 and run.is_mostly_empty
    assert run.fairness  # two groups, so gaps were measured (all 0: nothing to compare)

    body = api_client(engineer).get(reverse("api-eval-run", args=[run.pk])).json()
    assert body["empty_outputs"] == 4 and body["mostly_empty"] is True
    assert body["empty_outputs_text"] == "The model produced no text for 100% of rows (4 of 4)."

    client.force_login(engineer)
    page = client.get(reverse("evaluation:run_detail", args=[run.pk])).content.decode()
    assert "The model produced no text for 100% of rows (4 of 4)." in page
    assert "Every gap is within its threshold" not in page
    assert "Not checked: the model produced no text for 100% of rows (4 of 4)" in page
    assert "Within the threshold" not in page
    listing = client.get(reverse("evaluation:run_list")).content.decode()
    assert "No text for 100% of rows (4 of 4)" in listing


def test_a_run_past_the_share_is_flagged_and_one_below_only_noted(engineer, approved_version, client):
    version = approved_version(rows=20, test=4)
    last = version.examples.filter(split="test").order_by("-row_index").first()

    def mostly_empty(messages):  # answers only the last test row
        return "An answer." if last.input in str(messages[-1]["content"]) else ""

    with OpenAIServer("echo", reply=mostly_empty) as server:
        run = _evaluate(_endpoint(server, engineer), version, engineer)
    assert run.empty_outputs == 3 and run.is_mostly_empty
    assert run.empty_outputs_text == "The model produced no text for 75% of rows (3 of 4)."

    def mostly_answered(messages):  # leaves only the last test row empty
        return "" if last.input in str(messages[-1]["content"]) else "An answer."

    with OpenAIServer("echo", reply=mostly_answered) as server:
        run = _evaluate(_endpoint(server, engineer, name="other-llm"), version, engineer)
    assert run.empty_outputs == 1 and not run.is_mostly_empty
    assert run.empty_share <= EvalRun.EMPTY_OUTPUT_LIMIT
    client.force_login(engineer)
    page = client.get(reverse("evaluation:run_detail", args=[run.pk])).content.decode()
    assert "The model produced no text for 25% of rows (1 of 4)." in page
    assert "The answers are empty" not in page


def _candidate(version, base_model, name="quick-adapter") -> TrainedModel:
    job = TrainingJob.objects.create(dataset_version=version, base_model=base_model, task="sft", config={})
    return TrainedModel.objects.create(
        name=name,
        job=job,
        base_model=base_model,
        dataset_version=version,
        task="sft",
        artifact_prefix="x",
        sha256="0" * 64,
    )


def _scored_from_answers(trained, version, actor, answer) -> EvalRun:
    """The adapter's evaluation as the worker leaves it: one stored answer per test row, then the real scoring."""
    run = services.eval_run_create(subject=trained, version=version, actor=actor)
    examples = list(version.examples.filter(split="test"))
    Prediction.objects.bulk_create([Prediction(run=run, example=e, output=answer(e)) for e in examples])
    EvalRun.objects.filter(pk=run.pk).update(total=len(examples))
    run.refresh_from_db()
    services.eval_run_score(run=run)
    EvalRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=dt.datetime.now(dt.UTC))
    run.refresh_from_db()
    return run


def test_the_gate_refuses_a_model_with_empty_answers_whatever_the_margin(
    engineer, tiny_base_model, approved_version, api_client, client
):
    version = approved_version(rows=20, test=4)
    _evaluate(tiny_base_model, version, engineer)
    adapter = _candidate(version, tiny_base_model)
    run = _scored_from_answers(adapter, version, engineer, lambda example: "")
    assert run.is_mostly_empty and run.metrics["rougeL"] == 0
    use_case = services.use_case_save(
        slug="replies",
        name="Client replies",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=[{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 1.0}],  # lenient: 0 passes it
        actor=engineer,
    )
    gate = api_client(engineer).get(reverse("api-use-case-gate", args=[use_case.slug]), {"model": adapter.name}).json()
    assert gate["passed"] is False
    empty = next(check for check in gate["checks"] if check["kind"] == "answers")
    assert empty["reason"] == (
        f"The model produced no text for 100% of rows (4 of 4) in evaluation #{run.pk}, so it cannot be promoted, "
        "whatever its scores."
    )
    rouge = next(check for check in gate["checks"] if check["kind"] == "metric")
    assert rouge["passed"] and rouge["label"] == "ROUGE-L"  # the margin alone would have let it through

    response = api_client(engineer).post(
        reverse("api-use-case-promote", args=[use_case.slug]), {"model": adapter.name}, format="json"
    )
    assert response.status_code == 400
    assert "produced no text for 100% of rows" in str(response.json())
    client.force_login(engineer)
    page = client.post(
        reverse("evaluation:promote", args=[use_case.slug]), {"model": adapter.pk, "stage": "production"}
    ).content.decode()
    assert "cannot be promoted" in page and "The model produced no text for 100% of rows (4 of 4)" in page
    adapter.refresh_from_db()
    assert adapter.stage == TrainedModel.Stage.CANDIDATE


def test_gate_messages_are_plain_words_and_a_failing_candidate_has_no_primary_promote_button(
    engineer, tiny_base_model, approved_version, api_client, client
):
    version = approved_version(rows=20, test=4)
    _evaluate(tiny_base_model, version, engineer)
    adapter = _candidate(version, tiny_base_model)
    use_case = services.use_case_save(
        slug="replies",
        name="Client replies",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=[{"kind": "metric", "name": "rougeL", "rule": "improve", "margin": 0.01}],
        actor=engineer,
    )
    response = api_client(engineer).post(
        reverse("api-use-case-promote", args=[use_case.slug]), {"model": adapter.name}, format="json"
    )
    assert response.status_code == 400
    message = str(response.json())
    assert f"ROUGE-L is not measured for this model on {version.dataset.name}, version {version.number} yet" in message
    assert "rougeL" not in message

    client.force_login(engineer)
    page = client.get(reverse("evaluation:use_case_detail", args=[use_case.slug])).content.decode()
    tree = lxml_html.fromstring(page)
    (button,) = tree.xpath(f'//*[@id="candidate-{adapter.pk}"]//button[@value="production"]')
    assert "primary" not in button.get("class").split() and "danger" in button.get("class").split()
    why = tree.get_element_by_id(f"candidate-{adapter.pk}-why").text_content()
    assert "ROUGE-L is not measured for this model" in why and "rougeL" not in why

    # Once it is measured and better, the same button is the primary one.
    _scored_from_answers(adapter, version, engineer, lambda example: example.target)
    page = client.get(reverse("evaluation:use_case_detail", args=[use_case.slug])).content.decode()
    tree = lxml_html.fromstring(page)
    (button,) = tree.xpath(f'//*[@id="candidate-{adapter.pk}"]//button[@value="production"]')
    assert "primary" in button.get("class").split()
    assert not tree.xpath(f'//*[@id="candidate-{adapter.pk}-why"]')
    assert re.search(r"Passes the gate", page)


def test_the_comparison_shows_a_model_evaluated_on_another_version(engineer, approved_version, client):
    first, second = approved_version(rows=20, test=4), approved_version(rows=20, test=4)
    with OpenAIServer("echo") as server:
        a = _endpoint(server, engineer, name="model-a")
        b = _endpoint(server, engineer, name="model-b")
        _evaluate(a, first, engineer)
        _evaluate(b, first, engineer)
        c = _endpoint(server, engineer, name="model-c")
        other = _evaluate(c, second, engineer)
    client.force_login(engineer)
    page = client.get(reverse("evaluation:compare"), {"models": ["model-a", "model-b", "model-c"]}).content.decode()
    assert "not evaluated yet" not in page
    tree = lxml_html.fromstring(page)
    header = tree.xpath(f"//table[{_CLASS % 'compare-table'}]/thead/tr/th")[3].text_content()
    assert f"evaluation #{other.pk}" in header
    assert f"on {second.dataset.name}, version {second.number} (other data)" in " ".join(header.split())
    assert "did not all use the same data" in page
    assert "evaluated on other data" in page  # its answers are to other rows
    assert Example.objects.filter(version=second).exists()
