"""The server answers only for names that are its own (issue 15): loopback names, the issuer's
host, and names the operator allows. Anything else in ``Host`` (DNS rebinding: a web page's own
name pointed at 127.0.0.1) is refused with 421 before any route, key check or cookie is seen.

Real HTTP on loopback throughout: the point is the header a real client sends.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import dump

from grantex_local import InvalidInput, Ledger, developers
from grantex_local.server import create_app
from grantex_local.server.middleware import host_of
from grantex_local.server.testing import RunningServer, running_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, Path]]:
    path = tmp_path_factory.mktemp("host") / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
    with running_server(path, allowed_hosts=["gx.lan"]) as server:
        yield server, key, path


def port_of(server: RunningServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def get(server: RunningServer, host: str, path: str = "/health", **kwargs: object) -> httpx.Response:
    """A request to the server's real address that names ``host`` in its Host header."""
    return httpx.get(server.base_url + path, headers={"Host": host}, timeout=10, **kwargs)  # type: ignore[arg-type]


def assert_misdirected(response: httpx.Response) -> None:
    assert response.status_code == 421, response.text
    body = response.json()
    assert set(body) == {"message", "code", "requestId"}
    assert body["code"] == "MISDIRECTED_REQUEST"
    assert body["requestId"] == response.headers["x-request-id"]
    assert "--allowed-host" in body["message"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example",
                                  "localhost.evil.example:{port}", "192.0.2.1:{port}", "[fd00::2]:{port}",
                                  "localhost:notaport", "gx.lan.evil.example", "", "local host"])
def test_foreign_hosts_are_refused(served: tuple[RunningServer, str, Path], host: str) -> None:
    server, _, _ = served
    for path in ("/health", "/.well-known/jwks.json", "/docs", "/consent/areq_x", "/nope"):
        assert_misdirected(get(server, host.format(port=port_of(server)), path))


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "localhost", "LOCALHOST:{port}",
                                  "127.1.2.3:{port}", "[::1]:{port}", "[::1]", "gx.lan", "GX.LAN:{port}"])
def test_loopback_names_and_allowed_hosts_are_answered(served: tuple[RunningServer, str, Path],
                                                       host: str) -> None:
    server, _, _ = served
    response = get(server, host.format(port=port_of(server)))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_a_refused_request_reaches_no_route(served: tuple[RunningServer, str, Path]) -> None:
    server, key, path = served
    before = dump(path)
    refused = httpx.post(server.base_url + "/v1/agents", json={"name": "rebound", "scopes": []},
                         headers={"Host": "evil.example", "Authorization": f"Bearer {key}"}, timeout=10)
    assert_misdirected(refused)
    assert not any(h.startswith("x-ratelimit") for h in refused.headers)  # the key was never looked at
    assert dump(path) == before
    answered = httpx.post(server.base_url + "/v1/agents", json={"name": "local", "scopes": []},
                          headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answered.status_code == 201, answered.text


def raw_request(server: RunningServer, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_no_host_or_two_hosts_are_refused(served: tuple[RunningServer, str, Path]) -> None:
    server, _, _ = served
    status, body = raw_request(server, b"GET /health HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit Host
    assert status == 421 and json.loads(body)["code"] == "MISDIRECTED_REQUEST"
    status, _ = raw_request(server, b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n"
                                    b"Connection: close\r\n\r\n")
    assert status in (400, 421)  # the HTTP parser or the middleware: never answered
    status, _ = raw_request(server, b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status == 200


def test_the_issuers_host_is_answered(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    Ledger(path, issuer="https://gx.example").close()  # e.g. behind a reverse proxy
    with running_server(path, adopt_issuer=False) as server:
        assert get(server, "gx.example").status_code == 200
        assert get(server, "gx.example:443").status_code == 200
        assert_misdirected(get(server, "other.example"))


@pytest.mark.parametrize("name", ["http://gx.lan", "gx.lan:8421", "", "gx lan", "gx.lan/x", "[gx.lan]"])
def test_a_malformed_allowed_host_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "grantex.db"
    Ledger(path).close()
    with pytest.raises(InvalidInput, match="allowed host"):
        create_app(path, allowed_hosts=[name])


@pytest.mark.parametrize(("header", "host"), [
    ("localhost:8421", "localhost"), ("[::1]:80", "::1"), ("[0:0::1]", "::1"), ("Example.COM", "example.com"),
    ("127.0.0.1:", None), ("::1", None), ("[::1", None), ("a:b:c", None), ("localhost.", None),
    ("ex\u00e4mple.com", None), ("[127.0.0.1]", None)])
def test_host_header_parsing(header: str, host: str | None) -> None:
    assert host_of(header) == host


def _lan_address() -> str | None:
    """This machine's first non-loopback IPv4 address, if it has one."""
    try:
        addresses = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        addresses = []
    for *_, (address, _port) in addresses:
        if not address.startswith("127."):
            return str(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; only picks the outgoing address
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else str(address)


def test_serving_on_a_lan_address_answers_for_it(tmp_path: Path) -> None:
    address = _lan_address()
    if address is None:
        pytest.skip("no non-loopback address to listen on")
    path = tmp_path / "grantex.db"
    Ledger(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from grantex_local.cli import main; main()", "serve", "--quiet",
         "--ledger", str(path), "--host", address, "--port", "0", "--allowed-host", "gx.lan"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        text = "".join(banner)
        first = next(line for line in banner if line.startswith("grantex-local server on "))
        base = first.split(" on ")[1].strip()
        assert "WARNING  listening on" in text and "gx.lan" in text  # the banner says who is answered
        answer: httpx.Response | None = None
        for _ in range(200):  # the banner precedes uvicorn's startup by a moment
            try:
                answer = httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert answer is not None and answer.status_code == 200  # its own address: allowed
        assert httpx.get(base + "/health", headers={"Host": "gx.lan"}).status_code == 200
        assert httpx.get(base + "/health", headers={"Host": "evil.example"}).status_code == 421
    finally:
        proc.kill()
        proc.wait(10)
