"""The server as a separate process: its banner, graceful shutdown, and several processes on one file.

Servers are started with ``python -m grantex_local.server --port 0`` (the same ``serve`` the
CLI's ``grantex-local serve`` calls); the port is read from the banner, so there is no race
for a free port.
"""

from __future__ import annotations

import itertools
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import CLI, server_process

from grantex_local import Grantex, Ledger, developers
from grantex_local.ledger import DEFAULT_ISSUER


@pytest.fixture
def ledger_with_key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
    return path, key


def test_banner_names_url_issuer_and_how_to_get_a_key(ledger_with_key: tuple[Path, str]) -> None:
    path, _ = ledger_with_key
    with server_process(path) as server:
        text = "\n".join(server.banner)
        assert server.base_url.startswith("http://127.0.0.1:")
        # --port 0 listens elsewhere; the issuer is the ledger's and stays put
        assert f"issuer   {DEFAULT_ISSUER}" in text
        assert f"Clients must use {DEFAULT_ISSUER} as their base URL" in text
        assert "grantex-local developers create-key" in text and "sandbox" in text
        assert f"{server.base_url}/docs" in text
        assert httpx.get(server.base_url + "/health").json()["issuer"] == DEFAULT_ISSUER
    with Ledger(path) as ledger:
        assert ledger.issuer == DEFAULT_ISSUER and ledger.past_issuers() == []


def test_grantex_local_serve(ledger_with_key: tuple[Path, str]) -> None:
    from grantex_local.cli import cli

    if "serve" not in cli.commands:  # type: ignore[attr-defined]
        pytest.skip("the CLI has no 'serve' command yet")
    path, key = ledger_with_key
    with server_process(path, command=CLI) as server:
        assert any("developers create-key" in line for line in server.banner)
        answer = httpx.get(server.base_url + "/v1/agents", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.json() == {"agents": []}
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(20) == 0


def test_a_missing_ledger_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "grantex_local.server", "--ledger",
                             str(tmp_path / "nope.db"), "--port", "0"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no ledger at") and "Traceback" not in result.stderr
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_finishes_requests_in_flight(ledger_with_key: tuple[Path, str], sig: int) -> None:
    path, key = ledger_with_key
    with server_process(path) as server:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the next write waits for this lock (busy timeout)
        answers: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answers.append(httpx.post(
            server.base_url + "/v1/agents", json={"name": "in flight", "scopes": []},
            headers={"Authorization": f"Bearer {key}"}, timeout=30)))
        request.start()
        time.sleep(0.5)  # the request is now inside the server, waiting for the lock
        server.proc.send_signal(sig)
        time.sleep(0.5)
        assert server.proc.poll() is None  # still draining
        with pytest.raises(httpx.TransportError):  # but not taking new connections
            httpx.get(server.base_url + "/health", timeout=2)
        blocker.execute("ROLLBACK")
        blocker.close()
        request.join(20)
        assert server.proc.wait(20) == 0
        assert len(answers) == 1 and answers[0].status_code == 201, answers
        assert "grantex-local server stopped" in server.rest()
    with Ledger(path) as ledger:
        assert [a.name for a in Grantex(ledger).agents.list().agents] == ["in flight"]


def test_two_servers_and_the_library_on_one_ledger_stay_consistent(ledger_with_key: tuple[Path, str]) -> None:
    path, key = ledger_with_key
    auth = {"Authorization": f"Bearer {key}"}
    with server_process(path) as first, server_process(path) as second, \
            httpx.Client(base_url=first.base_url, headers=auth) as a, \
            httpx.Client(base_url=second.base_url, headers=auth) as b:
        assert httpx.get(second.base_url + "/health").json()["issuer"] == \
            httpx.get(first.base_url + "/health").json()["issuer"]
        agent = a.post("/v1/agents", json={"name": "shared", "scopes": ["calendar:read"]}).json()
        assert b.get(f"/v1/agents/{agent['id']}").json()["name"] == "shared"
        code = a.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "p",
                                             "scopes": ["calendar:read"]}).json()["code"]
        token = b.post("/v1/token", json={"code": code, "agentId": agent["id"]})
        assert token.status_code == 201
        assert b.post("/v1/token", json={"code": code, "agentId": agent["id"]}).status_code == 400  # spent
        grant_token, grant_id = token.json()["grantToken"], token.json()["grantId"]
        assert a.post("/v1/tokens/verify", json={"token": grant_token}).json()["valid"] is True

        # both servers and the library (as the CLI or TUI would) append to one chain at once
        def log_via(client: httpx.Client, n: int) -> list[int]:
            return [client.post("/v1/audit/log", json={"agentId": agent["id"], "grantId": grant_id,
                                                       "action": "calendar.read", "metadata": {"i": i}}
                                ).status_code for i in range(n)]

        def log_via_library(n: int) -> int:
            with Ledger(path) as ledger:
                gx = Grantex(ledger)
                for i in range(n):
                    gx.audit.log(agent_id=agent["id"], grant_id=grant_id, action="cli.read",
                                 metadata={"i": i})
            return n

        with ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(log_via, a, 25), pool.submit(log_via, b, 25),
                    pool.submit(log_via_library, 25)]
            results = [job.result(60) for job in jobs]
        assert results[0] == results[1] == [201] * 25 and results[2] == 25
        with Ledger(path) as ledger:
            gx = Grantex(ledger)
            report = gx.audit.verify()  # raises ChainBroken on any fork, gap or bad link
            chain = gx.audit.list(page_size=10_000)
        assert report.entries == len(chain) and [e.seq for e in chain] == list(range(1, len(chain) + 1))
        assert all(e.prev_hash == before.hash for before, e in itertools.pairwise(chain))
        assert len([e for e in chain if e.action in ("calendar.read", "cli.read")]) == 75

        # a revocation made outside the servers is seen by both at once
        with Ledger(path) as ledger:
            Grantex(ledger).grants.revoke(grant_id)
        for client in (a, b):
            assert client.post("/v1/tokens/verify", json={"token": grant_token}).json() == {
                "valid": False, "reason": "grant_revoked"}
        assert b.get(f"/v1/grants/{grant_id}").json()["status"] == "revoked"
        checkpoint = a.post("/v1/audit/checkpoints").json()
        assert b.get("/v1/audit/checkpoints").json()["checkpoints"][-1] == checkpoint
