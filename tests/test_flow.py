"""authorize → consent → code → exchange, with policies, sandbox, PKCE and redirect binding."""

from __future__ import annotations

import base64
import hashlib

import pytest
from helpers import MovableClock, grant_for

from grantex_local import (
    AgentInactive,
    ExchangeTokenParams,
    Grantex,
    InvalidCode,
    InvalidInput,
    InvalidScope,
    InvalidState,
    NotFound,
    PolicyDenied,
)
from grantex_local.developers import create_developer


@pytest.fixture
def human(gx: Grantex) -> Grantex:
    """A client acting as a non-sandbox developer: requests wait for a human."""
    dev = create_developer(gx.ledger, "acme", sandbox=False)
    return Grantex(gx.ledger, developer_id=dev.id)


def test_sandbox_returns_code_at_once(gx: Grantex) -> None:
    agent = gx.agents.register(name="a", scopes=["calendar:read"])
    auth = gx.authorize(agent_id=agent.id, user_id="user_alice", scopes=["calendar:read"])
    assert auth.sandbox and auth.code and auth.status == "approved"
    assert auth.request_id.startswith("areq_")
    assert auth.consent_url == f"{gx.issuer}/consent/{auth.request_id}"


def test_human_approval_yields_single_use_code(human: Grantex) -> None:
    agent = human.agents.register(name="a", scopes=["calendar:read"])
    auth = human.authorize(agent_id=agent.id, user_id="user_bob", scopes=["calendar:read"])
    assert auth.status == "pending" and auth.code is None
    assert [r.request_id for r in human.consent.list()] == [auth.request_id]
    details = human.consent.details(auth.request_id)
    assert details["scopes"] == [{"scope": "calendar:read", "description": "Read calendar events"}]
    assert details["agent"]["name"] == "a" and details["developer"]["name"] == "acme"
    decision = human.consent.approve(auth.request_id)
    assert decision.code and decision.status == "approved"
    assert human.consent.list() == []
    token = human.tokens.exchange(ExchangeTokenParams(code=decision.code, agent_id=agent.id))
    assert token.scopes == ("calendar:read",)
    with pytest.raises(InvalidCode, match="already been used"):
        human.tokens.exchange(ExchangeTokenParams(code=decision.code, agent_id=agent.id))
    with pytest.raises(InvalidState):
        human.consent.approve(auth.request_id)

FLOW_SCOPES = ["calendar:read", "email:send", "payments:initiate"]
"""What the agents here declare: an agent is authorized only for scopes it declared."""


def test_denial_yields_no_code(human: Grantex) -> None:
    agent = human.agents.register(name="a", scopes=FLOW_SCOPES)
    auth = human.authorize(agent_id=agent.id, user_id="user_bob", scopes=["calendar:read"], state="xyz")
    decision = human.consent.deny(auth.request_id)
    assert decision.code is None and decision.status == "denied" and decision.state == "xyz"
    assert human.consent.get(auth.request_id).status == "denied"
    with pytest.raises(InvalidState):
        human.consent.approve(auth.request_id)


def test_request_expires_after_ten_minutes(human: Grantex, clock: MovableClock) -> None:
    agent = human.agents.register(name="a", scopes=FLOW_SCOPES)
    auth = human.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"], expires_in="24h")
    clock.advance(601)
    assert human.consent.get(auth.request_id).status == "expired"
    assert human.consent.list() == []
    with pytest.raises(InvalidState, match="expired"):
        human.consent.approve(auth.request_id)


def test_code_expires_after_ten_minutes(gx: Grantex, clock: MovableClock) -> None:
    agent = gx.agents.register(name="a", scopes=FLOW_SCOPES)
    auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"])
    clock.advance(601)
    with pytest.raises(InvalidCode, match="expired"):
        gx.tokens.exchange(code=auth.code, agent_id=agent.id)


def test_grant_lifetime_starts_at_exchange(gx: Grantex, clock: MovableClock) -> None:
    agent = gx.agents.register(name="a", scopes=FLOW_SCOPES)
    auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"], expires_in="2h")
    clock.advance(300)
    token = gx.tokens.exchange(code=auth.code, agent_id=agent.id)
    grant = gx.grants.get(token.grant_id)
    from grantex_local.clock import parse_iso

    assert parse_iso(grant.expires_at) == int(clock.now) + 7200


def test_code_bound_to_agent(gx: Grantex) -> None:
    agent = gx.agents.register(name="a", scopes=FLOW_SCOPES)
    other = gx.agents.register(name="b", scopes=FLOW_SCOPES)
    auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"])
    with pytest.raises(InvalidCode, match="different agent"):
        gx.tokens.exchange(code=auth.code, agent_id=other.id)
    # A failed attempt does not burn the code for its rightful agent.
    assert gx.tokens.exchange(code=auth.code, agent_id=agent.id).grant_id


def test_pkce(gx: Grantex) -> None:
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    agent = gx.agents.register(name="a", scopes=FLOW_SCOPES)
    auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"],
                        code_challenge=challenge, code_challenge_method="S256")
    with pytest.raises(InvalidCode, match="required"):
        gx.tokens.exchange(code=auth.code, agent_id=agent.id)
    with pytest.raises(InvalidCode, match="does not match"):
        gx.tokens.exchange(code=auth.code, agent_id=agent.id, code_verifier="w" * 64)
    assert gx.tokens.exchange(code=auth.code, agent_id=agent.id, code_verifier=verifier).grant_id
    with pytest.raises(InvalidInput, match="S256"):
        gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"],
                     code_challenge=challenge, code_challenge_method="plain")


def test_redirect_uri_must_match_registered_exactly(gx: Grantex) -> None:
    agent = gx.agents.register(name="a", scopes=FLOW_SCOPES, redirect_uris=["https://app.example/cb"])
    with pytest.raises(InvalidInput, match="redirectUri"):
        gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"],
                     redirect_uri="https://app.example/cb/")
    auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"], state="s1")
    assert auth.redirect_uri == "https://app.example/cb" and auth.state == "s1"
    with pytest.raises(InvalidCode, match="redirectUri"):
        gx.tokens.exchange(code=auth.code, agent_id=agent.id, redirect_uri="https://evil.example/cb")


def test_agent_registered_scopes_bound_requests(gx: Grantex) -> None:
    agent = gx.agents.register(name="a", scopes=["payments:initiate:max_500"])
    with pytest.raises(InvalidScope, match="not registered"):
        gx.authorize(agent_id=agent.id, user_id="u", scopes=["payments:initiate:max_900"])
    auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["payments:initiate:max_100"])
    assert auth.code


def test_unknown_suspended_and_deleted_agents(gx: Grantex) -> None:
    with pytest.raises(NotFound):
        gx.authorize(agent_id="ag_01J00000000000000000000000", user_id="u", scopes=["calendar:read"])
    agent = gx.agents.register(name="a", scopes=FLOW_SCOPES)
    pending = gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"])
    gx.agents.suspend(agent.id)
    with pytest.raises(AgentInactive, match="suspended"):
        gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"])
    with pytest.raises(AgentInactive):
        gx.tokens.exchange(code=pending.code, agent_id=agent.id)
    gx.agents.reactivate(agent.id)
    gx.agents.delete(agent.id)
    with pytest.raises(NotFound):
        gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"])
    with pytest.raises(NotFound):
        gx.agents.get(agent.id)


def test_deleted_agent_tokens_fail_online(gx: Grantex) -> None:
    token = grant_for(gx, ["calendar:read"])
    gx.agents.delete(gx.grants.get(token.grant_id).agent_id)
    assert gx.tokens.verify(token.grant_token).reason == "agent_deleted"


def test_policy_deny_beats_allow_and_records_request(human: Grantex) -> None:
    agent = human.agents.register(name="a", scopes=FLOW_SCOPES)
    human.policies.create(name="allow calendar", effect="allow", priority=100, scopes=["calendar:read"])
    deny = human.policies.create(name="no payments", effect="auto_deny", priority=1,
                                 scopes=["payments:initiate"])
    auth = human.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"])
    assert auth.policy_enforced and auth.effect == "allow" and auth.code
    with pytest.raises(PolicyDenied) as err:
        human.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read", "payments:initiate"])
    assert err.value.policy_id == deny.id
    assert human.consent.get(err.value.auth_request_id).status == "denied"
    # Allow needs every scope listed: this one waits for a human.
    assert human.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read", "email:send"]).status \
        == "pending"


def test_policy_conditions_agent_principal_and_time_window(human: Grantex, clock: MovableClock) -> None:
    agent = human.agents.register(name="a", scopes=FLOW_SCOPES)
    other = human.agents.register(name="b", scopes=FLOW_SCOPES)
    from datetime import UTC, datetime

    clock.now = datetime(2026, 3, 2, 23, 30, tzinfo=UTC).timestamp()  # a Monday, 23:30 UTC
    human.policies.create(name="night deny", effect="deny", agent_id=agent.id, principal_id="user_x",
                          time_window={"startHour": 22, "endHour": 6, "days": [1, 2, 3, 4, 5]})
    with pytest.raises(PolicyDenied):
        human.authorize(agent_id=agent.id, user_id="user_x", scopes=["calendar:read"])
    assert human.authorize(agent_id=other.id, user_id="user_x", scopes=["calendar:read"]).status == "pending"
    assert human.authorize(agent_id=agent.id, user_id="user_y", scopes=["calendar:read"]).status == "pending"
    clock.now = datetime(2026, 3, 3, 12, 0, tzinfo=UTC).timestamp()  # noon: outside the window
    assert human.authorize(agent_id=agent.id, user_id="user_x", scopes=["calendar:read"]).status == "pending"
    clock.now = datetime(2026, 3, 7, 23, 30, tzinfo=UTC).timestamp()  # Saturday night
    assert human.authorize(agent_id=agent.id, user_id="user_x", scopes=["calendar:read"]).status == "pending"


def test_policy_crud_and_validation(gx: Grantex) -> None:
    p = gx.policies.create(name="p", effect="allow", time_of_day_start="09:00", time_of_day_end="17:30")
    assert p.time_of_day_start == "09:00" and p.time_of_day_end == "17:30"
    assert gx.policies.list().total == 1
    updated = gx.policies.update(p.id, priority=5, name="q")
    assert updated.priority == 5 and updated.name == "q"
    gx.policies.delete(p.id)
    with pytest.raises(NotFound):
        gx.policies.get(p.id)
    for bad in ({"effect": "maybe"}, {"time_of_day_start": "25:00", "time_of_day_end": "10:00"},
                {"time_of_day_start": "09:00"}, {"scopes": ["bad scope"]},
                {"time_window": {"startHour": 1, "endHour": 2, "tz": "Mars/Base"}},
                {"time_window": {"startHour": 1, "endHour": 2, "days": [0]}}):
        kwargs = {"name": "x", "effect": "allow", **bad}
        with pytest.raises(InvalidInput):
            gx.policies.create(**kwargs)
    assert gx.policies.list().total == 0


def test_grant_list_filters(gx: Grantex, clock: MovableClock) -> None:
    a = grant_for(gx, ["calendar:read"], principal="user_alice", agent_name="a")
    b = grant_for(gx, ["calendar:read"], principal="user_bob", agent_name="b", expires_in="1h")
    c = grant_for(gx, ["calendar:read"], principal="user_bob", agent_name="c")
    gx.grants.revoke(c.grant_id)
    clock.advance(3601)
    ids = lambda **kw: [g.id for g in gx.grants.list(**kw).grants]  # noqa: E731
    assert ids(principal_id="user_bob") == [b.grant_id, c.grant_id]
    assert ids(status="active") == [a.grant_id]
    assert ids(status="expired") == [b.grant_id]
    assert ids(status="revoked") == [c.grant_id]
    assert ids(agent_id=gx.grants.get(a.grant_id).agent_id) == [a.grant_id]
    with pytest.raises(InvalidInput):
        gx.grants.list(status="paused")
