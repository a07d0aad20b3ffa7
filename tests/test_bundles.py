"""Consent bundles and offline sync (issue 14) with the real grantex-gemma package."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grantex_gemma as gg
import httpx
import pytest
from cli_helpers import fails, invoke, ok
from grantex_gemma._consent_bundle import _parse_bundle
from helpers import MovableClock, dump

from grantex_local import Grantex, Ledger, audit, bundles, developers
from grantex_local.analysis import check_after_revocation, load
from grantex_local.server.testing import RunningServer, running_server

SCOPES = ["contacts:read", "mail:send"]


@dataclass
class Setup:
    path: Path
    server: RunningServer
    key: str
    agent_id: str
    clock: MovableClock

    def post(self, route: str, body: Any, key: str | None = None) -> httpx.Response:
        return httpx.post(self.server.base_url + route, json=body,
                          headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30)

    def bundle(self, scopes: list[str] | None = None, ttl: str = "72h") -> gg.ConsentBundle:
        return asyncio.run(gg.create_consent_bundle(self.key, self.agent_id, "user_alice", scopes or SCOPES,
                                                    ttl, self.server.base_url))

    def entries(self) -> list[dict[str, Any]]:
        got = httpx.get(self.server.base_url + "/v1/audit/entries", params={"pageSize": 1000},
                        headers={"Authorization": f"Bearer {self.key}"}).json()
        return list(got["entries"])


def _ledger(path: Path) -> tuple[str, str]:
    with Ledger(path) as ledger:
        ledger.set_setting("max_expires_in", "30d")
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key
        agent = Grantex(ledger).agents.register(name="phone agent", scopes=SCOPES)
    return key, agent.id


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    path = tmp_path / "grantex.db"
    key, agent_id = _ledger(path)
    clock = MovableClock()
    with running_server(path, clock=clock) as server:
        yield Setup(path, server, key, agent_id, clock)


async def _log(bundle: gg.ConsentBundle, path: Path, count: int, start: int = 0) -> None:
    grant = await gg.create_offline_verifier(bundle.jwks_snapshot).verify(bundle.grant_token)
    log = gg.create_offline_audit_log(bundle.offline_audit_key, str(path))
    for i in range(start, start + count):
        await log.append("contacts.read", grant, "success", {"n": i, "offline": "device says"})


def _sync(setup: Setup, bundle: gg.ConsentBundle, path: Path) -> gg.SyncResult:
    log = gg.create_offline_audit_log(bundle.offline_audit_key, str(path))
    return asyncio.run(log.sync(bundle.sync_endpoint, setup.key, bundle.bundle_id))


def _verify_chain(path: Path) -> None:
    with Ledger(path, create=False) as ledger:
        audit.verify_chain(ledger, developers.default_developer(ledger).id)


# ── the package end to end ───────────────────────────────────────────────────


def test_bundle_verify_log_sync_revoke_with_the_package(setup: Setup, tmp_path: Path) -> None:
    bundle = setup.bundle()
    assert bundle.bundle_id.startswith("cbdl_")
    assert bundle.sync_endpoint == setup.server.base_url + "/v1/audit/offline-sync"
    assert bundle.offline_audit_key.algorithm == "Ed25519"
    verifier = gg.create_offline_verifier(bundle.jwks_snapshot, require_scopes=["contacts:read"])
    grant = asyncio.run(verifier.verify(bundle.grant_token))
    assert grant.scopes == SCOPES
    with pytest.raises(gg.ScopeViolationError):
        asyncio.run(gg.create_offline_verifier(bundle.jwks_snapshot,
                                               require_scopes=["calendar:write"]).verify(bundle.grant_token))
    # the ledger keeps the public half only
    with Ledger(setup.path, create=False) as ledger:
        row = ledger.query_one("SELECT * FROM consent_bundles WHERE id = ?", (bundle.bundle_id,))
        assert row is not None and row["public_key"] == bundle.offline_audit_key.public_key
    stored = b"".join(f.read_bytes() for f in setup.path.parent.glob(setup.path.name + "*"))
    assert bundle.offline_audit_key.public_key.split("\n")[1].encode() in stored
    assert bundle.offline_audit_key.private_key.split("\n")[1].encode() not in stored

    log_path = tmp_path / "device.jsonl"
    asyncio.run(_log(bundle, log_path, 50))
    result = _sync(setup, bundle, log_path)
    assert (result.accepted, result.rejected, result.revocation_status) == (50, 0, "active")
    _verify_chain(setup.path)
    assert ok("audit", "verify", "--ledger", setup.path).exit_code == 0
    offline = [e for e in setup.entries() if e["action"] == "contacts.read"]
    assert len(offline) == 50
    first = offline[0]
    assert first["grantId"] == grant.grant_id and first["principalId"] == "user_alice"
    assert first["metadata"]["offline"]["bundleId"] == bundle.bundle_id
    assert first["metadata"]["offline"]["offlineSeq"] == 1
    assert first["metadata"]["offline"]["afterRevocation"] is False
    assert first["metadata"]["scope"] == "contacts:read" and first["metadata"]["n"] == 0
    listed = json.loads(ok("audit", "list", "--ledger", setup.path, "--json").stdout)
    assert sum(1 for e in listed["entries"] if e["metadata"].get("offline", {}).get("bundleId")
               == bundle.bundle_id) == 50

    # two more before the revocation (synced after it), revoke, five more, sync: the 50 come
    # back as duplicates, 7 accepted, the 5 the device logged after the revocation flagged
    asyncio.run(_log(bundle, log_path, 2, start=50))
    time.sleep(0.01)
    setup.clock.now = time.time()  # the revocation's time, between the device's two batches
    revoked = setup.post(f"/v1/consent-bundles/{bundle.bundle_id}/revoke", None)
    assert revoked.status_code == 200, revoked.text
    time.sleep(0.01)
    asyncio.run(_log(bundle, log_path, 5, start=52))
    again = _sync(setup, bundle, log_path)
    assert (again.accepted, again.rejected, again.revocation_status) == (7, 0, "revoked")
    late = [e for e in setup.entries() if e["action"] == "contacts.read"][50:]
    assert [e["metadata"]["offline"]["afterRevocation"] for e in late] == [False] * 2 + [True] * 5
    # the chain's flag and the auditor's check judge by the device's clock, not the sync's: the
    # two done before the revocation are not actions after it, though they joined the chain later
    assert ["after_revocation" in e["flags"] for e in late] == [False] * 2 + [True] * 5
    after = check_after_revocation(load(setup.path)).evidence
    flagged = set(after.loc[after["action"] == "contacts.read", "seq"].astype(int))
    assert flagged == {e["seq"] for e in late[2:]}
    _verify_chain(setup.path)
    with Ledger(setup.path, create=False) as ledger:
        state = bundles.get(ledger, None, bundle.bundle_id)
    assert (state["lastOfflineSeq"], state["syncedEntries"], state["status"]) == (57, 57, "revoked")
    actions = [e["action"] for e in setup.entries()]
    for lifecycle in ("grantex.bundle.created", "grantex.bundle.revoked", "grantex.bundle.synced"):
        assert lifecycle in actions


def test_resync_is_idempotent_and_a_different_entry_at_a_synced_seq_conflicts(
        setup: Setup, tmp_path: Path) -> None:
    bundle = setup.bundle()
    log_path = tmp_path / "device.jsonl"
    asyncio.run(_log(bundle, log_path, 4))
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert setup.post("/v1/audit/offline-sync", {"bundleId": bundle.bundle_id, "entries": lines}).json()[
        "accepted"] == 4
    before = len(setup.entries())
    out = setup.post("/v1/audit/offline-sync", {"bundleId": bundle.bundle_id, "entries": lines}).json()
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (0, 4, 0)
    assert len(setup.entries()) == before + 1  # only the sync's own lifecycle entry
    # another log under the same bundle: same seqs, other hashes
    other = tmp_path / "other.jsonl"
    asyncio.run(_log(bundle, other, 2, start=100))
    forged = [json.loads(x) for x in other.read_text().splitlines()]
    out = setup.post("/v1/audit/offline-sync", {"bundleId": bundle.bundle_id, "entries": forged}).json()
    assert out["rejections"][0] == {"seq": 1, "reason": "conflict"} and out["accepted"] == 0


# ── tampering ────────────────────────────────────────────────────────────────


def _lines(bundle: gg.ConsentBundle, path: Path, count: int) -> list[dict[str, Any]]:
    asyncio.run(_log(bundle, path, count))
    return [json.loads(x) for x in path.read_text().splitlines()]


def _tampered(kind: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(x) for x in lines]
    if kind == "edited":
        out[4]["action"] = "contacts.delete"
    elif kind == "dropped":
        del out[4]
    elif kind == "reordered":
        out[4], out[5] = out[5], out[4]
    return out


@pytest.mark.parametrize(("kind", "reason", "seq"), [("edited", "hash_mismatch", 5),
                                                      ("dropped", "broken_link", 6),
                                                      ("reordered", "broken_link", 6)])
def test_tampered_logs_are_rejected_from_the_first_bad_entry(setup: Setup, tmp_path: Path, kind: str,
                                                             reason: str, seq: int) -> None:
    bundle = setup.bundle()
    lines = _tampered(kind, _lines(bundle, tmp_path / "device.jsonl", 10))
    out = setup.post("/v1/audit/offline-sync", {"bundleId": bundle.bundle_id, "entries": lines})
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["accepted"] == 4 and body["rejected"] == len(lines) - 4
    assert body["rejections"][0] == {"seq": seq, "reason": reason}
    assert {r["reason"] for r in body["rejections"][1:]} <= {"after_rejected"}
    merged = [e["metadata"]["offline"]["offlineSeq"] for e in setup.entries()
              if e["action"] == "contacts.read"]
    assert merged == [1, 2, 3, 4]
    synced = [e for e in setup.entries() if e["action"] == "grantex.bundle.synced"][-1]["metadata"]
    assert (synced["firstRejectedSeq"], synced["reason"]) == (seq, reason)
    _verify_chain(setup.path)


def test_a_log_signed_with_another_bundles_key_is_rejected(setup: Setup, tmp_path: Path) -> None:
    mine, theirs = setup.bundle(), setup.bundle()
    lines = _lines(theirs, tmp_path / "theirs.jsonl", 3)
    body = setup.post("/v1/audit/offline-sync", {"bundleId": mine.bundle_id, "entries": lines}).json()
    assert body["accepted"] == 0 and body["rejections"][0] == {"seq": 1, "reason": "bad_signature"}
    # the right key but another bundle's grant: signed by mine, grant id of theirs
    grant = asyncio.run(gg.create_offline_verifier(theirs.jwks_snapshot).verify(theirs.grant_token))
    log = gg.create_offline_audit_log(mine.offline_audit_key, str(tmp_path / "mixed.jsonl"))
    asyncio.run(log.append("contacts.read", grant, "success"))
    mixed = [json.loads(x) for x in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    body = setup.post("/v1/audit/offline-sync", {"bundleId": mine.bundle_id, "entries": mixed}).json()
    assert body["rejections"][0] == {"seq": 1, "reason": "wrong_grant"}
    assert not [e for e in setup.entries() if e["action"] == "contacts.read"]
    _verify_chain(setup.path)


# ── bad input writes nothing ─────────────────────────────────────────────────


def _rows(path: Path) -> list[str]:
    """Every row but the webhook worker's cursor (it moves on its own, over earlier events)."""
    return [line for line in dump(path) if "webhook_cursor" not in line]


def test_bad_input_writes_nothing(setup: Setup, tmp_path: Path) -> None:
    bundle = setup.bundle()
    lines = _lines(bundle, tmp_path / "device.jsonl", 2)
    with Ledger(setup.path, create=False) as ledger:
        other_dev = developers.create_developer(ledger, "other").id
        other_key = developers.create_api_key(ledger, other_dev, "sdk").key
    before = _rows(setup.path)
    cases = [
        ({"bundleId": "cbdl_01J00000000000000000000000", "entries": lines}, setup.key, 404),
        ({"bundleId": bundle.bundle_id, "entries": lines}, other_key, 404),
        ({"bundleId": bundle.bundle_id, "entries": [{"seq": 1}]}, setup.key, 400),
        ({"bundleId": bundle.bundle_id, "entries": [{**lines[0], "seq": "1"}]}, setup.key, 400),
        ({"bundleId": bundle.bundle_id, "entries": "nope"}, setup.key, 400),
    ]
    for body, key, status in cases:
        response = setup.post("/v1/audit/offline-sync", body, key=key)
        assert response.status_code == status, (body, response.text)
        assert set(response.json()) >= {"message", "code", "requestId"}
    for body in ({"agentId": setup.agent_id, "userId": "user_alice", "scopes": SCOPES, "offlineTTL": "31d"},
                 {"agentId": setup.agent_id, "userId": "user_alice", "scopes": ["calendar:write"]},
                 {"agentId": setup.agent_id, "userId": "user_alice", "scopes": SCOPES, "offlineTTL": 5}):
        assert setup.post("/v1/consent-bundles", body).status_code == 400
    assert _rows(setup.path) == before


def test_consent_required_answers_409_with_the_consent_url(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        ledger.set_setting("max_expires_in", "30d")
        dev = developers.create_developer(ledger, "live", sandbox=False).id
        key = developers.create_api_key(ledger, dev, "sdk").key
        agent = Grantex(ledger, developer_id=dev).agents.register(name="a", scopes=SCOPES)
    with running_server(path) as server:
        response = httpx.post(server.base_url + "/v1/consent-bundles",
                              json={"agentId": agent.id, "userId": "user_alice", "scopes": SCOPES},
                              headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["code"] == "CONSENT_REQUIRED" and body["consentUrl"].endswith(body["authRequestId"])
        with Ledger(path, create=False) as ledger:
            from grantex_local import authorization

            code = authorization.approve(ledger, body["authRequestId"], channel="cli").code
        made = httpx.post(server.base_url + "/v1/consent-bundles",
                          json={"agentId": agent.id, "userId": "user_alice", "scopes": SCOPES, "code": code},
                          headers={"Authorization": f"Bearer {key}"})
        assert made.status_code == 201, made.text
        assert _parse_bundle(made.json()).bundle_id.startswith("cbdl_")


def test_a_sync_near_offline_expiry_hands_out_a_new_bundle(setup: Setup, tmp_path: Path) -> None:
    bundle = setup.bundle(ttl="10h")
    log_path = tmp_path / "device.jsonl"
    asyncio.run(_log(bundle, log_path, 1))
    assert _sync(setup, bundle, log_path).new_bundle is None
    setup.clock.advance(9 * 3600)
    result = _sync(setup, bundle, log_path)
    assert result.new_bundle is not None and result.new_bundle.bundle_id != bundle.bundle_id
    with Ledger(setup.path, create=False) as ledger:
        assert bundles.get(ledger, None, bundle.bundle_id)["replacedBy"] == result.new_bundle.bundle_id


# ── the file path: no server at all ──────────────────────────────────────────


def test_cli_create_then_sync_a_package_log_without_a_server(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    _, agent_id = _ledger(path)
    out = tmp_path / "bundle.json"
    ok("bundles", "create", "--ledger", path, "--agent", agent_id, "--principal", "user_bob",
       "--scope", "contacts:read", "--offline-ttl", "48h", "--out", out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    made = json.loads(out.read_text())
    fails(2, "bundles", "create", "--ledger", path, "--agent", agent_id, "--principal", "user_bob",
          "--scope", "contacts:read", "--out", out)
    assert json.loads(out.read_text()) == made  # not overwritten
    bundle = _parse_bundle(made)
    log_path = tmp_path / "device.jsonl"
    asyncio.run(_log(bundle, log_path, 7))
    result = ok("bundles", "sync", "--ledger", path, log_path, "--bundle", bundle.bundle_id, "--json")
    assert json.loads(result.stdout)["accepted"] == 7
    assert "PRIVATE KEY" not in result.output
    again = ok("bundles", "sync", "--ledger", path, log_path, "--bundle", bundle.bundle_id, "--json")
    assert json.loads(again.stdout)["duplicates"] == 7
    with Ledger(path, create=False) as ledger:
        request = ledger.query_one("SELECT decision_channel, status FROM auth_requests")
        assert request is not None and request["status"] == "exchanged"
    asyncio.run(_log(bundle, log_path, 3, start=50))  # seqs 8, 9, 10; then 9 goes missing
    lines = log_path.read_text().splitlines()
    log_path.write_text("\n".join(lines[:8] + lines[9:]) + "\n")
    bad = invoke("bundles", "sync", "--ledger", path, log_path, "--bundle", bundle.bundle_id)
    assert bad.exit_code == 1 and "broken_link" in bad.output
    listed = json.loads(ok("bundles", "list", "--ledger", path, "--json").stdout)["bundles"]
    assert [b["syncedEntries"] for b in listed] == [8]
    ok("bundles", "revoke", "--ledger", path, bundle.bundle_id)
    shown = json.loads(ok("bundles", "show", "--ledger", path, bundle.bundle_id, "--json").stdout)
    assert shown["status"] == "revoked"
    fails(2, "bundles", "show", "--ledger", path, "cbdl_nope")
    ok("audit", "verify", "--ledger", path)


def test_cli_create_for_a_live_developer_is_approved_by_the_local_admin(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        ledger.set_setting("max_expires_in", "30d")
        dev = developers.create_developer(ledger, "live", sandbox=False).id
        agent = Grantex(ledger, developer_id=dev).agents.register(name="a", scopes=SCOPES)
    out = tmp_path / "bundle.json"
    result = ok("bundles", "create", "--ledger", path, "--agent", agent.id, "--principal", "user_bob",
                "--scope", "mail:send", "--out", out, "--json")
    assert "PRIVATE KEY" not in result.output and "PRIVATE KEY" in out.read_text()
    with Ledger(path, create=False) as ledger:
        request = ledger.query_one("SELECT decision_channel, status, developer_id FROM auth_requests")
        assert request is not None
        assert tuple(request) == ("cli", "exchanged", dev)
    fails(2, "bundles", "create", "--ledger", path, "--agent", agent.id, "--principal", "user_bob",
          "--scope", "mail:send", "--offline-ttl", "31d", "--out", tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()
