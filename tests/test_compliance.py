"""Compliance over HTTP (issue 12, item 3): the official SDK parses every answer, the counts are
the ledger's, and the evidence pack fetched over HTTP verifies offline with ``verify-export``
(and stops verifying when one byte of it is edited)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grantex
import httpx
import pytest
from cli_helpers import invoke, ok
from grantex import (
    ComplianceExportAuditParams,
    ComplianceExportGrantsParams,
    EvidencePackParams,
    GrantexApiError,
)
from helpers import MovableClock, grant_for

from grantex_local import Grantex, Ledger, compliance, developers
from grantex_local.audit import checkpoints
from grantex_local.clock import iso
from grantex_local.errors import ChainBroken, InvalidInput
from grantex_local.export import ExportInvalid, pack_signed_bytes, verify_bundle
from grantex_local.server.testing import RunningServer, running_server


@dataclass(frozen=True)
class World:
    path: Path
    server: RunningServer
    key: str
    other_key: str
    clock: MovableClock
    revoked: str
    expired: str
    active: str
    other_grant: str
    start: str  # a time before anything was written

    def sdk(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.key, base_url=self.server.base_url, max_retries=0)

    def get(self, path: str, key: str | None = None, **params: str) -> httpx.Response:
        return httpx.get(self.server.base_url + path, params=params,
                         headers={"Authorization": f"Bearer {key or self.key}"}, timeout=10)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """One revoked, one expired, one active grant and a policy for the default developer; a
    second developer with a grant of its own (which must never show up)."""
    path = tmp_path / "grantex.db"
    clock = MovableClock()
    start = iso(clock.now - 1)
    with Ledger(path, clock=clock) as ledger:
        dev = developers.default_developer(ledger).id
        key = developers.create_api_key(ledger, dev, "sdk").key
        gx = Grantex(ledger)
        expired = grant_for(gx, ["calendar:read"], agent_name="short", expires_in="1h").grant_id
        revoked = grant_for(gx, ["email:send"], agent_name="revoked-one").grant_id
        gx.grants.revoke(revoked)
        active = grant_for(gx, ["calendar:read", "email:send"], principal="user_bob",
                           agent_name="long", expires_in="1d").grant_id
        gx.policies.create(name="deny nights", effect="deny", priority=5)
        other = developers.create_developer(ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id, "sdk").key
        other_gx = Grantex(ledger, developer_id=other.id)
        other_grant = grant_for(other_gx, ["files:read"], principal="user_zed", agent_name="theirs").grant_id
    clock.advance(2 * 3600)  # the first grant is now past its expiry (still "active" in its row)
    with running_server(path, clock=clock) as server:
        yield World(path, server, key, other_key, clock, revoked, expired, active, other_grant, start)


# ── the SDK parses every answer ──────────────────────────────────────────────


def test_sdk_summary_and_counts_match_the_ledger(world: World) -> None:
    summary = world.sdk().compliance.get_summary()
    assert summary.plan == "local"
    assert summary.grants == {"total": 3, "active": 1, "revoked": 1, "expired": 1}
    assert summary.agents == {"total": 3, "active": 3, "suspended": 0, "revoked": 0}
    assert summary.policies == {"total": 1}
    with Ledger(world.path) as ledger:
        dev = developers.default_developer(ledger).id
        entries = ledger.query_one("SELECT count(*) FROM audit_entries WHERE developer_id = ?", (dev,))
    assert entries is not None
    assert summary.audit_entries["total"] == entries[0] > 0
    assert summary.audit_entries["success"] + summary.audit_entries["failure"] \
        + summary.audit_entries["blocked"] == entries[0]
    assert summary.since is None and summary.until is None

    windowed = world.sdk().compliance.get_summary(since=world.start, until=iso(world.clock.now + 60))
    assert windowed.since == world.start and windowed.grants["total"] == 3
    future = world.sdk().compliance.get_summary(since=iso(world.clock.now + 60))
    assert future.grants["total"] == 0 and future.audit_entries["total"] == 0


def test_sdk_grants_export_with_filters(world: World) -> None:
    client = world.sdk().compliance
    every = client.export_grants()
    assert every.total == len(every.grants) == 3
    by_id = {g.id: g for g in every.grants}
    assert set(by_id) == {world.revoked, world.expired, world.active}
    assert by_id[world.expired].status == "expired"  # derived, not the raw row
    assert by_id[world.revoked].revoked_at is not None
    for status, grant_id in (("active", world.active), ("revoked", world.revoked),
                             ("expired", world.expired)):
        only = client.export_grants(ComplianceExportGrantsParams(status=status))
        assert [g.id for g in only.grants] == [grant_id] and only.total == 1
    none = client.export_grants(ComplianceExportGrantsParams(until=world.start))
    assert none.total == 0 and none.grants == ()


def test_sdk_audit_export_with_filters(world: World) -> None:
    client = world.sdk().compliance
    every = client.export_audit()
    assert every.total == len(every.entries) > 0
    stamps = [e.timestamp for e in every.entries]
    assert stamps == sorted(stamps)
    assert every.entries[0].prev_hash is None
    for before, after in zip(every.entries, every.entries[1:], strict=False):
        assert after.prev_hash == before.hash  # oldest first, the whole chain: every link holds
    agent_id = next(e.agent_id for e in every.entries if e.agent_id)
    mine = client.export_audit(ComplianceExportAuditParams(agent_id=agent_id))
    assert mine.total > 0 and {e.agent_id for e in mine.entries} == {agent_id}
    assert client.export_audit(ComplianceExportAuditParams(status="failure")).total == 0
    assert client.export_audit(ComplianceExportAuditParams(status="success")).total == every.total
    assert client.export_audit(ComplianceExportAuditParams(since=iso(world.clock.now + 1))).total == 0


def test_sdk_evidence_pack_variants(world: World) -> None:
    client = world.sdk().compliance
    pack = client.evidence_pack()
    assert pack.meta.schema_version == "1.0" and pack.meta.framework == "all"
    assert pack.chain_integrity.valid is True and pack.chain_integrity.first_broken_at is None
    assert pack.chain_integrity.checked_entries == len(pack.audit_entries) > 0
    assert len(pack.grants) == 3 and [p.name for p in pack.policies] == ["deny nights"]
    assert pack.summary["plan"] == "local" and "generatedAt" not in pack.summary
    for framework in ("soc2", "gdpr", "all"):
        assert client.evidence_pack(EvidencePackParams(framework=framework)).meta.framework == framework
    windowed = client.evidence_pack(EvidencePackParams(since=world.start, until=iso(world.clock.now + 60)))
    assert windowed.meta.since == world.start and windowed.meta.until is not None


def test_conformance_keys_over_raw_http(world: World) -> None:
    """SDK-SURFACE §4.2, the conformance suite's four checks, plus the keys the SDK reads."""
    summary = world.get("/v1/compliance/summary")
    assert summary.status_code == 200
    assert {"generatedAt", "agents", "grants", "auditEntries", "policies", "plan"} <= summary.json().keys()
    grants_export = world.get("/v1/compliance/export/grants").json()
    assert {"generatedAt", "total", "grants"} <= grants_export.keys()
    assert isinstance(grants_export["grants"], list)
    for grant in grants_export["grants"]:
        assert {"grantId", "id", "agentId", "principalId", "developerId", "scopes", "status", "issuedAt",
                "expiresAt", "revokedAt", "delegationDepth", "parentGrantId"} <= grant.keys()
    audit = world.get("/v1/compliance/export/audit").json()
    assert {"generatedAt", "total", "entries"} <= audit.keys() and isinstance(audit["entries"], list)
    for entry in audit["entries"]:
        assert {"entryId", "agentId", "agentDid", "grantId", "principalId", "developerId", "action",
                "metadata", "hash", "prevHash", "timestamp", "status"} <= entry.keys()
    pack = world.get("/v1/compliance/evidence-pack").json()
    assert {"meta", "summary", "grants", "auditEntries", "policies", "chainIntegrity",
            "signature"} <= pack.keys()
    assert {"valid", "checkedEntries", "firstBrokenAt", "reason"} <= pack["chainIntegrity"].keys()
    for policy in pack["policies"]:
        assert {"id", "name", "effect", "priority", "agentId", "principalId", "scopes", "timeOfDayStart",
                "timeOfDayEnd", "createdAt", "updatedAt"} <= policy.keys()
    assert pack["signature"]["algorithm"] == "Ed25519"


def test_another_developers_data_never_appears(world: World) -> None:
    mine = [world.get(p).text for p in ("/v1/compliance/export/grants", "/v1/compliance/export/audit",
                                        "/v1/compliance/evidence-pack", "/v1/compliance/summary")]
    assert not any(world.other_grant in text or "user_zed" in text for text in mine)
    theirs = world.sdk(world.other_key).compliance
    assert [g.id for g in theirs.export_grants().grants] == [world.other_grant]
    assert theirs.get_summary().grants["total"] == 1
    their_pack = world.get("/v1/compliance/evidence-pack", key=world.other_key).text
    assert world.active not in their_pack and "user_bob" not in their_pack


@pytest.mark.parametrize(("path", "params", "named"), [
    ("/v1/compliance/summary", {"since": "yesterday"}, "since"),
    ("/v1/compliance/summary", {"until": "2026-13-40"}, "until"),
    ("/v1/compliance/export/grants", {"status": "paused"}, "status"),
    ("/v1/compliance/export/grants", {"since": "not a time"}, "since"),
    ("/v1/compliance/export/audit", {"status": "ok"}, "status"),
    ("/v1/compliance/evidence-pack", {"framework": "hipaa"}, "framework"),
    ("/v1/compliance/evidence-pack", {"since": "2026-02-02T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
     "until"),
])
def test_bad_parameters_are_400(world: World, path: str, params: dict[str, str], named: str) -> None:
    response = world.get(path, **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert {"message", "code", "requestId"} <= body.keys() and named in body["message"]
    with pytest.raises(GrantexApiError) as caught:
        world.sdk().compliance.evidence_pack(EvidencePackParams(framework="hipaa"))
    assert caught.value.status_code == 400


def test_without_a_key_is_401(world: World) -> None:
    response = httpx.get(world.server.base_url + "/v1/compliance/summary", timeout=10)
    assert response.status_code == 401


# ── the evidence pack verifies offline, and an edited byte does not ──────────


def _saved_pack(world: World, tmp_path: Path, **params: str) -> tuple[Path, dict[str, Any]]:
    response = world.get("/v1/compliance/evidence-pack", **params)
    assert response.status_code == 200
    out = tmp_path / "pack.json"
    out.write_bytes(response.content)  # exactly what came over the wire
    return out, response.json()


def test_pack_from_http_passes_verify_export(world: World, tmp_path: Path) -> None:
    file, pack = _saved_pack(world, tmp_path)
    result = ok("verify-export", file)
    assert f"valid: {len(pack['auditEntries'])} audit entries in 1 chain(s)" in result.stdout
    assert "start at the chain's first entry" in result.stdout
    assert "warning:" in result.stderr  # the pack's own key proves only self-consistency
    key_file = tmp_path / "real.pub"
    key_file.write_text(ok("--ledger", world.path, "audit", "public-key").stdout)
    trusted = invoke("verify-export", file, "--key", key_file, "--json")
    assert trusted.exit_code == 0, trusted.output
    summary = json.loads(trusted.stdout)
    assert summary["keySource"] == "given" and summary["format"] == "evidence-pack"
    assert "warning" not in summary and summary["grants"] == 3 and summary["policies"] == 1


def test_a_window_verifies_and_says_it_is_a_window(world: World, tmp_path: Path) -> None:
    """A ``since`` that cuts the chain: the links inside the window still check."""
    with Ledger(world.path, clock=world.clock) as ledger:
        gx = Grantex(ledger)
        gx.audit.log(agent_id=gx.grants.get(world.active).agent_id, grant_id=world.active,
                     action="late.action", status="success")
    cut = iso(world.clock.now - 1)
    file, pack = _saved_pack(world, tmp_path, since=cut)
    actions = [e["action"] for e in pack["auditEntries"]]
    assert actions[-1] == "late.action" and "grantex.grant.revoked" not in actions
    assert pack["auditEntries"][0]["seq"] > 1
    result = ok("verify-export", file)
    assert "a window of the chain" in result.stdout
    assert verify_bundle(file)["startsAtChainStart"] is False


def _fails_naming(file: Path, *words: str) -> str:
    result = invoke("verify-export", file)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = result.stderr
    assert message.startswith("error: export does not verify:"), message
    for word in words:
        assert word in message, message
    return message


def _edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert text.count(old) >= 1, old
    file.write_text(text.replace(old, new, 1))


def test_an_edited_scope_fails(world: World, tmp_path: Path) -> None:
    file, _ = _saved_pack(world, tmp_path)
    _edit(file, '"calendar:read"', '"calendar:write"')
    _fails_naming(file, "pack.json", "signature")


def test_an_edited_status_or_audit_entry_fails(world: World, tmp_path: Path) -> None:
    file, _ = _saved_pack(world, tmp_path)
    _edit(file, '"status":"revoked"', '"status":"active"')
    _fails_naming(file, "signature")
    file, pack = _saved_pack(world, tmp_path)
    _edit(file, pack["auditEntries"][1]["hash"], "0" * 64)
    _fails_naming(file, "signature")


def test_an_edited_signature_fails(world: World, tmp_path: Path) -> None:
    file, pack = _saved_pack(world, tmp_path)
    raw = bytearray(base64.b64decode(pack["signature"]["value"]))
    raw[0] ^= 1
    _edit(file, pack["signature"]["value"], base64.b64encode(bytes(raw)).decode())
    _fails_naming(file, "signature")


def test_another_key_fails_and_a_bad_key_is_named(world: World, tmp_path: Path) -> None:
    file, _ = _saved_pack(world, tmp_path)
    with Ledger(tmp_path / "other.db") as other:
        other_key = checkpoints.verifier_key(other)
    result = invoke("verify-export", file, "--key", other_key)
    assert result.exit_code == 1 and "signed by key" in result.stderr


def _resign(path: Path, pack: dict[str, Any]) -> None:
    """Re-sign an edited pack with the ledger's real key: what only the key holder could do."""
    with Ledger(path) as ledger:
        _, raw = checkpoints.sign_bytes(ledger, pack_signed_bytes(pack))
    pack["signature"]["value"] = base64.b64encode(raw).decode()


def test_the_chain_is_checked_even_under_a_valid_signature(world: World, tmp_path: Path) -> None:
    """Edits re-signed with the real key still fail: the hashes, links and counts are recomputed."""
    file, pack = _saved_pack(world, tmp_path)
    edited = json.loads(json.dumps(pack))
    entry = edited["auditEntries"][2]
    entry["preimage"] = entry["preimage"].replace(entry["action"], entry["action"] + "x")
    entry["action"] += "x"
    _resign(world.path, edited)
    file.write_text(json.dumps(edited))
    with pytest.raises(ChainBroken) as broken:
        verify_bundle(file)
    assert broken.value.seq == entry["seq"] and broken.value.reason == "content_changed"
    _fails_naming(file, "hash")

    dropped = json.loads(json.dumps(pack))
    del dropped["auditEntries"][1]
    _resign(world.path, dropped)
    file.write_text(json.dumps(dropped))
    with pytest.raises(ChainBroken):
        verify_bundle(file)

    miscounted = json.loads(json.dumps(pack))
    miscounted["summary"]["grants"]["revoked"] = 0
    _resign(world.path, miscounted)
    file.write_text(json.dumps(miscounted))
    with pytest.raises(ExportInvalid, match=r"summary\.grants"):
        verify_bundle(file)


def test_hosted_style_exports_still_verify(world: World, tmp_path: Path) -> None:
    """An unsigned ``{generatedAt, total, entries}`` file keeps going to the hosted check."""
    audit = world.get("/v1/compliance/export/audit").json()
    file = tmp_path / "audit.json"
    file.write_text(json.dumps(audit))
    summary = verify_bundle(file)
    assert summary["format"] == "hosted" and summary["entries"] == audit["total"]


def test_library_validates_its_parameters(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        dev = developers.default_developer(ledger).id
        with pytest.raises(InvalidInput, match="since"):
            compliance.summary(ledger, dev, since="soon")
        with pytest.raises(InvalidInput, match="status"):
            compliance.export_audit(ledger, dev, status="maybe")
        with pytest.raises(InvalidInput, match="framework"):
            compliance.evidence_pack(ledger, dev, framework="pci")
        empty = compliance.evidence_pack(ledger, dev)
    assert empty["chainIntegrity"]["valid"] is True
    file = tmp_path / "empty.json"
    file.write_text(json.dumps(empty))
    assert verify_bundle(file)["valid"] is True


def test_a_tampered_ledger_gives_a_pack_that_says_so_and_fails(world: World, tmp_path: Path) -> None:
    """An entry edited in the file behind the ledger's back: chainIntegrity reports the break (by
    entry id, reason "content") and the pack, though signed, does not pass verify-export."""
    from test_audit_tamper import tamper

    with Ledger(world.path) as ledger:
        dev = developers.default_developer(ledger).id
        row = ledger.query_one("SELECT seq, id, preimage FROM audit_entries WHERE developer_id = ? "
                               "AND action = 'grantex.grant.revoked'", (dev,))
    assert row is not None
    tamper(world.path, "UPDATE audit_entries SET preimage = ? WHERE developer_id = ? AND seq = ?",
           (row["preimage"].replace("grantex.grant.revoked", "grantex.grant.revokeX"), dev, row["seq"]))
    file, pack = _saved_pack(world, tmp_path)
    assert pack["chainIntegrity"]["valid"] is False
    integrity = pack["chainIntegrity"]
    assert integrity["firstBrokenAt"] == row["id"] and integrity["reason"] == "content"
    assert integrity["checkedEntries"] == row["seq"] - 1
    _fails_naming(file, "hash")
