"""Online verification: offline checks plus what only the ledger knows.

The token row and its revocation, and the state of the grant, every ancestor
grant and every agent along the chain: one indexed statement for a root token
or one delegated once, a second for the rest of a deeper chain (a cascade
revokes a subtree in one transaction, so the two can never disagree about a
revocation in a way that admits a token). Kept apart from
issuance (``tokens``) so a command line that only verifies does not import
the write side (ULIDs, the audit trail, agents).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import errors
from .clock import iso
from .models import VerifyTokenResponse

if TYPE_CHECKING:
    from .founding import Ledger


Link = tuple[str | None, str, str]
"""(revoked_at, expires_at, agent status) of one grant in a delegation chain."""

# The token, its grant and that grant's parent, with their agents: a whole chain for root
# tokens and tokens delegated once, in one statement (a consistent snapshot on its own).
# Deeper chains read the rest with _ANCESTORS.
ONLINE = (
    "SELECT t.revoked_at, g.id, g.developer_id, g.principal_id, g.scopes, g.revoked_at, g.expires_at,"
    " a.did, a.status, g.parent_grant_id, p.id, p.revoked_at, p.expires_at, pa.status, p.parent_grant_id"
    " FROM tokens t JOIN grants g ON g.id = t.grant_id JOIN agents a ON a.id = g.agent_id"
    " LEFT JOIN grants p ON p.id = g.parent_grant_id LEFT JOIN agents pa ON pa.id = p.agent_id"
    " WHERE t.jti = ?"
)

_ANCESTORS = (
    "WITH RECURSIVE chain(id) AS ("
    " SELECT ? UNION ALL SELECT g.parent_grant_id FROM grants g JOIN chain c ON g.id = c.id"
    " WHERE g.parent_grant_id IS NOT NULL"
    ") SELECT g.revoked_at, g.expires_at, a.status FROM chain c JOIN grants g ON g.id = c.id"
    " JOIN agents a ON a.id = g.agent_id"
)


def chain(conn: sqlite3.Connection, grant_id: str) -> list[Link]:
    """The grant and all its ancestors, each as a :data:`Link`."""
    return [tuple(r) for r in conn.execute(_ANCESTORS, (grant_id,))]


def chain_problem(links: Sequence[Link], now_iso: str) -> str | None:
    """Why the grant or an ancestor cannot be used now (None: all good).

    Revocation is reported before expiry, and both before agent status,
    wherever in the chain they are."""
    if not links:
        return "unknown_grant"
    for revoked_at, _, _ in links:
        if revoked_at is not None:
            return "grant_revoked"
    for _, expires_at, _ in links:
        if expires_at <= now_iso:
            return "grant_expired"
    for _, _, status in links:
        if status != "active":
            return f"agent_{status}"
    return None


@functools.lru_cache(maxsize=1024)
def _scopes_of(text: str) -> tuple[str, ...]:
    """A grant's stored scope list (the same few lists recur in grant after grant)."""
    return tuple(json.loads(text))


def verify_online(ledger: Ledger, token: str, developer_id: str | None = None,
                  required_scopes: list[str] | None = None) -> VerifyTokenResponse:
    """Offline checks plus revocation, ancestors and agent status; never raises for a bad token."""
    try:
        claims = ledger.verify_offline(token, required_scopes)
    except errors.TokenInvalid as exc:
        return VerifyTokenResponse(valid=False, reason=exc.reason, message=exc.message)
    row = ledger.query_one(ONLINE, (claims.token_id,))
    if row is None or (developer_id is not None and row[2] != developer_id):
        return VerifyTokenResponse(valid=False, reason="unknown_token")
    (token_revoked_at, grant_id, _, principal_id, scopes, revoked_at, expires_at, did, status,
     parent_id, found_parent, parent_revoked_at, parent_expires_at, parent_status, grandparent_id) = row
    if (grant_id != claims.grant_id or principal_id != claims.principal_id
            or did != claims.agent_did or _scopes_of(scopes) != claims.scopes):
        return VerifyTokenResponse(valid=False, reason="claims_mismatch")
    if token_revoked_at is not None:
        return VerifyTokenResponse(valid=False, reason="token_revoked")
    links: list[Link] = [(revoked_at, expires_at, status)]
    if parent_id is not None:
        if found_parent is None:
            return VerifyTokenResponse(valid=False, reason="unknown_grant")
        links.append((parent_revoked_at, parent_expires_at, parent_status))
        if grandparent_id is not None:
            links += [tuple(r) for r in ledger.query(_ANCESTORS, (grandparent_id,))]
    problem = chain_problem(links, iso(ledger.now()))
    if problem is not None:
        return VerifyTokenResponse(valid=False, reason=problem)
    return VerifyTokenResponse(
        valid=True, grant_id=claims.grant_id, scopes=claims.scopes, principal=claims.principal_id,
        agent=claims.agent_did, expires_at=expires_at, token_id=claims.token_id,
    )
