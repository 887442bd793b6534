"""evaluation.endpoints against a local OpenAI-compatible server (tests/evaluation/openai_server.py).

The real endpoints (OpenAI, a hosted vLLM) are outside the project and unreachable here; the local server speaks the
same HTTP API, so the real urllib client, timeouts and error handling are what is tested.
"""

import json
import socket
import time

import numpy as np
import pytest
from scipy import stats

from evaluation.endpoints import (
    DEFAULT_RUBRIC,
    EndpointError,
    chat,
    endpoint_predict,
    judge,
    judge_agreement,
    match_label,
    parse_judgement,
)
from evaluation.inference import PredictionCancelled
from tests.evaluation.openai_server import OpenAIServer

USER = [{"role": "user", "content": "Where is my invoice?"}]
# The local stand-in listens on 127.0.0.1, which is refused unless listed (see test_endpoints_outbound.py).
LOCAL = ["127.0.0.1"]


def ask(server: OpenAIServer, **kwargs) -> str:
    return chat(
        base_url=server.base_url, api_key="sk-test", model="echo-1", messages=USER, allowed_hosts=LOCAL, **kwargs
    )


# --- chat --------------------------------------------------------------------------------------------------------


def test_chat_sends_a_chat_completion_request_and_returns_the_reply(echo_server):
    assert ask(echo_server, max_tokens=50) == "You said: Where is my invoice?"
    [request] = echo_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"] == {"model": "echo-1", "messages": USER, "max_tokens": 50, "temperature": 0.0}


def test_a_slow_endpoint_times_out_with_the_time_in_the_message():
    with OpenAIServer("slow", delay=5) as server:
        started = time.monotonic()
        with pytest.raises(EndpointError) as caught:
            ask(server, timeout=0.5)
        assert time.monotonic() - started < 3
    assert caught.value.message == f"The endpoint at {server.base_url} did not answer within 0.5 s."
    assert caught.value.transient is True


def test_a_closed_port_is_refused():
    with socket.socket() as probe:  # a port that was free a moment ago and has nobody listening now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EndpointError) as caught:
        chat(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="k",
            model="m",
            messages=USER,
            timeout=2,
            allowed_hosts=LOCAL,
        )
    assert caught.value.message == f"The endpoint at http://127.0.0.1:{port}/v1 refused the connection (is it running?)"


def test_a_wrong_key_is_reported_as_such():
    with OpenAIServer("unauthorized") as server, pytest.raises(EndpointError) as caught:
        ask(server)
    assert caught.value.message.startswith(f"The endpoint at {server.base_url} answered 401: check the API key.")
    assert "Incorrect API key provided." in caught.value.message  # the server's own words come along
    assert caught.value.status == 401 and caught.value.transient is False

    with OpenAIServer(api_key="sk-right") as server:
        with pytest.raises(EndpointError, match="answered 401: check the API key"):
            ask(server)
        assert chat(
            base_url=server.base_url, api_key="sk-right", model="m", messages=USER, allowed_hosts=LOCAL
        ).startswith("You said")


def test_an_answer_that_is_not_a_chat_completion_is_reported():
    with OpenAIServer("garbage") as server, pytest.raises(EndpointError) as caught:
        ask(server)
    assert (
        caught.value.message == f"The endpoint at {server.base_url} answered something that is not a chat completion."
    )


def test_an_address_without_http_is_refused_before_sending():
    with pytest.raises(EndpointError, match="must start with http:// or https://"):
        chat(base_url="file:///etc/passwd", api_key="", model="m", messages=USER, allowed_hosts=LOCAL)


# --- predictions -------------------------------------------------------------------------------------------------


def test_endpoint_predict_sft_keeps_the_order_and_reports_progress(echo_server):
    inputs = [f"Ticket {i}" for i in range(7)]
    progress = []
    answers = endpoint_predict(
        base_url=echo_server.base_url,
        api_key="k",
        model="echo-1",
        task="sft",
        inputs=inputs,
        on_progress=lambda done, total: progress.append((done, total)),
        allowed_hosts=LOCAL,
    )
    assert answers == [f"You said: Ticket {i}" for i in range(7)]
    assert [done for done, _ in progress] == list(range(1, 8)) and {total for _, total in progress} == {7}


def test_answers_that_finish_out_of_order_stay_with_their_inputs():
    def reply(messages):
        text = messages[-1]["content"]
        time.sleep(0.3 if text == "first" else 0)  # the first request finishes last
        return text.upper()

    with OpenAIServer(reply=reply) as server:
        answers = endpoint_predict(
            base_url=server.base_url,
            api_key="k",
            model="m",
            task="sft",
            inputs=["first", "second", "third"],
            allowed_hosts=LOCAL,
        )
    assert answers == ["FIRST", "SECOND", "THIRD"]


def test_endpoint_predict_classification_asks_for_a_label_and_maps_the_answer(echo_server):
    labels = ["billing", "login", "export"]
    answers = endpoint_predict(
        base_url=echo_server.base_url,
        api_key="k",
        model="echo-1",
        task="classification",
        inputs=["My LOGIN fails", "Refund please", "The export is empty"],
        labels=labels,
        allowed_hosts=LOCAL,
    )
    assert answers == ["login", "billing", "export"]  # the echo server picks the first label named, else the first
    system = echo_server.requests[0]["body"]["messages"][0]
    assert system["role"] == "system" and system["content"].endswith(": billing, login, export")


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("login", "login"),
        (" Login.\n", "login"),
        ('"BILLING"', "billing"),
        ("The label is: export", "export"),
        ("billing or login", ""),
        ("I don't know", ""),
        ("logins", ""),
    ],
)
def test_answers_map_to_the_label_they_name(answer, label):
    assert match_label(answer, ["billing", "login", "export"]) == label


def test_endpoint_predict_can_be_cancelled(echo_server):
    with pytest.raises(PredictionCancelled):
        endpoint_predict(
            base_url=echo_server.base_url,
            api_key="k",
            model="echo-1",
            task="sft",
            inputs=["a", "b", "c"],
            should_cancel=lambda: True,
            allowed_hosts=LOCAL,
        )
    assert echo_server.requests == []


def test_endpoint_errors_stop_the_predictions():
    with OpenAIServer("unauthorized") as server, pytest.raises(EndpointError, match="check the API key"):
        endpoint_predict(
            base_url=server.base_url, api_key="k", model="m", task="sft", inputs=["a", "b"], allowed_hosts=LOCAL
        )


# --- judge -------------------------------------------------------------------------------------------------------

ITEMS = [
    ("I was charged twice.", "We refunded the duplicate charge.", "We refunded the duplicate charge."),
    ("I was charged twice.", "We refunded the duplicate charge.", "Please restart your router."),
    ("I cannot log in.", "Clear your cookies and sign in again.", "Clear your cookies, then try again."),
]


def test_judge_scores_each_item_from_1_to_5_with_a_reason(echo_server):
    scores = judge(
        base_url=echo_server.base_url, api_key="k", model="echo-1", rubric="", items=ITEMS, allowed_hosts=LOCAL
    )
    assert [score for score, _ in scores] == [5, 1, 3]  # the echo judge scores word overlap with the reference
    assert all(isinstance(reason, str) and reason and "\n" not in reason for _, reason in scores)
    request = echo_server.requests[0]["body"]["messages"]
    assert request[0]["content"].startswith(DEFAULT_RUBRIC) and '"score"' in request[0]["content"]
    assert "Reference answer:\nWe refunded the duplicate charge." in request[1]["content"]


def test_the_default_rubric_covers_correctness_helpfulness_and_tone():
    for words in ("correct", "helpful", "empathetic", "professional", "healthcare", "1", "5"):
        assert words in DEFAULT_RUBRIC


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"score": 4, "reason": "Good but brief."}', (4, "Good but brief.")),
        ('Sure! ```json\n{"score": "2", "reason": "Wrong steps."}\n```', (2, "Wrong steps.")),
        ("I would give this a 4 out of 5: helpful.", (4, "I would give this a 4 out of 5: helpful.")),
        ("Score: 3/5", (3, "Score: 3/5")),
        ("Great answer!", None),
        ("10 out of 10", None),
    ],
)
def test_judge_replies_are_parsed_tolerantly(reply, expected):
    assert parse_judgement(reply) == expected


def test_the_judge_is_asked_again_once_when_its_reply_has_no_score():
    replies = iter(["What a lovely reply!", json.dumps({"score": 3, "reason": "Partly right."})])
    with OpenAIServer(reply=lambda messages: next(replies)) as server:
        assert judge(
            base_url=server.base_url, api_key="k", model="m", rubric="R", items=ITEMS[:1], allowed_hosts=LOCAL
        ) == [(3, "Partly right.")]
        retry = server.requests[1]["body"]["messages"]
        assert retry[-2] == {"role": "assistant", "content": "What a lovely reply!"}
        assert "JSON" in retry[-1]["content"]

    with OpenAIServer(reply=lambda messages: "No idea.") as server:
        with pytest.raises(EndpointError, match="gave no score from 1 to 5, also when asked again"):
            judge(base_url=server.base_url, api_key="k", model="m", rubric="R", items=ITEMS[:1], allowed_hosts=LOCAL)
        assert len(server.requests) == 2


def test_judge_agreement_on_known_scores():
    perfect = judge_agreement([5, 4, 3, 2, 1], [5, 4, 3, 2, 1])
    assert perfect == pytest.approx({"n": 5, "exact": 1.0, "within_one": 1.0, "weighted_kappa": 1.0, "spearman": 1.0})

    judge_scores, human = [1, 2, 3, 4, 5, 3], [2, 2, 3, 5, 5, 1]
    result = judge_agreement(judge_scores, human)
    assert result["n"] == 6
    assert result["exact"] == pytest.approx(3 / 6)
    assert result["within_one"] == pytest.approx(5 / 6)  # only 3 vs 1 is two apart
    # Quadratic-weighted kappa from its definition: 1 - Σ w·observed / Σ w·expected, w = (i - j)² / 16.
    observed = np.zeros((5, 5))
    for a, b in zip(judge_scores, human, strict=True):
        observed[a - 1, b - 1] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(human)
    weights = np.array([[(i - j) ** 2 / 16 for j in range(5)] for i in range(5)])
    assert result["weighted_kappa"] == pytest.approx(1 - (weights * observed).sum() / (weights * expected).sum())
    ranks = np.corrcoef(stats.rankdata(judge_scores), stats.rankdata(human))[0, 1]
    assert result["spearman"] == pytest.approx(ranks)


def test_judge_agreement_when_everyone_gives_the_same_score():
    result = judge_agreement([4, 4, 4], [4, 4, 4])
    assert result["exact"] == 1.0 and result["weighted_kappa"] is None and result["spearman"] is None
    with pytest.raises(ValueError, match="3 judge scores but 2 human scores"):
        judge_agreement([1, 2, 3], [1, 2])
