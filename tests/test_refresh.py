"""Refresh: rotation, single use, and reuse detection revoking the grant's live tokens."""

from __future__ import annotations

import pytest
from helpers import MovableClock, grant_for

from grantex_local import Grantex, InvalidRefreshToken, RefreshTokenParams, RefreshTokenReused


def _agent_id(gx: Grantex, grant_id: str) -> str:
    return gx.grants.get(grant_id).agent_id


def test_refresh_rotates_token_and_refresh_token(gx: Grantex, clock: MovableClock) -> None:
    first = grant_for(gx, ["calendar:read", "email:send"])
    agent_id = _agent_id(gx, first.grant_id)
    clock.advance(60)
    second = gx.tokens.refresh(RefreshTokenParams(refresh_token=first.refresh_token, agent_id=agent_id))
    assert second.grant_id == first.grant_id
    assert second.scopes == first.scopes
    assert second.expires_at == first.expires_at
    assert second.refresh_token != first.refresh_token
    assert second.refresh_token.startswith("ref_") and len(second.refresh_token) == 30
    a, b = (gx.tokens.verify_offline(t.grant_token) for t in (first, second))
    assert a.token_id != b.token_id and a.expires_at == b.expires_at
    assert gx.tokens.verify(second.grant_token).valid
    third = gx.tokens.refresh(refresh_token=second.refresh_token, agent_id=agent_id)
    assert gx.tokens.verify(third.grant_token).valid


def test_reusing_a_spent_refresh_token_fails_and_revokes_live_tokens(gx: Grantex) -> None:
    first = grant_for(gx, ["calendar:read"])
    agent_id = _agent_id(gx, first.grant_id)
    second = gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=agent_id)
    with pytest.raises(RefreshTokenReused):
        gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=agent_id)
    assert gx.tokens.verify(first.grant_token).reason == "token_revoked"
    assert gx.tokens.verify(second.grant_token).reason == "token_revoked"
    # The stolen family is dead: the newest refresh token no longer works either.
    with pytest.raises(InvalidRefreshToken):
        gx.tokens.refresh(refresh_token=second.refresh_token, agent_id=agent_id)


def test_refresh_reuse_also_kills_grants_delegated_from_those_tokens(gx: Grantex) -> None:
    first = grant_for(gx, ["calendar:read"])
    agent_id = _agent_id(gx, first.grant_id)
    sub = gx.agents.register(name="sub", scopes=["calendar:read"])
    child = gx.grants.delegate(parent_grant_token=first.grant_token, sub_agent_id=sub.id,
                               scopes=["calendar:read"])
    gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=agent_id)
    with pytest.raises(RefreshTokenReused):
        gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=agent_id)
    assert not gx.tokens.verify(child.grant_token).valid


@pytest.mark.parametrize("token", ["", "ref_01J00000000000000000000000", "not-a-token"])
def test_unknown_refresh_token(gx: Grantex, token: str) -> None:
    first = grant_for(gx, ["calendar:read"])
    with pytest.raises(InvalidRefreshToken):
        gx.tokens.refresh(refresh_token=token, agent_id=_agent_id(gx, first.grant_id))
    assert gx.tokens.verify(first.grant_token).valid


def test_refresh_by_another_agent_or_after_revocation_fails(gx: Grantex, clock: MovableClock) -> None:
    first = grant_for(gx, ["calendar:read"])
    other = gx.agents.register(name="thief", scopes=[])
    with pytest.raises(InvalidRefreshToken):
        gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=other.id)
    gx.grants.revoke(first.grant_id)
    with pytest.raises(InvalidRefreshToken, match="revoked"):
        gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=_agent_id(gx, first.grant_id))


def test_refresh_after_expiry_fails(gx: Grantex, clock: MovableClock) -> None:
    first = grant_for(gx, ["calendar:read"], expires_in="1h")
    clock.advance(3601)
    with pytest.raises(InvalidRefreshToken, match="expired"):
        gx.tokens.refresh(refresh_token=first.refresh_token, agent_id=_agent_id(gx, first.grant_id))


def test_refresh_tokens_are_stored_only_as_hashes(gx: Grantex, ledger_path: object) -> None:
    first = grant_for(gx, ["calendar:read"])
    raw = open(str(ledger_path), "rb").read()
    wal = open(str(ledger_path) + "-wal", "rb").read()
    for blob in (raw, wal):
        assert first.refresh_token.encode() not in blob
