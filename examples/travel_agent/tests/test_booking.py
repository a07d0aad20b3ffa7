"""What the travel agent must never do, as tests: book on a revoked or expired grant, let a
sub-agent spend beyond its parent's ``max_500``, or book without leaving an audit entry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from grantex import GrantexApiError, ListAuditParams

TRIP = ["flights:book", "payments:initiate:max_500"]


def book(agent: httpx.Client, token: str, flight: str = "GX100", price: int = 420) -> httpx.Response:
    return agent.post("/book", json={"flight": flight, "price": price},
                      headers={"Authorization": f"Bearer {token}"})


def test_books_a_flight_within_its_grant(
    agent: httpx.Client, grantex_grant: Any, grantex_ledger: Any
) -> None:
    grant = grantex_grant(TRIP, agent_name="travel agent")

    answer = book(agent, grant.grant_token)

    assert answer.status_code == 201, answer.text
    assert answer.json()["grantId"] == grant.grant_id
    grantex_ledger.audit.assert_logged(action="flight.booked", grant=grant.grant_id, status="success")


def test_refuses_without_a_token_or_the_booking_scope(agent: httpx.Client, grantex_grant: Any) -> None:
    assert agent.post("/book", json={"flight": "GX1", "price": 10}).json()["error"] == "TOKEN_MISSING"
    pay_only = grantex_grant(["payments:initiate:max_500"])

    answer = book(agent, pay_only.grant_token)

    assert answer.status_code == 403
    assert answer.json()["error"] == "SCOPE_INSUFFICIENT"


def test_the_agent_refuses_when_its_grant_is_revoked(
    agent: httpx.Client, grantex_grant: Any, grantex_sdk: Any, grantex_ledger: Any
) -> None:
    grant = grantex_grant(TRIP)
    assert book(agent, grant.grant_token).status_code == 201

    grantex_sdk.grants.revoke(grant.grant_id)
    answer = book(agent, grant.grant_token, flight="GX200")

    # The token is still well signed and unexpired: only the issuer knows it is revoked.
    assert answer.status_code == 401
    assert answer.json()["error"] == "TOKEN_INVALID"
    assert "revoked" in answer.json()["message"]
    grantex_ledger.audit.assert_no_action_after_revocation()


def test_a_sub_agent_cannot_exceed_max_500(
    agent: httpx.Client, grantex_grant: Any, grantex_sdk: Any, grantex_ledger: Any
) -> None:
    parent = grantex_grant(TRIP, agent_name="travel agent")
    helper = grantex_sdk.agents.register(name="fare hunter",
                                         scopes=["flights:book", "payments:initiate:max_1000"])

    with pytest.raises(GrantexApiError) as refused:
        grantex_sdk.grants.delegate(parent_grant_token=parent.grant_token, sub_agent_id=helper.id,
                                    scopes=["flights:book", "payments:initiate:max_1000"])
    assert refused.value.status_code == 400
    assert "payments:initiate:max_1000" in str(refused.value)

    # Within the parent's bound the delegation works, and the service holds the sub-agent to it.
    child = grantex_sdk.grants.delegate(parent_grant_token=parent.grant_token, sub_agent_id=helper.id,
                                        scopes=["flights:book", "payments:initiate:max_200"])
    over = book(agent, child["grantToken"], price=300)
    assert over.status_code == 403
    assert over.json()["error"] == "LIMIT_EXCEEDED"
    assert book(agent, child["grantToken"], price=150).status_code == 201
    grantex_ledger.audit.assert_logged(action="flight.booked", grant=child["grantId"], status="blocked")
    grantex_ledger.audit.assert_logged(action="flight.booked", grant=child["grantId"], status="success")


def test_every_booking_is_in_the_audit_trail(
    agent: httpx.Client, grantex_grant: Any, grantex_sdk: Any, grantex_ledger: Any
) -> None:
    grant = grantex_grant(TRIP)
    flights = ["GX1", "GX2", "GX3"]

    booked = [book(agent, grant.grant_token, flight=f, price=100).json() for f in flights]

    grantex_ledger.audit.assert_logged(action="flight.booked", grant=grant.grant_id, status="success")
    entries = grantex_sdk.audit.list(ListAuditParams(grant_id=grant.grant_id, action="flight.booked")).entries
    assert {e.entry_id for e in entries} == {b["auditId"] for b in booked}
    assert sorted(e.metadata["flight"] for e in entries) == flights


def test_an_expired_token_is_refused(agent: httpx.Client, grantex_grant: Any, grantex_clock: Any) -> None:
    grant = grantex_grant(TRIP, expires_in="1h")
    assert book(agent, grant.grant_token).status_code == 201

    grantex_clock.advance(3601)
    answer = book(agent, grant.grant_token, flight="GX300")

    assert answer.status_code == 401
    assert answer.json()["error"] == "TOKEN_EXPIRED"
