"""Delegation: an agent hands a strict subset of its grant to a sub-agent (PROTOCOL §8).

Everything is decided inside the write lock that revocation also takes, with
the parent token verified online there: a parent revoked a moment earlier
can never gain a child.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import agents, errors, tokens
from .audit.trail import record
from .authorization import check_declared_scopes
from .clock import iso, parse_expires_in, parse_iso
from .ids import new_id
from .models import ExchangeTokenResponse
from .scopes import normalize_scopes, uncovered

if TYPE_CHECKING:
    from .founding import Ledger

DEFAULT_EXPIRES_IN = "1h"


def delegate(
    ledger: Ledger,
    developer_id: str,
    *,
    parent_grant_token: str,
    sub_agent_id: str,
    scopes: list[str],
    expires_in: str | None = None,
) -> ExchangeTokenResponse:
    """Issue a child grant and token to ``sub_agent_id``; see the module docstring."""
    requested = normalize_scopes(scopes)
    seconds = parse_expires_in(DEFAULT_EXPIRES_IN if expires_in is None else expires_in,
                               maximum=ledger.max_expires_in)
    if not isinstance(parent_grant_token, str) or not parent_grant_token:
        raise errors.InvalidInput("parentGrantToken must be a non-empty string")
    with ledger.write() as conn:
        check = tokens.verify_online(ledger, parent_grant_token, developer_id)
        if not check.valid or check.grant_id is None:
            raise errors.InvalidInput(f"parent grant token is not valid ({check.reason})")
        parent = conn.execute(
            "SELECT g.*, a.did AS agent_did FROM grants g JOIN agents a ON a.id = g.agent_id "
            "WHERE g.id = ?", (check.grant_id,)).fetchone()
        sub_agent = agents.require_active(ledger, developer_id, sub_agent_id, "sub-agent")
        parent_scopes = json.loads(parent["scopes"])
        missing = uncovered(requested, parent_scopes)
        if missing:
            raise errors.ScopeNotCovered(
                f"scopes not covered by the parent grant: {', '.join(missing)}", missing)
        check_declared_scopes(sub_agent, requested, "sub-agent")
        depth = parent["delegation_depth"] + 1
        limit = ledger.max_delegation_depth
        if depth > limit:
            raise errors.DelegationDepthExceeded(
                f"delegation depth {depth} would exceed the ledger's limit of {limit}")
        now = ledger.now()
        expires = min(int(parse_iso(parent["expires_at"])), int(now) + seconds)
        grant = {
            "id": new_id("grant"), "developer_id": developer_id,
            "agent_id": sub_agent.id, "principal_id": parent["principal_id"],
            "scopes": requested, "audience": parent["audience"],
            "parent_grant_id": parent["id"], "parent_token_id": check.token_id,
            "delegation_depth": depth, "auth_request_id": None, "issued_at": iso(now),
            "expires_at": iso(expires),
        }
        tokens.insert_grant(conn, grant)
        tokens.emit_grant_created(ledger, conn, grant)
        issued = tokens.issue(ledger, conn, grant, agent_did=sub_agent.did,
                              parent_agent_did=parent["agent_did"])
        record(ledger, conn, developer_id, "grantex.grant.delegated", agent_id=sub_agent.id,
               agent_did=sub_agent.did, grant_id=grant["id"], principal_id=grant["principal_id"],
               metadata={"parentGrantId": parent["id"], "parentAgentDid": parent["agent_did"],
                         "delegationDepth": depth, "scopes": requested,
                         "expiresAt": grant["expires_at"], "tokenId": issued.token_id})
    return issued.result()
