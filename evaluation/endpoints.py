"""OpenAI-compatible chat endpoints: an off-the-shelf model as the baseline, and a model as judge. No Django.

Plain urllib (no SDK): POST {base_url}/chat/completions with a Bearer key. Works with OpenAI, vLLM, Ollama,
llama.cpp's server, LiteLLM and the like. Every failure becomes an EndpointError whose message says, in plain words,
what the endpoint did and what to check.

Where requests may go (check_url): the key and the approved rows travel with every request, so before each one the
host is resolved and every address checked against the allow-list the caller passes (ENDPOINT_ALLOWED_HOSTS), and
the connection goes to exactly the addresses that were checked: no second DNS answer, no redirect, no proxy.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from evaluation.inference import PredictionCancelled

DEFAULT_RUBRIC = """\
You grade replies written for customer-support tickets of healthcare CRM companies (clinics, practices and their \
software vendors). The people writing in are often under time pressure and handle patient records, so a good \
reply solves the problem correctly, is easy to act on, and sounds calm, warm and professional.

Compare the reply with the reference answer and the customer's message, then give one score from 1 to 5:
5 = correct and complete (the same facts and steps as the reference, or equally good ones), directly helpful, \
and empathetic and professional in tone.
4 = correct and helpful, with a small gap: a missing detail, slightly generic, or a slightly off tone.
3 = partly correct or partly helpful: the customer would still need to ask again; or correct but cold or curt.
2 = mostly wrong, vague or unhelpful, or an unprofessional tone.
1 = wrong, harmful, off-topic or empty; or it reveals personal or health data not needed for the answer.
Judge the substance, not the wording: a reply need not copy the reference to score 5."""

_JUDGE_FORMAT = (
    'Answer with a JSON object and nothing else: {"score": <whole number 1 to 5>, "reason": "<one short sentence>"}'
)
_JUDGE_RETRY = "That was not the requested format. " + _JUDGE_FORMAT


class EndpointError(Exception):
    """The endpoint could not be used. `message` in plain words; `transient` when trying again later may help
    (timeouts, refused connections, rate limits, server errors) and a setting need not change."""

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status


# --- where requests may go -------------------------------------------------------------------------------------

_SETTING = "ENDPOINT_ALLOWED_HOSTS"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Target:
    """Where a request goes: the host as written in the address, the port, and the checked addresses to connect to."""

    host: str
    port: int
    addresses: tuple[str, ...]


def _embedded_ipv4(address: _Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo client, NAT64), which is where it leads."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: _Address) -> bool:
    """False for loopback, private, link-local, shared, reserved, multicast and unspecified addresses (IPv4 and IPv6,
    including IPv6 addresses that carry such an IPv4 address)."""
    if (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    ):
        return False
    inner = _embedded_ipv4(address)
    return inner is None or is_public(inner)


def _allow_list(entries: Sequence[str]) -> tuple[set[str], tuple[str, ...], tuple[_Network, ...], bool]:
    """(host names, *.suffixes, networks, "*" listed) from the setting's entries. A bad entry is an error."""
    names: set[str] = set()
    suffixes: list[str] = []
    networks: list[_Network] = []
    any_public = False
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if entry.startswith("[") and entry.endswith("]"):
            entry = entry[1:-1]
        if not entry:
            continue
        if entry == "*":
            any_public = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if entry.startswith("*.") and len(entry) > 2 and "*" not in entry[2:]:
            suffixes.append(entry[1:])  # ".example.com"
        elif re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*", entry):
            names.add(entry)
        else:
            raise EndpointError(
                f"{_SETTING} has an entry that is not a host name, *.domain, IP address or network: “{raw.strip()}” "
                "(entries have no scheme and no port)."
            )
    return names, tuple(suffixes), tuple(networks), any_public


def _as_address(text: str) -> _Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is not part of the address


def _listed_address(address: _Address, networks: Sequence[_Network]) -> bool:
    candidates = [candidate for candidate in (address, _embedded_ipv4(address)) if candidate is not None]
    return any(c in n for c in candidates for n in networks if c.version == n.version)


def check_url(base_url: str, *, allowed_hosts: Sequence[str]) -> Target:
    """Check that Tuning Desk may send requests to `base_url`, and say where to connect. Raises EndpointError.

    http and https only, no user name or password in the address. The host is resolved and every address it resolves
    to is checked. With an empty `allowed_hosts`, any public address is allowed and loopback, private, link-local,
    reserved, multicast and unspecified addresses are refused. Otherwise it is a strict allow-list: a host is allowed
    when its name is listed (exactly, or under a listed "*.example.com"), or when each of its addresses is in a listed
    IP address or network (CIDR), or is public and "*" is listed.
    """
    url = base_url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise EndpointError(f"The endpoint address “{url}” must start with http:// or https://.")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(
            f"The endpoint address “{url}” must not hold a user name or password; put the key in the API key field."
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EndpointError(f"The endpoint address “{url}” has no host name.")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise EndpointError(f"The endpoint address “{url}” has a port that is not a number from 1 to 65535.") from None
    names, suffixes, networks, any_public = _allow_list(allowed_hosts)
    where = f"The endpoint at {url.rstrip('/')}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        found = []
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        raise EndpointError(f"{where} cannot be found: check the host name in the address.")
    strict = bool(names or suffixes or networks) and not any_public
    listed_name = host in names or host.endswith(suffixes)
    for text in addresses:
        address = _as_address(text)
        if listed_name or _listed_address(address, networks):
            continue
        if not is_public(address):
            raise EndpointError(
                f"{where} leads to a private or local network address, which Tuning Desk does not call unless an "
                f"administrator lists the host in {_SETTING}."
            )
        if strict:
            raise EndpointError(
                f"{where} is not on the list of hosts Tuning Desk may call ({_SETTING}); ask an administrator to "
                f"add {host}."
            )
    return Target(host=host, port=port, addresses=addresses)


class _PinnedConnections:
    """Mixed into urllib's HTTP(S) handlers: every connection goes to the addresses check_url approved, whatever a
    later DNS answer says (DNS rebinding). TLS still checks the certificate against the host name."""

    def __init__(self, target: Target) -> None:
        super().__init__()
        self._target = target

    def _connect(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, *args, **kwargs):
        error: OSError | None = None
        for ip in self._target.addresses:
            try:
                return socket.create_connection((ip, self._target.port), timeout, source_address)
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    def do_open(self, http_class, req, **kwargs):
        def connection(host, **connection_kwargs) -> http.client.HTTPConnection:
            made = http_class(host, **connection_kwargs)
            made._create_connection = self._connect  # http.client's own hook for opening the socket
            return made

        return super().do_open(connection, req, **kwargs)


class _PinnedHTTPHandler(_PinnedConnections, urllib.request.HTTPHandler):
    pass


class _PinnedHTTPSHandler(_PinnedConnections, urllib.request.HTTPSHandler):
    pass


def _opener(target: Target) -> urllib.request.OpenerDirector:
    """urllib without redirects (the key would follow them to another address) and without proxies (the address
    checked must be the one connected to): a 3xx answer is an HTTPError like any other refusal."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        _PinnedHTTPHandler(target),
        _PinnedHTTPSHandler(target),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


# --- one request -------------------------------------------------------------------------------------------------


def _error_detail(body: bytes) -> str:
    """The server's own explanation from an OpenAI-style error body, if any, shortened."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    return f" The server said: {message.strip()[:200]}" if isinstance(message, str) and message.strip() else ""


def _http_error(base_url: str, status: int, body: bytes) -> EndpointError:
    where = f"The endpoint at {base_url}"
    detail = _error_detail(body)
    if status in (401, 403):
        return EndpointError(f"{where} answered {status}: check the API key.{detail}", status=status)
    if status == 404:
        return EndpointError(
            f"{where} answered 404: check the address (it usually ends in /v1) and the model name.{detail}",
            status=status,
        )
    if 300 <= status < 400:
        return EndpointError(
            f"{where} answered {status} and sends requests to another address, which Tuning Desk does not follow: "
            f"enter the final address instead.{detail}",
            status=status,
        )
    if status == 429:
        return EndpointError(
            f"{where} answered 429: too many requests or the quota is used up; try again later.{detail}",
            transient=True,
            status=status,
        )
    if status >= 500:
        return EndpointError(
            f"{where} answered {status}: the server had a problem; try again later.{detail}",
            transient=True,
            status=status,
        )
    return EndpointError(f"{where} answered {status}: it did not accept the request.{detail}", status=status)


def _is_timeout(reason: object) -> bool:
    return isinstance(reason, TimeoutError | socket.timeout) or "timed out" in str(reason).lower()


def _content(data: Any) -> str | None:
    """The reply text of a chat completion, or None when `data` is not one."""
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some servers send content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if content is None and isinstance(message, dict) and isinstance(message.get("reasoning_content"), str):
        content = ""  # a reasoning model that ran out of tokens before answering
    return content if isinstance(content, str) else None


def chat(
    *,
    base_url: str,
    api_key: str,
    model: str,
    messages: list[dict],
    timeout: float = 30.0,
    max_tokens: int = 256,
    temperature: float = 0.0,
    allowed_hosts: Sequence[str],
) -> str:
    """The assistant's reply to `messages` (OpenAI chat format). Raises EndpointError.

    The address is checked with check_url(allowed_hosts) right before the request, which connects to the checked
    addresses only."""
    base_url = base_url.strip().rstrip("/")
    target = check_url(base_url, allowed_hosts=allowed_hosts)
    body = json.dumps(
        {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
    ).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    url = f"{base_url}/chat/completions"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked)
    where = f"The endpoint at {base_url}"
    seconds = f"{timeout:g} s"
    try:
        with _opener(target).open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            raise _http_error(base_url, exc.code, exc.read()) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if _is_timeout(reason):
            raise EndpointError(f"{where} did not answer within {seconds}.", transient=True) from None
        if isinstance(reason, ConnectionRefusedError):
            raise EndpointError(f"{where} refused the connection (is it running?)", transient=True) from None
        raise EndpointError(f"{where} cannot be reached ({reason}).", transient=True) from None
    except TimeoutError:  # the headers came, the body did not (or the read timed out)
        raise EndpointError(f"{where} did not answer within {seconds}.", transient=True) from None
    except (ConnectionError, OSError) as exc:
        raise EndpointError(f"{where} dropped the connection ({exc}).", transient=True) from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    content = _content(data)
    if content is None:
        raise EndpointError(f"{where} answered something that is not a chat completion.")
    return content


# --- many requests -----------------------------------------------------------------------------------------------


def _run_all(
    jobs: list[Callable[[], Any]],
    *,
    concurrency: int,
    on_progress: Callable[[int, int], None] | None,
    should_cancel: Callable[[], bool] | None,
) -> list[Any]:
    """Run `jobs` with up to `concurrency` requests in flight; results in job order. The first error stops the rest
    and is raised; should_cancel() True raises PredictionCancelled."""
    total = len(jobs)
    results: list[Any] = [None] * total
    done = 0
    if total == 0:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, total))) as pool:
        pending: dict[Any, int] = {}
        next_job = 0
        try:
            while next_job < total or pending:
                while next_job < total and len(pending) < max(1, concurrency):
                    if should_cancel is not None and should_cancel():
                        raise PredictionCancelled(done, total)
                    pending[pool.submit(jobs[next_job])] = next_job
                    next_job += 1
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    results[index] = future.result()  # raises the job's error
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def _casefold_label(text: str) -> str:
    return text.strip().strip("\"'`*.:;!,()[]").strip().casefold()


def match_label(answer: str, labels: list[str]) -> str:
    """The label an answer names: exact, then ignoring case and surrounding quotes or punctuation, then the only
    label the answer mentions as a word; "" when none or several fit."""
    text = answer.strip()
    if text in labels:
        return text
    folded = _casefold_label(text)
    by_fold = {label.casefold(): label for label in labels}
    if folded in by_fold:
        return by_fold[folded]
    mentioned = [
        label for label in labels if re.search(rf"(?<!\w){re.escape(label.casefold())}(?!\w)", text.casefold())
    ]
    return mentioned[0] if len(mentioned) == 1 else ""


def endpoint_predict(
    *,
    base_url: str,
    api_key: str,
    model: str,
    task: str,
    inputs: list[str],
    labels: list[str] | None = None,
    timeout: float = 30.0,
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    max_tokens: int = 256,
    concurrency: int = 4,
    allowed_hosts: Sequence[str],
) -> list[str]:
    """One answer per input from the endpoint's model, in input order.

    sft: the input is sent as the user message; the reply, stripped, is the answer. classification: a system
    message asks for exactly one label from `labels`; the reply is mapped with match_label ("" when it names no
    single label, which then counts as wrong). Up to `concurrency` requests run at once.
    """
    if task not in ("sft", "classification"):
        raise ValueError(f"Unknown task “{task}”; choose sft or classification.")
    system = None
    if task == "classification":
        if not labels:
            raise ValueError("Classification needs the list of label names.")
        system = (
            "Classify the user's message. Answer with exactly one label from this list and nothing else: "
            + ", ".join(labels)
        )

    def ask(text: str) -> Callable[[], str]:
        messages = [{"role": "user", "content": text}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})

        def job() -> str:
            reply = chat(
                base_url=base_url,
                api_key=api_key,
                model=model,
                messages=messages,
                timeout=timeout,
                max_tokens=max_tokens,
                allowed_hosts=allowed_hosts,
            )
            return match_label(reply, labels) if system is not None else reply.strip()

        return job

    return _run_all(
        [ask(text) for text in inputs], concurrency=concurrency, on_progress=on_progress, should_cancel=should_cancel
    )


# --- judge -------------------------------------------------------------------------------------------------------


def _judge_messages(rubric: str, item: tuple[str, str, str]) -> list[dict]:
    source, reference, prediction = item
    return [
        {"role": "system", "content": f"{rubric.strip()}\n\n{_JUDGE_FORMAT}"},
        {
            "role": "user",
            "content": (
                f"Customer message:\n{source}\n\nReference answer:\n{reference}\n\nReply to grade:\n{prediction}"
            ),
        },
    ]


_INTEGER = re.compile(r"(?<![\d.])([1-5])(?:\.0+)?(?![\d.])")


def parse_judgement(text: str) -> tuple[int, str] | None:
    """(score, reason) from a judge reply: the JSON object when there is one, else the first whole number from 1 to
    5 in the text (reason: the rest of its first line). None when no score can be found."""
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(text[start : end + 1])
        except ValueError:
            data = None
        if isinstance(data, dict):
            score = data.get("score")
            if isinstance(score, bool):
                score = None
            try:
                value = float(score)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                value = 0.0
            if value.is_integer() and 1 <= value <= 5:
                reason = data.get("reason")
                return int(value), (reason.strip().splitlines()[0][:300] if isinstance(reason, str) and reason else "")
    match = _INTEGER.search(text)
    if match is None:
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return int(match.group(1)), (lines[0][:300] if lines else "")


def judge(
    *,
    base_url: str,
    api_key: str,
    model: str,
    rubric: str,
    items: list[tuple[str, str, str]],
    timeout: float = 30.0,
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    concurrency: int = 4,
    allowed_hosts: Sequence[str],
) -> list[tuple[int, str]]:
    """(score 1..5, one-line reason) for each (input, reference, prediction), graded by the endpoint's model with
    `rubric` (DEFAULT_RUBRIC when empty). A reply without a score is asked once more; still none → EndpointError."""
    rubric = rubric.strip() or DEFAULT_RUBRIC

    def grade(item: tuple[str, str, str]) -> Callable[[], tuple[int, str]]:
        def job() -> tuple[int, str]:
            messages = _judge_messages(rubric, item)
            reply = ""
            for attempt in range(2):
                reply = chat(
                    base_url=base_url,
                    api_key=api_key,
                    model=model,
                    messages=messages,
                    timeout=timeout,
                    max_tokens=200,
                    allowed_hosts=allowed_hosts,
                )
                parsed = parse_judgement(reply)
                if parsed is not None:
                    return parsed
                if attempt == 0:
                    messages = [
                        *messages,
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": _JUDGE_RETRY},
                    ]
            shown = " ".join(reply.split())[:120]
            raise EndpointError(
                f"The judge model at {base_url.rstrip('/')} gave no score from 1 to 5, also when asked again; "
                f"it answered: “{shown}”. Try another judge model."
            )

        return job

    return _run_all(
        [grade(item) for item in items], concurrency=concurrency, on_progress=on_progress, should_cancel=should_cancel
    )


def judge_agreement(judge_scores: list[int], human_scores: list[int]) -> dict:
    """How well the judge agrees with people on the same items: {"n", "exact" (share of equal scores),
    "within_one" (share at most one apart), "weighted_kappa" (Cohen's kappa, quadratic weights, over 1..5),
    "spearman" (rank correlation)}. Kappa and Spearman are None where undefined (e.g. all scores the same)."""
    import math

    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    if len(judge_scores) != len(human_scores):
        raise ValueError(f"There are {len(judge_scores)} judge scores but {len(human_scores)} human scores.")
    if not judge_scores:
        raise ValueError("There are no scores to compare.")
    n = len(judge_scores)
    pairs = list(zip(judge_scores, human_scores, strict=True))

    def defined(value: float) -> float | None:
        return float(value) if value is not None and math.isfinite(value) else None

    kappa = spearman = None
    if len(set(judge_scores)) > 1 or len(set(human_scores)) > 1:
        import warnings

        with warnings.catch_warnings():  # constant input: nan, reported as None below
            warnings.simplefilter("ignore")
            kappa = defined(cohen_kappa_score(judge_scores, human_scores, labels=[1, 2, 3, 4, 5], weights="quadratic"))
            spearman = defined(spearmanr(judge_scores, human_scores).statistic)
    return {
        "n": n,
        "exact": sum(a == b for a, b in pairs) / n,
        "within_one": sum(abs(a - b) <= 1 for a, b in pairs) / n,
        "weighted_kappa": kappa,
        "spearman": spearman,
    }
