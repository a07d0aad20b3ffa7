"""The event outbox (issue 11 item 2), the SSE stream (item 3) and ``events tail`` (item 7).

Library tests run on real ledger files; the stream is served by the real server on loopback
and read with the official ``grantex`` SDK and plain httpx; the change the stream reports is
made by a second process (the CLI).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grantex
import httpx
import pytest
from cli_helpers import fails, ok
from grantex.resources._events import GrantexEvent, StreamOptions
from helpers import grant_for

from grantex_local import Grantex, Ledger, developers, errors
from grantex_local import events as ev
from grantex_local.server.testing import RunningServer, running_server

CLI = [sys.executable, "-c", "from grantex_local.cli import main; main()"]
SCOPES = ["calendar:read", "email:send"]


def types_of(ledger: Ledger, after: int = 0) -> list[str]:
    return [e.type for e in ev.read_events(ledger, None, after=after)]


# ── the outbox ──────────────────────────────────────────────────────────────


def test_emit_and_read_in_seq_order(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        assert ev.last_seq(ledger) == 0
        with ledger.write() as conn:
            first = ev.emit(ledger, conn, "dev_a", "grant.created", {"grantId": "g1", "note": "é"})
            second = ev.emit(ledger, conn, "dev_b", "token.issued", {"tokenId": "t1"})
            third = ev.emit(ledger, conn, "dev_a", "grant.revoked", {"grantId": "g1"})
        assert first.seq < second.seq < third.seq
        assert first.id.startswith("evt_") and len(first.id) == 30
        # The envelope: compact, key order id, type, createdAt, data, non-ASCII kept.
        assert first.body == (f'{{"id":"{first.id}","type":"grant.created",'
                              f'"createdAt":"{first.created_at}","data":{{"grantId":"g1","note":"é"}}}}')
        assert list(json.loads(first.body)) == ["id", "type", "createdAt", "data"]
        assert first.data == {"grantId": "g1", "note": "é"}
        assert ev.read_events(ledger, None) == [first, second, third]
        assert ev.read_events(ledger, "dev_a") == [first, third]
        assert ev.read_events(ledger, "dev_a", after=first.seq) == [third]
        assert ev.read_events(ledger, None, types=["token.issued"]) == [second]
        assert ev.read_events(ledger, None, types=[]) == []
        assert ev.read_events(ledger, None, limit=1) == [first]
        assert ev.last_seq(ledger) == third.seq
        assert ev.last_seq(ledger, "dev_b") == second.seq
        assert ev.last_seq(ledger, "dev_nobody") == 0


def test_an_event_rolls_back_with_its_change(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        with pytest.raises(RuntimeError), ledger.write() as conn:
            ev.emit(ledger, conn, "dev_a", "grant.created", {"grantId": "g1"})
            raise RuntimeError("the change fails after its event was written")
        assert ev.read_events(ledger, None) == []
        assert ev.last_seq(ledger) == 0


def test_a_failed_library_change_leaves_no_event(gx: Grantex) -> None:
    issued = grant_for(gx, SCOPES)
    before = ev.last_seq(gx.ledger)
    gx.grants.revoke(issued.grant_id)
    after = ev.last_seq(gx.ledger)
    assert after > before
    with pytest.raises(errors.NotFound):
        gx.grants.revoke(issued.grant_id)  # already revoked: refused, nothing written
    assert ev.last_seq(gx.ledger) == after


def test_check_types() -> None:
    assert ev.check_types(["grant.revoked", " token.issued ", "", "grant.revoked"]) == (
        "grant.revoked", "token.issued")
    assert ev.check_types(["budget.exhausted"]) == ("budget.exhausted",)  # SDK stream type
    assert set(ev.WEBHOOK_EVENT_TYPES) <= ev.EVENT_TYPES
    with pytest.raises(errors.InvalidInput, match="'nope'"):
        ev.check_types(["grant.created", "nope"])
    with pytest.raises(errors.InvalidInput):
        ev.check_types([3])  # type: ignore[list-item]


# ── what the ledger emits ───────────────────────────────────────────────────


def test_exchange_emits_consent_grant_and_token(gx: Grantex) -> None:
    issued = grant_for(gx, SCOPES, principal="user_alice")
    found = ev.read_events(gx.ledger, gx.developer_id)
    assert [e.type for e in found] == ["agent.registered", "consent.approved", "grant.created",
                                       "token.issued"]
    agent_id = found[0].data["agentId"]
    consent = found[1].data
    assert consent["agentId"] == agent_id and consent["principalId"] == "user_alice"
    assert consent["scopes"] == SCOPES and consent["authRequestId"].startswith("areq_")
    assert found[2].data == {"grantId": issued.grant_id, "agentId": agent_id,
                             "principalId": "user_alice", "scopes": SCOPES,
                             "expiresAt": issued.expires_at}
    assert found[3].data == {"tokenId": issued.token_id, "grantId": issued.grant_id,
                             "agentId": agent_id, "principalId": "user_alice", "scopes": SCOPES,
                             "expiresAt": issued.expires_at}


def test_delegation_and_cascading_revocation(gx: Grantex) -> None:
    root = grant_for(gx, SCOPES)
    sub = gx.agents.register(name="sub", scopes=["calendar:read"])
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                               scopes=["calendar:read"])
    mark = ev.last_seq(gx.ledger)
    sub2 = gx.agents.register(name="sub2", scopes=["calendar:read"])
    grandchild = gx.grants.delegate(parent_grant_token=child.grant_token, sub_agent_id=sub2.id,
                                    scopes=["calendar:read"])
    created = [e for e in ev.read_events(gx.ledger, None, after=mark) if e.type == "grant.created"]
    assert created[0].data["delegationDepth"] == 2
    assert created[0].data["parentGrantId"] == child.grant_id
    mark = ev.last_seq(gx.ledger)
    gx.grants.revoke(root.grant_id)
    revoked = ev.read_events(gx.ledger, None, after=mark)
    assert [e.type for e in revoked] == ["grant.revoked"]  # one event per operation
    data = revoked[0].data
    assert data["grantId"] == root.grant_id and data["cascade"] is True
    assert [g["grantId"] for g in data["revokedGrants"]] == [root.grant_id, child.grant_id,
                                                             grandchild.grant_id]
    expiries = {g["grantId"]: g["expiresAt"] for g in data["revokedGrants"]}
    assert expiries[child.grant_id] == gx.grants.get(child.grant_id).expires_at


def test_token_revocation_and_refresh(gx: Grantex) -> None:
    first = grant_for(gx, SCOPES)
    mark = ev.last_seq(gx.ledger)
    second = gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=gx.grants.get(
        first.grant_id).agent_id)
    issued = ev.read_events(gx.ledger, None, after=mark)
    assert [e.type for e in issued] == ["token.issued"]
    assert issued[0].data["tokenId"] == second.token_id
    mark = ev.last_seq(gx.ledger)
    gx.tokens.revoke(second.token_id)
    revoked = ev.read_events(gx.ledger, None, after=mark)
    assert [(e.type, e.data) for e in revoked] == [("token.revoked", {
        "tokenId": second.token_id, "grantId": first.grant_id, "expiresAt": second.expires_at})]
    # Reuse of a spent refresh token revokes the family's live tokens, each with an event.
    mark = ev.last_seq(gx.ledger)
    with pytest.raises(errors.RefreshTokenReused):
        gx.tokens.refresh(refresh_token=first.refresh_token,
                          agent_id=gx.grants.get(first.grant_id).agent_id)
    assert [e.data["tokenId"] for e in ev.read_events(gx.ledger, None, after=mark,
                                                      types=["token.revoked"])] == [first.token_id]


def test_agent_lifecycle_events(gx: Grantex) -> None:
    issued = grant_for(gx, SCOPES)
    agent_id = gx.grants.get(issued.grant_id).agent_id
    mark = ev.last_seq(gx.ledger)
    gx.agents.suspend(agent_id)
    gx.agents.reactivate(agent_id)
    gx.agents.update(agent_id, name="renamed")
    gx.agents.delete(agent_id)
    found = ev.read_events(gx.ledger, None, after=mark)
    assert [e.type for e in found] == ["agent.suspended", "agent.reactivated", "agent.updated",
                                       "agent.deleted"]
    live = [{"grantId": issued.grant_id, "expiresAt": issued.expires_at}]
    assert found[0].data == {"agentId": agent_id, "grants": live}
    assert found[1].data == {"agentId": agent_id, "grants": live}
    assert found[3].data == {"agentId": agent_id}


# ── the stream ──────────────────────────────────────────────────────────────


@pytest.fixture
def served(ledger_path: Path) -> Iterator[tuple[RunningServer, str, str]]:
    with Ledger(ledger_path) as ledger:
        dev = developers.default_developer(ledger).id
        key = developers.create_api_key(ledger, dev, "events").key
    with running_server(ledger_path) as server:
        yield server, key, dev


def wait_for_streams(server: RunningServer, dev: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while server.app.state.grantex.streams.count(dev) != count:
        assert time.monotonic() < deadline, "the stream did not open"
        time.sleep(0.01)


def test_sdk_receives_a_revocation_made_by_another_process(
        ledger_path: Path, served: tuple[RunningServer, str, str]) -> None:
    server, key, dev = served
    with Grantex(Ledger(ledger_path)) as gx:
        issued = grant_for(gx, SCOPES)
    received: list[tuple[float, GrantexEvent]] = []
    arrived = threading.Event()

    def handler(event: GrantexEvent) -> None:
        received.append((time.monotonic(), event))
        arrived.set()

    client = grantex.Grantex(api_key=key, base_url=server.base_url, max_retries=0)
    subscription = client.events.subscribe(handler, StreamOptions(types=["grant.revoked"]))
    try:
        wait_for_streams(server, dev, 1)
        done = subprocess.run([*CLI, "--ledger", str(ledger_path), "grants", "revoke",
                               issued.grant_id, "--yes"], capture_output=True, text=True, timeout=60)
        exited = time.monotonic()
        assert done.returncode == 0, done.stderr
        assert arrived.wait(5), "no event arrived"
        at, event = received[0]
        assert at - exited < 1.0
        assert event.type == "grant.revoked" and event.id.startswith("evt_")
        assert event.data["grantId"] == issued.grant_id
        assert event.data["revokedGrants"] == [{"grantId": issued.grant_id,
                                                "expiresAt": issued.expires_at}]
        assert len(received) == 1  # the filter held back everything else
    finally:
        subscription.unsubscribe()


def sse_events(response: httpx.Response, count: int) -> list[tuple[int, dict[str, object]]]:
    """Read ``count`` events (id and envelope) off an open SSE response."""
    found: list[tuple[int, dict[str, object]]] = []
    seq = None
    for line in response.iter_lines():
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("data: "):
            assert seq is not None
            found.append((seq, json.loads(line[6:])))
            if len(found) == count:
                break
    return found


def test_stream_headers_resume_and_developer_isolation(
        ledger_path: Path, served: tuple[RunningServer, str, str]) -> None:
    server, key, dev = served
    with Ledger(ledger_path) as ledger:
        other = developers.create_developer(ledger, "Other", sandbox=True)
    with Grantex(Ledger(ledger_path)) as gx:
        grant_for(gx, SCOPES)
        with Grantex(Ledger(ledger_path), developer_id=other.id) as other_gx:
            grant_for(other_gx, SCOPES)  # must never reach this developer's stream
        mine = ev.read_events(gx.ledger, dev)
    assert len(mine) == 4
    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(mine[1].seq)}
    with httpx.stream("GET", server.base_url + "/v1/events/stream", headers=headers,
                      timeout=httpx.Timeout(10, read=10)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        got = sse_events(response, 2)
    assert [seq for seq, _ in got] == [mine[2].seq, mine[3].seq]
    assert [envelope for _, envelope in got] == [json.loads(e.body) for e in mine[2:]]


def test_bad_filters_and_cursor_are_400(served: tuple[RunningServer, str, str]) -> None:
    server, key, _dev = served
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        bad = http.get("/v1/events/stream", params={"types": "grant.revoked,nope"}, headers=auth)
        assert bad.status_code == 400
        assert set(bad.json()) == {"message", "code", "requestId"} and "nope" in bad.json()["message"]
        assert http.get("/v1/events/stream", headers={**auth, "Last-Event-ID": "x1"}).status_code == 400
        assert http.get("/v1/events/stream").status_code == 401


def test_stream_limit_per_developer_and_shutdown_ends_streams(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        dev = developers.default_developer(ledger).id
        key = developers.create_api_key(ledger, dev, "events").key
    auth = {"Authorization": f"Bearer {key}"}
    with running_server(ledger_path) as server:
        state = server.app.state.grantex
        limit = state.streams.LIMIT
        with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(10, read=30),
                          limits=httpx.Limits(max_connections=limit + 4)) as http:
            opened = [http.send(http.build_request("GET", "/v1/events/stream", headers=auth),
                                stream=True) for _ in range(limit)]
            assert all(r.status_code == 200 for r in opened)
            wait_for_streams(server, dev, limit)
            over = http.get("/v1/events/stream", headers=auth)
            assert over.status_code == 429 and over.json()["code"] == "TOO_MANY_CONNECTIONS"
            opened.pop().close()
            wait_for_streams(server, dev, limit - 1)
            other = http.get("/v1/grants", headers=auth)  # streams hold no worker thread
            assert other.status_code == 200
            stopped_at = time.monotonic()
            server.server.should_exit = True
            for response in opened:  # each stream ends (cleanly) instead of holding the shutdown
                for _ in response.iter_lines():
                    pass
            assert time.monotonic() - stopped_at < 4  # graceful timeout is 5 s
            for response in opened:
                response.close()


# ── events tail ─────────────────────────────────────────────────────────────


def test_events_tail_once(gx: Grantex, ledger_path: Path) -> None:
    issued = grant_for(gx, SCOPES)
    gx.grants.revoke(issued.grant_id)
    found = ev.read_events(gx.ledger, None)
    text = ok("--ledger", ledger_path, "events", "tail", "--once").stdout.splitlines()
    assert [line.split()[2] for line in text] == [e.type for e in found]
    assert text[-1].split()[0] == str(found[-1].seq)
    assert f"grant={issued.grant_id}" in text[-1]
    lines = ok("--ledger", ledger_path, "events", "tail", "--once", "--json",
               "--type", "grant.revoked").stdout.splitlines()
    assert lines == [found[-1].body]
    since = ok("--ledger", ledger_path, "events", "tail", "--once", "--since",
               found[-2].seq).stdout.splitlines()
    assert len(since) == 1
    fails(2, "--ledger", ledger_path, "events", "tail", "--once", "--type", "nope")


def test_events_tail_follows_and_ctrl_c_exits_0(gx: Grantex, ledger_path: Path) -> None:
    grant_for(gx, SCOPES, agent_name="before")  # before the cursor: never printed
    mark = ev.last_seq(gx.ledger)
    proc = subprocess.Popen([*CLI, "--ledger", str(ledger_path), "events", "tail", "--json",
                             "--since", str(mark)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        issued = grant_for(gx, SCOPES)
        assert proc.stdout is not None
        types = [json.loads(proc.stdout.readline())["type"] for _ in range(4)]
        assert types == ["agent.registered", "consent.approved", "grant.created", "token.issued"]
        assert issued.grant_id
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
