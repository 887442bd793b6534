"""Where evaluation.endpoints may send requests (check_url) and that each request goes only there.

Real listeners on loopback addresses (127.0.0.1 and 127.0.0.2, both this machine) stand in for a private service an
engineer should not reach; what they receive is what is asserted. DNS is outside the project: the rebinding test
replaces socket.getaddrinfo to answer like a hostile name server, and says so.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluation.endpoints import EndpointError, chat, check_url, is_public
from tests.evaluation.openai_server import OpenAIServer

USER = [{"role": "user", "content": "Where is my invoice?"}]
PRIVATE = "leads to a private or local network address"


def ask(base_url: str, allowed_hosts: list[str], **kwargs) -> str:
    return chat(base_url=base_url, api_key="sk-secret", model="m", messages=USER, allowed_hosts=allowed_hosts, **kwargs)


# --- tricks that reach this machine --------------------------------------------------------------------------------


def _tricks(port: int) -> list[str]:
    """Addresses of a listener on 127.0.0.1:port that urllib happily connects to."""
    return [
        f"http://127.0.0.1:{port}/v1",
        f"http://localhost:{port}/v1",  # a name that resolves to loopback
        f"http://2130706433:{port}/v1",  # 127.0.0.1 as one decimal number
        f"http://0x7f.1:{port}/v1",  # hexadecimal, short form
        f"http://127.1:{port}/v1",
        f"http://[::ffff:127.0.0.1]:{port}/v1",  # IPv4-mapped IPv6
    ]


def test_loopback_tricks_are_refused_and_the_listener_receives_nothing(echo_server):
    for url in _tricks(echo_server.port):
        # Without the check the trick works: plain urllib reaches the listener.
        before = len(echo_server.requests)
        request = urllib.request.Request(f"{url}/chat/completions", data=b'{"messages": []}', method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200, url
        assert len(echo_server.requests) == before + 1, url

        with pytest.raises(EndpointError, match=PRIVATE):
            ask(url, [])
        assert len(echo_server.requests) == before + 1, url  # nothing more arrived, so no key either


def test_ipv6_loopback_is_refused():
    with pytest.raises(EndpointError, match=PRIVATE):
        check_url("http://[::1]:8001/v1", allowed_hosts=[])
    assert check_url("http://[::1]:8001/v1", allowed_hosts=["::1"]).addresses == ("::1",)
    assert check_url("http://[::1]:8001/v1", allowed_hosts=["[::1]"]).addresses == ("::1",)


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 (an address to refuse, not to bind)
        "224.0.0.1",
        "255.255.255.255",
        "[::]",
        "[fc00::1]",
        "[fe80::1]",
        "[ff02::1]",
        "[::ffff:10.0.0.1]",
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    ],
)
def test_private_link_local_reserved_and_multicast_addresses_are_refused(address):
    with pytest.raises(EndpointError, match=PRIVATE):
        check_url(f"http://{address}/v1", allowed_hosts=[])


def test_public_addresses_pass_when_nothing_is_listed():
    target = check_url("https://8.8.8.8/v1", allowed_hosts=[])
    assert (target.host, target.port, target.addresses) == ("8.8.8.8", 443, ("8.8.8.8",))
    assert is_public(__import__("ipaddress").ip_address("2606:4700:4700::1111"))


def test_a_listed_address_host_or_network_is_allowed(echo_server):
    url = echo_server.base_url
    for allowed in (["127.0.0.1"], ["127.0.0.0/8"], ["::ffff:127.0.0.1/128", "127.0.0.1"]):
        assert ask(url, allowed) == "You said: Where is my invoice?"
    assert ask(f"http://localhost:{echo_server.port}/v1", ["localhost"]).startswith("You said")
    assert ask(f"http://LocalHost.:{echo_server.port}/v1", ["localhost"]).startswith("You said")
    assert echo_server.requests[-1]["headers"]["Authorization"] == "Bearer sk-secret"
    # Another loopback address is not the listed one.
    with pytest.raises(EndpointError, match=PRIVATE):
        check_url("http://127.0.0.2/v1", allowed_hosts=["127.0.0.1"])


def test_a_set_list_is_strict_unless_it_holds_a_star():
    with pytest.raises(EndpointError, match=r"not on the list of hosts .*ENDPOINT_ALLOWED_HOSTS.*add 8\.8\.8\.8"):
        check_url("https://8.8.8.8/v1", allowed_hosts=["127.0.0.1"])
    assert check_url("https://8.8.8.8/v1", allowed_hosts=["*", "127.0.0.1"]).addresses == ("8.8.8.8",)
    with pytest.raises(EndpointError, match=PRIVATE):  # "*" is any public address, not a private one
        check_url("http://10.0.0.1/v1", allowed_hosts=["*"])


def test_wildcard_domains_match_subdomains_only(monkeypatch):
    # DNS is outside the project: a name server that answers 10.0.0.7 for every name.
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [(2, 1, 6, "", ("10.0.0.7", port))])
    assert check_url("https://llm.corp.example/v1", allowed_hosts=["*.corp.example"]).addresses == ("10.0.0.7",)
    assert check_url("https://a.b.corp.example/v1", allowed_hosts=["*.corp.example"]).host == "a.b.corp.example"
    for host in ("corp.example", "evilcorp.example", "corp.example.evil.test"):
        with pytest.raises(EndpointError, match=PRIVATE):
            check_url(f"https://{host}/v1", allowed_hosts=["*.corp.example"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("gopher://127.0.0.1:70/", "must start with http:// or https://"),
        ("http://user:pass@8.8.8.8/v1", "must not hold a user name or password"),
        ("http:///v1", "has no host name"),
        ("http://8.8.8.8:99999/v1", "has a port that is not a number"),
        ("http://no-such-host.invalid/v1", "cannot be found"),
    ],
)
def test_addresses_that_cannot_be_called_are_refused_with_the_reason(url, message):
    with pytest.raises(EndpointError, match=message):
        check_url(url, allowed_hosts=[])


@pytest.mark.parametrize("entry", ["127.0.0.1:8001", "http://llm.example", "10.0.0.0/33", "*.*.example", "a b"])
def test_a_bad_setting_entry_is_reported_not_ignored(entry):
    with pytest.raises(EndpointError, match="ENDPOINT_ALLOWED_HOSTS has an entry"):
        check_url("https://8.8.8.8/v1", allowed_hosts=[entry])


# --- each request goes where it was checked ------------------------------------------------------------------------


def test_dns_rebinding_cannot_move_the_request_to_another_address(monkeypatch):
    """The name resolves to an allowed address when checked and to a private one a moment later: the request still
    goes to the checked address."""
    with OpenAIServer() as allowed, OpenAIServer(host="127.0.0.2", port=allowed.port) as private:
        real = socket.getaddrinfo
        answers = iter(["127.0.0.1"])

        def rebinding(host, port, *args, **kwargs):  # a hostile name server (DNS is outside the project)
            if host == "rebind.test":
                return real(next(answers, "127.0.0.2"), port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        assert ask(f"http://rebind.test:{allowed.port}/v1", ["127.0.0.1"]).startswith("You said")
    assert len(allowed.requests) == 1 and allowed.requests[0]["headers"]["Host"] == f"rebind.test:{allowed.port}"
    assert private.requests == []


class _Recorder(BaseHTTPRequestHandler):
    """Records every request, whatever its method; answers 303 to `location` when one is set, else 200."""

    location = ""

    def log_message(self, format, *args):  # noqa: A002
        pass

    def _answer(self):
        self.server.received.append({"method": self.command, "headers": dict(self.headers.items())})
        self.send_response(303 if self.location else 200)
        if self.location:
            self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815


@contextlib.contextmanager
def _recording_server(host: str, location: str = ""):
    server = ThreadingHTTPServer((host, 0), type("Handler", (_Recorder,), {"location": location}))
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_redirects_are_not_followed_so_the_key_stays_with_the_checked_address():
    with _recording_server("127.0.0.2") as private:
        target = f"http://127.0.0.2:{private.server_address[1]}/steal"
        with _recording_server("127.0.0.1", location=target) as redirecting:
            with pytest.raises(EndpointError, match="answered 303 and sends requests to another address"):
                ask(f"http://127.0.0.1:{redirecting.server_address[1]}/v1", ["127.0.0.1", "127.0.0.2"])
            assert len(redirecting.received) == 1
    assert private.received == []


def test_proxy_settings_in_the_environment_are_not_used(monkeypatch, echo_server):
    with OpenAIServer(host="127.0.0.2") as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.2:{proxy.port}")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.2:{proxy.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        assert ask(echo_server.base_url, ["127.0.0.1"]).startswith("You said")
    assert proxy.requests == [] and len(echo_server.requests) == 1
