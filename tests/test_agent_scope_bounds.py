"""An agent's declared scopes bound what can be granted to it; declaring none means nothing.

Before this bound, an agent registered with ``scopes=[]`` could be authorized for any scope at
all (the check was skipped for an empty list), and a sub-agent could be delegated anything its
parent held whatever it declared. Refused at authorize and at delegate, over the library, the
CLI and HTTP, with nothing written and an error that says how to fix it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cli_helpers import fails, ok, ok_json
from helpers import dump, grant_for

from grantex_local import Grantex, InvalidScope, Ledger, ScopeNotCovered, developers
from grantex_local.server.testing import running_server


def test_an_agent_that_declares_no_scopes_cannot_be_authorized_for_any(gx: Grantex,
                                                                       ledger_path: Path) -> None:
    blank = gx.agents.register(name="blank", scopes=[])
    before = dump(ledger_path)
    for scopes in (["calendar:read"], ["payments:initiate:max_1"], ["com.example.anything:do"]):
        with pytest.raises(InvalidScope) as err:
            gx.authorize(agent_id=blank.id, user_id="user_alice", scopes=scopes)
        assert "declares no scopes, so it can be granted none" in err.value.message
        assert f"grantex-local agents update {blank.id} --scope" in err.value.message
    assert dump(ledger_path) == before
    gx.agents.update(blank.id, scopes=["calendar:read"])  # the fix the message names
    assert gx.authorize(agent_id=blank.id, user_id="user_alice", scopes=["calendar:read"]).code


def test_declared_scopes_bound_what_is_requested_by_the_coverage_rule(gx: Grantex) -> None:
    agent = gx.agents.register(name="payer", scopes=["payments:initiate:max_500", "calendar:read"])
    assert gx.authorize(agent_id=agent.id, user_id="u", scopes=["payments:initiate:max_100"]).code
    for beyond in (["payments:initiate:max_501"], ["payments:initiate"], ["calendar:write"],
                   ["calendar:read", "email:send"]):
        with pytest.raises(InvalidScope, match="is not registered for"):
            gx.authorize(agent_id=agent.id, user_id="u", scopes=beyond)


def test_a_sub_agent_is_delegated_only_what_it_declares(gx: Grantex, ledger_path: Path) -> None:
    root = grant_for(gx, ["calendar:read", "payments:initiate:max_500"])
    blank = gx.agents.register(name="blank-sub", scopes=[])
    reader = gx.agents.register(name="reader", scopes=["calendar:read"])
    before = dump(ledger_path)
    with pytest.raises(InvalidScope, match=f"sub-agent {blank.id} declares no scopes"):
        gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=blank.id,
                           scopes=["calendar:read"])
    with pytest.raises(InvalidScope, match="is not registered for: payments:initiate:max_10"):
        gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=reader.id,
                           scopes=["payments:initiate:max_10"])
    assert dump(ledger_path) == before
    # The parent's bound is still checked first and still names what it lacks.
    with pytest.raises(ScopeNotCovered):
        gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=reader.id,
                           scopes=["calendar:write"])
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=reader.id,
                               scopes=["calendar:read"])
    assert child.scopes == ("calendar:read",)


def test_the_cli_refuses_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ok("--ledger", path, "init")
    agent = ok_json("--ledger", path, "agents", "register", "no-scopes")
    assert agent["scopes"] == []
    result = fails(2, "--ledger", path, "authorize", "--agent", agent["id"], "--principal", "u",
                   "--scope", "calendar:read")
    assert "declares no scopes" in result.stderr and "agents update" in result.stderr


def test_http_authorize_for_an_agent_registered_without_scopes_is_400(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
    with running_server(path) as server, httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
        agent = api.post("/v1/agents", json={"name": "no-scopes"})  # scopes omitted: none declared
        assert agent.status_code == 201 and agent.json()["scopes"] == []
        refused = api.post("/v1/authorize", json={"agentId": agent.json()["id"], "principalId": "alice",
                                                  "scopes": ["calendar:read"]})
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "INVALID_SCOPE" and "declares no scopes" in refused.json()["message"]
