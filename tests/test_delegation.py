"""Delegation trees: coverage, depth limit, expiry rule, and cascading revocation."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import MovableClock, grant_for

from grantex_local import (
    DelegationDepthExceeded,
    Grantex,
    InvalidExpiresIn,
    InvalidInput,
    ScopeNotCovered,
)
from grantex_local.clock import parse_iso


def _tree(gx: Grantex) -> dict[str, object]:
    """root (alice) → child → grandchild → great-grandchild: three levels of delegation."""
    root = grant_for(gx, ["payments:initiate:max_500", "calendar:read", "email:send"])
    agents = [gx.agents.register(name=f"sub-{i}", scopes=["payments:initiate", "calendar:read"])
              for i in range(3)]
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=agents[0].id,
                               scopes=["payments:initiate:max_200", "calendar:read"])
    grandchild = gx.grants.delegate(parent_grant_token=child.grant_token, sub_agent_id=agents[1].id,
                                    scopes=["payments:initiate:max_100"])
    great = gx.grants.delegate(parent_grant_token=grandchild.grant_token,
                               sub_agent_id=agents[2].id, scopes=["payments:initiate:max_50"])
    return {"root": root, "child": child, "grandchild": grandchild, "great": great, "agents": agents}


def test_three_level_tree_has_real_parent_links_and_depths(gx: Grantex) -> None:
    t = _tree(gx)
    chain = [t["root"], t["child"], t["grandchild"], t["great"]]
    for depth, token in enumerate(chain):
        grant = gx.grants.get(token.grant_id)
        assert grant.delegation_depth == depth
        assert grant.parent_grant_id == (chain[depth - 1].grant_id if depth else None)
        assert grant.principal_id == "user_alice"
        claims = gx.tokens.verify_offline(token.grant_token)
        assert claims.delegation_depth == (depth or None)
        assert gx.tokens.verify(token.grant_token).valid
    great_claims = gx.tokens.verify_offline(t["great"].grant_token)
    assert great_claims.parent_agent_did == t["agents"][1].did
    assert [g.id for g in gx.grants.ancestors(t["great"].grant_id)] == [
        t["grandchild"].grant_id, t["child"].grant_id, t["root"].grant_id]


@pytest.mark.parametrize(
    ("parent_scopes", "child_scopes", "missing"),
    [
        (["payments:initiate:max_500"], ["payments:initiate:max_501"], ["payments:initiate:max_501"]),
        (["payments:initiate:max_500"], ["payments:initiate"], ["payments:initiate"]),
        (["calendar:read"], ["calendar:write"], ["calendar:write"]),
        (["calendar:read"], ["calendar:read", "email:send"], ["email:send"]),
        (["files:read:folder_a"], ["files:read:folder_b"], ["files:read:folder_b"]),
    ],
)
def test_scopes_not_covered_are_named_and_nothing_is_written(
    gx: Grantex, parent_scopes: list[str], child_scopes: list[str], missing: list[str]
) -> None:
    root = grant_for(gx, parent_scopes)
    sub = gx.agents.register(name="sub", scopes=child_scopes)  # refused for the parent's sake alone
    before = len(gx.grants.list().grants)
    with pytest.raises(ScopeNotCovered) as err:
        gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id, scopes=child_scopes)
    assert err.value.scopes == missing
    assert all(m in str(err.value) for m in missing)
    assert len(gx.grants.list().grants) == before


@pytest.mark.parametrize(
    ("parent_scopes", "child_scopes"),
    [
        (["payments:initiate:max_500"], ["payments:initiate:max_500"]),
        (["payments:initiate:max_500"], ["payments:initiate:max_1"]),
        (["payments:initiate"], ["payments:initiate:max_999999"]),
        (["files:read"], ["files:read:folder_a"]),
        (["com.stripe.charges:create:max_5000"], ["com.stripe.charges:create:max_10"]),
    ],
)
def test_covered_scopes_delegate(gx: Grantex, parent_scopes: list[str], child_scopes: list[str]) -> None:
    root = grant_for(gx, parent_scopes)
    sub = gx.agents.register(name="sub", scopes=child_scopes)
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id, scopes=child_scopes)
    assert child.scopes == tuple(child_scopes)


def test_depth_limit_default_three(gx: Grantex) -> None:
    t = _tree(gx)
    extra = gx.agents.register(name="too-deep", scopes=["payments:initiate"])
    with pytest.raises(DelegationDepthExceeded):
        gx.grants.delegate(parent_grant_token=t["great"].grant_token, sub_agent_id=extra.id,
                           scopes=["payments:initiate:max_10"])


def test_depth_limit_is_a_ledger_setting_capped_at_ten(gx: Grantex) -> None:
    assert gx.ledger.max_delegation_depth == 3
    with pytest.raises(InvalidInput):
        gx.ledger.set_setting("max_delegation_depth", "11")
    gx.ledger.set_setting("max_delegation_depth", "1")
    root = grant_for(gx, ["calendar:read"])
    a, b = (gx.agents.register(name=n, scopes=["calendar:read"]) for n in ("a", "b"))
    scopes = ["calendar:read"]
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=a.id, scopes=scopes)
    with pytest.raises(DelegationDepthExceeded):
        gx.grants.delegate(parent_grant_token=child.grant_token, sub_agent_id=b.id, scopes=scopes)
    gx.ledger.set_setting("max_delegation_depth", "10")
    current = child
    for i in range(9):
        nxt = gx.agents.register(name=f"deep-{i}", scopes=["calendar:read"])
        current = gx.grants.delegate(parent_grant_token=current.grant_token, sub_agent_id=nxt.id,
                                     scopes=["calendar:read"])
    assert gx.grants.get(current.grant_id).delegation_depth == 10
    last = gx.agents.register(name="eleven", scopes=["calendar:read"])
    with pytest.raises(DelegationDepthExceeded):
        gx.grants.delegate(parent_grant_token=current.grant_token, sub_agent_id=last.id,
                           scopes=["calendar:read"])


def test_expiry_is_min_of_parent_and_now_plus_expires_in(gx: Grantex, clock: MovableClock) -> None:
    root = grant_for(gx, ["calendar:read"], expires_in="2h")
    sub = gx.agents.register(name="sub", scopes=["calendar:read"])
    root_exp = parse_iso(root.expires_at)
    short = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                               scopes=["calendar:read"], expires_in="30m")
    assert parse_iso(short.expires_at) == int(clock.now) + 1800
    longer = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                                scopes=["calendar:read"], expires_in="5h")
    assert parse_iso(longer.expires_at) == root_exp
    default = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                                 scopes=["calendar:read"])
    assert parse_iso(default.expires_at) == int(clock.now) + 3600
    assert gx.tokens.verify_offline(longer.grant_token).expires_at == int(root_exp)


@pytest.mark.parametrize("bad", ["", "10", "1w", "0h", "-1h", "1.5h", "25h", " 1h", 5])
def test_malformed_or_too_long_expires_in(gx: Grantex, bad: object) -> None:
    root = grant_for(gx, ["calendar:read"])
    sub = gx.agents.register(name="sub", scopes=["calendar:read"])
    with pytest.raises(InvalidExpiresIn):
        gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                           scopes=["calendar:read"], expires_in=bad)  # type: ignore[arg-type]


def test_revoking_root_revokes_whole_tree_at_one_instant(gx: Grantex, ledger_path: object) -> None:
    t = _tree(gx)
    other = grant_for(gx, ["calendar:read"], principal="user_bob", agent_name="bystander")
    result = gx.grants.revoke(t["root"].grant_id)
    tree_ids = {t[k].grant_id for k in ("root", "child", "grandchild", "great")}
    assert set(result.revoked_grant_ids) == tree_ids
    with sqlite3.connect(str(ledger_path)) as conn:
        rows = conn.execute("SELECT id, revoked_at FROM grants").fetchall()
    stamps = {rid: at for rid, at in rows}
    assert {stamps[i] for i in tree_ids} == {result.revoked_at}
    assert stamps[other.grant_id] is None
    for key in ("root", "child", "grandchild", "great"):
        answer = gx.tokens.verify(t[key].grant_token)
        assert not answer.valid and answer.reason == "grant_revoked"
        assert gx.grants.get(t[key].grant_id).status == "revoked"
    assert gx.tokens.verify(other.grant_token).valid


def test_revoking_a_middle_grant_leaves_ancestors(gx: Grantex) -> None:
    t = _tree(gx)
    gx.grants.revoke(t["child"].grant_id)
    assert gx.tokens.verify(t["root"].grant_token).valid
    for key in ("child", "grandchild", "great"):
        assert not gx.tokens.verify(t[key].grant_token).valid


def test_revoked_parent_cannot_delegate(gx: Grantex) -> None:
    t = _tree(gx)
    gx.grants.revoke(t["root"].grant_id)
    sub = gx.agents.register(name="late", scopes=["calendar:read"])
    with pytest.raises(InvalidInput, match="grant_revoked"):
        gx.grants.delegate(parent_grant_token=t["child"].grant_token, sub_agent_id=sub.id,
                           scopes=["calendar:read"])


def test_revoking_twice_or_unknown_is_not_found(gx: Grantex) -> None:
    from grantex_local import NotFound

    root = grant_for(gx, ["calendar:read"])
    gx.grants.revoke(root.grant_id)
    with pytest.raises(NotFound):
        gx.grants.revoke(root.grant_id)
    with pytest.raises(NotFound):
        gx.grants.revoke("grnt_01J00000000000000000000000")


def test_revoking_a_token_invalidates_grants_delegated_from_it(gx: Grantex) -> None:
    t = _tree(gx)
    refreshed = gx.tokens.refresh(refresh_token=t["child"].refresh_token, agent_id=t["agents"][0].id)
    claims = gx.tokens.verify_offline(t["child"].grant_token)
    gx.tokens.revoke(claims.token_id)
    assert gx.tokens.verify(t["child"].grant_token).reason == "token_revoked"
    for key in ("grandchild", "great"):
        assert gx.tokens.verify(t[key].grant_token).reason == "grant_revoked"
    # The child grant itself lives on through its other token; the root is untouched.
    assert gx.tokens.verify(refreshed.grant_token).valid
    assert gx.tokens.verify(t["root"].grant_token).valid


def test_suspended_agent_invalidates_its_subtree_until_reactivated(gx: Grantex) -> None:
    t = _tree(gx)
    gx.agents.suspend(t["agents"][0].id)
    assert gx.tokens.verify(t["child"].grant_token).reason == "agent_suspended"
    assert gx.tokens.verify(t["great"].grant_token).reason == "agent_suspended"
    assert gx.tokens.verify(t["root"].grant_token).valid
    gx.agents.reactivate(t["agents"][0].id)
    assert gx.tokens.verify(t["great"].grant_token).valid


def test_expired_parent_expires_children(gx: Grantex, clock: MovableClock) -> None:
    root = grant_for(gx, ["calendar:read"], expires_in="1h")
    sub = gx.agents.register(name="sub", scopes=["calendar:read"])
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                               scopes=["calendar:read"], expires_in="1h")
    clock.advance(3601)
    assert gx.grants.get(child.grant_id).status == "expired"
    assert [g.id for g in gx.grants.list(status="expired").grants] == [root.grant_id, child.grant_id]
    assert not gx.tokens.verify(child.grant_token).valid
