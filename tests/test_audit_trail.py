"""The audit trail as the library appends and reads it: validation, lifecycle events, flags."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import MovableClock, grant_for

from grantex_local import ChainBroken, Grantex, InvalidInput, NotFound
from grantex_local.audit import verify_proof
from grantex_local.audit.checkpoints import ProofInvalid


def test_log_fills_did_and_principal_from_the_grant(gx: Grantex) -> None:
    token = grant_for(gx, ["calendar:read"], principal="user_zoe")
    grant = gx.grants.get(token.grant_id)
    entry = gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="calendar.read",
                         metadata={"calendar": "work", "count": 3})
    assert entry.agent_did == grant.agent_did and entry.principal_id == "user_zoe"
    assert entry.prev_hash is not None and entry.entry_id.startswith("alog_")
    stored = gx.audit.get(entry.entry_id)
    assert stored.hash == entry.hash and stored.metadata == {"calendar": "work", "count": 3}
    assert gx.audit.verify().entries == stored.seq


@pytest.mark.parametrize(
    ("change", "error"),
    [({"agent_id": "ag_01J00000000000000000000000"}, NotFound),
     ({"grant_id": "grnt_01J00000000000000000000000"}, NotFound),
     ({"status": "maybe"}, InvalidInput), ({"metadata": ["not", "an", "object"]}, InvalidInput),
     ({"metadata": {"x": float("nan")}}, InvalidInput), ({"action": ""}, InvalidInput),
     ({"action": "grantex.grant.revoked"}, InvalidInput),
     ({"agent_did": "did:grantex:ag_other"}, InvalidInput),
     ({"principal_id": "user_mallory"}, InvalidInput)],
)
def test_bad_entries_are_refused_and_nothing_is_written(gx: Grantex, change: dict, error: type) -> None:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    before = len(gx.audit.list(page_size=10_000))
    item = {"agent_id": grant.agent_id, "grant_id": grant.id, "action": "calendar.read", **change}
    with pytest.raises(error):
        gx.audit.log(**item)
    assert len(gx.audit.list(page_size=10_000)) == before


def test_grant_of_another_agent_is_refused(gx: Grantex) -> None:
    token = grant_for(gx, ["calendar:read"])
    other = gx.agents.register(name="other", scopes=[])
    with pytest.raises(InvalidInput, match="does not belong"):
        gx.audit.log(agent_id=other.id, grant_id=token.grant_id, action="calendar.read")


def test_bulk_append_is_all_or_nothing(gx: Grantex) -> None:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    good = {"agent_id": grant.agent_id, "grant_id": grant.id, "action": "calendar.read"}
    before = len(gx.audit.list(page_size=10_000))
    with pytest.raises(InvalidInput, match="entry 2"):
        gx.audit.log_many([good, good, {**good, "status": "nope"}])
    assert len(gx.audit.list(page_size=10_000)) == before
    written = gx.audit.log_many([{**good, "metadata": {"i": i}} for i in range(50)])
    assert [e.seq for e in written] == list(range(before + 1, before + 51))
    assert gx.audit.verify().entries == before + 50


def test_lifecycle_events_are_chained(gx: Grantex) -> None:
    root = grant_for(gx, ["calendar:read"])
    sub = gx.agents.register(name="sub", scopes=["calendar:read"])
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                               scopes=["calendar:read"])
    gx.tokens.refresh(refresh_token=child.refresh_token, agent_id=sub.id)
    gx.agents.suspend(sub.id)
    gx.keys.rotate()
    actions = [e.action for e in gx.audit.list(page_size=1000)]
    for expected in ("grantex.agent.registered", "grantex.authorization.requested",
                     "grantex.consent.approved", "grantex.grant.issued", "grantex.grant.delegated",
                     "grantex.grant.refreshed",
                     "grantex.agent.suspended", "grantex.key.rotated"):
        assert expected in actions
    assert all(a.startswith("grantex.") for a in actions)
    gx.audit.verify()


def test_revoking_a_tree_writes_one_entry_per_grant_in_the_same_transaction(
        gx: Grantex, ledger_path: Path) -> None:
    root = grant_for(gx, ["calendar:read"])
    current = root
    subs = []
    for i in range(3):
        sub = gx.agents.register(name=f"s{i}", scopes=["calendar:read"])
        subs.append(sub)
        current = gx.grants.delegate(parent_grant_token=current.grant_token, sub_agent_id=sub.id,
                                     scopes=["calendar:read"])
    result = gx.grants.revoke(root.grant_id)
    revoked = gx.audit.list(action="grantex.grant.revoked", page_size=100)
    assert sorted(e.grant_id for e in revoked) == sorted(result.revoked_grant_ids)
    assert {e.metadata["revokedAt"] for e in revoked} == {result.revoked_at}
    assert {e.timestamp for e in revoked} == {result.revoked_at}
    assert all(e.metadata["revokedWith"] == 4 for e in revoked)
    # Same transaction: the revocation and its entries are both there or both absent, so a
    # writer can never observe revoked grants without their entries.
    conn = sqlite3.connect(ledger_path)
    n_revoked = conn.execute("SELECT count(*) FROM grants WHERE revoked_at = ?",
                             (result.revoked_at,)).fetchone()[0]
    n_entries = conn.execute("SELECT count(*) FROM audit_entries WHERE action = 'grantex.grant.revoked'"
                             ).fetchone()[0]
    conn.close()
    assert n_revoked == n_entries == 4


def test_actions_after_revocation_are_recorded_and_flagged(gx: Grantex, clock: MovableClock) -> None:
    token = grant_for(gx, ["calendar:read"], expires_in="1h")
    grant = gx.grants.get(token.grant_id)
    before = gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="calendar.read")
    gx.grants.revoke(grant.id)
    clock.advance(1)
    after = gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="calendar.read",
                         status="blocked")
    assert gx.audit.get(before.entry_id).flags == ()
    assert gx.audit.get(after.entry_id).flags == ("after_revocation",)
    flagged = [e.entry_id for e in gx.audit.list(grant_id=grant.id) if e.flags]
    assert flagged == [after.entry_id]


def test_query_filters_and_paging(gx: Grantex, clock: MovableClock) -> None:
    a = grant_for(gx, ["calendar:read"], principal="user_a", agent_name="a")
    b = grant_for(gx, ["calendar:read"], principal="user_b", agent_name="b")
    ga, gb = gx.grants.get(a.grant_id), gx.grants.get(b.grant_id)
    start = clock.now
    for i in range(6):
        clock.advance(60)
        g = ga if i % 2 else gb
        gx.audit.log(agent_id=g.agent_id, grant_id=g.id, action="x.read" if i < 3 else "x.write",
                     status="failure" if i == 5 else "success")
    assert len(gx.audit.list(agent_id=ga.agent_id, action="x.read")) == 1
    assert len(gx.audit.list(principal_id="user_b", action="x.write")) == 1
    assert [e.status for e in gx.audit.list(status="failure")] == ["failure"]
    from grantex_local.clock import iso

    window = gx.audit.list(since=iso(start + 90), until=iso(start + 150), action="x.read")
    assert len(window) == 1
    everything = gx.audit.list(page_size=1000)
    assert [e.seq for e in everything] == sorted(e.seq for e in everything)
    page2 = gx.audit.list(page=2, page_size=5)
    assert [e.seq for e in page2] == [e.seq for e in everything[5:10]]
    with pytest.raises(InvalidInput):
        gx.audit.list(since="yesterday")


def test_checkpoint_and_inclusion_proof(gx: Grantex) -> None:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    entries = gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.id, "action": "x",
                                  "metadata": {"i": i}} for i in range(20)])
    cp = gx.audit.checkpoint()
    assert cp["entryCount"] == entries[-1].seq and cp["headHash"] == entries[-1].hash
    assert cp["signedCheckpoint"].count("\n\n") == 1
    report = gx.audit.verify(checkpoint=cp["signedCheckpoint"])
    assert report.checkpoint_size == cp["entryCount"]
    proof = gx.audit.prove(entries[7].entry_id)
    key = gx.audit.public_key()
    assert verify_proof(proof, key).size == cp["entryCount"]
    tampered = dict(proof, preimage=proof["preimage"].replace('"i":7', '"i":8'))
    with pytest.raises(ProofInvalid):
        verify_proof(tampered, key)
    # A later checkpoint extends the earlier one.
    gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="y")
    assert gx.audit.checkpoint()["entryCount"] == cp["entryCount"] + 1


def test_triggers_refuse_update_and_delete(gx: Grantex, ledger_path: Path) -> None:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.id, "action": "x"}] * 40)
    conn = sqlite3.connect(ledger_path)
    for sql in ("UPDATE audit_entries SET hash = 'x'", "DELETE FROM audit_entries",
                "DELETE FROM audit_merkle"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_a_changed_entry_is_found(gx: Grantex, ledger_path: Path) -> None:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    target = gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="payment.initiated",
                          metadata={"amount": 420})
    gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="x")
    conn = sqlite3.connect(ledger_path)
    conn.execute("DROP TRIGGER audit_entries_no_update")
    conn.execute("UPDATE audit_entries SET preimage = replace(preimage, '420', '42') WHERE seq = ?",
                 (target.seq,))
    conn.commit()
    conn.close()
    with pytest.raises(ChainBroken) as err:
        gx.audit.verify()
    assert (err.value.seq, err.value.reason) == (target.seq, "content_changed")
