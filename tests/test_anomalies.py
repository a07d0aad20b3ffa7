"""Anomalies over HTTP, the CLI and the TUI (issue 12, items 2 and 5), on real ledger files.

The ledger is built on a movable clock at a fixed daytime instant (off-hours detection would
otherwise depend on when the suite runs), and the server runs on the same clock, so the grants
the burst was made under are still active when detection decides whether to revoke them.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grantex
import httpx
import pytest
from cli_helpers import fails, invoke, ok, ok_json
from grantex import GrantexApiError
from helpers import MovableClock, grant_for

from grantex_local import Grantex, anomalies, developers, events
from grantex_local.analysis.detection import detect
from grantex_local.server.testing import running_server

NOON = float(calendar.timegm((2026, 3, 2, 12, 0, 0)))
BURST = 70  # more than 2x the detector's 30 a minute: a high high_frequency anomaly


@dataclass
class World:
    path: Path
    clock: MovableClock
    developer_id: str
    key: str
    other_key: str
    agent_id: str
    root_grant: str
    child_grant: str


def _burst(gx: Grantex, clock: MovableClock, agent_id: str, grant_id: str, n: int = BURST) -> None:
    for _ in range(n):
        clock.advance(0.5)
        gx.audit.log(agent_id=agent_id, grant_id=grant_id, action="files.read",
                     metadata={"scope": "files:read"})


@pytest.fixture
def world(tmp_path: Path) -> World:
    clock = MovableClock()
    clock.now = NOON
    path = tmp_path / "grantex.db"
    with Grantex(path, clock=clock) as gx:
        issued = grant_for(gx, ["files:read"])
        sub = gx.agents.register(name="sub-agent", scopes=["files:read"])
        child = gx.grants.delegate(parent_grant_token=issued.grant_token, sub_agent_id=sub.id,
                                   scopes=["files:read"])
        agent_id = gx.grants.get(issued.grant_id).agent_id
        _burst(gx, clock, agent_id, issued.grant_id)
        key = developers.create_api_key(gx.ledger, gx.developer_id, "sdk").key
        other = developers.create_developer(gx.ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(gx.ledger, other.id, "sdk").key
        developer_id = gx.developer_id
    return World(path, clock, developer_id, key, other_key, agent_id, issued.grant_id, child.grant_id)


@pytest.fixture
def server(world: World) -> Iterator[str]:
    with running_server(world.path, clock=world.clock) as running:
        yield running.base_url


def _sdk(base_url: str, key: str) -> grantex.Grantex:
    return grantex.Grantex(api_key=key, base_url=base_url, max_retries=0)


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def _actions(path: Path, action: str) -> list[dict[str, Any]]:
    sql = "SELECT json_extract(preimage, '$.metadata') FROM audit_entries WHERE action = ? ORDER BY seq"
    return [json.loads(m) for (m,) in _rows(path, sql, (action,))]


def _grant_status(path: Path, grant_id: str) -> str | None:
    return _rows(path, "SELECT revoked_at FROM grants WHERE id = ?", (grant_id,))[0][0]


# ── the official SDK against a real server ───────────────────────────────────


def test_detect_list_acknowledge_through_the_sdk(world: World, server: str) -> None:
    gx = _sdk(server, world.key)
    found = gx.anomalies.detect()
    assert found.total == len(found.anomalies) == 1
    assert found.response_mode == "alert_only" and found.auto_revoked_grants == 0
    burst = found.anomalies[0]
    assert burst.id.startswith("anm_") and burst.type == "high_frequency"
    assert burst.severity == "high" and burst.agent_id == world.agent_id
    assert burst.principal_id == "user_alice" and burst.acknowledged_at is None
    assert burst.metadata["count"] == BURST and burst.metadata["peakPerMinute"] == BURST
    assert burst.metadata["lastSeq"] - burst.metadata["firstSeq"] == BURST - 1
    assert str(BURST) in burst.description

    listed = gx.anomalies.list()
    assert listed.total == 1 and [a.id for a in listed.anomalies] == [burst.id]
    assert gx.anomalies.list(unacknowledged=True).total == 1

    acked = gx.anomalies.acknowledge(burst.id)
    assert acked.id == burst.id and acked.acknowledged_at is not None
    world.clock.advance(30)
    again = gx.anomalies.acknowledge(burst.id)  # idempotent: the first time stays
    assert again.acknowledged_at == acked.acknowledged_at
    assert gx.anomalies.list(unacknowledged=True).total == 0

    # the same burst is found again, and nothing is stored twice; acknowledged stays acknowledged
    second = gx.anomalies.detect()
    assert second.total == 0 and second.anomalies == ()
    assert _rows(world.path, "SELECT count(*) FROM anomalies")[0][0] == 1
    assert gx.anomalies.list().anomalies[0].acknowledged_at == acked.acknowledged_at

    detected = _actions(world.path, "grantex.anomaly.detected")
    assert detected == [{"anomalyId": burst.id, "type": "high_frequency", "severity": "high"}]
    acknowledged = _actions(world.path, "grantex.anomaly.acknowledged")
    assert len(acknowledged) == 1 and acknowledged[0]["anomalyId"] == burst.id


def test_a_new_burst_later_is_a_second_anomaly(world: World, server: str) -> None:
    gx = _sdk(server, world.key)
    first = gx.anomalies.detect().anomalies[0]
    world.clock.advance(3600)
    with Grantex(world.path, clock=world.clock) as local:
        _burst(local, world.clock, world.agent_id, world.root_grant)
    second = gx.anomalies.detect()
    assert second.total == 1 and second.anomalies[0].id != first.id
    assert second.anomalies[0].metadata["count"] == BURST
    assert [a.id for a in gx.anomalies.list().anomalies] == [second.anomalies[0].id, first.id]


def test_default_policy_alerts_only(world: World, server: str) -> None:
    gx = _sdk(server, world.key)
    assert gx.anomalies.get_response_policy() == "alert_only"
    result = gx.anomalies.detect()
    assert result.total == 1 and result.anomalies[0].severity == "high"
    assert result.response_mode == "alert_only" and result.auto_revoked_grants == 0
    assert _grant_status(world.path, world.root_grant) is None
    assert _grant_status(world.path, world.child_grant) is None
    assert _actions(world.path, "grantex.grant.revoked") == []


def test_revoke_policy_revokes_the_agents_grants_and_their_children(world: World, server: str) -> None:
    gx = _sdk(server, world.key)
    assert gx.anomalies.set_response_policy("revoke_agent_grants") == "revoke_agent_grants"
    assert gx.anomalies.get_response_policy() == "revoke_agent_grants"
    assert _actions(world.path, "grantex.anomaly.policy_changed") == [
        {"mode": "revoke_agent_grants", "previous": "alert_only"}]

    result = gx.anomalies.detect()
    assert result.response_mode == "revoke_agent_grants" and result.auto_revoked_grants == 2
    assert _grant_status(world.path, world.root_grant) is not None
    assert _grant_status(world.path, world.child_grant) is not None
    causes = sorted(m["cause"] for m in _actions(world.path, "grantex.grant.revoked"))
    assert causes == ["ancestor_revoked", "anomaly_auto_revoke"]

    with Grantex(world.path, clock=world.clock) as local:
        found = events.read_events(local.ledger, world.developer_id,
                                   types=["grant.revoked", "anomaly.auto_revoked"])
        local.audit.verify()  # raises ChainBroken if the revocations broke the chain
    by_type = {e.type: json.loads(e.body)["data"] for e in found}
    assert by_type["grant.revoked"]["grantId"] == world.root_grant
    assert sorted(by_type["anomaly.auto_revoked"]["revokedGrants"]) == sorted(
        [world.root_grant, world.child_grant])
    assert by_type["anomaly.auto_revoked"]["anomalyCount"] == 1

    # already stored: a second run revokes nothing more and emits nothing more
    assert gx.anomalies.detect().auto_revoked_grants == 0


def test_another_developer_neither_sees_nor_acknowledges(world: World, server: str) -> None:
    mine = _sdk(server, world.key).anomalies.detect().anomalies[0]
    other = _sdk(server, world.other_key)
    assert other.anomalies.list().total == 0
    assert other.anomalies.detect().total == 0  # the other developer's actions: none
    with pytest.raises(GrantexApiError) as caught:
        other.anomalies.acknowledge(mine.id)
    assert caught.value.status_code == 404
    assert _rows(world.path, "SELECT acknowledged_at FROM anomalies WHERE id = ?", (mine.id,)) == [(None,)]


def test_conformance_suite_shapes(world: World, server: str) -> None:
    auth = {"Authorization": f"Bearer {world.key}"}
    with httpx.Client(base_url=server, headers=auth) as client:
        detected = client.post("/v1/anomalies/detect")  # no body, no Content-Type
        assert detected.status_code == 200, detected.text
        body = detected.json()
        assert {"detectedAt", "total", "anomalies"} <= set(body) and isinstance(body["anomalies"], list)
        for anomaly in body["anomalies"]:
            assert set(anomaly) >= {"id", "type", "severity", "description", "detectedAt", "agentId",
                                    "principalId", "metadata", "acknowledgedAt"}
        listed = client.get("/v1/anomalies")
        assert listed.status_code == 200 and isinstance(listed.json()["anomalies"], list)
        assert listed.json()["total"] == 1
        missing = client.patch("/v1/anomalies/nonexistent-id/acknowledge")
        assert missing.status_code == 404
        assert {"message", "code", "requestId"} <= set(missing.json())
        before = _rows(world.path, "SELECT * FROM anomaly_policy")
        bad = client.patch("/v1/irregularities/response-policy", json={"mode": "revoke_everything"})
        assert bad.status_code == 400 and {"message", "code", "requestId"} <= set(bad.json())
        none = client.patch("/v1/irregularities/response-policy", json={})
        assert none.status_code == 400
        assert _rows(world.path, "SELECT * FROM anomaly_policy") == before
        assert client.get("/v1/anomalies?unacknowledged=true").json()["total"] == 1
    anonymous = httpx.get(f"{server}/v1/anomalies")
    assert anonymous.status_code == 401


# ── the library directly ─────────────────────────────────────────────────────


def test_off_hours_actions_are_one_anomaly_per_agent_and_night(tmp_path: Path) -> None:
    clock = MovableClock()
    clock.now = float(calendar.timegm((2026, 3, 2, 23, 0, 0)))
    with Grantex(tmp_path / "night.db", clock=clock) as gx:
        issued = grant_for(gx, ["files:read"])
        agent_id = gx.grants.get(issued.grant_id).agent_id
        for _ in range(3):
            clock.advance(600)
            gx.audit.log(agent_id=agent_id, grant_id=issued.grant_id, action="files.read")
        clock.now = float(calendar.timegm((2026, 3, 3, 1, 0, 0)))  # same night, after midnight
        gx.audit.log(agent_id=agent_id, grant_id=issued.grant_id, action="files.read")
        result = detect(gx.ledger, gx.developer_id)
        assert [(a.type, a.severity, a.metadata["count"], a.metadata["night"]) for a in result.anomalies] == [
            ("off_hours_activity", "low", 4, "2026-03-02")]
        assert detect(gx.ledger, gx.developer_id).anomalies == ()


def test_bad_input_writes_nothing(world: World) -> None:
    with Grantex(world.path, clock=world.clock) as gx:
        with pytest.raises(anomalies.errors.InvalidInput):
            anomalies.set_policy(gx.ledger, gx.developer_id, "sometimes")
        with pytest.raises(anomalies.errors.NotFound):
            anomalies.acknowledge(gx.ledger, gx.developer_id, "anm_nope", by="test")
        assert anomalies.get_policy(gx.ledger, gx.developer_id) == "alert_only"
    assert _rows(world.path, "SELECT count(*) FROM anomaly_policy") == [(0,)]


# ── the CLI ──────────────────────────────────────────────────────────────────


def test_cli_detect_list_ack_policy(world: World) -> None:
    db = ("--ledger", world.path)
    assert ok(*db, "anomalies", "policy").stdout.strip() == "alert_only"
    found = ok_json(*db, "anomalies", "detect")
    assert found["total"] == 1 and found["responseMode"] == "alert_only"
    anomaly_id = found["anomalies"][0]["id"]
    table = ok(*db, "anomalies", "list", "--open").stdout
    assert anomaly_id in table and "high_frequency" in table
    assert ok_json(*db, "anomalies", "detect")["total"] == 0
    acked = ok_json(*db, "anomalies", "ack", anomaly_id)
    assert acked["acknowledgedAt"] is not None
    assert ok_json(*db, "anomalies", "list", "--open")["total"] == 0
    assert ok_json(*db, "anomalies", "list")["anomalies"][0]["acknowledgedAt"] == acked["acknowledgedAt"]
    assert "no open anomalies" in ok(*db, "anomalies", "list", "--open").stdout
    fails(2, *db, "anomalies", "ack", "anm_unknown")
    bad = invoke(*db, "anomalies", "policy", "sometimes")  # click's usage error for a choice
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert ok(*db, "anomalies", "policy").stdout.strip() == "alert_only"
    assert ok(*db, "anomalies", "policy", "revoke_agent_grants").stdout.strip() == "revoke_agent_grants"
    assert ok_json(*db, "anomalies", "policy") == {"mode": "revoke_agent_grants"}


# ── the TUI ──────────────────────────────────────────────────────────────────


def test_the_overview_shows_open_anomalies(world: World) -> None:
    pytest.importorskip("textual")
    from textual.worker import WorkerState

    from grantex_local.tui.app import GrantexApp
    from grantex_local.tui.data import TuiData
    from grantex_local.tui.widgets.overview import OverviewBar, overview_text

    with Grantex(world.path, clock=world.clock) as gx:
        stored = detect(gx.ledger, gx.developer_id).anomalies[0]

    async def run() -> None:
        data = TuiData.open(world.path, clock=world.clock)
        try:
            app = GrantexApp(data, poll_seconds=0)
            async with app.run_test(size=(160, 36)) as pilot:
                for _ in range(400):
                    idle = not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                                   for w in app.workers)
                    if app.overview is not None and idle:
                        break
                    await pilot.pause(0.01)
                overview = app.overview
                assert overview is not None and overview.open_anomalies == 1
                assert [a.id for a in overview.worst_anomalies] == [stored.id]
                bar = app.main.query_one(OverviewBar)
                assert bar.overview == overview
                line = overview_text(overview, None, read_only=False).plain
                assert "1 open anomaly" in line and f"high high_frequency {world.agent_id}" in line
        finally:
            data.close()

    asyncio.run(run())
    with Grantex(world.path, clock=world.clock) as gx:
        anomalies.acknowledge(gx.ledger, gx.developer_id, stored.id, by="test")
    data = TuiData.open(world.path, clock=world.clock)
    try:
        assert data.open_anomalies() == (0, ())
        assert "anomal" not in overview_text(data.overview(), None, read_only=False).plain
    finally:
        data.close()
