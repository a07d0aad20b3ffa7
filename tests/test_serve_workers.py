"""``serve --workers 2``: two real processes over one ledger, any of them answering any request.

Which worker answers is the kernel's choice per connection, so the tests pin connections: each
``http.client.HTTPConnection`` keeps one socket (keep-alive), and the server is started with
``GRANTEX_LOCAL_WORKER_HEADER=1`` so every answer names the worker's pid. Connections are opened
until two different pids answered (bounded), then one worker renders and the other accepts.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from click.testing import CliRunner
from helpers import CLI, server_process

from grantex_local import Ledger, approval, developers
from grantex_local.server import create_app
from grantex_local.server.run import WORKER_HEADER_ENV, max_workers

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="--workers forks processes")

SCOPES = ["calendar:read"]


class Pinned:
    """One keep-alive connection, hence one worker."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=15)
        self.pid = ""

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers=headers or {})
        answer = self.conn.getresponse()
        data = answer.read()
        found = {k.lower(): v for k, v in answer.getheaders()}
        pid = found["x-grantex-worker"]
        assert self.pid in ("", pid), "a keep-alive connection moved to another worker"
        self.pid = pid
        return answer.status, found, data

    def json(self, method: str, path: str, key: str, payload: dict[str, Any]) -> tuple[int, Any]:
        status, _, data = self.call(method, path, json.dumps(payload).encode(),
                                    {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        return status, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def two_workers(base_url: str) -> tuple[Pinned, Pinned]:
    """Two connections answered by different workers (at most 200 tries)."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    first = Pinned(parts.hostname, parts.port)
    first.call("GET", "/health")
    for _ in range(200):
        other = Pinned(parts.hostname, parts.port)
        other.call("GET", "/health")
        if other.pid != first.pid:
            return first, other
        other.close()
    raise AssertionError("200 connections all went to one worker")


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, str, str]:
    """A ledger with a person-approved developer's key and the sandbox developer's key."""
    path = tmp_path / "grantex.db"
    with Ledger(path) as led:
        dev = developers.create_developer(led, "acme-labs", sandbox=False)
        key = developers.create_api_key(led, dev.id).key
        sandbox_key = developers.create_api_key(led, developers.default_developer(led).id).key
    return path, key, sandbox_key


@pytest.fixture
def workers_env() -> Iterator[None]:
    before = os.environ.get(WORKER_HEADER_ENV)
    os.environ[WORKER_HEADER_ENV] = "1"  # inherited by the server process started below
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORKER_HEADER_ENV, None)
        else:
            os.environ[WORKER_HEADER_ENV] = before


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_consent_form_rendered_by_one_worker_is_accepted_by_the_other(
        ledger: tuple[Path, str, str], workers_env: None) -> None:
    path, key, _ = ledger
    with server_process(path, "--workers", "2", command=CLI) as server:
        assert any(line.startswith("  workers  2 processes") for line in server.banner), server.banner
        renderer, decider = two_workers(server.base_url)
        status, agent = renderer.json("POST", "/v1/agents", key, {"name": "acme-scheduler", "scopes": SCOPES})
        assert status == 201, agent
        status, auth = renderer.json("POST", "/v1/authorize", key,
                                     {"agentId": agent["id"], "principalId": "user_alice", "scopes": SCOPES})
        assert status == 201 and auth["status"] == "pending", auth
        page_path = urlsplit(auth["consentUrl"]).path
        status, headers, page = renderer.call("GET", page_path, headers={"Accept": "text/html"})
        assert status == 200, page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.decode())
        cookie = headers["set-cookie"].split(";", 1)[0]
        assert token is not None and cookie.startswith("gxl_consent=")
        with Ledger(path) as led:
            code = approval.approval_code(led, auth["authRequestId"])
        form = urlencode({"decision": "approve", "csrf_token": token.group(1), "approval_code": code})
        status, _, answer = decider.call("POST", page_path, form.encode(), {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        assert decider.pid != renderer.pid
        assert status == 200, answer
        with Ledger(path) as led:
            row = led.query_one("SELECT status FROM auth_requests WHERE id = ?", (auth["authRequestId"],))
        assert row is not None and row["status"] == "approved"
        # a form whose token was not made with the ledger's key is still refused
        forged = urlencode({"decision": "approve", "csrf_token": "0" * 64, "approval_code": code})
        status, _, answer = decider.call("POST", page_path, forged.encode(), {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        assert status == 403 and b"CSRF_FAILED" in answer
        renderer.close()
        decider.close()


def test_a_refresh_replayed_to_the_other_worker_is_detected_as_reuse(
        ledger: tuple[Path, str, str], workers_env: None) -> None:
    path, _, key = ledger
    with server_process(path, "--workers", "2", command=CLI) as server:
        first, second = two_workers(server.base_url)
        status, agent = first.json("POST", "/v1/agents", key, {"name": "acme-scheduler", "scopes": SCOPES})
        assert status == 201, agent
        status, auth = first.json("POST", "/v1/authorize", key,
                                  {"agentId": agent["id"], "principalId": "user_alice", "scopes": SCOPES})
        assert status == 201 and auth.get("code"), auth
        status, issued = second.json("POST", "/v1/token", key, {"code": auth["code"], "agentId": agent["id"]})
        assert status == 201, issued
        body = {"refreshToken": issued["refreshToken"], "agentId": agent["id"]}
        status, rotated = first.json("POST", "/v1/token/refresh", key, body)
        assert status == 201 and rotated["refreshToken"] != issued["refreshToken"], rotated
        status, replay = second.json("POST", "/v1/token/refresh", key, body)
        assert second.pid != first.pid
        assert status == 400 and replay["code"] == "REFRESH_TOKEN_REUSED", replay
        # reuse revoked the family: the rotated token no longer verifies, on either worker
        for conn in (first, second):
            status, verdict = conn.json("POST", "/v1/tokens/verify", key, {"token": rotated["grantToken"]})
            assert status == 200 and verdict["valid"] is False, verdict
        first.close()
        second.close()


def test_a_refresh_retry_with_its_idempotency_key_replays_on_the_other_worker(
        ledger: tuple[Path, str, str], workers_env: None) -> None:
    """The SDK retries a refresh with the same Idempotency-Key; answered by the other worker it
    must get the first answer back, not be taken for a stolen token (which revokes the family)."""
    path, _, key = ledger
    with server_process(path, "--workers", "2", command=CLI) as server:
        first, second = two_workers(server.base_url)
        status, agent = first.json("POST", "/v1/agents", key, {"name": "acme-scheduler", "scopes": SCOPES})
        status, auth = first.json("POST", "/v1/authorize", key,
                                  {"agentId": agent["id"], "principalId": "user_alice", "scopes": SCOPES})
        status, issued = first.json("POST", "/v1/token", key, {"code": auth["code"], "agentId": agent["id"]})
        assert status == 201, issued
        body = json.dumps({"refreshToken": issued["refreshToken"], "agentId": agent["id"]}).encode()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                   "Idempotency-Key": "retry-1"}
        status, _, answer = first.call("POST", "/v1/token/refresh", body, headers)
        assert status == 201, answer
        status, _, again = second.call("POST", "/v1/token/refresh", body, headers)
        assert second.pid != first.pid
        assert status == 201 and json.loads(again) == json.loads(answer)
        rotated = json.loads(answer)
        status, verdict = second.json("POST", "/v1/tokens/verify", key, {"token": rotated["grantToken"]})
        assert verdict["valid"] is True, verdict
        # another key is a real second use: reuse
        other_key = {**headers, "Idempotency-Key": "k-2"}
        status, _, reuse = second.call("POST", "/v1/token/refresh", body, other_key)
        assert status == 400 and json.loads(reuse)["code"] == "REFRESH_TOKEN_REUSED"
        first.close()
        second.close()
    # the remembered answer is sealed: the tokens it holds are nowhere in the file in clear
    raw = b"".join(p.read_bytes() for p in path.parent.glob("grantex.db*"))
    assert rotated["refreshToken"].encode() not in raw and rotated["grantToken"].encode() not in raw


def test_a_consent_form_survives_a_server_restart(ledger: tuple[Path, str, str]) -> None:
    path, key, _ = ledger
    with server_process(path, command=CLI) as server:
        api = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})
        agent = api.post("/v1/agents", json={"name": "acme-scheduler", "scopes": SCOPES}).json()
        auth = api.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "user_alice",
                                               "scopes": SCOPES}).json()
        page_path = urlsplit(auth["consentUrl"]).path
        page = httpx.get(server.base_url + page_path, headers={"Accept": "text/html"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token is not None
        cookie = page.cookies["gxl_consent"]
        api.close()
    with Ledger(path) as led:
        code = approval.approval_code(led, auth["authRequestId"])
    with server_process(path, command=CLI) as server:
        answer = httpx.post(server.base_url + page_path, cookies={"gxl_consent": cookie},
                            data={"decision": "approve", "csrf_token": token.group(1), "approval_code": code})
        assert answer.status_code == 200, answer.text


def test_sigterm_stops_every_worker_and_requests_reach_both(
        ledger: tuple[Path, str, str], workers_env: None) -> None:
    path, _, key = ledger
    with server_process(path, "--workers", "2", command=CLI) as server:
        one, two = two_workers(server.base_url)
        pids = {int(one.pid), int(two.pid)}
        assert server.proc.pid not in pids
        for conn in (one, two):
            status, listed = conn.json("GET", "/v1/agents", key, {})
            assert status == 200 and listed == {"agents": []}
        one.close()
        two.close()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert "grantex-local server stopped" in "\n".join(server.rest(2))
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(pid) for pid in pids), "a worker outlived serve"


def test_a_killed_serve_leaves_no_worker_behind(ledger: tuple[Path, str, str], workers_env: None) -> None:
    path, _, _ = ledger
    with server_process(path, "--workers", "2", command=CLI) as server:
        one, two = two_workers(server.base_url)
        pids = {int(one.pid), int(two.pid)}
        one.close()
        two.close()
        server.proc.kill()
        server.proc.wait(10)
        deadline = time.monotonic() + 20
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(pid) for pid in pids), "a worker outlived a SIGKILLed serve"


def test_the_csrf_key_is_the_ledgers_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    Ledger(path).close()
    first = create_app(path, webhook_delivery=False).state.grantex.csrf_secret
    second = create_app(path, webhook_delivery=False).state.grantex.csrf_secret
    other = tmp_path / "other.db"
    Ledger(other).close()
    assert first == second and len(first) == 32
    assert create_app(other, webhook_delivery=False).state.grantex.csrf_secret != first


@pytest.mark.parametrize("workers", ["0", str(max_workers() + 1)])
def test_workers_out_of_range_is_one_line_exit_2(tmp_path: Path, workers: str) -> None:
    from grantex_local.cli import cli

    path = tmp_path / "grantex.db"
    Ledger(path).close()
    result = CliRunner().invoke(cli, ["serve", "--ledger", str(path), "--port", "0", "--workers", workers])
    assert result.exit_code == 2, result.output
    assert "workers" in result.output and "Traceback" not in result.output


def test_python_m_server_takes_workers_too(ledger: tuple[Path, str, str], workers_env: None) -> None:
    path, _, _ = ledger
    with server_process(path, "--workers", "2") as server:
        one, two = two_workers(server.base_url)
        assert one.pid != two.pid
        one.close()
        two.close()
    assert subprocess.run([sys.executable, "-m", "grantex_local.server", "--ledger", str(path),
                           "--port", "0", "--workers", "0"], capture_output=True, text=True,
                          timeout=60).returncode == 2


def listening_sockets(port: int) -> int | None:
    """How many TCP sockets listen on ``port`` (Linux's /proc/net/tcp; None elsewhere)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return None
    count = 0
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: TCP_LISTEN
            count += 1
    return count


def test_connections_are_spread_over_both_workers(ledger: tuple[Path, str, str], workers_env: None) -> None:
    """Each worker listens on a socket of its own (SO_REUSEPORT), so new connections are spread
    by the kernel rather than taken by whichever worker wakes first: 32 connections opened at
    once all get an answer, from both workers, neither left with only a handful."""
    from grantex_local.server.run import reuse_port_works

    path, _, _ = ledger
    with server_process(path, "--workers", "2") as server:
        parts = urlsplit(server.base_url)
        assert parts.hostname is not None and parts.port is not None
        listening = listening_sockets(parts.port)
        pinned = [Pinned(parts.hostname, parts.port) for _ in range(32)]
        try:
            for conn in pinned:
                assert conn.call("GET", "/health")[0] == 200
            spread = Counter(conn.pid for conn in pinned)
        finally:
            for conn in pinned:
                conn.close()
    assert len(spread) == 2, spread
    if reuse_port_works() and listening is not None:
        # one shared socket would show as one listener, however the wake-ups fell
        assert listening == 2, listening
    if reuse_port_works():
        # the kernel's hash of each connection picks the socket: a 32-way split worse than 6/26
        # has odds of about 1 in 10,000 if both sockets listen
        assert min(spread.values()) >= 6, spread
