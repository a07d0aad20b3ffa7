"""Online verification: offline checks plus what only the ledger knows.

The token row and its revocation, and the state of the grant, every ancestor
grant and every agent along the chain, read in one statement. Kept apart from
issuance (``tokens``) so a command line that only verifies does not import
the write side (ULIDs, the audit trail, agents).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import errors
from .clock import iso
from .models import VerifyTokenResponse

if TYPE_CHECKING:
    from .ledger import Ledger


def chain(conn: sqlite3.Connection, grant_id: str) -> list[sqlite3.Row]:
    """The grant and its ancestors, in the row shape of :data:`ONLINE` (token column None)."""
    return conn.execute(
        "WITH RECURSIVE chain(id, n) AS ("
        " SELECT ?, 0 UNION ALL SELECT g.parent_grant_id, c.n + 1 FROM grants g"
        " JOIN chain c ON g.id = c.id WHERE g.parent_grant_id IS NOT NULL"
        ") SELECT c.n, g.id, g.developer_id, g.principal_id, g.scopes, g.revoked_at, g.expires_at,"
        " a.did, a.status, NULL FROM chain c JOIN grants g ON g.id = c.id"
        " JOIN agents a ON a.id = g.agent_id",
        (grant_id,),
    ).fetchall()


def chain_problem(rows: Sequence[Sequence[Any]], now_iso: str) -> str | None:
    """Why the grant or an ancestor cannot be used now (None: all good).

    Revocation is reported before expiry, and both before agent status,
    wherever in the chain they are."""
    if not rows:
        return "unknown_grant"
    for row in rows:
        if row[5] is not None:
            return "grant_revoked"
    for row in rows:
        if row[6] <= now_iso:
            return "grant_expired"
    for row in rows:
        if row[8] != "active":
            return f"agent_{row[8]}"
    return None


# One statement (a consistent snapshot on its own): the row with n = 0 is the token and its
# grant, the others its ancestors; each with the revocation, expiry and agent status that
# decide. No ORDER BY: the sort costs more than finding n = 0.
ONLINE = (
    "WITH RECURSIVE chain(id, n, token_revoked_at) AS ("
    " SELECT grant_id, 0, revoked_at FROM tokens WHERE jti = ?"
    " UNION ALL SELECT g.parent_grant_id, c.n + 1, NULL FROM grants g JOIN chain c ON g.id = c.id"
    " WHERE g.parent_grant_id IS NOT NULL"
    ") SELECT c.n, g.id, g.developer_id, g.principal_id, g.scopes, g.revoked_at, g.expires_at,"
    " a.did, a.status, c.token_revoked_at"
    " FROM chain c JOIN grants g ON g.id = c.id JOIN agents a ON a.id = g.agent_id"
)


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
        return VerifyTokenResponse(valid=False, reason=exc.reason)
    rows = ledger.query(ONLINE, (claims.token_id,))
    head = next((r for r in rows if r[0] == 0), None)
    if head is None or (developer_id is not None and head[2] != developer_id):
        return VerifyTokenResponse(valid=False, reason="unknown_token")
    _, grant_id, _, principal_id, scopes, _, expires_at, did, _, token_revoked_at = head
    if (grant_id != claims.grant_id or principal_id != claims.principal_id
            or did != claims.agent_did or _scopes_of(scopes) != claims.scopes):
        return VerifyTokenResponse(valid=False, reason="claims_mismatch")
    if token_revoked_at is not None:
        return VerifyTokenResponse(valid=False, reason="token_revoked")
    problem = chain_problem(rows, iso(ledger.now()))
    if problem is not None:
        return VerifyTokenResponse(valid=False, reason=problem)
    return VerifyTokenResponse(
        valid=True, grant_id=claims.grant_id, scopes=claims.scopes, principal=claims.principal_id,
        agent=claims.agent_did, expires_at=expires_at, token_id=claims.token_id,
    )
