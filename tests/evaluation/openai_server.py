"""A small local server that speaks the OpenAI chat-completions API, standing in for a remote LLM endpoint.

The real endpoints (OpenAI, a vLLM box) are outside the project and unreachable here, so the endpoint and judge
tests, and the demo, talk to this instead. Standard library only.

    with OpenAIServer() as server:          # mode="echo"
        chat(base_url=server.base_url, api_key="k", model="echo-1", messages=[...])

Modes: "echo" answers deterministically from the messages (see `echo_reply`), "slow" waits `delay` seconds before
answering like echo, "unauthorized" answers 401, "garbage" answers 200 with a body that is not JSON. `reply`
(messages -> text) replaces the echo answer; `api_key` makes the server refuse other keys with 401. Every request is
kept in `requests` as {"path", "headers", "body"}.

Run it by hand for the demo: `python -m tests.evaluation.openai_server --port 8001`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("echo", "slow", "unauthorized", "garbage")
_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return {word.casefold() for word in _WORD.findall(text)}


def _section(text: str, heading: str, next_heading: str | None) -> str | None:
    start = text.find(heading)
    if start < 0:
        return None
    start += len(heading)
    end = text.find(next_heading, start) if next_heading else -1
    return text[start : end if end >= 0 else len(text)].strip()


def judge_reply(text: str) -> str:
    """A judge's JSON verdict: the score grows with the word overlap (Jaccard) between the reference answer and the
    reply to grade, 1 + round(4 × overlap); without those sections, a score derived from the text's bytes."""
    reference = _section(text, "Reference answer:", "Reply to grade:")
    prediction = _section(text, "Reply to grade:", None)
    if reference is not None and prediction is not None:
        ref, pred = _words(reference), _words(prediction)
        overlap = len(ref & pred) / len(ref | pred) if ref | pred else 1.0
        score = 1 + round(4 * overlap)
        reason = f"The reply shares {overlap:.0%} of its words with the reference."
    else:
        score = 1 + sum(text.encode()) % 5
        reason = "Scored from the text alone."
    return json.dumps({"score": score, "reason": reason})


def echo_reply(messages: list[dict]) -> str:
    """The deterministic answer of the echo mode.

    - A judge request (a message mentioning a JSON "score"): judge_reply of the last user message.
    - A system message ending in a list after a colon (": billing, login, export"): the first label named in the
      last user message, else the first label.
    - Otherwise "You said: " + the last user message.
    """
    last_user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    if any('"score"' in str(m.get("content", "")) for m in messages):
        user_turns = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
        return judge_reply(user_turns[0] if user_turns else last_user)
    if system and ":" in system:
        labels = [label.strip() for label in system.rsplit(":", 1)[1].split(",") if label.strip()]
        if len(labels) >= 2:
            folded = last_user.casefold()
            return next((label for label in labels if label.casefold() in folded), labels[0])
    return f"You said: {last_user}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a slow answer nobody is waiting for any more
    owner: OpenAIServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass  # keep test output clean

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode("utf-8"))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        owner = self.server.owner
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": owner.model, "object": "model", "owned_by": "local"}]})
        else:
            self._json(404, {"error": {"message": f"No route {self.path}.", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with owner._lock:
            owner.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"No route {self.path}.", "type": "not_found"}})
            return
        given = self.headers.get("Authorization", "")
        if owner.mode == "unauthorized" or (owner.api_key is not None and given != f"Bearer {owner.api_key}"):
            self._json(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}})
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._json(400, {"error": {"message": "The body needs a list of messages.", "type": "invalid_request"}})
            return
        if owner.mode == "slow" and owner._stopping.wait(owner.delay):
            return  # the server is stopping
        if owner.mode == "garbage":
            self._send(200, b"<html>Service temporarily overloaded</html>", "text/html")
            return
        messages = body["messages"]
        content = owner.reply(messages) if owner.reply is not None else echo_reply(messages)
        self._json(
            200,
            {
                "id": f"chatcmpl-{len(owner.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or owner.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
                    "completion_tokens": len(content.split()),
                    "total_tokens": 0,
                },
            },
        )


class OpenAIServer:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port unless `port` is given), served from a background thread."""

    def __init__(
        self,
        mode: str = "echo",
        *,
        delay: float = 2.0,
        api_key: str | None = None,
        reply: Callable[[list[dict]], str] | None = None,
        model: str = "echo-1",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
        self.mode, self.delay, self.api_key, self.reply, self.model = mode, delay, api_key, reply, model
        self.host, self.port = host, port
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> OpenAIServer:
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        # A short poll interval makes stop() quick; tests start and stop many servers.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible chat endpoint for tests and the demo.")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--mode", choices=MODES, default="echo")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds to wait in slow mode")
    parser.add_argument("--api-key", default=None, help="refuse every other key with 401")
    args = parser.parse_args(argv)
    server = OpenAIServer(args.mode, delay=args.delay, api_key=args.api_key, port=args.port).start()
    print(f"Serving {args.mode} chat completions at {server.base_url} (Ctrl-C stops)", flush=True)  # noqa: T201
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
