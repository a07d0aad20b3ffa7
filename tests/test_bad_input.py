"""Bad input: a typed error naming what was wrong, and not one byte of the ledger changed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import dump, grant_for

from grantex_local import (
    AgentInactive,
    DelegationDepthExceeded,
    Grantex,
    GrantexLocalError,
    InvalidExpiresIn,
    InvalidInput,
    InvalidScope,
    NotFound,
    ScopeNotCovered,
)


@pytest.fixture
def world(gx: Grantex) -> dict[str, object]:
    root = grant_for(gx, ["calendar:read", "payments:initiate:max_100"])
    subs = [gx.agents.register(name=f"sub{i}", scopes=["calendar:read", "payments:initiate"])
            for i in range(4)]
    chain = [root]
    for sub in subs[:3]:
        chain.append(gx.grants.delegate(parent_grant_token=chain[-1].grant_token, sub_agent_id=sub.id,
                                        scopes=["calendar:read"]))
    suspended = gx.agents.register(name="sleepy", scopes=["calendar:read"])
    gx.agents.suspend(suspended.id)
    return {"root": root, "deepest": chain[-1], "free": subs[3], "suspended": suspended,
            "agent": gx.grants.get(root.grant_id).agent_id}


BAD_SCOPES = ["", "calendar", "calendar:", ":read", "calendar read", "calendar:read\n", "a:b:c:d",
              "cal\x00endar:read", "kalendář:read"]

CASES: dict[str, tuple[type[GrantexLocalError], Callable[[Grantex, dict], object]]] = {
    **{f"authorize malformed scope {s!r}": (InvalidScope, lambda gx, w, s=s: gx.authorize(
        agent_id=w["agent"], user_id="u", scopes=[s])) for s in BAD_SCOPES},
    "authorize no scopes": (InvalidScope, lambda gx, w: gx.authorize(agent_id=w["agent"], user_id="u",
                                                                      scopes=[])),
    "authorize scopes not a list": (InvalidScope, lambda gx, w: gx.authorize(
        agent_id=w["agent"], user_id="u", scopes="calendar:read")),
    "authorize unknown agent": (NotFound, lambda gx, w: gx.authorize(
        agent_id="ag_01J00000000000000000000000", user_id="u", scopes=["calendar:read"])),
    "authorize suspended agent": (AgentInactive, lambda gx, w: gx.authorize(
        agent_id=w["suspended"].id, user_id="u", scopes=["calendar:read"])),
    "authorize empty principal": (InvalidInput, lambda gx, w: gx.authorize(
        agent_id=w["agent"], user_id=" ", scopes=["calendar:read"])),
    "authorize expiresIn malformed": (InvalidExpiresIn, lambda gx, w: gx.authorize(
        agent_id=w["agent"], user_id="u", scopes=["calendar:read"], expires_in="tomorrow")),
    "authorize expiresIn over max": (InvalidExpiresIn, lambda gx, w: gx.authorize(
        agent_id=w["agent"], user_id="u", scopes=["calendar:read"], expires_in="48h")),
    "register malformed scope": (InvalidScope, lambda gx, w: gx.agents.register(name="x", scopes=["x y"])),
    "register empty name": (InvalidInput, lambda gx, w: gx.agents.register(name="", scopes=[])),
    "register bad redirect": (InvalidInput, lambda gx, w: gx.agents.register(
        name="x", scopes=[], redirect_uris=["javascript:alert(1)"])),
    "delegate to unknown agent": (NotFound, lambda gx, w: gx.grants.delegate(
        parent_grant_token=w["root"].grant_token, sub_agent_id="ag_01J00000000000000000000000",
        scopes=["calendar:read"])),
    "delegate to suspended agent": (AgentInactive, lambda gx, w: gx.grants.delegate(
        parent_grant_token=w["root"].grant_token, sub_agent_id=w["suspended"].id,
        scopes=["calendar:read"])),
    "delegate uncovered scope": (ScopeNotCovered, lambda gx, w: gx.grants.delegate(
        parent_grant_token=w["root"].grant_token, sub_agent_id=w["free"].id,
        scopes=["payments:initiate:max_101"])),
    "delegate over depth": (DelegationDepthExceeded, lambda gx, w: gx.grants.delegate(
        parent_grant_token=w["deepest"].grant_token, sub_agent_id=w["free"].id,
        scopes=["calendar:read"])),
    "delegate malformed expiresIn": (InvalidExpiresIn, lambda gx, w: gx.grants.delegate(
        parent_grant_token=w["root"].grant_token, sub_agent_id=w["free"].id,
        scopes=["calendar:read"], expires_in="1y")),
    "delegate expiresIn over max": (InvalidExpiresIn, lambda gx, w: gx.grants.delegate(
        parent_grant_token=w["root"].grant_token, sub_agent_id=w["free"].id,
        scopes=["calendar:read"], expires_in="2d")),
    "delegate garbage parent token": (InvalidInput, lambda gx, w: gx.grants.delegate(
        parent_grant_token="eyJhbGciOi.garbage.x", sub_agent_id=w["free"].id, scopes=["calendar:read"])),
    "exchange unknown code": (InvalidInput, lambda gx, w: gx.tokens.exchange(code="nope",
                                                                             agent_id=w["agent"])),
    "revoke unknown grant": (NotFound, lambda gx, w: gx.grants.revoke("grnt_01J00000000000000000000000")),
    "revoke unknown token": (NotFound, lambda gx, w: gx.tokens.revoke("tok_01J00000000000000000000000")),
    "suspend unknown agent": (NotFound, lambda gx, w: gx.agents.suspend("ag_01J00000000000000000000000")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_typed_and_writes_nothing(
    gx: Grantex, world: dict, ledger_path: Path, case: str
) -> None:
    error, call = CASES[case]
    before = dump(ledger_path)
    with pytest.raises(error) as err:
        call(gx, world)
    assert str(err.value) and "\n" not in str(err.value)
    assert dump(ledger_path) == before
